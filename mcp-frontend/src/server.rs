//! The MCP handler: lists the tools of its server (or all) and hands every call, with its
//! verified identity and progress token, to `FrontDoor::invoke`.

use crate::front_door::FrontDoor;
use crate::invoke::TaskPermit;
use crate::outcome::{AuditUnavailable, Outcome, Progress, ToolResult, Wait};
use crate::tasks::{self, TaskLookupError, TaskState, TaskView};
use crate::tools;
use changeflow_engine::identity::VerifiedIdentity;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ClientCapabilities,
    ContentBlock, CreateTaskResult, DetailedTask, GetTaskParams, GetTaskResult, Implementation,
    InputRequest, InputRequiredResult, ListToolsResult, PaginatedRequestParams,
    ProgressNotificationParam, ServerCapabilities, ServerConfig, Task, TaskPayload, TaskStatus,
    Tool, ToolAnnotations, UpdateTaskParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

#[derive(Clone)]
pub struct ChangeflowMcp {
    front: Arc<FrontDoor>,
    server: Option<&'static str>,
}

impl ChangeflowMcp {
    pub fn new(front: Arc<FrontDoor>, server: Option<&'static str>) -> Self {
        Self { front, server }
    }
}

/// The tools an endpoint lists (all of a catalog, or one server's), built once: generating
/// their schemas costs far more than the rest of a `tools/list`.
fn listed_tools(catalog: &'static [tools::ToolSpec], server: Option<&'static str>) -> Arc<[Tool]> {
    type Key = (usize, Option<&'static str>);
    static LISTED: std::sync::LazyLock<std::sync::Mutex<HashMap<Key, Arc<[Tool]>>>> =
        std::sync::LazyLock::new(Default::default);
    let key = (catalog.as_ptr() as usize, server);
    let mut listed = LISTED.lock().unwrap_or_else(|e| e.into_inner());
    listed
        .entry(key)
        .or_insert_with(|| {
            catalog
                .iter()
                .filter(|t| server.is_none_or(|s| s == t.server))
                .map(|t| {
                    let schema = match (t.input_schema)() {
                        Value::Object(map) => map,
                        _ => Default::default(),
                    };
                    Tool::new(t.name, t.description, Arc::new(schema))
                        .with_raw_output_schema(Arc::new(match (t.output_schema)() {
                            Value::Object(map) => map,
                            _ => Default::default(),
                        }))
                        .with_title(t.title)
                        .with_annotations(
                            ToolAnnotations::new()
                                .read_only(t.read_only)
                                .destructive(t.destructive)
                                .idempotent(t.idempotent),
                        )
                })
                .collect()
        })
        .clone()
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// A finished tool call's result in MCP terms.
fn call_result(result: ToolResult) -> CallToolResult {
    match result {
        ToolResult::Structured {
            value,
            is_error: false,
        } => CallToolResult::structured(value),
        ToolResult::Structured {
            value,
            is_error: true,
        } => CallToolResult::structured_error(value),
        ToolResult::Text {
            text,
            is_error: false,
        } => CallToolResult::success(vec![ContentBlock::text(text)]),
        ToolResult::Text {
            text,
            is_error: true,
        } => tool_error(text),
    }
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Clients are asked to poll this often.
const POLL_INTERVAL_MS: u64 = 1000;

fn task(view: &TaskView) -> Task {
    let status = match &view.state {
        TaskState::Working(_) => TaskStatus::Working,
        TaskState::InputRequired(_) => TaskStatus::InputRequired,
        TaskState::Completed(_) => TaskStatus::Completed,
        TaskState::Failed(_) => TaskStatus::Failed,
        TaskState::Cancelled => TaskStatus::Cancelled,
    };
    // No TTL of our own (`ttlMs: null`): a task is kept as long as Temporal keeps its workflow.
    let mut task = Task::new(
        view.task_id.clone(),
        status,
        rfc3339(view.created_at),
        rfc3339(view.updated_at),
    )
    .with_poll_interval_ms(POLL_INTERVAL_MS);
    if let TaskState::Working(message) = &view.state {
        task = task.with_status_message(message.clone());
    }
    task
}

fn detailed_task(view: TaskView) -> Result<DetailedTask, ErrorData> {
    let payload = match view.state.clone() {
        TaskState::Working(_) => TaskPayload::Working,
        TaskState::InputRequired(requests) => TaskPayload::InputRequired {
            input_requests: requests
                .into_iter()
                .map(|(key, request)| {
                    serde_json::from_value::<InputRequest>(request)
                        .map(|request| (key, request))
                        .map_err(|e| {
                            ErrorData::internal_error(format!("malformed input request: {e}"), None)
                        })
                })
                .collect::<Result<_, _>>()?,
        },
        TaskState::Cancelled => TaskPayload::Cancelled,
        TaskState::Completed(result) => TaskPayload::Completed {
            result: match serde_json::to_value(call_result(result)) {
                Ok(Value::Object(map)) => map,
                _ => return Err(ErrorData::internal_error("unserialisable result", None)),
            },
        },
        TaskState::Failed(message) => TaskPayload::Failed {
            error: match tasks::failure_error(&message) {
                Value::Object(map) => map,
                _ => Default::default(),
            },
        },
    };
    Ok(DetailedTask::new(task(&view), payload))
}

fn identity(context: &RequestContext<RoleServer>) -> Result<VerifiedIdentity, ErrorData> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<VerifiedIdentity>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("unauthenticated request reached a tool", None))
}

fn denied(outcome: Outcome) -> ErrorData {
    match outcome {
        Outcome::Denied {
            missing_permission,
            reason,
        } => ErrorData::invalid_request(
            format!("permission denied: {missing_permission} is missing ({reason})"),
            Some(json!({"missing_permission": missing_permission, "reason": reason})),
        ),
        other => ErrorData::internal_error(format!("{other:?}"), None),
    }
}

fn audit_unavailable(e: AuditUnavailable) -> ErrorData {
    ErrorData::internal_error(e.to_string(), None)
}

fn lookup_error(e: TaskLookupError) -> ErrorData {
    match e {
        TaskLookupError::NotFound(_) => ErrorData::invalid_params(e.to_string(), None),
        TaskLookupError::Temporal(_) => ErrorData::internal_error(e.to_string(), None),
    }
}

impl ServerHandler for ChangeflowMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tasks().build())
            .with_server_info(Implementation::new("changeflow", env!("CARGO_PKG_VERSION")))
            .with_instructions("Network changes as durable workflows: deploy_template opens a ServiceNow change, deploys through Catalyst Center, verifies and closes the ticket. Clients that support the tasks extension get a task (its id is the change id) for long calls.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(
            listed_tools(self.front.catalog.tools(), self.server).to_vec(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(spec) = tools::find_in(self.front.catalog.tools(), self.server, &request.name)
        else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool '{}'", request.name),
                None,
            ));
        };
        let identity = identity(&context)?;
        let mut arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        if let Some(ask) = &spec.asks_first {
            let answer = request
                .input_responses
                .as_ref()
                .and_then(|responses| responses.get(ask.key))
                .and_then(|response| ask.answer(response));
            match answer {
                Some(value) => arguments[ask.field] = json!(value),
                None => return ask_first(ask, &context),
            }
        }
        // A long call becomes a task when the client declared the tasks extension; otherwise
        // the call waits for the result, streaming progress.
        let as_task = spec.long_running
            && context
                .client_capabilities()
                .is_some_and(|caps| caps.supports_tasks());
        if spec.requires_task && !as_task {
            return Err(ErrorData::missing_required_client_capability(
                ClientCapabilities::builder().enable_tasks().build(),
            ));
        }
        let wait = if as_task {
            Wait::UntilStarted
        } else {
            Wait::ForResult
        };
        let token = context.meta.get_progress_token();
        let peer = context.peer.clone();
        // Each message names the change, so a client that loses the connection can find it
        // again with get_change_status; the workflow runs on regardless.
        let report = |change_id: &str, p: &Progress| {
            if let Some(token) = &token {
                let param = ProgressNotificationParam::new(token.clone(), f64::from(p.percent))
                    .with_total(100.0)
                    .with_message(format!("{change_id}: {}", p.message));
                let peer = peer.clone();
                tokio::spawn(async move {
                    let _ = peer.notify_progress(param).await;
                });
            }
        };
        let outcome = self
            .front
            .invoke(&identity, spec, arguments, wait, report)
            .await
            .map_err(audit_unavailable)?;
        Ok(match outcome {
            Outcome::Started { change_id, new_change } if as_task => {
                // The workflow exists once started, so tasks/get resolves from here on. A run
                // this call began is working now; one it found is looked up.
                let view = if new_change {
                    TaskView::started(&change_id, std::time::SystemTime::now())
                } else {
                    self.front.temporal.started_task(&change_id)
                        .await
                        .map_err(lookup_error)?
                };
                CreateTaskResult::new(task(&view)).into()
            }
            Outcome::Done(value) => CallToolResult::structured(value).into(),
            Outcome::ChangeFailed(value) => CallToolResult::structured_error(value).into(),
            Outcome::Tool(result) => call_result(result).into(),
            Outcome::ProtocolError(message) => {
                return Err(ErrorData::internal_error(message, None));
            }
            Outcome::Denied { missing_permission, reason } => {
                CallToolResult::structured_error(json!({"error": "permission denied", "missing_permission": missing_permission, "reason": reason})).into()
            }
            Outcome::Invalid(problem) => tool_error(format!("invalid arguments: {problem}")).into(),
            Outcome::NotFound(message) | Outcome::Conflict(message) | Outcome::Failed(message) => {
                tool_error(message).into()
            }
            Outcome::Started { change_id, .. } => CallToolResult::structured(json!({"change_id": change_id})).into(),
            Outcome::Overloaded { retry_after_secs } => CallToolResult::structured_error(json!({
                "error": "overloaded",
                "message": crate::outcome::overloaded_message(retry_after_secs),
                "retryable": true,
                "retry_after_secs": retry_after_secs,
            }))
            .into(),
            Outcome::Evidence(bundle) => match bundle.overview_value() {
                Ok(overview) => CallToolResult::structured(overview).into(),
                Err(message) => tool_error(message).into(),
            },
        })
    }

    /// `tasks/get`, answered from Temporal: any instance knows every task.
    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let (permit, view) = self
            .open_task(&context, "tasks/get", &request.task_id)
            .await?;
        note(&permit, "read").await?;
        Ok(GetTaskResult::new(detailed_task(view)?))
    }

    /// `tasks/update`: answers go to the workflow waiting for them (applied before the ack);
    /// responses to a task that waits for nothing, or to unknown keys, are acknowledged and
    /// ignored, as the extension asks.
    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (permit, view) = self
            .open_task(&context, "tasks/update", &request.task_id)
            .await?;
        if !matches!(view.state, TaskState::InputRequired(_)) {
            return note(&permit, "nothing pending").await;
        }
        let delivered = self
            .front
            .temporal
            .respond(&request.task_id, request.input_responses)
            .await;
        let outcome = if delivered.is_ok() {
            "input delivered"
        } else {
            "input failed"
        };
        note(&permit, outcome).await?;
        delivered.map_err(lookup_error)
    }

    /// `tasks/cancel`: cancels the workflow (a change closes its ticket as canceled). A task
    /// that already ended is acknowledged as it is.
    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let (permit, view) = self
            .open_task(&context, "tasks/cancel", &request.task_id)
            .await?;
        if !matches!(
            view.state,
            TaskState::Working(_) | TaskState::InputRequired(_)
        ) {
            return note(&permit, "already ended").await;
        }
        let reason = format!("canceled by {} (tasks/cancel)", permit.identity().subject);
        let cancelled = self.front.temporal.cancel(&request.task_id, &reason).await;
        let outcome = if cancelled.is_ok() {
            "cancel requested"
        } else {
            "cancel failed"
        };
        note(&permit, outcome).await?;
        cancelled.map_err(|e| ErrorData::internal_error(e.to_string(), None))
    }
}

impl ChangeflowMcp {
    /// A task request's common part: the caller is authorized (a denial is audited and
    /// refused) and the task is read; an unknown task is audited and refused with -32602.
    async fn open_task(
        &self,
        context: &RequestContext<RoleServer>,
        method: &'static str,
        task_id: &str,
    ) -> Result<(TaskPermit<'_>, TaskView), ErrorData> {
        let permit = self
            .front
            .authorize_task(identity(context)?, method, task_id)
            .await
            .map_err(audit_unavailable)?
            .map_err(denied)?;
        match self.front.temporal.task(task_id).await {
            Ok(view) => Ok((permit, view)),
            Err(e) => {
                note(&permit, "not found").await?;
                Err(lookup_error(e))
            }
        }
    }
}

/// The input-required round before a tool that asks first (asked again until answered).
fn ask_first(
    ask: &tools::AskFirst,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let can_answer = context
        .client_capabilities()
        .is_some_and(|caps| caps.elicitation.is_some());
    if !can_answer {
        return Err(ErrorData::missing_required_client_capability(
            ClientCapabilities::builder().enable_elicitation().build(),
        ));
    }
    let request = serde_json::from_value::<InputRequest>(ask.request())
        .map_err(|e| ErrorData::internal_error(format!("malformed input request: {e}"), None))?;
    let requests = [(ask.key.to_string(), request)].into_iter().collect();
    Ok(InputRequiredResult::new(Some(requests), None).into())
}

/// Audits how an allowed task request ended.
async fn note(permit: &TaskPermit<'_>, outcome: &str) -> Result<(), ErrorData> {
    permit.note(outcome).await.map_err(audit_unavailable)
}
