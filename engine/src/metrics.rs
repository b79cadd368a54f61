//! Prometheus metrics: one recorder per process (the `metrics` facade with the Prometheus
//! exporter), rendered in the text format by `/metrics` on the front door and the worker.
//! Metric names are defined here, once.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

/// Tool calls by `server`, `tool` and `outcome`.
pub const TOOL_CALLS: &str = "changeflow_tool_calls_total";
/// Tool call latency in seconds, by `server` and `tool`.
pub const TOOL_CALL_SECONDS: &str = "changeflow_tool_call_duration_seconds";
/// Bearer token checks by `result` (`success`, `failure`).
pub const AUTHN: &str = "changeflow_authn_total";
/// Bearer token check latency in seconds.
pub const AUTHN_SECONDS: &str = "changeflow_authn_duration_seconds";
/// Policy decisions by `action`, `resource` and `decision` (`allow`, `deny`).
pub const AUTHZ_DECISIONS: &str = "changeflow_authz_decisions_total";
/// Policy evaluation latency in seconds.
pub const POLICY_SECONDS: &str = "changeflow_policy_evaluation_duration_seconds";
/// Audit appends by `result` (`success`, `failure`).
pub const AUDIT_WRITES: &str = "changeflow_audit_writes_total";
/// HTTP requests by `method`, `route` (the path's template, or `other`) and `status`.
pub const HTTP_REQUESTS: &str = "changeflow_http_requests_total";
/// HTTP request latency in seconds, by `method` and `route`.
pub const HTTP_SECONDS: &str = "changeflow_http_request_duration_seconds";
/// Running changes by `step` (`awaiting_approval`, `scheduled`, `deploying`, ...), counted in
/// Temporal visibility when the front door's `/metrics` is scraped.
pub const CHANGES_IN_PROGRESS: &str = "changeflow_changes_in_progress";

/// Tool calls running a workflow right now, on this front door (starts and quick operations).
pub const WORKFLOW_CALLS_IN_FLIGHT: &str = "changeflow_workflow_calls_in_flight";
/// Calls refused at once because this front door had `--max-in-flight` workflow calls
/// running, by `server` and `tool`.
pub const CALLS_SHED: &str = "changeflow_calls_shed_total";

/// Latency buckets in seconds: from a cached token check to a long change.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0, 900.0,
];

/// The process's recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("latency buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (a test harness); then this one only renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The metrics in Prometheus's text format, with the process's own (`process_cpu_seconds_total`,
/// `process_resident_memory_bytes`, open file descriptors, threads, ...) read afresh.
pub fn render() -> String {
    static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();
    let handle = prometheus();
    let process = PROCESS.get_or_init(|| {
        let collector = metrics_process::Collector::default();
        collector.describe();
        collector
    });
    process.collect();
    handle.render()
}
