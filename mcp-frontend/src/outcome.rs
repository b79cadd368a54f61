//! What a tool call produces, whatever the protocol: MCP (`server`) and REST (`rest`) each map
//! these once to their own answers.

use changeflow_workflows::ChangeProgress;
use serde_json::{Value, json};

/// What a running call reports: how far it has come and what it is doing.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub percent: u8,
    pub message: String,
}

impl From<&ChangeProgress> for Progress {
    fn from(p: &ChangeProgress) -> Self {
        Progress {
            percent: p.percent,
            message: format!("{}: {}", p.step.as_str(), p.message),
        }
    }
}

/// Whether a long tool's caller waits for the workflow's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Wait, reporting progress (MCP without tasks).
    ForResult,
    /// Return once the workflow has started (REST 202).
    UntilStarted,
}

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

/// What came of a call.
#[derive(Debug)]
pub enum Outcome {
    /// Done: the structured result.
    Done(Value),
    /// The change ran and failed: the structured result, with the reason.
    ChangeFailed(Value),
    /// A tool result that is not structured content (the conformance fixtures).
    Tool(ToolResult),
    /// The call failed at the protocol level (a JSON-RPC error, not a tool error).
    ProtocolError(String),
    /// A long-running change was started (or found running) and not waited for;
    /// `new_change` when it is a change whose run began with this call (nothing to look up).
    Started { change_id: String, new_change: bool },
    /// The policy refused: which permission is missing and why.
    Denied {
        missing_permission: String,
        reason: String,
    },
    /// The arguments are wrong; nothing was done.
    Invalid(String),
    /// The named change does not exist.
    NotFound(String),
    /// Its state does not allow the request (a decision on a change no longer awaiting one, a
    /// close of a ticket that never reached Implement); nothing was done.
    Conflict(String),
    /// The workflow could not be started or did not complete.
    Failed(String),
    /// Refused at once: this front door has as many workflow calls running as it takes.
    /// Nothing was started; the same call later will be taken.
    Overloaded { retry_after_secs: u64 },
    /// A change's evidence bundle: its overview as the tool's result, or the bundle itself
    /// where the protocol can carry a file (REST's download).
    Evidence(Box<crate::evidence::Bundle>),
}

impl Outcome {
    /// One word for logs and metrics.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Done(_) | Outcome::Evidence(_) => "completed",
            Outcome::ChangeFailed(_) => "failed",
            Outcome::Tool(ToolResult::Structured { is_error, .. })
            | Outcome::Tool(ToolResult::Text { is_error, .. }) => {
                if *is_error {
                    "failed"
                } else {
                    "completed"
                }
            }
            Outcome::ProtocolError(_) => "error",
            Outcome::Started { .. } => "started",
            Outcome::Denied { .. } => "denied",
            Outcome::Invalid(_) => "invalid",
            Outcome::NotFound(_) => "not found",
            Outcome::Conflict(_) => "conflict",
            Outcome::Failed(_) => "failed",
            Outcome::Overloaded { .. } => "overloaded",
        }
    }

    /// The change (or other workflow) the call concerned, when its answer names one.
    pub fn change_id(&self) -> Option<String> {
        match self {
            Outcome::Started { change_id, .. } => Some(change_id.clone()),
            Outcome::Done(value) | Outcome::ChangeFailed(value) => {
                value["change_id"].as_str().map(str::to_string)
            }
            Outcome::Evidence(bundle) => Some(bundle.change_id.clone()),
            _ => None,
        }
    }

    /// A typed result as `Done`.
    pub fn done(result: impl serde::Serialize) -> Outcome {
        match serde_json::to_value(result) {
            Ok(value) => Outcome::Done(value),
            Err(e) => Outcome::Failed(format!("unserialisable result: {e}")),
        }
    }
}

/// What an overloaded front door says, whatever the protocol.
pub fn overloaded_message(retry_after_secs: u64) -> String {
    format!(
        "changeflow is temporarily overloaded: too many calls are running; nothing was done, \
         retry in {retry_after_secs} s"
    )
}

/// The audit store failed; nothing was done.
#[derive(Debug, thiserror::Error)]
#[error("the audit store is unavailable; nothing was done")]
pub struct AuditUnavailable;
