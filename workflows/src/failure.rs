//! Why a step or a workflow failed, as Temporal records it: one enum of failure types (the
//! application failure's `type`) shared by the activities that raise them, the workflows that
//! react to them and the front door that maps them to answers.

use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_sdk::{ActivityExecutionError, ApplicationFailure, WorkflowTermination};

/// The application failure types changeflow records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureType {
    /// The request itself is wrong (arguments, unknown template parameters); nothing changed.
    InvalidRequest,
    /// The named ticket, template or device does not exist.
    NotFound,
    /// The downstream system refused the request (a 4xx other than 404/401/429).
    Rejected,
    /// The request is well-formed but the record's state does not allow it (closing a ticket
    /// that never reached Implement, deciding on a change that no longer awaits approval).
    Conflict,
    Unauthorized,
    RateLimited,
    Unavailable,
    Transport,
    Protocol,
    Credentials,
    Configuration,
    /// A conformance fixture's tool execution error (`isError: true`).
    ToolError,
    /// A conformance fixture's protocol-level failure (task status `failed`).
    InternalError,
}

impl FailureType {
    const ALL: [FailureType; 13] = [
        FailureType::InvalidRequest,
        FailureType::NotFound,
        FailureType::Rejected,
        FailureType::Conflict,
        FailureType::Unauthorized,
        FailureType::RateLimited,
        FailureType::Unavailable,
        FailureType::Transport,
        FailureType::Protocol,
        FailureType::Credentials,
        FailureType::Configuration,
        FailureType::ToolError,
        FailureType::InternalError,
    ];

    /// The name recorded in history.
    pub const fn as_str(self) -> &'static str {
        match self {
            FailureType::InvalidRequest => "InvalidRequest",
            FailureType::NotFound => "NotFound",
            FailureType::Rejected => "Rejected",
            FailureType::Conflict => "Conflict",
            FailureType::Unauthorized => "Unauthorized",
            FailureType::RateLimited => "RateLimited",
            FailureType::Unavailable => "Unavailable",
            FailureType::Transport => "Transport",
            FailureType::Protocol => "Protocol",
            FailureType::Credentials => "Credentials",
            FailureType::Configuration => "Configuration",
            FailureType::ToolError => "ToolError",
            FailureType::InternalError => "InternalError",
        }
    }

    /// The type of a recorded name; `None` for anything changeflow did not record.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// A non-retryable application failure of this type that ends a workflow.
    pub fn terminate(self, message: impl Into<String>) -> WorkflowTermination {
        ApplicationFailure::builder(message.into())
            .type_name(self.as_str().to_string())
            .non_retryable(true)
            .build()
            .into()
    }
}

/// The root cause of an activity failure: the activity's own error, not "activity task failed".
fn root_cause(err: &ActivityExecutionError) -> Option<&Failure> {
    let mut failure = err.failure()?;
    while let Some(cause) = failure.cause.as_deref() {
        failure = cause;
    }
    Some(failure)
}

/// The application error type of the root cause, as recorded.
pub fn failure_type(err: &ActivityExecutionError) -> Option<String> {
    match &root_cause(err)?.failure_info {
        Some(FailureInfo::ApplicationFailureInfo(info)) => Some(info.r#type.clone()),
        _ => None,
    }
}

/// The root cause's message.
pub fn failure_message(err: &ActivityExecutionError) -> String {
    root_cause(err)
        .map(|f| f.message.clone())
        .unwrap_or_else(|| err.to_string())
}

/// Fails the workflow with the activity's own error (message and type), not "activity failed".
pub fn root_application_failure(err: &ActivityExecutionError) -> WorkflowTermination {
    ApplicationFailure::builder(failure_message(err))
        .type_name(failure_type(err).unwrap_or_default())
        .non_retryable(true)
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_back_from_its_name() {
        for t in FailureType::ALL {
            assert_eq!(FailureType::parse(t.as_str()), Some(t));
        }
        assert_eq!(FailureType::parse("Whatever"), None);
    }
}
