//! Logging set-up: human-readable lines by default, JSON lines (for the Elastic stack) on request.
//! Logs go to stderr so that stdout carries only data.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are ignored.
pub fn init_logging(json: bool, default_level: &str) {
    let filter =
        EnvFilter::try_from_env("CHANGEFLOW_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
