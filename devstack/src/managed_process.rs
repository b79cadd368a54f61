//! A child service process changeflow starts and owns (the embedded Temporal and OpenBao dev
//! servers): output to a log file, readiness by listening ports, and a clean stop on drop
//! (SIGTERM, then SIGKILL), so no child is ever left behind.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Errors starting an embedded service.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmbeddedServiceError {
    /// A directory or log file could not be prepared.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The program could not be started at all.
    #[error("cannot run {binary} (run `make tools` to install it): {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    /// The service exited or never became ready.
    #[error("the embedded {name} did not start: {reason}; see {log}")]
    NotReady {
        name: &'static str,
        reason: String,
        log: PathBuf,
    },
}

/// A running child service.
pub struct ManagedProcess {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl ManagedProcess {
    /// Spawns `command` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &'static str,
        mut command: Command,
        log: &Path,
    ) -> Result<Self, EmbeddedServiceError> {
        let io = |source| EmbeddedServiceError::Io {
            path: log.to_path_buf(),
            source,
        };
        let out = std::fs::File::create(log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let binary = PathBuf::from(command.get_program());
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| EmbeddedServiceError::Spawn { binary, source })?;
        Ok(Self {
            child,
            name,
            log: log.to_path_buf(),
        })
    }

    /// Waits until every address accepts connections, the process exits, or `timeout` passes.
    pub fn wait_listening(
        &mut self,
        addresses: &[SocketAddr],
        timeout: Duration,
    ) -> Result<(), EmbeddedServiceError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.not_ready(format!("it exited with {status}")));
            }
            let up = addresses
                .iter()
                .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok());
            if up {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(format!("not listening after {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn not_ready(&self, reason: String) -> EmbeddedServiceError {
        EmbeddedServiceError::NotReady {
            name: self.name,
            reason,
            log: self.log.clone(),
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL if it has not exited within five seconds.
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

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `port`, or a free loopback port when 0.
pub fn pick_port(port: u16) -> std::io::Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// `port`, or a free loopback port whose next port is free too, for a server that listens on
/// both (the OpenBao dev server's cluster port is its port plus one).
pub fn pick_port_pair(port: u16) -> std::io::Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    for _ in 0..50 {
        let first = TcpListener::bind(("127.0.0.1", 0))?;
        let port = first.local_addr()?.port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        "no two free loopback ports in a row",
    ))
}
