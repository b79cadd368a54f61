//! MCP tasks (`io.modelcontextprotocol/tasks`) read from Temporal. A task *is* a workflow (task
//! id = workflow id) and nothing about it is kept in this process, so any front-door instance
//! answers for any task, before and after restarts.

use crate::changes::{self, failure_detail};
use crate::invoke::Progress;
use changeflow_workflows::fixtures::INTERNAL_ERROR;
use changeflow_workflows::{ChangeOutcome, ConformanceFixture, DownstreamOperation};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::SystemTime;
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_client::{
    Client, UntypedWorkflow, WorkflowExecutionStatus, WorkflowGetResultOptions,
};

/// What a finished tool call produced, in MCP terms.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolResult {
    /// Structured content; `is_error` when it reports a failure (a change that failed).
    Structured { value: Value, is_error: bool },
    /// Plain text; `is_error` for a tool execution error.
    Text { text: String, is_error: bool },
}

impl ToolResult {
    /// The result as plain JSON (the REST proxy's answer).
    pub fn to_json(&self) -> Value {
        match self {
            ToolResult::Structured { value, .. } => value.clone(),
            ToolResult::Text { text, is_error } => json!({"text": text, "is_error": is_error}),
        }
    }
}

/// Where a task stands.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskState {
    /// Running; the message says what it is doing.
    Working(String),
    /// Running and waiting for the client: the outstanding input requests by key
    /// (`{"method": "elicitation/create", "params": ...}`).
    InputRequired(BTreeMap<String, Value>),
    /// Finished with a result (which may itself be a tool error).
    Completed(ToolResult),
    /// Ended without a result (terminated, timed out, crashed): a protocol-level failure.
    Failed(String),
    Cancelled,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskView {
    pub task_id: String,
    pub state: TaskState,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
}

/// The task does not exist, or Temporal could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum TaskLookupError {
    #[error("no task '{0}'")]
    NotFound(String),
    #[error("{0}")]
    Temporal(String),
}

/// The task's current state, from the workflow's description, progress query and result.
pub async fn view(client: &Client, task_id: &str) -> Result<TaskView, TaskLookupError> {
    let handle = client.get_workflow_handle::<UntypedWorkflow>(task_id);
    let description = handle
        .describe(Default::default())
        .await
        .map_err(|e| match e {
            WorkflowInteractionError::NotFound(_) => TaskLookupError::NotFound(task_id.to_string()),
            other => TaskLookupError::Temporal(other.to_string()),
        })?;
    let kind = description.workflow_type().to_string();
    let created_at = description.start_time().unwrap_or_else(SystemTime::now);
    let updated_at = description.close_time().unwrap_or_else(SystemTime::now);
    let state = match description.status() {
        WorkflowExecutionStatus::Running => match pending_input(client, task_id, &kind).await {
            Some(requests) if !requests.is_empty() => TaskState::InputRequired(requests),
            _ => TaskState::Working(working_message(client, task_id, &kind).await),
        },
        WorkflowExecutionStatus::Canceled => TaskState::Cancelled,
        WorkflowExecutionStatus::Completed | WorkflowExecutionStatus::Failed => {
            finished(client, task_id, &kind).await
        }
        other => TaskState::Failed(format!("the workflow ended as {other:?}").to_lowercase()),
    };
    Ok(TaskView {
        task_id: task_id.to_string(),
        state,
        created_at,
        updated_at,
    })
}

/// The input requests a workflow waits on. Only workflows that ask for input answer this;
/// no change workflow does yet.
async fn pending_input(
    client: &Client,
    task_id: &str,
    kind: &str,
) -> Option<BTreeMap<String, Value>> {
    if kind != "ConformanceFixture" {
        return None;
    }
    client
        .get_workflow_handle::<ConformanceFixture>(task_id)
        .query(ConformanceFixture::pending_input, (), Default::default())
        .await
        .ok()
}

/// Delivers answers to a waiting workflow's input requests; applied before this returns, so
/// the next `tasks/get` sees them. Keys that are not outstanding are ignored.
pub async fn respond(
    client: &Client,
    task_id: &str,
    responses: BTreeMap<String, Value>,
) -> Result<(), TaskLookupError> {
    client
        .get_workflow_handle::<ConformanceFixture>(task_id)
        .execute_update(ConformanceFixture::respond, responses, Default::default())
        .await
        .map(|_| ())
        .map_err(|e| TaskLookupError::Temporal(e.to_string()))
}

async fn working_message(client: &Client, task_id: &str, kind: &str) -> String {
    if kind != "TemplateDeployment" {
        return "running".into();
    }
    match changes::progress(client, task_id).await {
        Some(p) => {
            let progress = Progress::from(&p);
            format!("{} ({}%)", progress.message, progress.percent)
        }
        None => "starting".into(),
    }
}

/// The result of a finished workflow as the tool call's result (waits for it to finish).
pub async fn finished(client: &Client, task_id: &str, kind: &str) -> TaskState {
    let options = WorkflowGetResultOptions::default;
    let outcome: Result<ToolResult, _> = match kind {
        "TemplateDeployment" => changes::result(client, task_id).await.map(|result| {
            let is_error = result.outcome == ChangeOutcome::Failed;
            ToolResult::Structured {
                value: changes::result_value(task_id, &result),
                is_error,
            }
        }),
        "DownstreamOperation" => client
            .get_workflow_handle::<DownstreamOperation>(task_id)
            .get_result(options())
            .await
            .map(|value| ToolResult::Structured {
                value,
                is_error: false,
            }),
        "ConformanceFixture" => client
            .get_workflow_handle::<ConformanceFixture>(task_id)
            .get_result(options())
            .await
            .map(|value| ToolResult::Text {
                text: value["text"].as_str().unwrap_or_default().to_string(),
                is_error: false,
            }),
        other => return TaskState::Failed(format!("'{other}' is not a changeflow tool workflow")),
    };
    match outcome {
        Ok(result) => TaskState::Completed(result),
        Err(err) => {
            let (type_name, message) = failure_detail(&err);
            if type_name == INTERNAL_ERROR || type_name.is_empty() {
                TaskState::Failed(message)
            } else {
                // The tool ran and reported an error (invalid request, not found, a fixture's
                // tool error): a completed task whose result is an error.
                TaskState::Completed(ToolResult::Text {
                    text: message,
                    is_error: true,
                })
            }
        }
    }
}

/// The JSON-RPC error object of a failed task.
pub fn failure_error(message: &str) -> Value {
    json!({"code": -32603, "message": message})
}
