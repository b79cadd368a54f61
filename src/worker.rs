//! Hosting a Temporal worker that runs changeflow's workflows and activities.
//! The SDK's `Worker` is not `Send`: run this inside a `tokio::task::LocalSet`.

use anyhow::Context;
use changeflow_activities::{DownstreamActivities, DownstreamConfig};
use changeflow_credentials::CredentialProvider;
use std::future::Future;
use std::sync::Arc;
use temporalio_client::Client;
use temporalio_common::telemetry::metrics::CoreMeter;
use temporalio_common::telemetry::{
    PrometheusExporterOptions, TelemetryOptions, start_prometheus_metric_exporter,
};
use temporalio_sdk::runtime::RuntimeOptions;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// Runs a worker on `task_queue` until `shutdown` resolves, then drains it. With
/// `sdk_metrics`, the Temporal SDK's own worker metrics (poll latencies, slots,
/// schedule-to-start latency, ...) are served in Prometheus format on that address.
pub async fn run_worker(
    client: Client,
    task_queue: &str,
    downstream: &DownstreamConfig,
    credentials: Arc<dyn CredentialProvider>,
    sdk_metrics: Option<std::net::SocketAddr>,
    shutdown: impl Future<Output = ()> + 'static,
) -> anyhow::Result<()> {
    let activities =
        DownstreamActivities::new(downstream, credentials).context("preparing activities")?;
    let mut runtime_options = RuntimeOptions::default();
    let mut exporter = None;
    if let Some(address) = sdk_metrics {
        let started = start_prometheus_metric_exporter(
            PrometheusExporterOptions::builder()
                .socket_addr(address)
                .counters_total_suffix(true)
                .use_seconds_for_durations(true)
                .unit_suffix(true)
                .build(),
        )
        .with_context(|| format!("cannot serve the Temporal SDK metrics on {address}"))?;
        tracing::info!(address = %started.bound_addr, "Temporal SDK metrics served");
        runtime_options = RuntimeOptions::builder()
            .telemetry_options(
                TelemetryOptions::builder()
                    .metrics(started.meter.clone() as Arc<dyn CoreMeter>)
                    .build(),
            )
            .build()
            .map_err(anyhow::Error::msg)?;
        exporter = Some(started.abort_handle);
    }
    let runtime =
        Runtime::from_current_tokio(runtime_options).context("starting the Temporal runtime")?;
    let options = with_workflows!(WorkerOptions::new(task_queue))
        .context("registering workflows")?
        .register_activities(activities)
        .build();
    let mut worker = Worker::new(&runtime, client, options).context("creating the worker")?;
    let stop = worker.shutdown_handle();
    tokio::task::spawn_local(async move {
        shutdown.await;
        stop();
    });
    tracing::info!(task_queue, "worker started");
    worker.run().await.context("worker stopped with an error")?;
    tracing::info!("worker stopped");
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    Ok(())
}

/// A worker running beside something else on this thread's `LocalSet` (`demo`, `dev`, and
/// `serve --in-process-worker`), sharing that process's Temporal client.
pub struct LocalWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl LocalWorker {
    /// Starts `run_worker` on the current `LocalSet`.
    pub fn spawn(
        client: Client,
        task_queue: String,
        downstream: DownstreamConfig,
        credentials: Arc<dyn CredentialProvider>,
        sdk_metrics: Option<std::net::SocketAddr>,
    ) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let running = tokio::task::spawn_local(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            run_worker(
                client,
                &task_queue,
                &downstream,
                credentials,
                sdk_metrics,
                shutdown,
            )
            .await
        });
        Self {
            stop: Some(stop),
            running,
        }
    }

    /// Asks the worker to drain and stop (`stopped` then says how it ended).
    pub fn request_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Resolves when the worker has stopped: `Ok` when it drained cleanly.
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        match (&mut self.running).await {
            Ok(ended) => ended,
            Err(e) => Err(e.into()),
        }
    }

    /// Resolves only if the worker stops without being asked to, with why: an error even when
    /// it ended cleanly, because whatever it runs beside goes on without it.
    pub async fn failed(&mut self) -> anyhow::Error {
        match self.stopped().await {
            Ok(()) => anyhow::anyhow!("the worker stopped"),
            Err(e) => e,
        }
    }
}
