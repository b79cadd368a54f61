//! The MCP conformance suite's fixture tools (`fixtures` feature, development builds only):
//! their registry entries and the client side of the `ConformanceFixture` workflow. Only the
//! loopback-only conformance profile serves them.

use crate::changes::{ChangeError, tool_start_options};
use crate::outcome::{Progress, ToolResult};
use crate::tools::{AskFirst, Call, Effect, ToolSpec, arguments, schema_of, spec};
use changeflow_workflows::Arguments;
use changeflow_workflows::fixtures::{ConformanceFixture, FixtureCall};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use temporalio_client::errors::{WorkflowGetResultError, WorkflowStartError};
use temporalio_client::{Client, WorkflowGetResultOptions, WorkflowQueryOptions};

/// The server of the fixture tools.
pub const FIXTURE_SERVER: &str = "conformance";

/// `greet` and `test_tool_with_task`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Greet {
    #[serde(default)]
    #[schemars(length(max = 128))]
    #[allow(dead_code)]
    name: Option<String>,
}

/// `slow_compute`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SlowCompute {
    #[serde(default)]
    #[schemars(range(max = 600))]
    seconds: Option<u32>,
    #[serde(default)]
    #[schemars(length(max = 128))]
    #[allow(dead_code)]
    label: Option<String>,
}

/// `confirm_delete`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ConfirmDelete {
    #[serde(default)]
    #[schemars(length(max = 256))]
    #[allow(dead_code)]
    filename: Option<String>,
}

/// The fixtures that take nothing.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct NoArguments {}

impl Arguments for Greet {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
impl Arguments for SlowCompute {
    fn validate(&self) -> Result<(), String> {
        match self.seconds {
            Some(s) if s > 600 => Err("seconds must be at most 600".into()),
            _ => Ok(()),
        }
    }
}
impl Arguments for ConfirmDelete {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}
impl Arguments for NoArguments {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Fixture results are text, not structured content.
fn text_result_schema() -> Value {
    json!({"type": "object"})
}

/// Checks the arguments against `T` and hands them to the workflow as they came.
fn fixture_call<T: Arguments>(value: Value) -> Result<Call, String> {
    arguments::<T>(value.clone()).map(|_| Call::Fixture(value))
}

/// (long_running, requires_task) of the fixtures.
const SYNC: (bool, bool) = (false, false);
const TASK_OPTIONAL: (bool, bool) = (true, false);
const TASK_REQUIRED: (bool, bool) = (true, true);

const fn fixture(
    name: &'static str,
    description: &'static str,
    (long_running, requires_task): (bool, bool),
    input_schema: fn() -> Value,
    parse: fn(Value) -> Result<Call, String>,
) -> ToolSpec {
    ToolSpec {
        long_running,
        requires_task,
        ..spec(
            FIXTURE_SERVER,
            name,
            name,
            description,
            Effect::Read,
            input_schema,
            text_result_schema,
            parse,
        )
    }
}

/// The fixture tools the MCP conformance suite's scenarios call, each run as a
/// `ConformanceFixture` workflow.
pub const FIXTURE_TOOLS: &[ToolSpec] = &[
    fixture(
        "greet",
        "Returns 'Hello, {name}!' at once (never a task).",
        SYNC,
        schema_of::<Greet>,
        fixture_call::<Greet>,
    ),
    fixture(
        "slow_compute",
        "Sleeps `seconds` durably, then returns; a task for clients that support tasks.",
        TASK_OPTIONAL,
        schema_of::<SlowCompute>,
        fixture_call::<SlowCompute>,
    ),
    fixture(
        "failing_job",
        "Always ends with a tool execution error after about a second; only as a task.",
        TASK_REQUIRED,
        schema_of::<NoArguments>,
        fixture_call::<NoArguments>,
    ),
    fixture(
        "protocol_error_job",
        "Always ends with a protocol-level (internal) error.",
        TASK_OPTIONAL,
        schema_of::<NoArguments>,
        fixture_call::<NoArguments>,
    ),
    fixture(
        "confirm_delete",
        "Asks the client to confirm (elicitation, task input_required), then deletes or keeps `filename`.",
        TASK_REQUIRED,
        schema_of::<ConfirmDelete>,
        fixture_call::<ConfirmDelete>,
    ),
    fixture(
        "test_simple_text",
        "Returns a line of text.",
        SYNC,
        schema_of::<NoArguments>,
        fixture_call::<NoArguments>,
    ),
    fixture(
        "test_error_handling",
        "Always returns a tool execution error.",
        SYNC,
        schema_of::<NoArguments>,
        fixture_call::<NoArguments>,
    ),
    fixture(
        "test_tool_with_progress",
        "Reports progress three times (0, 50, 100 percent), then returns.",
        SYNC,
        schema_of::<NoArguments>,
        fixture_call::<NoArguments>,
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
            schema_of::<Greet>,
            fixture_call::<Greet>,
        )
    },
    fixture(
        "multi_input",
        "Asks two questions at once (two input requests), then answers.",
        TASK_REQUIRED,
        schema_of::<NoArguments>,
        fixture_call::<NoArguments>,
    ),
];

/// Starts a fixture's workflow.
pub async fn start(
    client: &Client,
    task_queue: &str,
    workflow_id: &str,
    requester: &str,
    call: FixtureCall,
) -> Result<(), ChangeError> {
    let options = tool_start_options(task_queue, workflow_id, requester);
    match client
        .start_workflow(ConformanceFixture::run, call, options)
        .await
    {
        Ok(_) | Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(()),
        Err(e) => Err(ChangeError::Temporal(e.to_string())),
    }
}

/// A fixture's progress, if it reports any.
pub async fn progress(client: &Client, workflow_id: &str) -> Option<Progress> {
    client
        .get_workflow_handle::<ConformanceFixture>(workflow_id)
        .query(
            ConformanceFixture::progress,
            (),
            WorkflowQueryOptions::default(),
        )
        .await
        .ok()
        .flatten()
        .map(|p| Progress {
            percent: p.percent,
            message: p.message,
        })
}

/// A fixture's text result.
pub async fn result(
    client: &Client,
    workflow_id: &str,
) -> Result<ToolResult, WorkflowGetResultError> {
    client
        .get_workflow_handle::<ConformanceFixture>(workflow_id)
        .get_result(WorkflowGetResultOptions::default())
        .await
        .map(|value| ToolResult::Text {
            text: value["text"].as_str().unwrap_or_default().to_string(),
            is_error: false,
        })
}

/// The input requests a fixture waits on.
pub async fn pending_input(client: &Client, workflow_id: &str) -> Option<BTreeMap<String, Value>> {
    client
        .get_workflow_handle::<ConformanceFixture>(workflow_id)
        .query(ConformanceFixture::pending_input, (), Default::default())
        .await
        .ok()
}

/// Delivers answers to a fixture's input requests (applied before this returns).
pub async fn respond(
    client: &Client,
    workflow_id: &str,
    responses: BTreeMap<String, Value>,
) -> Result<(), String> {
    client
        .get_workflow_handle::<ConformanceFixture>(workflow_id)
        .execute_update(ConformanceFixture::respond, responses, Default::default())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}
