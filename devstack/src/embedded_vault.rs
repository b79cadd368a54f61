//! The embedded secrets store: an OpenBao dev server (`bao server -dev`) on loopback with a
//! random root token, started on demand and stopped on drop. Dev mode keeps secrets in memory:
//! whoever starts it seeds it.

use crate::managed_process::{EmbeddedServiceError, ManagedProcess, pick_port};
use changeflow_credentials::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct EmbeddedVaultOptions {
    /// Holds `openbao.log`.
    pub data_dir: PathBuf,
    pub binary: PathBuf,
    /// Listen port; 0 picks a free one.
    pub port: u16,
    /// Root token; random when absent (tests restarting the server fix it).
    pub root_token: Option<String>,
    pub startup_timeout: Duration,
}

impl EmbeddedVaultOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            binary: crate::binaries::locate("bao", "CHANGEFLOW_BAO_BIN"),
            port: 0,
            root_token: None,
            startup_timeout: Duration::from_secs(30),
        }
    }
}

/// A running OpenBao dev server.
pub struct EmbeddedVault {
    process: ManagedProcess,
    address: SocketAddr,
    root_token: Secret,
}

impl EmbeddedVault {
    /// Starts the server; an automatically picked port taken by someone else before the server
    /// bound it means another try on a fresh port.
    pub fn start(options: &EmbeddedVaultOptions) -> Result<Self, EmbeddedServiceError> {
        let mut attempt = 1;
        loop {
            match Self::start_once(options) {
                Err(EmbeddedServiceError::NotReady { reason, .. })
                    if options.port == 0 && attempt < 3 && reason.starts_with("it exited") =>
                {
                    attempt += 1
                }
                other => return other,
            }
        }
    }

    fn start_once(options: &EmbeddedVaultOptions) -> Result<Self, EmbeddedServiceError> {
        let io = |source| EmbeddedServiceError::Io {
            path: options.data_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&options.data_dir).map_err(io)?;
        let port = pick_port(options.port).map_err(io)?;
        let root_token = options
            .root_token
            .clone()
            .unwrap_or_else(|| format!("dev-{}", uuid::Uuid::new_v4().simple()));
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = Command::new(&options.binary);
        command
            .args(["server", "-dev", "-log-level=warn"])
            .arg(format!("-dev-listen-address={address}"))
            // The token goes through the environment, not argv, so `ps` does not show it.
            .env("BAO_DEV_ROOT_TOKEN_ID", &root_token)
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR");
        let mut process = ManagedProcess::spawn(
            "OpenBao dev server",
            command,
            &options.data_dir.join("openbao.log"),
        )?;
        process.wait_listening(&[address], options.startup_timeout)?;
        Ok(Self {
            process,
            address,
            root_token: Secret::new(root_token),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn root_token(&self) -> &Secret {
        &self.root_token
    }

    /// Stops the server (also done on drop); its secrets are gone with it.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}
