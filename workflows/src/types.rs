//! Inputs, progress and results of the change workflows. They carry references and identities,
//! never credentials: everything here is written to Temporal history.

use crate::arguments::*;
use crate::github;
pub use crate::verification::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a caller asks for: deploy one Catalyst Center template to some devices under a governed
/// change ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRequest {
    /// The caller's `deploy_template` arguments.
    pub change: DeployTemplate,
    /// The human the change is made for; becomes the ticket's `requested_by`, and can never
    /// approve it.
    pub requested_by: String,
    /// Seconds between looks in ServiceNow for a decision an approver made there.
    #[serde(default = "default_approval_poll_secs")]
    pub approval_poll_secs: u64,
    /// The checks it runs and its back-out, resolved from the verification catalog when it
    /// was requested (the defaults, and the request's own back-out, when absent).
    #[serde(default)]
    pub verification: Verification,
    /// For a template from Git: the commit its ref named when the change was requested (and
    /// policy judged), which the change deploys even if the branch has moved since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
}

/// How often the workflow looks for decisions made in ServiceNow, by default.
pub const DEFAULT_APPROVAL_POLL_SECS: u64 = 30;

fn default_approval_poll_secs() -> u64 {
    DEFAULT_APPROVAL_POLL_SECS
}

impl DeploymentRequest {
    /// The request a caller's `deploy_template` arguments make.
    pub fn new(change: DeployTemplate, requested_by: String) -> Self {
        DeploymentRequest {
            verification: Verification {
                backout_source: change.backout.as_ref().map(|_| BackoutSource::Request),
                backout: change.backout.clone(),
                ..Verification::default()
            },
            change,
            requested_by,
            approval_poll_secs: DEFAULT_APPROVAL_POLL_SECS,
            source_commit: None,
        }
    }

    /// The tool's own check (`DeployTemplate::validate`) and a named caller: run before any
    /// system is asked anything.
    pub fn validate(&self) -> Result<(), String> {
        self.change.validate()?;
        if self.requested_by.trim().is_empty() {
            return Err("requested_by must name the caller".into());
        }
        if self.approval_poll_secs == 0 {
            return Err("approval_poll_secs must be at least 1".into());
        }
        let problems = self.verification.checks.problems();
        if !problems.is_empty() {
            return Err(format!("verification: {}", problems.join("; ")));
        }
        if let Some(backout) = &self.verification.backout {
            backout.validate()?;
        }
        Ok(())
    }
}

/// A device resolved in Catalyst Center during validation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRef {
    pub id: String,
    pub hostname: String,
    pub management_ip: String,
}

/// The outcome of validation: everything later steps need, resolved once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatedDeployment {
    pub template_id: String,
    pub template_name: String,
    pub project_name: String,
    pub parameters: BTreeMap<String, String>,
    pub devices: Vec<DeviceRef>,
    /// Rendered configuration for the first device, shown in the change ticket.
    pub preview: String,
}

/// Input of the ticket-opening activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewChangeTicket {
    /// Correlates the ticket with the workflow so a retried create finds the existing ticket.
    pub correlation_id: String,
    pub short_description: String,
    pub description: String,
    pub requested_by: String,
    pub change_type: ChangeType,
    /// The emergency's reason (or any change's), written to the ticket.
    #[serde(default)]
    pub justification: Option<String>,
    /// The planned window: the ticket's `start_date`/`end_date`.
    #[serde(default)]
    pub window: Option<Window>,
    /// A work note written when the ticket is opened (where a template from Git came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_note: Option<String>,
}

/// Input of the ticket-moving activity: walk the change type's state path up to `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdvanceTicket {
    pub ticket: ChangeTicket,
    pub change_type: ChangeType,
    pub to: TicketState,
}

/// Input of the approval-polling activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwaitApproval {
    pub ticket: ChangeTicket,
    /// Seconds between looks.
    pub poll_secs: u64,
}

/// What a decision says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approved,
    Rejected,
}

/// Where a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionSource {
    /// `approve_change` / `reject_change`, through the front door.
    Changeflow,
    /// In ServiceNow itself (its UI or Table API).
    ServiceNow,
}

/// An approver's decision on a change (the `decide` update's input, or what polling found).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalDecision {
    /// The verified approver (user name).
    pub approver: String,
    pub verdict: Verdict,
    #[serde(default)]
    pub comment: String,
    pub source: DecisionSource,
}

/// A decision as the change records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionRecord {
    pub approver: String,
    pub verdict: Verdict,
    pub comment: String,
    pub source: DecisionSource,
    /// RFC 3339 (workflow time).
    pub at: String,
}

/// Input of the decision-writing activity: the approver's record in ServiceNow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordDecision {
    pub ticket: ChangeTicket,
    pub decision: ApprovalDecision,
}

/// The change's approval rollup in ServiceNow after a decision (`approval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalRollup {
    Requested,
    Approved,
    Rejected,
}

/// The answer to an accepted decision (the `decide` update's result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DecisionReceipt {
    pub approver: String,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_number: Option<String>,
}

/// Who may still decide on a change, as ServiceNow's approval records say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PendingApprovers {
    /// User names with a `requested` approval record.
    pub approvers: Vec<String>,
}

/// A ServiceNow change request as the workflow tracks it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeTicket {
    pub sys_id: String,
    pub number: String,
}

/// Input of the ticket-closing activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloseChangeTicket {
    pub ticket: ChangeTicket,
    /// `successful`, `unsuccessful` or `canceled`.
    pub closure: CloseCode,
    pub notes: String,
    /// For the change metrics: its type, how it ended, and when it started (seconds since the
    /// epoch, workflow time).
    pub change_type: ChangeType,
    pub outcome: ChangeOutcome,
    pub started_at: i64,
}

/// Input of the deployment-submitting activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmitDeployment {
    pub template_id: String,
    pub parameters: BTreeMap<String, String>,
    pub devices: Vec<DeviceRef>,
}

/// A deployment accepted by Catalyst Center: the task to poll.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentTask {
    pub task_id: String,
}

/// Input of the polling activity: the task and what the workflow already knows of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AwaitDeployment {
    pub task_id: String,
    /// Per-device status the workflow has already seen; the activity returns when it changes.
    pub known: Vec<DeviceStatus>,
}

/// Where a deployment stands, as reported by Catalyst Center.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentSnapshot {
    pub task_id: String,
    pub deployment_id: Option<String>,
    /// The task has ended (successfully or not).
    pub finished: bool,
    /// Catalyst Center's failure reason when the task itself failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    pub devices: Vec<DeviceStatus>,
}

/// One device's deployment state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceStatus {
    pub device: String,
    /// Catalyst Center's status: IN_PROGRESS, SUCCESS, FAILURE, ... (`PENDING` before it starts).
    pub status: String,
    pub message: String,
}

impl DeviceStatus {
    pub fn succeeded(&self) -> bool {
        self.status == "SUCCESS"
    }
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "SUCCESS" | "FAILURE")
    }
}

/// The steps of a template deployment, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStep {
    #[default]
    Validating,
    OpeningTicket,
    /// Waits for an approver's decision (`approvers`, since `waiting_since`).
    AwaitingApproval,
    /// Approved; waits for its window to open (`window_start`).
    Scheduled,
    /// A device is held by another change (`waiting_for`).
    WaitingForDevice,
    Implementing,
    /// Captures each device's baseline before anything is deployed.
    PreChecking,
    Deploying,
    /// Checks the devices after the deployment.
    Verifying,
    /// Undoes the change on the devices it changed, then checks them again.
    BackingOut,
    ClosingTicket,
    Completed,
    Failed,
    /// An approver rejected it; nothing was deployed.
    Rejected,
    Canceled,
    /// Its back-out failed: devices need hands (`needs_attention`).
    BackoutFailed,
}

impl ChangeStep {
    /// Rough share of the work done when this step starts, for progress bars.
    pub fn percent(self) -> u8 {
        match self {
            ChangeStep::Validating => 0,
            ChangeStep::OpeningTicket => 10,
            ChangeStep::AwaitingApproval => 15,
            ChangeStep::Scheduled | ChangeStep::WaitingForDevice => 18,
            ChangeStep::Implementing => 20,
            ChangeStep::PreChecking => 22,
            ChangeStep::Deploying => 25,
            ChangeStep::Verifying => 80,
            ChangeStep::BackingOut => 85,
            ChangeStep::ClosingTicket => 95,
            ChangeStep::Completed
            | ChangeStep::Failed
            | ChangeStep::Rejected
            | ChangeStep::Canceled
            | ChangeStep::BackoutFailed => 100,
        }
    }

    /// The step's name as tools and filters write it.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeStep::Validating => "validating",
            ChangeStep::OpeningTicket => "opening_ticket",
            ChangeStep::AwaitingApproval => "awaiting_approval",
            ChangeStep::Scheduled => "scheduled",
            ChangeStep::WaitingForDevice => "waiting_for_device",
            ChangeStep::Implementing => "implementing",
            ChangeStep::PreChecking => "pre_checking",
            ChangeStep::Deploying => "deploying",
            ChangeStep::Verifying => "verifying",
            ChangeStep::BackingOut => "backing_out",
            ChangeStep::ClosingTicket => "closing_ticket",
            ChangeStep::Completed => "completed",
            ChangeStep::Failed => "failed",
            ChangeStep::Rejected => "rejected",
            ChangeStep::Canceled => "canceled",
            ChangeStep::BackoutFailed => "backout_failed",
        }
    }

    /// The steps of a change that has not ended, in order.
    pub const IN_PROGRESS: [ChangeStep; 11] = [
        ChangeStep::Validating,
        ChangeStep::OpeningTicket,
        ChangeStep::AwaitingApproval,
        ChangeStep::Scheduled,
        ChangeStep::WaitingForDevice,
        ChangeStep::Implementing,
        ChangeStep::PreChecking,
        ChangeStep::Deploying,
        ChangeStep::Verifying,
        ChangeStep::BackingOut,
        ChangeStep::ClosingTicket,
    ];

    /// Whether the change waits for a person, a window or a device (no caller is held that long).
    pub fn is_waiting(self) -> bool {
        matches!(
            self,
            ChangeStep::AwaitingApproval | ChangeStep::Scheduled | ChangeStep::WaitingForDevice
        )
    }
}

/// Live progress of a change, answered by the workflow's `progress` query at any time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, JsonSchema)]
pub struct ChangeProgress {
    pub step: ChangeStep,
    #[schemars(range(max = 100))]
    pub percent: u8,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    pub devices: Vec<DeviceStatus>,
    pub change_type: ChangeType,
    /// Who may approve it while it is `awaiting_approval`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
    /// Since when it waits (RFC 3339), while it waits for a person, a window or a device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_since: Option<String>,
    /// Its window (RFC 3339), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
    /// The decisions made on it so far.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decisions: Vec<DecisionRecord>,
    /// The change holding a device it waits for, while it is `waiting_for_device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_by: Option<crate::device_lock::LockHolder>,
    /// Where its template came from in Git, pinned to a commit (changes deployed from Git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<github::ResolvedSource>,
    /// The Catalyst Center template version that Git source was synced to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<github::SyncedTemplate>,
    /// Its device checks and back-out so far.
    #[serde(flatten)]
    pub verified: Verified,
}

/// What a change's device checks and back-out came to: in its progress, its result and the
/// deploy tool's result alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, JsonSchema)]
pub struct Verified {
    /// The device checks (pre-change, post-change, post-back-out), with verdicts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<DeviceCheck>,
    /// The back-out, once one started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backout: Option<BackoutProgress>,
    /// Devices a failed back-out left needing hands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_attention: Vec<String>,
}

/// A back-out as the change tracks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BackoutProgress {
    /// Why the change is backed out.
    pub reason: String,
    pub template_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    /// The devices it undoes the change on, with the back-out deployment's status.
    pub devices: Vec<DeviceStatus>,
}

/// How a change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// Deployed to every device; ticket closed successful.
    Succeeded,
    /// At least one device failed; ticket closed unsuccessful with the reason.
    Failed,
    /// An approver rejected it; ticket canceled with their comment, nothing deployed.
    Rejected,
    /// No decision in time, it missed its window, or it was canceled by request; ticket
    /// canceled.
    Canceled,
    /// It failed and undoing it failed too: the devices in `needs_attention` need hands.
    BackoutFailed,
}

impl ChangeOutcome {
    /// The name metrics and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeOutcome::Succeeded => "succeeded",
            ChangeOutcome::Failed => "failed",
            ChangeOutcome::Rejected => "rejected",
            ChangeOutcome::Canceled => "canceled",
            ChangeOutcome::BackoutFailed => "backout_failed",
        }
    }

    /// Whether the change failed (its call reports an error): failed, or failed and its
    /// back-out too.
    pub fn is_failure(self) -> bool {
        matches!(self, ChangeOutcome::Failed | ChangeOutcome::BackoutFailed)
    }

    /// The step a change that ended this way ends in.
    pub fn final_step(self) -> ChangeStep {
        match self {
            ChangeOutcome::Succeeded => ChangeStep::Completed,
            ChangeOutcome::Failed => ChangeStep::Failed,
            ChangeOutcome::Rejected => ChangeStep::Rejected,
            ChangeOutcome::Canceled => ChangeStep::Canceled,
            ChangeOutcome::BackoutFailed => ChangeStep::BackoutFailed,
        }
    }
}

/// The result of a finished change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeResult {
    pub outcome: ChangeOutcome,
    pub ticket_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    pub devices: Vec<DeviceStatus>,
    /// Why the change failed, was rejected or was canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// Its device checks and back-out.
    #[serde(flatten)]
    pub verified: Verified,
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
    RunShowCommands(RunShowCommands),
    SignEvidence(SignEvidence),
    GetEvidenceKey(GetEvidenceKey),
    GetFileContents(github::GetFileContents),
    ListBranches(github::ListBranches),
    CreateBranch(github::CreateBranch),
    ListCommits(github::ListCommits),
    GetCommit(github::GetCommit),
    CreateOrUpdateFile(github::CreateOrUpdateFile),
    CreatePullRequest(github::CreatePullRequest),
    ListPullRequests(github::ListPullRequests),
    PullRequestRead(github::PullRequestRead),
    PullRequestReviewWrite(github::PullRequestReviewWrite),
    MergePullRequest(github::MergePullRequest),
    /// Internal: the facts policy needs before a merge.
    GetMergeFacts(github::GetMergeFacts),
    /// Internal: a Git source resolved to its commit, for policy.
    ResolveSource(github::ResolveSource),
}

impl Operation {
    /// The operation's own arguments check (`Arguments::validate`).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Operation::ListTemplates(a) => a.validate(),
            Operation::GetTemplate(a) => a.validate(),
            Operation::ListDevices(a) => a.validate(),
            Operation::PreviewTemplate(a) => a.validate(),
            Operation::GetChangeRequest(a) => a.validate(),
            Operation::ListChangeRequests(a) => a.validate(),
            Operation::CreateChangeRequest(a) => a.validate(),
            Operation::AddWorkNote(a) => a.validate(),
            Operation::CloseChangeRequest(a) => a.validate(),
            Operation::RunShowCommands(a) => a.validate(),
            Operation::SignEvidence(a) => a.validate(),
            Operation::GetEvidenceKey(a) => a.validate(),
            Operation::GetFileContents(a) => a.validate(),
            Operation::ListBranches(a) => a.validate(),
            Operation::CreateBranch(a) => a.validate(),
            Operation::ListCommits(a) => a.validate(),
            Operation::GetCommit(a) => a.validate(),
            Operation::CreateOrUpdateFile(a) => a.validate(),
            Operation::CreatePullRequest(a) => a.validate(),
            Operation::ListPullRequests(a) => a.validate(),
            Operation::PullRequestRead(a) => a.validate(),
            Operation::PullRequestReviewWrite(a) => a.validate(),
            Operation::MergePullRequest(a) => a.validate(),
            Operation::GetMergeFacts(a) => a.validate(),
            Operation::ResolveSource(a) => a.validate(),
        }
    }

    /// The caller's idempotency key, for the writes that take one.
    pub fn idempotency_key(&self) -> Option<&str> {
        match self {
            Operation::CreateChangeRequest(a) => a.idempotency_key.as_deref(),
            Operation::AddWorkNote(a) => a.idempotency_key.as_deref(),
            _ => None,
        }
    }
}

/// The workflow's input: the operation and who asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationRequest {
    pub operation: Operation,
    /// The verified caller; becomes `requested_by` and the author of notes.
    pub requested_by: String,
    /// Run the call as a local activity straight away, with no patch marker (and so no
    /// `TemporalChangeVersion` search attribute written for every read). Set by every starter
    /// since; an input without it was started before and replays as it ran then.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lean: bool,
}

impl OperationRequest {
    /// A request as starters make it now (`lean`).
    pub fn new(operation: Operation, requested_by: impl Into<String>) -> Self {
        Self {
            operation,
            requested_by: requested_by.into(),
            lean: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_DEVICES;

    fn request() -> DeploymentRequest {
        let change = serde_json::from_value(serde_json::json!({
            "template_id": "t", "devices": ["edge-1"]
        }))
        .unwrap();
        DeploymentRequest::new(change, "alice".into())
    }

    #[test]
    fn shape_checks_name_the_offending_field() {
        let check = |mutate: fn(&mut DeploymentRequest), expected: &str| {
            let mut r = request();
            mutate(&mut r);
            let err = r.validate().unwrap_err();
            assert!(err.contains(expected), "{err} should mention {expected}");
        };
        check(|r| r.change.template_id = Some(" ".into()), "template_id");
        check(|r| r.change.template_id = Some("a/b".into()), "template_id");
        check(|r| r.change.devices.clear(), "devices");
        check(|r| r.change.devices = vec![String::new()], "each device");
        check(|r| r.requested_by.clear(), "requested_by");
        check(
            |r| r.change.short_description = Some("x".repeat(161)),
            "short_description",
        );
        check(
            |r| r.change.devices = vec!["d".into(); MAX_DEVICES + 1],
            "devices",
        );
        check(
            |r| r.change.change_type = ChangeType::Emergency,
            "justification",
        );
        check(
            |r| r.change.window_start = Some("2026-11-27T10:00:00Z".into()),
            "window_end",
        );
        check(
            |r| {
                r.change.window_start = Some("2026-11-27T10:00:00Z".into());
                r.change.window_end = Some("2026-11-27T09:00:00Z".into());
            },
            "after window_start",
        );
        check(
            |r| {
                r.change.window_start = Some("tomorrow".into());
                r.change.window_end = Some("2026-11-27T09:00:00Z".into());
            },
            "RFC 3339",
        );
        check(
            |r| r.change.approval_timeout = Some("0s".into()),
            "approval_timeout",
        );
        check(
            |r| r.change.approval_timeout = Some("7d".into()),
            "approval_timeout",
        );
        check(|r| r.change.approval_timeout = Some("721h".into()), "720h");
        let mut fine = request();
        fine.change.approval_timeout = Some("1h30m".into());
        assert_eq!(fine.change.approval_timeout_secs(), Ok(5400));
        assert!(request().validate().is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<DeploymentRequest>(
            r#"{"change":{"template_id":"t","devices":["a"]},"requested_by":"x","password":"p"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field"));
    }
}

/// Search attributes of a change, for listing and filtering in Temporal visibility. The
/// embedded server registers them; a production cluster needs them created once
/// (`temporal operator search-attribute create`).
pub mod search {
    use temporalio_common::search_attributes::SearchAttributeKey;

    pub const REQUESTER: SearchAttributeKey<String> =
        SearchAttributeKey::keyword("ChangeRequester");
    pub const TICKET: SearchAttributeKey<String> = SearchAttributeKey::keyword("ChangeTicket");
    pub const DEVICES: SearchAttributeKey<Vec<String>> =
        SearchAttributeKey::keyword_list("ChangeDevices");
    /// The change's step (`awaiting_approval`, `scheduled`, ...), as `ChangeStep::as_str`.
    pub const STEP: SearchAttributeKey<String> = SearchAttributeKey::keyword("ChangeStep");
    /// Who may approve it while it awaits approval.
    pub const APPROVERS: SearchAttributeKey<Vec<String>> =
        SearchAttributeKey::keyword_list("ChangeApprovers");

    /// `name=Type` pairs for `temporal server start-dev --search-attribute`.
    pub const REGISTRATION: &[&str] = &[
        "ChangeRequester=Keyword",
        "ChangeTicket=Keyword",
        "ChangeDevices=KeywordList",
        "ChangeStep=Keyword",
        "ChangeApprovers=KeywordList",
    ];
}
