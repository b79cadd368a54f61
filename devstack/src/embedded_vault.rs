//! The embedded secrets store: an OpenBao dev server (`bao server -dev`) on loopback with a
//! random root token, started on demand and stopped on drop. Dev mode keeps secrets in memory:
//! whoever starts it seeds it.

use crate::managed_process::{
    EmbeddedServiceError, ManagedProcess, NotReady, pick_port_pair, start_on_free_ports,
};
use changeflow_credentials::Secret;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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
        start_on_free_ports(options.port == 0, || Self::start_once(options))
    }

    fn start_once(options: &EmbeddedVaultOptions) -> Result<Self, EmbeddedServiceError> {
        let io = |source| EmbeddedServiceError::Io {
            path: options.data_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&options.data_dir).map_err(io)?;
        // The dev server also listens on the port after its own (its cluster port).
        let port = pick_port_pair(options.port).map_err(io)?;
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
        // Listening is not enough: another server may hold the port (another dev server's
        // cluster port, say) while this one fails to bind it. Ready is this server knowing
        // its own root token.
        let timeout = options.startup_timeout;
        process.wait_ready(timeout, NotReady::NotAnswering(timeout), || {
            match probe(address, &root_token) {
                Probe::Ours => Ok(true),
                Probe::NotYet => Ok(false),
                Probe::Foreign => Err(NotReady::Foreign(address)),
            }
        })?;
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

    /// The port it listens on (its cluster port is the next one).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn root_token(&self) -> &Secret {
        &self.root_token
    }

    /// Stops the server (also done on drop); its secrets are gone with it.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// What a server on the dev server's address says to its root token.
enum Probe {
    /// It knows the token: it is the server just started.
    Ours,
    /// Not answering yet, or answering that it is not ready.
    NotYet,
    /// Something else: not HTTP, or a server that does not know the token.
    Foreign,
}

fn probe(address: SocketAddr, root_token: &str) -> Probe {
    let Ok(mut tcp) = TcpStream::connect_timeout(&address, Duration::from_millis(500)) else {
        return Probe::NotYet;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "GET /v1/auth/token/lookup-self HTTP/1.1\r\nHost: {address}\r\nX-Vault-Token: {root_token}\r\nConnection: close\r\n\r\n"
    );
    if tcp.write_all(request.as_bytes()).is_err() {
        return Probe::NotYet;
    }
    let mut head = [0u8; 12];
    match tcp.read_exact(&mut head) {
        Ok(()) if head.starts_with(b"HTTP/1.1 200") => Probe::Ours,
        // A Vault that refuses the token is another one; 5xx is one still starting.
        Ok(()) if head.starts_with(b"HTTP/1.1 403") => Probe::Foreign,
        Ok(()) if head.starts_with(b"HTTP/1.") => Probe::NotYet,
        Ok(()) => Probe::Foreign,
        // Closed or silent after a plain HTTP request: a TLS listener, say.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Probe::Foreign,
        Err(_) => Probe::NotYet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A server on loopback that reads one request and answers `answer` (or nothing).
    fn answering(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let mut request = [0u8; 512];
            let _ = tcp.read(&mut request);
            let _ = tcp.write_all(answer);
        });
        address
    }

    #[test]
    fn only_a_server_that_knows_the_root_token_is_taken_for_the_one_started() {
        let ok = answering(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(matches!(probe(ok, "t"), Probe::Ours));
        let starting = answering(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(matches!(probe(starting, "t"), Probe::NotYet));
        let other_vault = answering(b"HTTP/1.1 403 Forbidden\r\n\r\n");
        assert!(matches!(probe(other_vault, "t"), Probe::Foreign));
        let not_http = answering(b"\x15\x03\x03\x00\x02\x02\x50garbage");
        assert!(matches!(probe(not_http, "t"), Probe::Foreign));
        let hangs_up = answering(b"");
        assert!(matches!(probe(hangs_up, "t"), Probe::Foreign));
        let nobody = {
            let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
            listener.local_addr().unwrap()
        };
        assert!(matches!(probe(nobody, "t"), Probe::NotYet));
    }
}
