//! The embedded Temporal server: `temporal server start-dev` on loopback, its SQLite history
//! in the data directory (so it survives restarts), started on demand and stopped on drop.

use crate::managed_process::{
    EmbeddedServiceError, ManagedProcess, pick_port, start_on_free_ports,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

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
    /// Search attributes to register, as `Name=Type`.
    pub search_attributes: Vec<String>,
}

impl EmbeddedTemporalOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            binary: crate::binaries::locate("temporal", "CHANGEFLOW_TEMPORAL_BIN"),
            port: 0,
            ui_port: 0,
            startup_timeout: Duration::from_secs(60),
            search_attributes: Vec::new(),
        }
    }
}

/// A running `temporal server start-dev`; stopped when dropped.
pub struct EmbeddedTemporal {
    process: ManagedProcess,
    address: SocketAddr,
    ui_address: SocketAddr,
}

impl EmbeddedTemporal {
    /// Starts the server and waits until its frontend and Web UI accept connections. Ports
    /// picked automatically are only free when picked; if another process takes one first, the
    /// server exits and is started again on fresh ports.
    pub fn start(options: &EmbeddedTemporalOptions) -> Result<Self, EmbeddedServiceError> {
        let automatic = options.port == 0 || options.ui_port == 0;
        start_on_free_ports(automatic, || Self::start_once(options))
    }

    fn start_once(options: &EmbeddedTemporalOptions) -> Result<Self, EmbeddedServiceError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EmbeddedServiceError::Io { path, source }
        };
        std::fs::create_dir_all(&options.data_dir).map_err(io(&options.data_dir))?;
        let port = pick_port(options.port).map_err(io(&options.data_dir))?;
        let ui_port = pick_port(options.ui_port).map_err(io(&options.data_dir))?;
        let mut command = Command::new(&options.binary);
        command
            .args(["server", "start-dev", "--ip", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--ui-port")
            .arg(ui_port.to_string())
            .arg("--db-filename")
            .arg(options.data_dir.join("temporal.db"))
            // Measured: about 2.2x more workflow starts per second than the defaults, and an
            // application crash loses nothing in WAL mode.
            .args([
                "--sqlite-pragma",
                "journal_mode=wal",
                "--sqlite-pragma",
                "synchronous=normal",
            ])
            .args(["--ui-disable-news-fetch", "--log-level", "warn"])
            // One partition per task queue instead of four: a single server gains nothing
            // from spreading a queue, and a workflow task started on a partition no worker
            // polls at that moment waited in the backlog. Measured with reads at 50 clients
            // through a front door whose worker is another process: p99 1.3-1.5 s instead of
            // 3.7-5.1 s, at the same rate (bench/results/2026-11-29-partitions.md).
            .args([
                "--dynamic-config-value",
                "matching.numTaskqueueReadPartitions=1",
                "--dynamic-config-value",
                "matching.numTaskqueueWritePartitions=1",
            ])
            // The dev server reads search attributes and the namespace from its database on
            // every start that carries search attributes (`temporal` sets this so that
            // attributes created at run time show at once; Temporal's own default is off, "not
            // in production"). Ours are all created here, at start. Measured with reads at 50 clients: about 7 fewer database reads
            // per read, 25 % more reads a second (bench/results/2026-11-29-server-reads.md).
            .args([
                "--dynamic-config-value",
                "system.forceSearchAttributesCacheRefreshOnRead=false",
            ])
            // A task for a worker (a workflow task not started eagerly, an activity) waits in
            // the history's transfer queue until its reader looks again, at most 20 times a
            // second by default: about 30 ms on every such hop when the server is not busy.
            // Measured: one client reading through a front door whose worker is another
            // process, 55-56 calls a second (p50 15 ms) instead of 19-20 (p50 50 ms), with no
            // loss at 50 clients (bench/results/2026-11-29-server-reads.md).
            .args([
                "--dynamic-config-value",
                "history.transferProcessorMaxPollRPS=200",
            ]);
        for attribute in &options.search_attributes {
            command.arg("--search-attribute").arg(attribute);
        }
        let mut process = ManagedProcess::spawn(
            "Temporal server",
            command,
            &options.data_dir.join("temporal.log"),
        )?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let ui_address = SocketAddr::from(([127, 0, 0, 1], ui_port));
        process.wait_listening(&[address, ui_address], options.startup_timeout)?;
        Ok(Self {
            process,
            address,
            ui_address,
        })
    }

    /// `host:port` of the gRPC frontend.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// URL of the Web UI.
    pub fn ui_url(&self) -> String {
        format!("http://{}", self.ui_address)
    }

    /// Stops the server (also done on drop).
    pub fn stop(&mut self) {
        self.process.stop();
    }
}
