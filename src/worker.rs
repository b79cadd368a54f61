//! Hosting a Temporal worker that runs changeflow's workflows and activities.
//! The SDK's `Worker` is not `Send`: run this inside a `tokio::task::LocalSet`.

use anyhow::Context;
use changeflow_activities::{DownstreamActivities, DownstreamConfig};
use changeflow_credentials::CredentialProvider;
use changeflow_workflows::{DeviceLock, DownstreamOperation, TemplateDeployment};
use std::future::Future;
use std::sync::Arc;
use temporalio_client::Client;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// Runs a worker on `task_queue` until `shutdown` resolves, then drains it.
pub async fn run_worker(
    client: Client,
    task_queue: &str,
    downstream: &DownstreamConfig,
    credentials: Arc<dyn CredentialProvider>,
    shutdown: impl Future<Output = ()> + 'static,
) -> anyhow::Result<()> {
    let activities =
        DownstreamActivities::new(downstream, credentials).context("preparing activities")?;
    let runtime =
        Runtime::from_current_tokio(Default::default()).context("starting the Temporal runtime")?;
    let options = WorkerOptions::new(task_queue)
        .register_workflow::<TemplateDeployment>()
        .and_then(|options| options.register_workflow::<DownstreamOperation>())
        .and_then(|options| options.register_workflow::<DeviceLock>());
    // The conformance fixtures exist only in development builds.
    #[cfg(feature = "dev")]
    let options = options.and_then(|options| {
        options.register_workflow::<changeflow_workflows::ConformanceFixture>()
    });
    let options = options
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
    Ok(())
}
