//! Inputs, progress and results of the change workflows. They carry references and identities,
//! never credentials: everything here is written to Temporal history.

use crate::arguments::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a caller asks for: deploy one Catalyst Center template to some devices under a change ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentRequest {
    /// Catalyst Center template id (`templateId`).
    pub template_id: String,
    /// Template parameters by name; values are strings as Catalyst Center expects them.
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Target devices by hostname (or Catalyst Center device id).
    pub devices: Vec<String>,
    /// The human the change is made for; becomes the ticket's `requested_by`.
    pub requested_by: String,
    /// One-line summary for the change ticket; generated when absent.
    #[serde(default)]
    pub short_description: Option<String>,
}

impl DeploymentRequest {
    /// The request a caller's `deploy_template` arguments make.
    pub fn new(arguments: DeployTemplate, requested_by: String) -> Self {
        DeploymentRequest {
            template_id: arguments.template_id,
            parameters: arguments.parameters,
            devices: arguments.devices,
            requested_by,
            short_description: arguments.short_description,
        }
    }

    /// The tool's own check (the one `DeployTemplate::validate` runs) and a named caller: run
    /// before any system is asked anything.
    pub fn validate(&self) -> Result<(), String> {
        crate::arguments::check_deployment(
            &self.template_id,
            &self.parameters,
            &self.devices,
            self.short_description.as_deref(),
        )?;
        if self.requested_by.trim().is_empty() {
            return Err("requested_by must name the caller".into());
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
    Implementing,
    Deploying,
    Verifying,
    ClosingTicket,
    Completed,
    Failed,
    Canceled,
}

impl ChangeStep {
    /// Rough share of the work done when this step starts, for progress bars.
    pub fn percent(self) -> u8 {
        match self {
            ChangeStep::Validating => 0,
            ChangeStep::OpeningTicket => 10,
            ChangeStep::Implementing => 20,
            ChangeStep::Deploying => 25,
            ChangeStep::Verifying => 85,
            ChangeStep::ClosingTicket => 90,
            ChangeStep::Completed | ChangeStep::Failed | ChangeStep::Canceled => 100,
        }
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
}

/// How a change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOutcome {
    /// Deployed to every device; ticket closed successful.
    Succeeded,
    /// At least one device failed; ticket closed unsuccessful with the reason.
    Failed,
}

/// The result of a finished change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeResult {
    pub outcome: ChangeOutcome,
    pub ticket_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    pub devices: Vec<DeviceStatus>,
    /// Why the change failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_DEVICES;

    fn request() -> DeploymentRequest {
        DeploymentRequest {
            template_id: "t".into(),
            parameters: BTreeMap::new(),
            devices: vec!["edge-1".into()],
            requested_by: "alice".into(),
            short_description: None,
        }
    }

    #[test]
    fn shape_checks_name_the_offending_field() {
        let check = |mutate: fn(&mut DeploymentRequest), expected: &str| {
            let mut r = request();
            mutate(&mut r);
            let err = r.validate().unwrap_err();
            assert!(err.contains(expected), "{err} should mention {expected}");
        };
        check(|r| r.template_id = " ".into(), "template_id");
        check(|r| r.template_id = "a/b".into(), "template_id");
        check(|r| r.devices.clear(), "devices");
        check(|r| r.devices = vec![String::new()], "each device");
        check(|r| r.requested_by.clear(), "requested_by");
        check(
            |r| r.short_description = Some("x".repeat(161)),
            "short_description",
        );
        check(|r| r.devices = vec!["d".into(); MAX_DEVICES + 1], "devices");
        assert!(request().validate().is_ok());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<DeploymentRequest>(
            r#"{"template_id":"t","devices":["a"],"requested_by":"x","password":"p"}"#,
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

    /// `name=Type` pairs for `temporal server start-dev --search-attribute`.
    pub const REGISTRATION: &[&str] = &[
        "ChangeRequester=Keyword",
        "ChangeTicket=Keyword",
        "ChangeDevices=KeywordList",
    ];
}
