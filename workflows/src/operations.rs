//! `DownstreamOperation`: one read or small write against ServiceNow or Catalyst Center, run as
//! its own short workflow so that every tool call is durable and visible in history.
//!
//! The arguments below are what MCP clients send (unknown fields refused); the caller's identity
//! is added by the front door, never taken from the arguments.

use crate::activities::ChangeActivities;
pub use crate::arguments::{
    AddWorkNote, CloseChangeRequest, CloseCode, CreateChangeRequest, GetChangeRequest,
    GetEvidenceKey, GetTemplate, ListChangeRequests, ListDevices, ListTemplates, PreviewTemplate,
    RunShowCommands, SignEvidence,
};
use crate::failure::{FailureType, root_application_failure};
pub use crate::types::{Operation, OperationRequest};
use std::time::Duration;
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, LocalActivityOptions, WorkflowContext, WorkflowResult,
    WorkflowTermination,
};

#[workflow]
#[derive(Default)]
pub struct DownstreamOperation;

#[workflow_methods]
impl DownstreamOperation {
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: OperationRequest,
    ) -> WorkflowResult<serde_json::Value> {
        if let Err(reason) = request.operation.validate() {
            return Err(FailureType::InvalidRequest.terminate(format!("invalid request: {reason}")));
        }
        // Since this patch the call is a local activity: one workflow task and a marker in
        // history instead of scheduling, starting and completing an activity (two round trips
        // to Temporal). Histories recorded before it replay the activity. A `lean` input skips
        // the patch (its marker and search attribute upsert); the input says which path ran.
        let outcome = if request.lean || ctx.patched(LOCAL_OPERATION) {
            ctx.execute_local_activity(
                ChangeActivities::perform_operation,
                request,
                local_operation_options(),
            )
            .await
        } else {
            ctx.execute_activity(
                ChangeActivities::perform_operation,
                request,
                operation_options(),
            )
            .await
        };
        match outcome {
            Ok(value) => Ok(value),
            Err(ActivityExecutionError::Cancelled(_)) => Err(WorkflowTermination::cancelled()),
            Err(err) => Err(root_application_failure(&err)),
        }
    }
}

/// The patch that made quick operations local activities.
pub const LOCAL_OPERATION: &str = "local-operation";

/// Quick calls: a transient outage is retried for a minute; then the caller hears about it.
fn operation_retries() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(250))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(5))
        .build()
}

/// The same bounds for the local activity.
fn local_operation_options() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .schedule_to_close_timeout(Duration::from_secs(60))
        .start_to_close_timeout(Duration::from_secs(30))
        .retry_policy(operation_retries())
        .summary("downstream operation".to_string())
        .build()
}

/// Before `LOCAL_OPERATION`: an ordinary activity.
fn operation_options() -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: Duration::from_secs(60),
        start_to_close: Duration::from_secs(30),
    })
    .retry_policy(operation_retries())
    .summary("downstream operation".to_string())
    .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_round_trip_and_refuse_unknown_fields() {
        let op = Operation::AddWorkNote(AddWorkNote {
            number: "CHG0030001".into(),
            note: "checked".into(),
            idempotency_key: None,
        });
        let wire = serde_json::to_value(&op).unwrap();
        assert_eq!(wire["operation"], "add_work_note");
        assert_eq!(serde_json::from_value::<Operation>(wire).unwrap(), op);
        assert!(
            serde_json::from_value::<GetTemplate>(json!({"template_id": "t", "x": 1})).is_err()
        );
        assert!(
            serde_json::from_value::<CloseChangeRequest>(
                json!({"number": "n", "close_code": "maybe", "close_notes": ""})
            )
            .is_err()
        );
    }
}
