//! Starting, watching and cancelling changes from the client side.

use changeflow_workflows::{ChangeProgress, ChangeResult, DeploymentRequest, TemplateDeployment};
use std::time::Duration;
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowGetResultOptions, WorkflowQueryOptions,
    WorkflowStartOptions, errors::WorkflowGetResultError,
};

/// Starts a `TemplateDeployment` with the given workflow id.
pub async fn start(
    client: &Client,
    task_queue: &str,
    workflow_id: &str,
    request: DeploymentRequest,
) -> anyhow::Result<()> {
    request
        .check_shape()
        .map_err(|e| anyhow::anyhow!("invalid request: {e}"))?;
    client
        .start_workflow(
            TemplateDeployment::run,
            request,
            WorkflowStartOptions::new(task_queue, workflow_id).build(),
        )
        .await?;
    Ok(())
}

/// The change's current progress, or `None` while no worker has answered yet.
pub async fn progress(client: &Client, workflow_id: &str) -> Option<ChangeProgress> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    handle
        .query(
            TemplateDeployment::progress,
            (),
            WorkflowQueryOptions::default(),
        )
        .await
        .ok()
}

/// Waits for the change to end.
pub async fn result(
    client: &Client,
    workflow_id: &str,
) -> Result<ChangeResult, WorkflowGetResultError> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    handle.get_result(WorkflowGetResultOptions::default()).await
}

/// Requests cancellation; the workflow closes its ticket as canceled.
pub async fn cancel(client: &Client, workflow_id: &str, reason: &str) -> anyhow::Result<()> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    handle
        .cancel(
            WorkflowCancelOptions::builder()
                .reason(reason.to_string())
                .build(),
        )
        .await?;
    Ok(())
}

/// Waits for the result while calling `on_progress` whenever progress changes.
pub async fn follow(
    client: &Client,
    workflow_id: &str,
    mut on_progress: impl FnMut(&ChangeProgress),
) -> Result<ChangeResult, WorkflowGetResultError> {
    let result = result(client, workflow_id);
    tokio::pin!(result);
    let mut last: Option<ChangeProgress> = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            outcome = &mut result => {
                if let Some(p) = progress(client, workflow_id).await
                    && last.as_ref() != Some(&p) {
                        on_progress(&p);
                    }
                return outcome;
            }
            _ = ticker.tick() => {
                if let Some(p) = progress(client, workflow_id).await
                    && last.as_ref() != Some(&p) {
                        on_progress(&p);
                        last = Some(p);
                    }
            }
        }
    }
}
