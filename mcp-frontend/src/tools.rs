//! The tools the front door serves: which MCP server each belongs to, the action policy sees,
//! their annotations, and precise input schemas (unknown fields rejected, lengths bounded).

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The MCP servers, each also served alone at `/mcp/{server}`.
pub const SERVERS: [&str; 3] = ["catalyst-center", "servicenow", "changes"];

/// One tool's definition.
pub struct ToolSpec {
    pub server: &'static str,
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// What policy is asked for: `read`, `write` or `execute`.
    pub action: &'static str,
    pub read_only: bool,
    pub destructive: bool,
    pub idempotent: bool,
    /// Runs a change workflow: REST answers 202 with a status URL instead of waiting, and MCP
    /// clients that support tasks get a task.
    pub long_running: bool,
    /// Can only run as a task (it waits for client input): clients without the tasks
    /// extension are refused with -32021 instead of waiting forever.
    pub requires_task: bool,
    /// A question asked before the tool starts (an input-required round, SEP-2322).
    pub asks_first: Option<AskFirst>,
    pub input_schema: fn() -> Value,
    /// Shape of the structured result of a successful call.
    pub output_schema: fn() -> Value,
}

/// A question a tool asks the client before it starts: an `elicitation/create` input request
/// under `key`; the answer's `field` becomes the tool's argument of the same name.
pub struct AskFirst {
    pub key: &'static str,
    pub message: &'static str,
    pub field: &'static str,
}

impl AskFirst {
    /// The input request, as the wire carries it.
    pub fn request(&self) -> Value {
        json!({
            "method": "elicitation/create",
            "params": {
                "mode": "form",
                "message": self.message,
                "requestedSchema": {
                    "type": "object",
                    "properties": {self.field: {"type": "string", "maxLength": 128}},
                    "required": [self.field]
                }
            }
        })
    }

    /// The answered value, if the client accepted and gave a short text.
    pub fn answer(&self, response: &Value) -> Option<String> {
        if response["action"] != "accept" {
            return None;
        }
        response["content"][self.field]
            .as_str()
            .filter(|v| !v.is_empty() && v.chars().count() <= 128)
            .map(str::to_string)
    }
}

const ID_PATTERN: &str = "^[A-Za-z0-9._:-]{1,128}$";

fn deploy_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["template_id", "devices"],
        "properties": {
            "template_id": {"type": "string", "pattern": ID_PATTERN, "description": "Catalyst Center template id"},
            "parameters": {
                "type": "object",
                "maxProperties": 50,
                "additionalProperties": {"type": "string", "maxLength": 1024},
                "description": "Template parameters by name (values as strings)"
            },
            "devices": {
                "type": "array", "minItems": 1, "maxItems": 100,
                "items": {"type": "string", "pattern": ID_PATTERN},
                "description": "Target devices by hostname or Catalyst Center id"
            },
            "short_description": {"type": "string", "maxLength": 160},
            "idempotency_key": {"type": "string", "pattern": ID_PATTERN, "description": "Same key, same change: a retried call never deploys twice"}
        }
    })
}

fn change_id_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["change_id"],
        "properties": {"change_id": {"type": "string", "pattern": ID_PATTERN, "description": "The change's workflow id"}}
    })
}

fn device_status_schema() -> Value {
    json!({
        "type": "object",
        "required": ["device", "status"],
        "properties": {"device": {"type": "string"}, "status": {"type": "string"}, "message": {"type": "string"}}
    })
}

fn change_result_schema() -> Value {
    json!({
        "type": "object",
        "required": ["change_id", "outcome", "ticket_number", "devices"],
        "properties": {
            "change_id": {"type": "string"},
            "outcome": {"type": "string", "enum": ["succeeded", "failed"]},
            "ticket_number": {"type": "string"},
            "deployment_id": {"type": ["string", "null"]},
            "devices": {"type": "array", "items": device_status_schema()},
            "failure_reason": {"type": ["string", "null"]}
        }
    })
}

fn change_status_schema() -> Value {
    json!({
        "type": "object",
        "required": ["change_id", "status"],
        "properties": {
            "change_id": {"type": "string"},
            "status": {"type": "string", "description": "running, completed, failed, canceled, terminated, timed_out"},
            "step": {"type": "string"},
            "percent": {"type": "integer", "minimum": 0, "maximum": 100},
            "message": {"type": "string"},
            "ticket_number": {"type": ["string", "null"]},
            "task_id": {"type": ["string", "null"]},
            "deployment_id": {"type": ["string", "null"]},
            "devices": {"type": "array", "items": device_status_schema()}
        }
    })
}

fn change_list_schema() -> Value {
    json!({
        "type": "object",
        "required": ["changes"],
        "properties": {"changes": {"type": "array", "items": {
            "type": "object",
            "required": ["change_id", "status"],
            "properties": {
                "change_id": {"type": "string"},
                "status": {"type": "string"},
                "requested_by": {"type": ["string", "null"]},
                "ticket_number": {"type": ["string", "null"]},
                "devices": {"type": "array", "items": {"type": "string"}},
                "started_at": {"type": ["string", "null"]},
                "closed_at": {"type": ["string", "null"]}
            }
        }}}
    })
}

fn change_history_schema() -> Value {
    json!({
        "type": "object",
        "required": ["change_id", "status", "timeline"],
        "properties": {
            "change_id": {"type": "string"},
            "status": {"type": "string"},
            "timeline": {"type": "array", "items": {
                "type": "object",
                "required": ["at", "event"],
                "properties": {"at": {"type": "string"}, "event": {"type": "string"}, "step": {"type": ["string", "null"]}, "detail": {"type": ["string", "null"]}}
            }}
        }
    })
}

fn cancel_schema() -> Value {
    json!({
        "type": "object",
        "required": ["change_id", "cancel_requested"],
        "properties": {"change_id": {"type": "string"}, "cancel_requested": {"type": "boolean"}}
    })
}

fn list_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "status": {"type": "string", "enum": STATUSES},
            "requested_by": {"type": "string", "pattern": ID_PATTERN},
            "ticket_number": {"type": "string", "pattern": ID_PATTERN},
            "device": {"type": "string", "pattern": ID_PATTERN},
            "since": {"type": "string", "format": "date-time", "description": "RFC 3339; changes started at or after"},
            "until": {"type": "string", "format": "date-time", "description": "RFC 3339; changes started at or before"},
            "limit": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}
        }
    })
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({"type": "object", "additionalProperties": false, "required": required, "properties": properties})
}

fn id_field(description: &str) -> Value {
    json!({"type": "string", "pattern": ID_PATTERN, "description": description})
}

fn text_field(max: usize, description: &str) -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": max, "description": description})
}

fn limit_field() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 200, "default": 50})
}

fn idempotency_field() -> Value {
    id_field("Same key, same write: a retried call never writes twice")
}

fn parameters_field() -> Value {
    json!({
        "type": "object",
        "maxProperties": 50,
        "additionalProperties": {"type": "string", "maxLength": 1024},
        "description": "Template parameters by name (values as strings)"
    })
}

fn list_templates_schema() -> Value {
    object(
        &[],
        json!({"project_name": text_field(128, "Only templates of this Catalyst Center project")}),
    )
}

fn template_id_schema() -> Value {
    object(
        &["template_id"],
        json!({"template_id": id_field("Catalyst Center template id")}),
    )
}

fn list_devices_schema() -> Value {
    object(
        &[],
        json!({
            "hostname": id_field("Exact hostname"),
            "family": text_field(64, "Device family, e.g. 'Switches and Hubs'"),
            "reachability": {"type": "string", "enum": ["Reachable", "Unreachable"]},
            "limit": limit_field()
        }),
    )
}

fn preview_schema() -> Value {
    object(
        &["template_id", "device"],
        json!({
            "template_id": id_field("Catalyst Center template id"),
            "device": id_field("Hostname or Catalyst Center device id"),
            "parameters": parameters_field()
        }),
    )
}

fn ticket_number_schema() -> Value {
    object(
        &["number"],
        json!({"number": id_field("Change request number, e.g. CHG0030001")}),
    )
}

/// ServiceNow change states by name.
pub const TICKET_STATES: [&str; 8] = [
    "new",
    "assess",
    "authorize",
    "scheduled",
    "implement",
    "review",
    "closed",
    "canceled",
];

fn list_tickets_schema() -> Value {
    object(
        &[],
        json!({
            "state": {"type": "string", "enum": TICKET_STATES},
            "requested_by": id_field("Requester user name"),
            "limit": limit_field()
        }),
    )
}

fn create_ticket_schema() -> Value {
    object(
        &["short_description"],
        json!({
            "short_description": text_field(160, "One-line summary"),
            "description": text_field(4000, "What will be changed and why"),
            "idempotency_key": idempotency_field()
        }),
    )
}

fn work_note_schema() -> Value {
    object(
        &["number", "note"],
        json!({
            "number": id_field("Change request number"),
            "note": text_field(4000, "The note; the caller's name is appended"),
            "idempotency_key": idempotency_field()
        }),
    )
}

fn close_ticket_schema() -> Value {
    object(
        &["number", "close_code", "close_notes"],
        json!({
            "number": id_field("Change request number"),
            "close_code": {"type": "string", "enum": ["successful", "successful_issues", "unsuccessful", "canceled"],
                           "description": "'canceled' cancels a change that has not reached Implement"},
            "close_notes": text_field(4000, "Why and how it closed")
        }),
    )
}

fn template_list_result() -> Value {
    json!({"type": "object", "required": ["templates"], "properties": {"templates": {"type": "array", "items": {
        "type": "object",
        "required": ["template_id", "name", "project_name"],
        "properties": {"template_id": {"type": "string"}, "name": {"type": "string"}, "project_name": {"type": "string"}, "version": {"type": "string"}}
    }}}})
}

fn template_result() -> Value {
    json!({
        "type": "object",
        "required": ["template_id", "name", "content", "parameters"],
        "properties": {
            "template_id": {"type": "string"}, "name": {"type": "string"}, "project_name": {"type": "string"},
            "description": {"type": "string"}, "language": {"type": "string"}, "version": {"type": "string"},
            "content": {"type": "string"},
            "parameters": {"type": "array", "items": {"type": "object", "required": ["name", "required"], "properties": {
                "name": {"type": "string"}, "data_type": {"type": "string"}, "required": {"type": "boolean"}, "default": {"type": ["string", "null"]}
            }}}
        }
    })
}

fn device_list_result() -> Value {
    json!({"type": "object", "required": ["devices"], "properties": {"devices": {"type": "array", "items": {
        "type": "object",
        "required": ["device_id", "hostname", "reachability"],
        "properties": {
            "device_id": {"type": "string"}, "hostname": {"type": "string"}, "management_ip": {"type": "string"},
            "platform": {"type": "string"}, "family": {"type": "string"}, "software_version": {"type": "string"},
            "reachability": {"type": "string"}, "managed": {"type": "boolean"}
        }
    }}}})
}

fn preview_result() -> Value {
    json!({
        "type": "object",
        "required": ["template_id", "device", "rendered", "validation_errors"],
        "properties": {
            "template_id": {"type": "string"}, "device": {"type": "string"}, "rendered": {"type": "string"},
            "validation_errors": {"type": "array", "items": {"type": "string"}}
        }
    })
}

fn ticket_result() -> Value {
    let text = json!({"type": "string"});
    json!({
        "type": "object",
        "required": ["number", "sys_id", "state"],
        "properties": {
            "number": text, "sys_id": text, "state": {"type": "string", "enum": TICKET_STATES}, "type": text,
            "short_description": text, "description": text, "requested_by": text, "correlation_id": text,
            "close_code": text, "close_notes": text, "opened_at": text, "updated_at": text
        }
    })
}

fn ticket_list_result() -> Value {
    json!({"type": "object", "required": ["change_requests"], "properties": {"change_requests": {"type": "array", "items": ticket_result()}}})
}

/// Statuses `list_changes` filters by.
pub const STATUSES: [&str; 6] = [
    "running",
    "completed",
    "failed",
    "canceled",
    "terminated",
    "timed_out",
];

/// What a tool does to the systems behind it; sets its policy action and annotations.
#[derive(Clone, Copy)]
enum Effect {
    /// Reads only.
    Read,
    /// Adds to or creates a record.
    Write,
    /// Changes or ends something for good (closing a ticket, cancelling a change).
    DestructiveWrite,
    /// Runs a change on devices: long-running, so a task for clients that support tasks.
    Execute,
}

/// A production tool. Every tool is idempotent: writes by their idempotency window or key.
const fn tool(
    server: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    effect: Effect,
    input_schema: fn() -> Value,
    output_schema: fn() -> Value,
) -> ToolSpec {
    let (action, read_only, destructive, long_running) = match effect {
        Effect::Read => ("read", true, false, false),
        Effect::Write => ("write", false, false, false),
        Effect::DestructiveWrite => ("write", false, true, false),
        Effect::Execute => ("execute", false, true, true),
    };
    ToolSpec {
        server,
        name,
        title,
        description,
        action,
        read_only,
        destructive,
        idempotent: true,
        long_running,
        requires_task: false,
        asks_first: None,
        input_schema,
        output_schema,
    }
}

pub const TOOLS: &[ToolSpec] = &[
    tool(
        "catalyst-center",
        "deploy_template",
        "Deploy a configuration template",
        "Validate, open a ServiceNow change request, deploy a Catalyst Center template to devices, verify, and close the ticket. Runs as a durable workflow; progress is reported while it runs.",
        Effect::Execute,
        deploy_schema,
        change_result_schema,
    ),
    tool(
        "catalyst-center",
        "list_templates",
        "List configuration templates",
        "Catalyst Center configuration templates, optionally of one project.",
        Effect::Read,
        list_templates_schema,
        template_list_result,
    ),
    tool(
        "catalyst-center",
        "get_template",
        "Get a configuration template",
        "One template's content, language, version and parameters.",
        Effect::Read,
        template_id_schema,
        template_result,
    ),
    tool(
        "catalyst-center",
        "list_devices",
        "List network devices",
        "Devices managed by Catalyst Center, filtered by hostname, family or reachability.",
        Effect::Read,
        list_devices_schema,
        device_list_result,
    ),
    tool(
        "catalyst-center",
        "preview_template",
        "Preview a template for a device",
        "Render a template with parameters for one device without deploying it; reports validation errors.",
        Effect::Read,
        preview_schema,
        preview_result,
    ),
    tool(
        "servicenow",
        "get_change_request",
        "Get a change request",
        "One ServiceNow change request by number.",
        Effect::Read,
        ticket_number_schema,
        ticket_result,
    ),
    tool(
        "servicenow",
        "list_change_requests",
        "List change requests",
        "ServiceNow change requests by state and requester, newest first.",
        Effect::Read,
        list_tickets_schema,
        ticket_list_result,
    ),
    tool(
        "servicenow",
        "create_change_request",
        "Open a change request",
        "Open a normal ServiceNow change request requested by the caller.",
        Effect::Write,
        create_ticket_schema,
        ticket_result,
    ),
    tool(
        "servicenow",
        "add_work_note",
        "Add a work note",
        "Append a work note (signed with the caller's name) to a change request.",
        Effect::Write,
        work_note_schema,
        ticket_result,
    ),
    tool(
        "servicenow",
        "close_change_request",
        "Close a change request",
        "Close a change request from Implement or Review with a close code and notes, or cancel one that has not reached Implement.",
        Effect::DestructiveWrite,
        close_ticket_schema,
        ticket_result,
    ),
    tool(
        "changes",
        "get_change_status",
        "Get a change's status",
        "Current step, progress, ticket number and per-device status of a change.",
        Effect::Read,
        change_id_schema,
        change_status_schema,
    ),
    tool(
        "changes",
        "list_changes",
        "List changes",
        "Changes filtered by status, requester, ticket number, device and start time, newest first (Temporal visibility).",
        Effect::Read,
        list_schema,
        change_list_schema,
    ),
    tool(
        "changes",
        "get_change_history",
        "Get a change's history",
        "The step timeline of one change from its durable history: each step's scheduling, attempts and result, and how the change ended.",
        Effect::Read,
        change_id_schema,
        change_history_schema,
    ),
    tool(
        "changes",
        "cancel_change",
        "Cancel a change",
        "Cancel a running change; its ServiceNow ticket is closed as canceled.",
        Effect::DestructiveWrite,
        change_id_schema,
        cancel_schema,
    ),
];

/// A production tool by name, of one server or any.
pub fn find(server: Option<&str>, name: &str) -> Option<&'static ToolSpec> {
    find_in(TOOLS, server, name)
}

/// A tool of `catalog` by name, of one server or any.
pub fn find_in(
    catalog: &'static [ToolSpec],
    server: Option<&str>,
    name: &str,
) -> Option<&'static ToolSpec> {
    catalog
        .iter()
        .find(|t| t.name == name && server.is_none_or(|s| s == t.server))
}

/// Which set of tools a front door serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catalog {
    /// `TOOLS`: every deployment.
    Production,
    /// `FIXTURE_TOOLS`: the loopback-only conformance test profile.
    ConformanceFixtures,
}

impl Catalog {
    pub fn tools(self) -> &'static [ToolSpec] {
        match self {
            Catalog::Production => TOOLS,
            Catalog::ConformanceFixtures => FIXTURE_TOOLS,
        }
    }
}

/// The server of the conformance suite's fixture tools (test profile only).
pub const FIXTURE_SERVER: &str = "conformance";

fn greet_schema() -> Value {
    object(&[], json!({"name": {"type": "string", "maxLength": 128}}))
}

fn slow_compute_schema() -> Value {
    object(
        &[],
        json!({
            "seconds": {"type": "integer", "minimum": 0, "maximum": 600, "default": 1},
            "label": {"type": "string", "maxLength": 128}
        }),
    )
}

fn confirm_delete_schema() -> Value {
    object(
        &[],
        json!({"filename": {"type": "string", "maxLength": 256}}),
    )
}

/// (long_running, requires_task) of the fixtures.
const SYNC: (bool, bool) = (false, false);
const TASK_OPTIONAL: (bool, bool) = (true, false);
const TASK_REQUIRED: (bool, bool) = (true, true);

fn no_arguments_schema() -> Value {
    object(&[], json!({}))
}

fn text_result_schema() -> Value {
    json!({"type": "object"})
}

const fn fixture(
    name: &'static str,
    description: &'static str,
    (long_running, requires_task): (bool, bool),
    input_schema: fn() -> Value,
) -> ToolSpec {
    ToolSpec {
        long_running,
        requires_task,
        ..tool(
            FIXTURE_SERVER,
            name,
            name,
            description,
            Effect::Read,
            input_schema,
            text_result_schema,
        )
    }
}

/// The fixture tools the MCP conformance suite's task scenarios call, each run as a
/// `ConformanceFixture` workflow. Served only by the loopback-only conformance profile.
pub const FIXTURE_TOOLS: &[ToolSpec] = &[
    fixture(
        "greet",
        "Returns 'Hello, {name}!' at once (never a task).",
        SYNC,
        greet_schema,
    ),
    fixture(
        "slow_compute",
        "Sleeps `seconds` durably, then returns; a task for clients that support tasks.",
        TASK_OPTIONAL,
        slow_compute_schema,
    ),
    fixture(
        "failing_job",
        "Always ends with a tool execution error after about a second; only as a task.",
        TASK_REQUIRED,
        no_arguments_schema,
    ),
    fixture(
        "protocol_error_job",
        "Always ends with a protocol-level (internal) error.",
        TASK_OPTIONAL,
        no_arguments_schema,
    ),
    fixture(
        "confirm_delete",
        "Asks the client to confirm (elicitation, task input_required), then deletes or keeps `filename`.",
        TASK_REQUIRED,
        confirm_delete_schema,
    ),
    fixture(
        "test_simple_text",
        "Returns a line of text.",
        SYNC,
        no_arguments_schema,
    ),
    fixture(
        "test_error_handling",
        "Always returns a tool execution error.",
        SYNC,
        no_arguments_schema,
    ),
    fixture(
        "test_tool_with_progress",
        "Reports progress three times (0, 50, 100 percent), then returns.",
        SYNC,
        no_arguments_schema,
    ),
    ToolSpec {
        asks_first: Some(AskFirst {
            key: "user_name",
            message: "Who is asking?",
            field: "name",
        }),
        ..fixture(
            "test_tool_with_task",
            "Asks for a name before it starts (input required), then greets as a task.",
            TASK_REQUIRED,
            greet_schema,
        )
    },
    fixture(
        "multi_input",
        "Asks two questions at once (two input requests), then answers.",
        TASK_REQUIRED,
        no_arguments_schema,
    ),
];

/// Arguments of `deploy_template`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployTemplateArgs {
    pub template_id: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    pub devices: Vec<String>,
    #[serde(default)]
    pub short_description: Option<String>,
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Arguments naming one change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeIdArgs {
    pub change_id: String,
}

/// Checks identifiers and bounds the schema states, so bad input is refused the same way
/// whatever the client validated.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._:-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field} must be 1-128 characters of letters, digits, '.', '_', ':' or '-'"
        ))
    }
}

impl DeployTemplateArgs {
    pub fn check(&self) -> Result<(), String> {
        check_id("template_id", &self.template_id)?;
        if self.devices.is_empty() || self.devices.len() > 100 {
            return Err("devices must name 1 to 100 devices".into());
        }
        for device in &self.devices {
            check_id("each device", device)?;
        }
        if self.parameters.len() > 50 || self.parameters.values().any(|v| v.len() > 1024) {
            return Err("at most 50 parameters of at most 1024 characters each".into());
        }
        if let Some(key) = &self.idempotency_key {
            check_id("idempotency_key", key)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_checked_like_the_schema_says() {
        let parse = |v: Value| serde_json::from_value::<DeployTemplateArgs>(v);
        assert!(
            parse(json!({"template_id": "t", "devices": ["a"], "password": "x"})).is_err(),
            "unknown fields are refused"
        );
        let ok = parse(json!({"template_id": "t-1", "devices": ["sj-access-01"]})).unwrap();
        assert!(ok.check().is_ok());
        let bad = parse(json!({"template_id": "t 1", "devices": ["a"]})).unwrap();
        assert!(bad.check().unwrap_err().contains("template_id"));
        let none = parse(json!({"template_id": "t", "devices": []})).unwrap();
        assert!(none.check().is_err());
        assert!(
            find(Some("changes"), "deploy_template").is_none(),
            "tools belong to their server"
        );
        assert!(find(None, "deploy_template").is_some());
        for tool in TOOLS {
            assert_eq!(
                (tool.input_schema)()["additionalProperties"],
                false,
                "{}",
                tool.name
            );
            assert_eq!((tool.output_schema)()["type"], "object", "{}", tool.name);
        }
    }
}
