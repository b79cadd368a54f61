//! The tool registry: one entry per tool ties its name, server, effect (which sets the policy
//! action and the annotations), argument type, result type and the call it runs. Schemas are
//! derived from the types (`schemars`), and parsing runs the type's `validate`, so a tool's
//! shape is defined once. See ARCHITECTURE.md, "Adding a tool".

use crate::changes::{Approve, ChangeFilter, ChangeId, PendingApprovals, Reject};
use crate::results::{
    CancelResult, ChangeHistory, ChangeList, ChangeStatus, DecisionResult, DeployResult,
};
use changeflow_workflows::Arguments;
use changeflow_workflows::Verdict;
use changeflow_workflows::arguments::*;
use changeflow_workflows::github::*;
use changeflow_workflows::operations::Operation;
use changeflow_workflows::results::*;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

/// The MCP servers, each also served alone at `/mcp/{server}`.
pub const SERVERS: [&str; 6] = [
    "catalyst-center",
    "servicenow",
    "changes",
    "approvals",
    "audit",
    "github",
];

/// What a parsed call runs.
#[derive(Debug)]
pub enum Call {
    /// Start a `TemplateDeployment`.
    Deploy(DeployTemplate),
    /// Read or cancel one change.
    Change(ChangeAction, ChangeId),
    /// List changes from Temporal visibility.
    List(ChangeFilter),
    /// Run a quick `DownstreamOperation`.
    Operation(Operation),
    /// Decide on a change awaiting approval, with a comment.
    Decide(Verdict, ChangeId, Option<String>),
    /// The changes awaiting the caller's decision.
    Pending(u32),
    /// Search the audit store.
    SearchAudit(crate::audit_tools::SearchAudit),
    /// Check the audit store's hash chain.
    VerifyAudit,
    /// Build a change's evidence bundle.
    Evidence(ChangeId),
    /// Run a conformance fixture with these arguments (test profile only).
    #[cfg(feature = "fixtures")]
    Fixture(Value),
}

impl Call {
    /// Whether the call runs a workflow (a start, a quick operation, a decision, an evidence
    /// export): those count against `FrontDoor::in_flight`; reads of status, history, lists
    /// and the audit store do not.
    pub fn runs_workflow(&self) -> bool {
        match self {
            Call::Deploy(_) | Call::Operation(_) | Call::Decide(..) | Call::Evidence(_) => true,
            #[cfg(feature = "fixtures")]
            Call::Fixture(_) => true,
            Call::Change(..)
            | Call::List(_)
            | Call::Pending(_)
            | Call::SearchAudit(_)
            | Call::VerifyAudit => false,
        }
    }
}

/// What a change tool does with the change it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeAction {
    /// Its progress.
    Status,
    /// Its step timeline.
    History,
    /// Cancel it.
    Cancel,
}

/// What a tool does to the systems behind it; sets its policy action and annotations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Reads only.
    Read,
    /// Adds to or creates a record.
    Write,
    /// Changes or ends something for good (closing a ticket, cancelling a change).
    DestructiveWrite,
    /// Runs a change on devices: long-running, so a task for clients that support tasks.
    Execute,
}

/// One tool's definition.
pub struct ToolSpec {
    pub server: &'static str,
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub effect: Effect,
    /// What policy is asked for: `read`, `write` or `execute`.
    pub action: &'static str,
    pub read_only: bool,
    pub destructive: bool,
    /// Every tool is idempotent: writes by their idempotency window or key.
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
    /// Parses and checks the arguments into the call to run.
    pub parse: fn(Value) -> Result<Call, String>,
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
                    "properties": {self.field: {"type": "string", "maxLength": changeflow_workflows::limits::ID_MAX}},
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
            .filter(|v| !v.is_empty() && v.chars().count() <= changeflow_workflows::limits::ID_MAX)
            .map(str::to_string)
    }
}

/// A tool's definition from its effect; `tool!` fills in the types.
#[allow(clippy::too_many_arguments)]
pub const fn spec(
    server: &'static str,
    name: &'static str,
    title: &'static str,
    description: &'static str,
    effect: Effect,
    input_schema: fn() -> Value,
    output_schema: fn() -> Value,
    parse: fn(Value) -> Result<Call, String>,
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
        effect,
        action,
        read_only,
        destructive,
        idempotent: true,
        long_running,
        requires_task: false,
        asks_first: None,
        input_schema,
        output_schema,
        parse,
    }
}

/// `tool!(server, name, title, effect, Arguments => call, Result, description)`: one registry
/// entry, its schemas derived from the two types and its parser running the arguments' check.
macro_rules! tool {
    ($server:expr, $name:literal, $title:literal, $effect:expr, $args:ty => $call:expr, $result:ty, $description:literal) => {
        $crate::tools::spec(
            $server,
            $name,
            $title,
            $description,
            $effect,
            $crate::tools::schema_of::<$args>,
            $crate::tools::schema_of::<$result>,
            |value| $crate::tools::arguments::<$args>(value).map($call),
        )
    };
}

/// The JSON Schema of a type, in a form every client reads: subschemas inlined (no `$ref`),
/// no `$schema`, and optional values as their plain type (absent rather than `null`).
pub fn schema_of<T: JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut schema = generator.into_root_schema_for::<T>().to_value();
    portable(&mut schema);
    if let Some(map) = schema.as_object_mut() {
        map.remove("title");
    }
    schema
}

/// Rewrites what some clients cannot read: `type: [T, "null"]` becomes `type: T`, an `anyOf`
/// with a `null` branch becomes its other branch, `null` leaves enums and defaults, and number
/// formats (`uint32`) go.
fn portable(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get("type") {
                let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
                if kept.len() == 1 {
                    map.insert("type".into(), kept[0].clone());
                }
            }
            if let Some(Value::Array(branches)) = map.get("anyOf") {
                let kept: Vec<Value> = branches
                    .iter()
                    .filter(|b| b.get("type") != Some(&json!("null")))
                    .cloned()
                    .collect();
                if kept.len() == 1
                    && let Value::Object(branch) = kept[0].clone()
                {
                    map.remove("anyOf");
                    for (k, v) in branch {
                        map.entry(k).or_insert(v);
                    }
                }
            }
            if map.get("type") == Some(&json!("integer")) {
                map.remove("format");
            }
            if let Some(Value::Array(values)) = map.get_mut("enum") {
                values.retain(|v| !v.is_null());
            }
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            for value in map.values_mut() {
                portable(value);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(portable),
        _ => {}
    }
}

/// Integral numbers written as floats (`14.0`, as model-generated arguments often are) as
/// integers: JSON Schema counts them as integers, and so does every tool.
fn integral_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.007_199_254_740_992e15
            {
                *value = json!(f as i64);
            }
        }
        Value::Object(map) => map.values_mut().for_each(integral_numbers),
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        _ => {}
    }
}

/// The path of a `null` anywhere in the arguments: no argument takes one (an optional argument
/// is left out, as the schemas say).
fn null_at(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Null => Some(path.to_string()),
        Value::Object(map) => map.iter().find_map(|(key, v)| {
            null_at(
                v,
                &if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                },
            )
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| null_at(v, &format!("{path}[{i}]"))),
        _ => None,
    }
}

/// Parses a tool's arguments and runs their check.
pub fn arguments<T: Arguments>(mut value: Value) -> Result<T, String> {
    if let Some(path) = null_at(&value, "") {
        return Err(format!("{path} must not be null (leave it out instead)"));
    }
    integral_numbers(&mut value);
    let parsed: T = serde_json::from_value(value).map_err(|e| e.to_string())?;
    parsed.validate()?;
    Ok(parsed)
}

const CATALYST: &str = "catalyst-center";
const SERVICENOW: &str = "servicenow";
const CHANGES: &str = "changes";
const APPROVALS: &str = "approvals";
const AUDIT: &str = "audit";
const GITHUB: &str = "github";

pub const TOOLS: &[ToolSpec] = &[
    tool!(CATALYST, "deploy_template", "Deploy a configuration template", Effect::Execute,
        DeployTemplate => Call::Deploy, DeployResult,
        "Deploy a Catalyst Center template to devices as a governed change: validate, open a ServiceNow change request of the given change_type, wait for approval (normal: change-approvers; emergency: one emergency approver, justification required; standard: pre-approved templates only, no approval), wait for the window (window_start/window_end), capture each device's baseline through Command Runner, deploy, check the devices against the template's verification rules, and close the ticket. A deployment that fails on a device or fails its checks is backed out on the devices it changed (backout, or the template's declared inverse) and checked again; a failed back-out ends the change backout_failed and names the devices needing hands. Runs as a durable workflow with progress; when the change waits for a person or a window the call returns its change_id, ticket_number and status (awaiting_approval, scheduled), and get_change_status follows it."),
    tool!(CATALYST, "list_templates", "List configuration templates", Effect::Read,
        ListTemplates => |a| Call::Operation(Operation::ListTemplates(a)), TemplateList,
        "Catalyst Center configuration templates, optionally of one project."),
    tool!(CATALYST, "get_template", "Get a configuration template", Effect::Read,
        GetTemplate => |a| Call::Operation(Operation::GetTemplate(a)), Template,
        "One template's content, language, version and parameters."),
    tool!(CATALYST, "list_devices", "List network devices", Effect::Read,
        ListDevices => |a| Call::Operation(Operation::ListDevices(a)), DeviceList,
        "Devices managed by Catalyst Center, filtered by hostname, family or reachability."),
    tool!(CATALYST, "preview_template", "Preview a template for a device", Effect::Read,
        PreviewTemplate => |a| Call::Operation(Operation::PreviewTemplate(a)), Preview,
        "Render a template with parameters for one device without deploying it; reports validation errors."),
    tool!(CATALYST, "run_show_commands", "Run read-only commands on devices", Effect::Read,
        RunShowCommands => |a| Call::Operation(Operation::RunShowCommands(a)), CommandResults,
        "Run read-only CLI commands (show, ping, traceroute; e.g. \"show running-config | include ntp\") on devices through Catalyst Center's Command Runner; anything else (configure terminal, reload) is refused before it reaches Catalyst Center. Returns each device's output per command."),
    tool!(SERVICENOW, "get_change_request", "Get a change request", Effect::Read,
        GetChangeRequest => |a| Call::Operation(Operation::GetChangeRequest(a)), ChangeRequest,
        "One ServiceNow change request by number."),
    tool!(SERVICENOW, "list_change_requests", "List change requests", Effect::Read,
        ListChangeRequests => |a| Call::Operation(Operation::ListChangeRequests(a)), ChangeRequestList,
        "ServiceNow change requests by state and requester, newest first."),
    tool!(SERVICENOW, "create_change_request", "Open a change request", Effect::Write,
        CreateChangeRequest => |a| Call::Operation(Operation::CreateChangeRequest(a)), ChangeRequest,
        "Open a normal ServiceNow change request requested by the caller."),
    tool!(SERVICENOW, "add_work_note", "Add a work note", Effect::Write,
        AddWorkNote => |a| Call::Operation(Operation::AddWorkNote(a)), ChangeRequest,
        "Append a work note (signed with the caller's name) to a change request."),
    tool!(SERVICENOW, "close_change_request", "Close a change request", Effect::DestructiveWrite,
        CloseChangeRequest => |a| Call::Operation(Operation::CloseChangeRequest(a)), ChangeRequest,
        "Close a change request from Implement or Review with a close code and notes, or cancel one that has not reached Implement."),
    tool!(CHANGES, "get_change_status", "Get a change's status", Effect::Read,
        ChangeId => |c| Call::Change(ChangeAction::Status, c), ChangeStatus,
        "Current step, progress, ticket number and per-device status of a change."),
    tool!(CHANGES, "list_changes", "List changes", Effect::Read,
        ChangeFilter => Call::List, ChangeList,
        "Changes filtered by status, requester, ticket number, device and start time, newest first (Temporal visibility)."),
    tool!(CHANGES, "get_change_history", "Get a change's history", Effect::Read,
        ChangeId => |c| Call::Change(ChangeAction::History, c), ChangeHistory,
        "The step timeline of one change from its durable history: each step's scheduling, attempts and result, and how the change ended."),
    tool!(CHANGES, "cancel_change", "Cancel a change", Effect::DestructiveWrite,
        ChangeId => |c| Call::Change(ChangeAction::Cancel, c), CancelResult,
        "Cancel a running change; its ServiceNow ticket is closed as canceled."),
    tool!(APPROVALS, "approve_change", "Approve a change", Effect::Write,
        Approve => |a| Call::Decide(Verdict::Approved, ChangeId { change_id: a.change_id }, a.comment), DecisionResult,
        "Approve a change awaiting your approval (change-approvers, with MFA; never your own change). The change learns it at once, writes it to your ServiceNow approval record and proceeds to its window."),
    tool!(APPROVALS, "reject_change", "Reject a change", Effect::Write,
        Reject => |a| Call::Decide(Verdict::Rejected, ChangeId { change_id: a.change_id }, Some(a.comment)), DecisionResult,
        "Reject a change awaiting your approval, saying why: its ticket is canceled with your comment and nothing is deployed."),
    tool!(APPROVALS, "list_pending_approvals", "List changes awaiting your approval", Effect::Read,
        PendingApprovals => |a| Call::Pending(a.limit), ChangeList,
        "Changes waiting for your decision, newest first."),
    tool!(AUDIT, "search_audit", "Search the audit log", Effect::Read,
        crate::audit_tools::SearchAudit => Call::SearchAudit, crate::audit_tools::AuditPage,
        "Audit records (who called which tool, the policy decision and its revision, the workflow, the outcome) by subject, tool, decision, change and time range, oldest first, a page at a time, each with its place in the hash chain."),
    tool!(AUDIT, "verify_audit_chain", "Verify the audit chain", Effect::Read,
        crate::audit_tools::VerifyAuditChain => |_| Call::VerifyAudit, crate::audit_tools::ChainVerdict,
        "Check every audit record's hash and its link to the one before: whether the chain is intact, where it first breaks, and the head hash to anchor elsewhere."),
    tool!(AUDIT, "get_change_evidence", "Get a change's evidence", Effect::Read,
        ChangeId => Call::Evidence, crate::evidence::EvidenceOverview,
        "Build the evidence bundle of one change (its workflow history and replay verdict, every audit record naming it with the hash-chain segment to the head, the policy texts that decided, the ServiceNow ticket with journal and approvals, device check snapshots and verdicts), signed with the evidence key in Vault. Returns the bundle's summary and manifest; the bundle itself (tar.gz) downloads from `download` over REST with the same token, and `changeflow evidence verify` checks it offline."),
    tool!(GITHUB, "get_file_contents", "Get file or directory contents", Effect::Read,
        GetFileContents => |a| Call::Operation(Operation::GetFileContents(a)), FileContents,
        "Get the contents of a file (text and its blob sha) or a directory (its entries) in a GitHub repository, at a branch, tag or commit (the default branch when neither ref nor sha is given)."),
    tool!(GITHUB, "list_branches", "List branches", Effect::Read,
        ListBranches => |a| Call::Operation(Operation::ListBranches(a)), BranchList,
        "List the branches of a GitHub repository with their head commits and protection."),
    tool!(GITHUB, "create_branch", "Create branch", Effect::Write,
        CreateBranch => |a| Call::Operation(Operation::CreateBranch(a)), CreatedBranch,
        "Create a branch in a GitHub repository from another branch (the default branch when from_branch is absent)."),
    tool!(GITHUB, "list_commits", "List commits", Effect::Read,
        ListCommits => |a| Call::Operation(Operation::ListCommits(a)), CommitList,
        "List the commits of a branch, tag or commit, newest first, optionally only those touching a path or by an author."),
    tool!(GITHUB, "get_commit", "Get commit details", Effect::Read,
        GetCommit => |a| Call::Operation(Operation::GetCommit(a)), Commit,
        "One commit: message, author, parents and changed files (with line counts for detail=stats, and patches for detail=full_patch)."),
    tool!(GITHUB, "create_or_update_file", "Create or update file", Effect::Write,
        CreateOrUpdateFile => |a| Call::Operation(Operation::CreateOrUpdateFile(a)), FileCommit,
        "Create or update one file in a branch as one commit; replacing a file needs its current blob sha (get_file_contents). A retried call whose content is already on the branch commits nothing and returns the commit that put it there."),
    tool!(GITHUB, "create_pull_request", "Open new pull request", Effect::Write,
        CreatePullRequest => |a| Call::Operation(Operation::CreatePullRequest(a)), PullRequest,
        "Open a pull request from head into base; if one is already open for the same branches, that one is returned."),
    tool!(GITHUB, "list_pull_requests", "List pull requests", Effect::Read,
        ListPullRequests => |a| Call::Operation(Operation::ListPullRequests(a)), PullRequestList,
        "List pull requests of a repository by state (open, closed, all), head and base branch, newest first."),
    tool!(GITHUB, "pull_request_read", "Get details for a single pull request", Effect::Read,
        PullRequestRead => |a| Call::Operation(Operation::PullRequestRead(a)), PullRequestDetails,
        "Read one pull request: method get (its state, branches and mergeability), get_files (the files it changes, with patches) or get_reviews (its reviews, oldest first)."),
    tool!(GITHUB, "pull_request_review_write", "Write operations on pull request reviews", Effect::Write,
        PullRequestReviewWrite => |a| Call::Operation(Operation::PullRequestReviewWrite(a)), Review,
        "Review a pull request (method create): APPROVE, REQUEST_CHANGES or COMMENT (these two need a body). Nobody can approve their own pull request."),
    tool!(GITHUB, "merge_pull_request", "Merge pull request", Effect::Write,
        MergePullRequest => |a| Call::Operation(Operation::MergePullRequest(a)), MergeResult,
        "Merge a pull request (merge, squash or rebase). Merging into the default branch needs an approving review by someone other than the author."),
];

/// The tool task requests are judged as: reading a task is reading the change's status,
/// updating or cancelling it is cancelling the change.
pub fn task_request_tool(method: &str) -> &'static ToolSpec {
    let name = if method == "tasks/get" {
        "get_change_status"
    } else {
        "cancel_change"
    };
    find(Some(CHANGES), name).expect("the changes tools are registered")
}

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

/// An object schema as a map, for MCP's `Tool`.
pub fn object(schema: Value) -> Map<String, Value> {
    match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every subschema names a type or another constraint, and none is a `null` union: what
    /// the MCP Inspector's `--strict` portability check asks.
    fn assert_portable(tool: &str, schema: &Value) {
        match schema {
            Value::Object(map) => {
                assert!(
                    !matches!(map.get("type"), Some(Value::Array(_))),
                    "{tool}: type union in {schema}"
                );
                assert!(!map.contains_key("$ref"), "{tool}: $ref in {schema}");
                assert_ne!(map.get("default"), Some(&Value::Null), "{tool}: {schema}");
                if let Some(Value::Array(values)) = map.get("enum") {
                    assert!(!values.contains(&Value::Null), "{tool}: null in {schema}");
                }
                for value in map.values() {
                    assert_portable(tool, value);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| assert_portable(tool, v)),
            Value::Bool(_) => panic!("{tool}: boolean schema"),
            _ => {}
        }
    }

    #[test]
    fn schemas_are_derived_strict_and_portable() {
        assert!(
            find(Some("changes"), "deploy_template").is_none(),
            "tools belong to their server"
        );
        for tool in TOOLS {
            let input = (tool.input_schema)();
            assert_eq!(input["type"], "object", "{}", tool.name);
            assert_eq!(input["additionalProperties"], false, "{}", tool.name);
            assert_eq!((tool.output_schema)()["type"], "object", "{}", tool.name);
            for schema in [input, (tool.output_schema)()] {
                assert_portable(tool.name, &schema["properties"]);
            }
        }
        let deploy = (find(None, "deploy_template").unwrap().input_schema)();
        assert_eq!(deploy["required"], json!(["devices"]));
        assert!(deploy["properties"]["source"]["properties"]["ref"].is_object());
        assert_eq!(deploy["properties"]["devices"]["maxItems"], 100);
        assert_eq!(deploy["properties"]["parameters"]["maxProperties"], 50);
        let list = (find(None, "list_devices").unwrap().input_schema)();
        assert_eq!(list["properties"]["limit"]["maximum"], 200);
        assert_eq!(list["properties"]["limit"]["type"], "integer");
    }

    #[test]
    fn parsing_checks_like_the_schema_and_accepts_integral_floats() {
        let list = find(None, "list_devices").unwrap();
        assert!(matches!(
            (list.parse)(json!({"limit": 14.0})),
            Ok(Call::Operation(Operation::ListDevices(ListDevices {
                limit: Some(14),
                ..
            })))
        ));
        assert!((list.parse)(json!({"limit": 14.5})).is_err());
        assert!(
            (list.parse)(json!({"family": null}))
                .unwrap_err()
                .contains("family must not be null")
        );
        assert!(
            (list.parse)(json!({"limit": 0}))
                .unwrap_err()
                .contains("limit")
        );
        assert!(
            (list.parse)(json!({"hostname": "a b"}))
                .unwrap_err()
                .contains("hostname")
        );
        assert!(
            (list.parse)(json!({"password": "x"}))
                .unwrap_err()
                .contains("unknown field")
        );
        let cancel = find(None, "cancel_change").unwrap();
        assert!(matches!(
            (cancel.parse)(json!({"change_id": "c-1"})),
            Ok(Call::Change(ChangeAction::Cancel, _))
        ));
        assert!((cancel.parse)(json!({})).unwrap_err().contains("change_id"));
    }
}
