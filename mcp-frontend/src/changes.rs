//! Starting, watching and cancelling changes from the client side.

use changeflow_workflows::{ChangeProgress, ChangeResult, DeploymentRequest, TemplateDeployment};
use std::time::Duration;
use temporalio_client::{
    Client, WorkflowCancelOptions, WorkflowGetResultOptions, WorkflowIdConflictPolicy,
    WorkflowIdReusePolicy, WorkflowQueryOptions, WorkflowStartOptions,
    errors::{WorkflowGetResultError, WorkflowStartError},
};

/// Why a change could not be started, read or cancelled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// The request is malformed; nothing was started.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Temporal refused or could not be reached.
    #[error("{0}")]
    Temporal(String),
}

/// Starts a `TemplateDeployment` with the given workflow id. An id that was already used,
/// running or finished, is that change: nothing new starts (idempotent retries never deploy
/// twice).
pub async fn start(
    client: &Client,
    task_queue: &str,
    workflow_id: &str,
    request: DeploymentRequest,
) -> Result<(), ChangeError> {
    request.check_shape().map_err(ChangeError::Invalid)?;
    let started = client
        .start_workflow(
            TemplateDeployment::run,
            request,
            WorkflowStartOptions::new(task_queue, workflow_id)
                .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
                .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
                .build(),
        )
        .await;
    match started {
        Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
        Err(e) => Err(ChangeError::Temporal(e.to_string())),
    }
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
pub async fn cancel(client: &Client, workflow_id: &str, reason: &str) -> Result<(), ChangeError> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    handle
        .cancel(
            WorkflowCancelOptions::builder()
                .reason(reason.to_string())
                .build(),
        )
        .await
        .map_err(|e| ChangeError::Temporal(e.to_string()))
}

/// The execution status of a change, if it exists.
pub async fn status(
    client: &Client,
    workflow_id: &str,
) -> Result<temporalio_client::WorkflowExecutionStatus, ChangeError> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    let description = handle
        .describe(Default::default())
        .await
        .map_err(|e| ChangeError::Temporal(e.to_string()))?;
    Ok(description.status())
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
