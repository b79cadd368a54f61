//! What MCP clients send to the tools that run workflows, one type per tool. Each type derives
//! its JSON Schema (what `tools/list` and the OpenAPI document show) and has one `validate`,
//! the only shape check: the front door runs it before anything starts and the workflow runs it
//! again on its input. Unknown fields are refused. The caller's identity is added by the front
//! door, never taken from the arguments.

use crate::limits::{self, ID_PATTERN};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A tool's arguments: a schema for clients and the one check of their shape.
pub trait Arguments: DeserializeOwned + JsonSchema {
    /// Everything the schema states beyond types: lengths, patterns, bounds.
    fn validate(&self) -> Result<(), String>;
}

/// Deploy a Catalyst Center template to devices under a change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployTemplate {
    /// Catalyst Center template id; or give `source` instead
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub template_id: Option<String>,
    /// The template from Git instead of a Catalyst Center template id: the change pins the
    /// commit `ref` resolves to, syncs that file into Catalyst Center as a new committed
    /// version (named after the commit) and deploys that version
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::github::GitSource>,
    #[serde(default)]
    #[schemars(schema_with = "limits::parameters_schema")]
    pub parameters: BTreeMap<String, String>,
    /// Target devices by hostname or Catalyst Center id
    #[schemars(length(min = 1, max = limits::MAX_DEVICES), inner(regex(pattern = ID_PATTERN)))]
    pub devices: Vec<String>,
    /// One-line summary for the change request; generated when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = limits::SHORT_TEXT_MAX))]
    pub short_description: Option<String>,
    /// Same key, same change: a retried call never deploys twice
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub idempotency_key: Option<String>,
    /// standard: a pre-approved template, no approval; normal (default): four-eyes approval,
    /// then its window; emergency: one emergency approver, no window wait, justification required
    #[serde(default)]
    pub change_type: ChangeType,
    /// Why the change is needed; required for emergency changes, written to the ticket
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::LONG_TEXT_MAX), regex(pattern = limits::NOT_BLANK))]
    pub justification: Option<String>,
    /// Start of the change window (RFC 3339); the change deploys no earlier
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub window_start: Option<String>,
    /// End of the change window (RFC 3339); a change that cannot start before it is canceled
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub window_end: Option<String>,
    /// How long approvers have before the change is canceled, as a Go duration: 168h
    /// (default, 7 days), 36h, 90m; at most 720h (policy may allow less)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = limits::DURATION_PATTERN))]
    pub approval_timeout: Option<String>,
    /// How to undo the change if it fails on a device or its checks fail: a template (with the
    /// change's parameters unless given). Without it, the template's declared inverse is used;
    /// policy may require one
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backout: Option<BackoutPlan>,
}

/// A back-out: the template that undoes a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
// Unknown fields are refused when parsed; the schema leaves out the nested
// `additionalProperties: false`, a boolean subschema some clients cannot read.
#[schemars(transform = no_additional_properties)]
pub struct BackoutPlan {
    /// Catalyst Center template id of the back-out template
    #[schemars(regex(pattern = ID_PATTERN))]
    pub template_id: String,
    /// Its parameters; the change's own when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "limits::parameters_schema")]
    pub parameters: Option<BTreeMap<String, String>>,
}

pub(crate) fn no_additional_properties(schema: &mut schemars::Schema) {
    schema.remove("additionalProperties");
}

impl Arguments for BackoutPlan {
    fn validate(&self) -> Result<(), String> {
        limits::id("backout.template_id", &self.template_id)?;
        if let Some(parameters) = &self.parameters {
            limits::parameters(parameters)?;
        }
        Ok(())
    }
}

/// Run read-only commands on devices through Catalyst Center's Command Runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunShowCommands {
    /// Devices by hostname or Catalyst Center id
    #[schemars(length(min = 1, max = limits::MAX_SHOW_DEVICES), inner(regex(pattern = ID_PATTERN)))]
    pub devices: Vec<String>,
    /// Read-only commands (show, ping, traceroute), e.g. "show running-config | include ntp"
    #[schemars(length(min = 1, max = limits::MAX_COMMANDS), inner(regex(pattern = limits::COMMAND_PATTERN), length(max = limits::COMMAND_MAX)))]
    pub commands: Vec<String>,
}

impl Arguments for RunShowCommands {
    fn validate(&self) -> Result<(), String> {
        if self.devices.is_empty() || self.devices.len() > limits::MAX_SHOW_DEVICES {
            return Err(format!(
                "devices must name 1 to {} devices",
                limits::MAX_SHOW_DEVICES
            ));
        }
        for device in &self.devices {
            limits::id("each device", device)?;
        }
        if self.commands.is_empty() || self.commands.len() > limits::MAX_COMMANDS {
            return Err(format!(
                "commands must hold 1 to {} commands",
                limits::MAX_COMMANDS
            ));
        }
        for command in &self.commands {
            limits::read_only_command(command)?;
        }
        Ok(())
    }
}

/// ServiceNow's change types, which decide the path a change takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    Standard,
    #[default]
    Normal,
    Emergency,
}

impl ChangeType {
    /// ServiceNow's `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeType::Standard => "standard",
            ChangeType::Normal => "normal",
            ChangeType::Emergency => "emergency",
        }
    }

    /// Whether a person must approve it.
    pub fn needs_approval(self) -> bool {
        self != ChangeType::Standard
    }

    /// Whether it waits for its window to open.
    pub fn waits_for_window(self) -> bool {
        self != ChangeType::Emergency
    }
}

/// A change window: seconds since the Unix epoch, start before end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl DeployTemplate {
    /// The requested window, if any (checked by `validate`).
    pub fn window(&self) -> Result<Option<Window>, String> {
        let parse = |field: &str, text: &str| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|_| format!("{field} must be an RFC 3339 time, e.g. 2026-11-26T08:00:00Z"))
        };
        match (&self.window_start, &self.window_end) {
            (None, None) => Ok(None),
            (Some(start), Some(end)) => {
                let window = Window {
                    start: parse("window_start", start)?,
                    end: parse("window_end", end)?,
                };
                if window.end <= window.start {
                    return Err("window_end must be after window_start".into());
                }
                Ok(Some(window))
            }
            _ => Err("window_start and window_end go together: give both or neither".into()),
        }
    }

    /// How long approvers have, in seconds (checked by `validate`).
    pub fn approval_timeout_secs(&self) -> Result<u64, String> {
        match &self.approval_timeout {
            None => Ok(limits::DEFAULT_APPROVAL_TIMEOUT_SECS),
            Some(text) => limits::duration_secs("approval_timeout", text).and_then(|secs| {
                if (1..=limits::MAX_APPROVAL_TIMEOUT_SECS).contains(&secs) {
                    Ok(secs)
                } else {
                    Err(format!(
                        "approval_timeout must be between 1s and {}h",
                        limits::MAX_APPROVAL_TIMEOUT_SECS / 3600
                    ))
                }
            }),
        }
    }
}

impl DeployTemplate {
    /// The Catalyst Center template it deploys: its `template_id`, or for a Git source the
    /// version the change synced (empty until then).
    pub fn template(&self) -> &str {
        self.template_id.as_deref().unwrap_or_default()
    }

    /// How verification.toml and governance.rego name its template.
    pub fn template_key(&self) -> String {
        match &self.source {
            Some(source) => source.key(),
            None => self.template().to_string(),
        }
    }
}

impl Arguments for DeployTemplate {
    /// Everything a deployment must satisfy, whether it comes as a tool's arguments or inside
    /// the workflow's input (`DeploymentRequest`).
    fn validate(&self) -> Result<(), String> {
        match (&self.template_id, &self.source) {
            (Some(id), None) => limits::id("template_id", id)?,
            (None, Some(source)) => source.validate()?,
            (Some(_), Some(_)) => {
                return Err("give template_id or source, not both".into());
            }
            (None, None) => {
                return Err(
                    "template_id or source is required: the Catalyst Center template, or the Git file, to deploy"
                        .into(),
                );
            }
        }
        if self.devices.is_empty() || self.devices.len() > limits::MAX_DEVICES {
            return Err(format!(
                "devices must name 1 to {} devices",
                limits::MAX_DEVICES
            ));
        }
        for device in &self.devices {
            limits::id("each device", device)?;
        }
        limits::parameters(&self.parameters)?;
        if self
            .short_description
            .as_deref()
            .is_some_and(|text| text.chars().count() > limits::SHORT_TEXT_MAX)
        {
            return Err(format!(
                "short_description is limited to {} characters",
                limits::SHORT_TEXT_MAX
            ));
        }
        limits::optional_id("idempotency_key", self.idempotency_key.as_deref())?;
        limits::optional_text(
            "justification",
            self.justification.as_deref(),
            limits::LONG_TEXT_MAX,
        )?;
        if self.change_type == ChangeType::Emergency && self.justification.is_none() {
            return Err("an emergency change requires a justification: say why it cannot wait for a normal change".into());
        }
        self.window()?;
        self.approval_timeout_secs()?;
        if let Some(backout) = &self.backout {
            backout.validate()?;
        }
        Ok(())
    }
}

/// List Catalyst Center templates, optionally of one project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListTemplates {
    /// Only templates of this Catalyst Center project
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::NAME_MAX), regex(pattern = limits::NOT_BLANK))]
    pub project_name: Option<String>,
}

impl Arguments for ListTemplates {
    fn validate(&self) -> Result<(), String> {
        limits::optional_text(
            "project_name",
            self.project_name.as_deref(),
            limits::NAME_MAX,
        )
    }
}

/// One template by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetTemplate {
    /// Catalyst Center template id
    #[schemars(regex(pattern = ID_PATTERN))]
    pub template_id: String,
}

impl Arguments for GetTemplate {
    fn validate(&self) -> Result<(), String> {
        limits::id("template_id", &self.template_id)
    }
}

/// A device's reachability as Catalyst Center reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Reachability {
    Reachable,
    Unreachable,
}

impl Reachability {
    /// Catalyst Center's spelling (`reachabilityStatus`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Reachable => "Reachable",
            Reachability::Unreachable => "Unreachable",
        }
    }
}

/// Devices, optionally filtered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListDevices {
    /// Exact hostname
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub hostname: Option<String>,
    /// Device family, e.g. 'Switches and Hubs'
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::FAMILY_MAX), regex(pattern = limits::NOT_BLANK))]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachability: Option<Reachability>,
    /// How many devices at most (default 50)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = limits::MAX_LIST_LIMIT))]
    pub limit: Option<u32>,
}

impl Arguments for ListDevices {
    fn validate(&self) -> Result<(), String> {
        limits::optional_id("hostname", self.hostname.as_deref())?;
        limits::optional_text("family", self.family.as_deref(), limits::FAMILY_MAX)?;
        limits::list_limit(self.limit)
    }
}

/// Render a template for one device without deploying it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewTemplate {
    /// Catalyst Center template id
    #[schemars(regex(pattern = ID_PATTERN))]
    pub template_id: String,
    /// Hostname or Catalyst Center device id
    #[schemars(regex(pattern = ID_PATTERN))]
    pub device: String,
    #[serde(default)]
    #[schemars(schema_with = "limits::parameters_schema")]
    pub parameters: BTreeMap<String, String>,
}

impl Arguments for PreviewTemplate {
    fn validate(&self) -> Result<(), String> {
        limits::id("template_id", &self.template_id)?;
        limits::id("device", &self.device)?;
        limits::parameters(&self.parameters)
    }
}

/// One change request by number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetChangeRequest {
    /// Change request number, e.g. CHG0030001
    #[schemars(regex(pattern = ID_PATTERN))]
    pub number: String,
    /// Also its journal (work notes and comments, with author and time) and its approval
    /// records (approver, decision, when, comments)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub details: bool,
}

impl Arguments for GetChangeRequest {
    fn validate(&self) -> Result<(), String> {
        limits::id("number", &self.number)
    }
}

/// Sign an evidence bundle's manifest with the evidence key (not a tool: `changeflow
/// evidence` and the front door's evidence export ask for it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SignEvidence {
    /// The SHA-256 of `manifest.json`, hex: what is signed (its 32 bytes), so the manifest
    /// itself stays out of history.
    pub manifest_sha256: String,
}

impl Arguments for SignEvidence {
    fn validate(&self) -> Result<(), String> {
        let hex = &self.manifest_sha256;
        if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(())
        } else {
            Err("manifest_sha256 must be 64 hex digits".into())
        }
    }
}

/// The evidence key's public half (not a tool: `changeflow evidence public-key`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetEvidenceKey {
    /// A key version; the latest when absent
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

impl Arguments for GetEvidenceKey {
    fn validate(&self) -> Result<(), String> {
        match self.version {
            Some(0) => Err("version starts at 1".into()),
            _ => Ok(()),
        }
    }
}

/// A ServiceNow change request's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TicketState {
    New,
    Assess,
    Authorize,
    Scheduled,
    Implement,
    Review,
    Closed,
    Canceled,
}

/// Change requests, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListChangeRequests {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<TicketState>,
    /// Requester user name
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub requested_by: Option<String>,
    /// How many change requests at most (default 50)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = limits::MAX_LIST_LIMIT))]
    pub limit: Option<u32>,
}

impl Arguments for ListChangeRequests {
    fn validate(&self) -> Result<(), String> {
        limits::optional_id("requested_by", self.requested_by.as_deref())?;
        limits::list_limit(self.limit)
    }
}

/// Open a normal change request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateChangeRequest {
    /// One-line summary
    #[schemars(length(min = 1, max = limits::SHORT_TEXT_MAX), regex(pattern = limits::NOT_BLANK))]
    pub short_description: String,
    /// What will be changed and why
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::LONG_TEXT_MAX), regex(pattern = limits::NOT_BLANK))]
    pub description: Option<String>,
    /// Same key, same write: a retried call never writes twice
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub idempotency_key: Option<String>,
}

impl Arguments for CreateChangeRequest {
    fn validate(&self) -> Result<(), String> {
        limits::text(
            "short_description",
            &self.short_description,
            limits::SHORT_TEXT_MAX,
        )?;
        limits::optional_text(
            "description",
            self.description.as_deref(),
            limits::LONG_TEXT_MAX,
        )?;
        limits::optional_id("idempotency_key", self.idempotency_key.as_deref())
    }
}

/// Append a work note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddWorkNote {
    /// Change request number
    #[schemars(regex(pattern = ID_PATTERN))]
    pub number: String,
    /// The note; the caller's name is appended
    #[schemars(length(min = 1, max = limits::LONG_TEXT_MAX), regex(pattern = limits::NOT_BLANK))]
    pub note: String,
    /// Same key, same write: a retried call never writes twice
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub idempotency_key: Option<String>,
}

impl Arguments for AddWorkNote {
    fn validate(&self) -> Result<(), String> {
        limits::id("number", &self.number)?;
        limits::text("note", &self.note, limits::LONG_TEXT_MAX)?;
        limits::optional_id("idempotency_key", self.idempotency_key.as_deref())
    }
}

/// How a change request is closed; `canceled` cancels a change that has not reached Implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CloseCode {
    Successful,
    SuccessfulIssues,
    Unsuccessful,
    Canceled,
}

/// Close a change request (or cancel it, with `close_code: canceled`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseChangeRequest {
    /// Change request number
    #[schemars(regex(pattern = ID_PATTERN))]
    pub number: String,
    pub close_code: CloseCode,
    /// Why and how it closed
    #[schemars(length(min = 1, max = limits::LONG_TEXT_MAX), regex(pattern = limits::NOT_BLANK))]
    pub close_notes: String,
}

impl Arguments for CloseChangeRequest {
    fn validate(&self) -> Result<(), String> {
        limits::id("number", &self.number)?;
        limits::text("close_notes", &self.close_notes, limits::LONG_TEXT_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arguments_are_checked_like_the_schema_says() {
        let parse = |v: serde_json::Value| serde_json::from_value::<DeployTemplate>(v);
        assert!(
            parse(json!({"template_id": "t", "devices": ["a"], "password": "x"})).is_err(),
            "unknown fields are refused"
        );
        let ok = parse(json!({"template_id": "t-1", "devices": ["sj-access-01"]})).unwrap();
        assert!(ok.validate().is_ok());
        let bad = parse(json!({"template_id": "t 1", "devices": ["a"]})).unwrap();
        assert!(bad.validate().unwrap_err().contains("template_id"));
        let none = parse(json!({"template_id": "t", "devices": []})).unwrap();
        assert!(none.validate().unwrap_err().contains("devices"));
        let many =
            parse(json!({"template_id": "t", "devices": vec!["d"; limits::MAX_DEVICES + 1]}));
        assert!(many.unwrap().validate().is_err());
        let long = parse(
            json!({"template_id": "t", "devices": ["d"], "short_description": "x".repeat(161)}),
        );
        assert!(
            long.unwrap()
                .validate()
                .unwrap_err()
                .contains("short_description")
        );
        assert!(
            serde_json::from_value::<CloseChangeRequest>(
                json!({"number": "n", "close_code": "maybe", "close_notes": "x"})
            )
            .is_err()
        );
        let blank = serde_json::from_value::<AddWorkNote>(json!({"number": "CHG1", "note": " "}));
        assert!(blank.unwrap().validate().unwrap_err().contains("note"));
    }
}
