//! `ConformanceFixture`: the fixture tools the MCP conformance suite expects (`greet`,
//! `slow_compute`, `failing_job`, `protocol_error_job`), each a workflow like every other tool.
//! Only `changeflow conformance-server`, a loopback-only test profile, exposes them.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ApplicationFailure, TimerResult, WorkflowContext, WorkflowResult, WorkflowTermination,
};

/// Error type of a fixture that reports a tool execution error (`isError: true`).
pub const TOOL_ERROR: &str = "ToolError";
/// Error type of a fixture that fails as a protocol error (task status `failed`).
pub const INTERNAL_ERROR: &str = "InternalError";

/// One fixture call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixtureCall {
    pub tool: String,
    #[serde(default)]
    pub arguments: Value,
}

#[workflow]
#[derive(Default)]
pub struct ConformanceFixture;

#[workflow_methods]
impl ConformanceFixture {
    /// Returns `{"text": ...}`, the fixture's text result.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, call: FixtureCall) -> WorkflowResult<Value> {
        let args = &call.arguments;
        match call.tool.as_str() {
            "greet" => {
                let name = args["name"].as_str().unwrap_or("world");
                Ok(json!({"text": format!("Hello, {name}!")}))
            }
            "slow_compute" => {
                let seconds = args["seconds"].as_u64().unwrap_or(1).min(600);
                let label = args["label"].as_str().unwrap_or("job");
                sleep(ctx, Duration::from_secs(seconds)).await?;
                Ok(json!({"text": format!("{label}: computed after {seconds}s")}))
            }
            "failing_job" => {
                sleep(ctx, Duration::from_secs(1)).await?;
                Err(failure(TOOL_ERROR, "failing_job always fails"))
            }
            "protocol_error_job" => Err(failure(INTERNAL_ERROR, "protocol_error_job crashed")),
            other => Err(failure(INTERNAL_ERROR, &format!("no fixture '{other}'"))),
        }
    }
}

/// A durable sleep that ends the workflow as cancelled when it is cancelled.
async fn sleep(
    ctx: &mut WorkflowContext<ConformanceFixture>,
    duration: Duration,
) -> WorkflowResult<()> {
    if duration.is_zero() {
        return Ok(());
    }
    match ctx.timer(duration).await {
        TimerResult::Cancelled => Err(WorkflowTermination::cancelled()),
        _ => Ok(()),
    }
}

fn failure(type_name: &str, message: &str) -> WorkflowTermination {
    ApplicationFailure::builder(message.to_string())
        .type_name(type_name.to_string())
        .non_retryable(true)
        .build()
        .into()
}
