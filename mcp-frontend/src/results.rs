//! What the change tools return, one type per result; their derived schemas are the tools'
//! output schemas. Absent values are left out rather than sent as `null`.

use changeflow_workflows::{ChangeProgress, ChangeResult};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use temporalio_client::WorkflowExecutionStatus;

/// Where a change's workflow stands, as Temporal reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    Running,
    Completed,
    Failed,
    Canceled,
    Terminated,
    TimedOut,
}

impl ExecutionState {
    /// The name in Temporal's visibility queries (`ExecutionStatus = '...'`).
    pub fn visibility_name(self) -> &'static str {
        match self {
            ExecutionState::Running => "Running",
            ExecutionState::Completed => "Completed",
            ExecutionState::Failed => "Failed",
            ExecutionState::Canceled => "Canceled",
            ExecutionState::Terminated => "Terminated",
            ExecutionState::TimedOut => "TimedOut",
        }
    }
}

impl From<WorkflowExecutionStatus> for ExecutionState {
    fn from(status: WorkflowExecutionStatus) -> Self {
        match status {
            WorkflowExecutionStatus::Completed => ExecutionState::Completed,
            WorkflowExecutionStatus::Failed => ExecutionState::Failed,
            WorkflowExecutionStatus::Canceled => ExecutionState::Canceled,
            WorkflowExecutionStatus::Terminated => ExecutionState::Terminated,
            WorkflowExecutionStatus::TimedOut => ExecutionState::TimedOut,
            // Continued as new: the change goes on in the next run.
            _ => ExecutionState::Running,
        }
    }
}

/// Result of `deploy_template`: the change's result and its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeployResult {
    pub change_id: String,
    #[serde(flatten)]
    pub result: ChangeResult,
}

/// Result of `get_change_status`: the workflow's state and, once a worker answered, its
/// progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeStatus {
    pub change_id: String,
    pub status: ExecutionState,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ChangeProgress>,
}

impl ChangeStatus {
    pub fn new(change_id: &str, status: ExecutionState, progress: Option<ChangeProgress>) -> Self {
        ChangeStatus {
            change_id: change_id.to_string(),
            status,
            progress,
        }
    }
}

/// One change in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeSummary {
    pub change_id: String,
    pub status: ExecutionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_number: Option<String>,
    pub devices: Vec<String>,
    /// RFC 3339
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
}

/// Result of `list_changes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeList {
    pub changes: Vec<ChangeSummary>,
}

/// One event of a change's step timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineEntry {
    /// RFC 3339
    pub at: String,
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Result of `get_change_history`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeHistory {
    pub change_id: String,
    pub status: ExecutionState,
    pub timeline: Vec<TimelineEntry>,
}

/// Result of `cancel_change`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CancelResult {
    pub change_id: String,
    pub cancel_requested: bool,
}
