//! A child service process changeflow starts and owns (the embedded Temporal and OpenBao dev
//! servers): output to a log file, readiness by listening ports, and a clean stop on drop
//! (SIGTERM, then SIGKILL), so no child is ever left behind.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
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
    #[error("the embedded {name} did not start: {cause}; see {log}")]
    NotReady {
        name: &'static str,
        cause: NotReady,
        log: PathBuf,
    },
}

impl EmbeddedServiceError {
    /// Whether the service failed because something else holds its port, so that another
    /// try on a freshly picked port may succeed.
    pub fn port_taken(&self) -> bool {
        matches!(
            self,
            Self::NotReady {
                cause: NotReady::Exited(_) | NotReady::Foreign(_),
                ..
            }
        )
    }
}

/// Why a started service is not ready.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    /// It exited (a port it wanted was taken, say).
    #[error("it exited with {0}")]
    Exited(ExitStatus),
    /// Its ports did not accept connections in time.
    #[error("not listening after {0:?}")]
    NotListening(Duration),
    /// It listens but does not answer as ready in time.
    #[error("not answering after {0:?}")]
    NotAnswering(Duration),
    /// Something else answers on its address.
    #[error("another service answers on {0}")]
    Foreign(SocketAddr),
}

/// Runs `start_once` up to three times while its service fails because its port was taken,
/// when `automatic` (the ports were picked automatically, so the next try picks fresh ones).
pub fn start_on_free_ports<T>(
    automatic: bool,
    mut start_once: impl FnMut() -> Result<T, EmbeddedServiceError>,
) -> Result<T, EmbeddedServiceError> {
    let mut attempt = 1;
    loop {
        match start_once() {
            Err(e) if automatic && attempt < 3 && e.port_taken() => attempt += 1,
            other => return other,
        }
    }
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
        self.wait_ready(timeout, NotReady::NotListening(timeout), || {
            Ok(addresses
                .iter()
                .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok()))
        })
    }

    /// Asks `ready` every 100 ms until it answers `Ok(true)`, answers why the service will not
    /// be ready, the process exits, or `timeout` passes (then fails with `late`).
    pub fn wait_ready(
        &mut self,
        timeout: Duration,
        late: NotReady,
        mut ready: impl FnMut() -> Result<bool, NotReady>,
    ) -> Result<(), EmbeddedServiceError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            match ready() {
                Ok(true) => return Ok(()),
                Err(cause) => return Err(self.not_ready(cause)),
                Ok(false) if Instant::now() > deadline => return Err(self.not_ready(late)),
                Ok(false) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// An error if the process has exited.
    pub fn check_running(&mut self) -> Result<(), EmbeddedServiceError> {
        match self.exit_status() {
            Some(status) => Err(self.not_ready(NotReady::Exited(status))),
            None => Ok(()),
        }
    }

    fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub fn not_ready(&self, cause: NotReady) -> EmbeddedServiceError {
        EmbeddedServiceError::NotReady {
            name: self.name,
            cause,
            log: self.log.clone(),
        }
    }

    /// Stops the process: SIGTERM, then SIGKILL if it has not exited within five seconds.
    pub fn stop(&mut self) {
        if self.exit_status().is_some() {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exit_status().is_some() {
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
    pick_free_ports(port, 1)
}

/// `port`, or a free loopback port whose next port is free too, for a server that listens on
/// both (the OpenBao dev server's cluster port is its port plus one).
pub fn pick_port_pair(port: u16) -> std::io::Result<u16> {
    pick_free_ports(port, 2)
}

/// `port`, or the first of `run` free loopback ports in a row when 0.
fn pick_free_ports(port: u16, run: u16) -> std::io::Result<u16> {
    if port != 0 {
        return Ok(port);
    }
    for _ in 0..50 {
        let first = TcpListener::bind(("127.0.0.1", 0))?;
        let port = first.local_addr()?.port();
        let rest_free = (1..run).all(|next| {
            port.checked_add(next)
                .is_some_and(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
        });
        if rest_free {
            return Ok(port);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!("no {run} free loopback ports in a row"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    fn failing(cause: NotReady) -> EmbeddedServiceError {
        EmbeddedServiceError::NotReady {
            name: "test service",
            cause,
            log: PathBuf::from("test.log"),
        }
    }

    #[test]
    fn only_a_taken_port_on_automatic_ports_is_tried_again_and_at_most_three_times() {
        let exited = || failing(NotReady::Exited(ExitStatus::from_raw(1 << 8)));
        let mut calls = 0;
        let started = start_on_free_ports(true, || {
            calls += 1;
            if calls < 3 { Err(exited()) } else { Ok(calls) }
        });
        assert_eq!(started.unwrap(), 3);

        let mut calls = 0;
        let failed = start_on_free_ports(true, || {
            calls += 1;
            Err::<(), _>(failing(NotReady::Foreign(([127, 0, 0, 1], 1).into())))
        });
        assert!(failed.unwrap_err().port_taken());
        assert_eq!(calls, 3, "gives up after three tries");

        let mut calls = 0;
        let fixed = start_on_free_ports(false, || {
            calls += 1;
            Err::<(), _>(exited())
        });
        assert!(
            fixed
                .unwrap_err()
                .to_string()
                .contains("it exited with exit status: 1")
        );
        assert_eq!(calls, 1, "a port the user chose is not swapped for another");

        let mut calls = 0;
        let slow = start_on_free_ports(true, || {
            calls += 1;
            Err::<(), _>(failing(NotReady::NotListening(Duration::from_secs(1))))
        });
        assert!(!slow.unwrap_err().port_taken());
        assert_eq!(calls, 1, "a slow service is not started again");
    }

    #[test]
    fn a_port_pair_is_two_free_ports_in_a_row_and_a_fixed_port_is_kept() {
        let port = pick_port_pair(0).unwrap();
        TcpListener::bind(("127.0.0.1", port)).unwrap();
        TcpListener::bind(("127.0.0.1", port + 1)).unwrap();
        assert_eq!(pick_port_pair(4242).unwrap(), 4242);
        assert_eq!(pick_port(4242).unwrap(), 4242);
    }
}
