//! `ConformanceFixture`: the fixture tools the MCP conformance suite expects (`greet`,
//! `slow_compute`, `failing_job`, `protocol_error_job`, `confirm_delete`, `multi_input`,
//! `test_simple_text`, `test_error_handling`, `test_tool_with_progress`, `test_tool_with_task`),
//! each
//! a workflow like every other tool. Only `changeflow conformance-server`, a loopback-only test
//! profile, exposes them.
//!
//! `confirm_delete` and `multi_input` wait for client input: they publish their outstanding
//! input requests (`pending_input` query, which makes the MCP task `input_required`) and take
//! the answers through the `respond` update (`tasks/update`).

use crate::failure::FailureType;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    SyncWorkflowContext, TimerResult, WorkflowContext, WorkflowContextView, WorkflowResult,
    WorkflowTermination,
};

/// One fixture call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixtureCall {
    pub tool: String,
    #[serde(default)]
    pub arguments: Value,
}

#[workflow]
#[derive(Default)]
pub struct ConformanceFixture {
    /// Input requests not answered yet, by key: `{"method": "elicitation/create", "params": ...}`.
    pending: BTreeMap<String, Value>,
    /// Answers received, by key.
    answers: BTreeMap<String, Value>,
    /// Progress of `test_tool_with_progress`.
    progress: Option<FixtureProgress>,
}

/// How far a fixture has come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixtureProgress {
    pub percent: u8,
    pub message: String,
}

#[workflow_methods]
impl ConformanceFixture {
    /// Returns `{"text": ...}`, the fixture's text result.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, call: FixtureCall) -> WorkflowResult<Value> {
        let args = &call.arguments;
        match call.tool.as_str() {
            "greet" | "test_tool_with_task" => {
                let name = args["name"].as_str().unwrap_or("world");
                Ok(json!({"text": format!("Hello, {name}!")}))
            }
            "test_simple_text" => {
                Ok(json!({"text": "This is a simple text response for testing."}))
            }
            "test_tool_with_progress" => {
                for (percent, message) in [(0, "starting"), (50, "halfway"), (100, "finishing")] {
                    ctx.state_mut(|s| {
                        s.progress = Some(FixtureProgress {
                            percent,
                            message: message.into(),
                        })
                    });
                    sleep(ctx, Duration::from_millis(700)).await?;
                }
                Ok(json!({"text": "done, with progress"}))
            }
            "test_error_handling" => {
                Err(FailureType::ToolError.terminate("This tool always fails, on purpose"))
            }
            "slow_compute" => {
                let seconds = args["seconds"].as_u64().unwrap_or(1).min(600);
                let label = args["label"].as_str().unwrap_or("job");
                sleep(ctx, Duration::from_secs(seconds)).await?;
                Ok(json!({"text": format!("{label}: computed after {seconds}s")}))
            }
            "failing_job" => {
                sleep(ctx, Duration::from_secs(1)).await?;
                Err(FailureType::ToolError.terminate("failing_job always fails"))
            }
            "protocol_error_job" => {
                Err(FailureType::InternalError.terminate("protocol_error_job crashed"))
            }
            "confirm_delete" => {
                let file = args["filename"].as_str().unwrap_or("the file").to_string();
                let answers =
                    ask(ctx, [("confirm", confirmation(&format!("Delete {file}?")))]).await?;
                let confirmed = accepted(&answers["confirm"])
                    && answers["confirm"]["content"]["confirm"] == true;
                let text = if confirmed {
                    format!("deleted {file}")
                } else {
                    format!("kept {file}")
                };
                Ok(json!({"text": text}))
            }
            "multi_input" => {
                let answers = ask(
                    ctx,
                    [
                        (
                            "name",
                            elicitation(
                                "Your name?",
                                json!({"name": {"type": "string"}}),
                                &["name"],
                            ),
                        ),
                        ("confirm", confirmation("Proceed?")),
                    ],
                )
                .await?;
                let name = answers["name"]["content"]["name"]
                    .as_str()
                    .unwrap_or("nobody");
                Ok(json!({"text": format!("{name} answered {} request(s)", answers.len())}))
            }
            other => Err(FailureType::InternalError.terminate(format!("no fixture '{other}'"))),
        }
    }

    /// How far the fixture has come, if it reports progress.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> Option<FixtureProgress> {
        self.progress.clone()
    }

    /// The input requests still waiting for an answer.
    #[query]
    pub fn pending_input(&self, _ctx: &WorkflowContextView) -> BTreeMap<String, Value> {
        self.pending.clone()
    }

    /// Answers to outstanding input requests; keys that are not outstanding are ignored.
    /// An update, so the answer is applied before the caller is acknowledged.
    #[update]
    pub fn respond(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        responses: BTreeMap<String, Value>,
    ) -> usize {
        for (key, answer) in responses {
            if self.pending.remove(&key).is_some() {
                self.answers.insert(key, answer);
            }
        }
        self.pending.len()
    }
}

/// Publishes input requests and waits until every one is answered; returns the answers.
async fn ask<const N: usize>(
    ctx: &mut WorkflowContext<ConformanceFixture>,
    requests: [(&str, Value); N],
) -> WorkflowResult<BTreeMap<String, Value>> {
    ctx.state_mut(|s| {
        for (key, request) in requests {
            s.pending.insert(key.to_string(), request);
        }
    });
    ctx.wait_condition(|s| s.pending.is_empty()).await?;
    Ok(ctx.state(|s| s.answers.clone()))
}

fn elicitation(message: &str, properties: Value, required: &[&str]) -> Value {
    json!({
        "method": "elicitation/create",
        "params": {
            "mode": "form",
            "message": message,
            "requestedSchema": {"type": "object", "properties": properties, "required": required}
        }
    })
}

fn confirmation(message: &str) -> Value {
    elicitation(
        message,
        json!({"confirm": {"type": "boolean"}}),
        &["confirm"],
    )
}

fn accepted(answer: &Value) -> bool {
    answer["action"] == "accept"
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
