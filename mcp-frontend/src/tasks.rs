//! MCP tasks (`io.modelcontextprotocol/tasks`) read from Temporal. A task *is* a workflow (task
//! id = workflow id) and nothing about it is kept in this process, so any front-door instance
//! answers for any task, before and after restarts.

use crate::changes::{self, failure_detail};
use crate::outcome::{Progress, ToolResult};
use changeflow_workflows::failure::FailureType;
use changeflow_workflows::{DownstreamOperation, TemplateDeployment};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::SystemTime;
use temporalio_client::errors::WorkflowInteractionError;
use temporalio_client::{
    Client, UntypedWorkflow, WorkflowExecutionDescription, WorkflowExecutionStatus,
    WorkflowGetResultOptions,
};
use temporalio_common::WorkflowDefinition;

/// The kinds of workflow a task can be, told apart by their registered type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Change,
    Operation,
    #[cfg(feature = "fixtures")]
    Fixture,
}

impl Kind {
    /// The kind of a workflow type; `None` for a workflow that is no tool's.
    pub fn of(workflow_type: &str) -> Option<Kind> {
        if workflow_type == TemplateDeployment::run.name() {
            return Some(Kind::Change);
        }
        if workflow_type == DownstreamOperation::run.name() {
            return Some(Kind::Operation);
        }
        #[cfg(feature = "fixtures")]
        if workflow_type == changeflow_workflows::ConformanceFixture::run.name() {
            return Some(Kind::Fixture);
        }
        None
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

/// The workflow behind a task, described by Temporal.
async fn describe(
    client: &Client,
    task_id: &str,
) -> Result<WorkflowExecutionDescription, TaskLookupError> {
    let handle = client.get_workflow_handle::<UntypedWorkflow>(task_id);
    handle
        .describe(Default::default())
        .await
        .map_err(|e| match e {
            WorkflowInteractionError::NotFound(_) => TaskLookupError::NotFound(task_id.to_string()),
            other => TaskLookupError::Temporal(other.to_string()),
        })
}

/// The task's current state, from the workflow's description, progress query and result.
pub async fn view(client: &Client, task_id: &str) -> Result<TaskView, TaskLookupError> {
    let description = describe(client, task_id).await?;
    Ok(view_of(client, task_id, &description).await)
}

/// A task right after the call that started it: a running change is `working`, said from
/// its description alone (asking a busy worker for its progress could take seconds); anything
/// else (a fixture, or a change the same call made before that has ended) is looked at in full.
pub async fn view_started(client: &Client, task_id: &str) -> Result<TaskView, TaskLookupError> {
    let description = describe(client, task_id).await?;
    let change = Kind::of(description.workflow_type()) == Some(Kind::Change);
    if !change || description.status() != WorkflowExecutionStatus::Running {
        return Ok(view_of(client, task_id, &description).await);
    }
    Ok(TaskView::started(
        task_id,
        description.start_time().unwrap_or_else(SystemTime::now),
    ))
}

impl TaskView {
    /// A running change as its start leaves it: `working`, created at `created_at`.
    pub fn started(task_id: &str, created_at: SystemTime) -> TaskView {
        TaskView {
            task_id: task_id.to_string(),
            state: TaskState::Working("started".into()),
            created_at,
            updated_at: SystemTime::now(),
        }
    }
}

async fn view_of(
    client: &Client,
    task_id: &str,
    description: &WorkflowExecutionDescription,
) -> TaskView {
    let kind = Kind::of(description.workflow_type());
    let created_at = description.start_time().unwrap_or_else(SystemTime::now);
    let updated_at = description.close_time().unwrap_or_else(SystemTime::now);
    let state = match description.status() {
        WorkflowExecutionStatus::Running => match pending_input(client, task_id, kind).await {
            Some(requests) if !requests.is_empty() => TaskState::InputRequired(requests),
            _ => TaskState::Working(working_message(client, task_id, kind).await),
        },
        WorkflowExecutionStatus::Canceled => TaskState::Cancelled,
        WorkflowExecutionStatus::Completed | WorkflowExecutionStatus::Failed => {
            finished(client, task_id, kind).await
        }
        other => TaskState::Failed(format!("the workflow ended as {other:?}").to_lowercase()),
    };
    TaskView {
        task_id: task_id.to_string(),
        state,
        created_at,
        updated_at,
    }
}

/// The input requests a workflow waits on. Only workflows that ask for input answer this;
/// no change workflow does yet.
async fn pending_input(
    client: &Client,
    task_id: &str,
    kind: Option<Kind>,
) -> Option<BTreeMap<String, Value>> {
    match kind {
        #[cfg(feature = "fixtures")]
        Some(Kind::Fixture) => crate::fixtures::pending_input(client, task_id).await,
        _ => {
            let _ = (client, task_id);
            None
        }
    }
}

/// Delivers answers to a waiting workflow's input requests; applied before this returns, so
/// the next `tasks/get` sees them.
pub async fn respond(
    client: &Client,
    task_id: &str,
    responses: BTreeMap<String, Value>,
) -> Result<(), TaskLookupError> {
    #[cfg(feature = "fixtures")]
    {
        crate::fixtures::respond(client, task_id, responses)
            .await
            .map_err(TaskLookupError::Temporal)
    }
    #[cfg(not(feature = "fixtures"))]
    {
        let _ = (client, responses);
        Err(TaskLookupError::Temporal(format!(
            "task '{task_id}' does not wait for input"
        )))
    }
}

async fn working_message(client: &Client, task_id: &str, kind: Option<Kind>) -> String {
    if kind != Some(Kind::Change) {
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
pub async fn finished(client: &Client, task_id: &str, kind: Option<Kind>) -> TaskState {
    let outcome: Result<ToolResult, _> = match kind {
        Some(Kind::Change) => changes::result(client, task_id).await.map(|result| {
            let is_error = result.outcome.is_failure();
            ToolResult::Structured {
                value: changes::result_value(task_id, &result),
                is_error,
            }
        }),
        Some(Kind::Operation) => client
            .get_workflow_handle::<DownstreamOperation>(task_id)
            .get_result(WorkflowGetResultOptions::default())
            .await
            .map(|value| ToolResult::Structured {
                value,
                is_error: false,
            }),
        #[cfg(feature = "fixtures")]
        Some(Kind::Fixture) => crate::fixtures::result(client, task_id).await,
        None => {
            return TaskState::Failed(format!("'{task_id}' is not a changeflow tool's workflow"));
        }
    };
    match outcome {
        Ok(result) => TaskState::Completed(result),
        Err(err) => {
            let (type_name, message) = failure_detail(&err);
            let kind = FailureType::parse(&type_name);
            if kind.is_none() || kind == Some(FailureType::InternalError) {
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
