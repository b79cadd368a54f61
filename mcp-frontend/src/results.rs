//! What the change tools return, one type per result; their derived schemas are the tools'
//! output schemas. Absent values are left out rather than sent as `null`.

use changeflow_workflows::{
    ChangeOutcome, ChangeProgress, ChangeResult, ChangeStep, DeviceStatus, Verdict, Verified,
};
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

/// Result of `deploy_template`: how the change ended or, when it waits for a person, a window
/// or a device, where it stands (follow it with `get_change_status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeployResult {
    pub change_id: String,
    /// `completed`, `failed`, `rejected`, `canceled` or `backout_failed` once it ended; `awaiting_approval`,
    /// `scheduled` or `waiting_for_device` while it waits
    pub status: ChangeStep,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_number: Option<String>,
    /// How it ended, once it did
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ChangeOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    #[serde(default)]
    pub devices: Vec<DeviceStatus>,
    /// Why it failed, was rejected or was canceled
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// What it waits for, while it waits
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who may approve it, while it awaits approval
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// RFC 3339
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<String>,
    /// RFC 3339
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    /// RFC 3339
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
    /// Its device checks and back-out (devices needing hands when backout_failed)
    #[serde(flatten)]
    pub verified: Verified,
}

impl DeployResult {
    /// A change that ended.
    pub fn finished(change_id: &str, result: &ChangeResult) -> Self {
        DeployResult {
            change_id: change_id.to_string(),
            status: result.outcome.final_step(),
            ticket_number: Some(result.ticket_number.clone()),
            outcome: Some(result.outcome),
            deployment_id: result.deployment_id.clone(),
            devices: result.devices.clone(),
            failure_reason: result.failure_reason.clone(),
            message: None,
            approvers: Vec::new(),
            waiting_since: None,
            window_start: None,
            window_end: None,
            verified: result.verified.clone(),
        }
    }

    /// A change that waits for a person, a window or a device.
    pub fn waiting(change_id: &str, progress: &ChangeProgress) -> Self {
        DeployResult {
            change_id: change_id.to_string(),
            status: progress.step,
            ticket_number: progress.ticket_number.clone(),
            outcome: None,
            deployment_id: None,
            devices: Vec::new(),
            failure_reason: None,
            message: Some(progress.message.clone()),
            approvers: progress.approvers.clone(),
            waiting_since: progress.waiting_since.clone(),
            window_start: progress.window_start.clone(),
            window_end: progress.window_end.clone(),
            verified: Verified::default(),
        }
    }
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
    /// Its step (`awaiting_approval`, `scheduled`, `deploying`, ...)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_number: Option<String>,
    pub devices: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
    /// normal, standard or emergency
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_type: Option<String>,
    /// Its window (RFC 3339), when it has one
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
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

/// Result of `approve_change` and `reject_change`: the decision the change accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionResult {
    pub change_id: String,
    pub approver: String,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_number: Option<String>,
    /// Accepted by the change; it writes the decision to ServiceNow and proceeds
    pub accepted: bool,
}
