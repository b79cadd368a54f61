//! `DownstreamOperation`: one read or small write against ServiceNow or Catalyst Center, run as
//! its own short workflow so that every tool call is durable and visible in history.
//!
//! The arguments below are what MCP clients send (unknown fields refused); the caller's identity
//! is added by the front door, never taken from the arguments.

use crate::activities::ChangeActivities;
use crate::template_deployment::{failure_message, failure_type};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ApplicationFailure, WorkflowContext, WorkflowResult,
    WorkflowTermination,
};

/// List Catalyst Center templates, optionally of one project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListTemplates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_name: Option<String>,
}

/// One template by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetTemplate {
    pub template_id: String,
}

/// Devices, optionally filtered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListDevices {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// `Reachable` or `Unreachable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachability: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Render a template for one device without deploying it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewTemplate {
    pub template_id: String,
    /// Hostname or Catalyst Center device id.
    pub device: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
}

/// One change request by number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GetChangeRequest {
    pub number: String,
}

/// Change requests, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListChangeRequests {
    /// State name: new, assess, authorize, scheduled, implement, review, closed, canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// Open a normal change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateChangeRequest {
    pub short_description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// Append a work note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddWorkNote {
    pub number: String,
    pub note: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// How a change request is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseCode {
    Successful,
    SuccessfulIssues,
    Unsuccessful,
    Canceled,
}

/// Close a change request (or cancel it, with `close_code: canceled`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloseChangeRequest {
    pub number: String,
    pub close_code: CloseCode,
    pub close_notes: String,
}

/// Which operation, with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "arguments", rename_all = "snake_case")]
pub enum Operation {
    ListTemplates(ListTemplates),
    GetTemplate(GetTemplate),
    ListDevices(ListDevices),
    PreviewTemplate(PreviewTemplate),
    GetChangeRequest(GetChangeRequest),
    ListChangeRequests(ListChangeRequests),
    CreateChangeRequest(CreateChangeRequest),
    AddWorkNote(AddWorkNote),
    CloseChangeRequest(CloseChangeRequest),
}

/// The workflow's input: the operation and who asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationRequest {
    pub operation: Operation,
    /// The verified caller; becomes `requested_by` and the author of notes.
    pub requested_by: String,
}

/// Error type name of operations whose target does not exist (a ticket number, a template id).
pub const NOT_FOUND: &str = "NotFound";

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
        match ctx
            .execute_activity(
                ChangeActivities::perform_operation,
                request,
                operation_options(),
            )
            .await
        {
            Ok(value) => Ok(value),
            Err(ActivityExecutionError::Cancelled(_)) => Err(WorkflowTermination::cancelled()),
            Err(err) => Err(root_application_failure(&err)),
        }
    }
}

/// Fails the workflow with the activity's own error (message and type), not "activity failed".
fn root_application_failure(err: &ActivityExecutionError) -> WorkflowTermination {
    ApplicationFailure::builder(failure_message(err))
        .type_name(failure_type(err).unwrap_or_default())
        .non_retryable(true)
        .build()
        .into()
}

/// Quick calls: a transient outage is retried for a minute; then the caller hears about it.
fn operation_options() -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: Duration::from_secs(60),
        start_to_close: Duration::from_secs(30),
    })
    .retry_policy(
        RetryPolicy::builder()
            .initial_interval(Duration::from_millis(250))
            .backoff_coefficient(2.0)
            .maximum_interval(Duration::from_secs(5))
            .build(),
    )
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
