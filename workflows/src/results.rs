//! What the quick tools return, one type per result. The activities build these from the
//! vendors' answers (trimmed to stable field names), and their derived JSON Schemas are the
//! tools' output schemas, so the two cannot drift apart. Absent values are left out rather than
//! sent as `null`.

use crate::arguments::TicketState;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One template in a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateSummary {
    pub template_id: String,
    pub name: String,
    pub project_name: String,
    pub version: String,
}

/// Result of `list_templates`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateList {
    pub templates: Vec<TemplateSummary>,
}

/// One parameter a template takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateParameter {
    pub name: String,
    pub data_type: String,
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// Result of `get_template`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Template {
    pub template_id: String,
    pub name: String,
    pub project_name: String,
    pub description: String,
    pub language: String,
    pub version: String,
    pub content: String,
    pub parameters: Vec<TemplateParameter>,
}

/// One device managed by Catalyst Center.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Device {
    pub device_id: String,
    pub hostname: String,
    pub management_ip: String,
    pub platform: String,
    pub family: String,
    /// Catalyst Center's role: ACCESS, DISTRIBUTION, CORE, BORDER ROUTER, ...
    pub role: String,
    pub software_version: String,
    pub reachability: String,
    pub managed: bool,
}

/// Result of `list_devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceList {
    pub devices: Vec<Device>,
}

/// Result of `run_show_commands`: what each device answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandResults {
    pub devices: Vec<DeviceCommands>,
}

/// One device's answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeviceCommands {
    pub device: String,
    pub results: Vec<CommandResult>,
}

/// One command's answer on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandResult {
    pub command: String,
    /// success, failure (the device's error text, or "Device is not reachable") or blacklisted
    pub status: String,
    pub output: String,
}

/// Result of `preview_template`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Preview {
    pub template_id: String,
    pub device: String,
    pub rendered: String,
    pub validation_errors: Vec<String>,
}

/// A ServiceNow change request as tools return it (the requester by user name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeRequest {
    pub number: String,
    pub sys_id: String,
    /// The state's name; a state outside the model is left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TicketState>,
    #[serde(rename = "type")]
    pub kind: String,
    pub short_description: String,
    pub description: String,
    pub requested_by: String,
    pub correlation_id: String,
    pub close_code: String,
    pub close_notes: String,
    pub opened_at: String,
    pub updated_at: String,
    /// Work notes and comments, oldest first (asked for with `details`)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub journal: Vec<JournalEntry>,
    /// Its approval records (asked for with `details`)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRecord>,
}

/// One journal entry of a ticket or an approval record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JournalEntry {
    /// work_notes or comments
    pub field: String,
    /// Who wrote it (user name)
    pub author: String,
    /// When ("YYYY-MM-DD HH:MM:SS" UTC, as ServiceNow writes times)
    pub created_at: String,
    pub text: String,
}

/// An approval record: who was asked, what they decided and when, and their comments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalRecord {
    /// The approver's user name
    pub approver: String,
    /// requested, approved, rejected, cancelled, ...
    pub state: String,
    pub created_at: String,
    /// When the record last changed (the decision, once made)
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<JournalEntry>,
}

/// Result of the `sign_evidence` operation: an Ed25519 signature made in Vault's Transit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvidenceSignature {
    /// The Transit key and the version that signed
    pub key: String,
    pub key_version: u64,
    /// The raw 64-byte signature, base64
    pub signature: String,
}

/// Result of the `get_evidence_key` operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvidenceKey {
    pub key: String,
    pub key_version: u64,
    /// The raw 32-byte Ed25519 public key, base64
    pub public_key: String,
}

/// Result of `list_change_requests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ChangeRequestList {
    pub change_requests: Vec<ChangeRequest>,
}
