//! `TemplateDeployment`: validate → open change ticket → Implement → deploy → verify → close.
//!
//! Once a ticket exists, every way out of the workflow closes it: successful, unsuccessful with
//! the reason, or canceled when the workflow is cancelled. Progress lives in workflow state and
//! is answered by the `progress` query.

use crate::activities::ChangeActivities;
use crate::arguments::CloseCode;
use crate::failure::{FailureType, failure_message, failure_type};
use crate::types::*;
use std::time::Duration;
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, WorkflowCancellationToken, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};

#[workflow]
#[derive(Default)]
pub struct TemplateDeployment {
    progress: ChangeProgress,
}

/// Why the steps after ticket creation stopped early.
enum Interruption {
    Canceled,
    Failed(String),
}

impl From<ActivityExecutionError> for Interruption {
    fn from(err: ActivityExecutionError) -> Self {
        match err {
            ActivityExecutionError::Cancelled(_) => Interruption::Canceled,
            other => Interruption::Failed(failure_message(&other)),
        }
    }
}

#[workflow_methods]
impl TemplateDeployment {
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        request: DeploymentRequest,
    ) -> WorkflowResult<ChangeResult> {
        if let Err(reason) = request.validate() {
            return Err(invalid_request(reason));
        }

        advance(
            ctx,
            ChangeStep::Validating,
            "checking template, parameters and devices",
        );
        let validated = match ctx
            .execute_activity(
                ChangeActivities::validate_deployment,
                request.clone(),
                call_options("validate"),
            )
            .await
        {
            Ok(validated) => validated,
            Err(ActivityExecutionError::Cancelled(_)) => {
                return Err(WorkflowTermination::cancelled());
            }
            // The request itself is wrong: say so. Anything else (Catalyst Center unreachable
            // for the whole retry window, say) fails the workflow with its own error.
            Err(err)
                if failure_type(&err).as_deref() == Some(FailureType::InvalidRequest.as_str()) =>
            {
                return Err(invalid_request(failure_message(&err)));
            }
            Err(err) => {
                advance(ctx, ChangeStep::Failed, &failure_message(&err));
                return Err(err.into());
            }
        };

        advance(ctx, ChangeStep::OpeningTicket, "opening the change request");
        let new_ticket = NewChangeTicket {
            correlation_id: ctx.workflow_id().to_string(),
            short_description: request.short_description.clone().unwrap_or_else(|| {
                format!(
                    "Deploy template {} to {} device(s)",
                    validated.template_name,
                    validated.devices.len()
                )
            }),
            description: ticket_description(&validated),
            requested_by: request.requested_by.clone(),
        };
        // Not cancellable: a ticket opened while a cancellation raced it must be known to be
        // closed. A cancellation then takes effect at the next step, which closes it.
        let mut open_options = call_options("open ticket");
        open_options.cancellation_token = Some(WorkflowCancellationToken::new());
        let ticket = match ctx
            .execute_activity(
                ChangeActivities::open_change_ticket,
                new_ticket,
                open_options,
            )
            .await
        {
            Ok(ticket) => ticket,
            Err(err) => {
                advance(ctx, ChangeStep::Failed, &failure_message(&err));
                return Err(err.into());
            }
        };
        ctx.state_mut(|s| s.progress.ticket_number = Some(ticket.number.clone()));
        ctx.upsert_search_attributes([
            crate::types::search::TICKET.value_set(ticket.number.clone())
        ]);

        let deployed = Self::implement(ctx, &ticket, &validated).await;
        let (closure, notes, result) = match deployed {
            Ok(snapshot) => conclude(&ticket, snapshot),
            Err(Interruption::Canceled) => {
                advance(
                    ctx,
                    ChangeStep::ClosingTicket,
                    "change canceled; closing the ticket",
                );
                let notes = match ctx.state(|s| s.progress.task_id.clone()) {
                    Some(task) => format!(
                        "Canceled by request while Catalyst Center task {task} was running."
                    ),
                    None => "Canceled by request before deployment started.".to_string(),
                };
                Self::close(ctx, &ticket, CloseCode::Canceled, notes).await?;
                advance(
                    ctx,
                    ChangeStep::Canceled,
                    "change canceled; ticket closed as canceled",
                );
                return Err(WorkflowTermination::cancelled());
            }
            Err(Interruption::Failed(reason)) => {
                let result = ChangeResult {
                    outcome: ChangeOutcome::Failed,
                    ticket_number: ticket.number.clone(),
                    deployment_id: ctx.state(|s| s.progress.deployment_id.clone()),
                    devices: ctx.state(|s| s.progress.devices.clone()),
                    failure_reason: Some(reason.clone()),
                };
                (
                    CloseCode::Unsuccessful,
                    format!("Change failed: {reason}"),
                    result,
                )
            }
        };

        advance(ctx, ChangeStep::ClosingTicket, "closing the change request");
        Self::close(ctx, &ticket, closure, notes).await?;
        let (step, message) = match result.outcome {
            ChangeOutcome::Succeeded => (
                ChangeStep::Completed,
                "change completed successfully".to_string(),
            ),
            ChangeOutcome::Failed => (
                ChangeStep::Failed,
                result
                    .failure_reason
                    .clone()
                    .unwrap_or_else(|| "change failed".into()),
            ),
        };
        advance(ctx, step, &message);
        Ok(result)
    }

    /// The current progress of this change.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> ChangeProgress {
        self.progress.clone()
    }
}

impl TemplateDeployment {
    /// Implement → deploy → wait for the deployment to end. Returns the final snapshot.
    async fn implement(
        ctx: &mut WorkflowContext<Self>,
        ticket: &ChangeTicket,
        validated: &ValidatedDeployment,
    ) -> Result<DeploymentSnapshot, Interruption> {
        advance(
            ctx,
            ChangeStep::Implementing,
            "moving the change request to Implement",
        );
        ctx.execute_activity(
            ChangeActivities::start_implementation,
            ticket.clone(),
            call_options("implement"),
        )
        .await?;

        advance(
            ctx,
            ChangeStep::Deploying,
            "submitting the template deployment",
        );
        let submit = SubmitDeployment {
            template_id: validated.template_id.clone(),
            parameters: validated.parameters.clone(),
            devices: validated.devices.clone(),
        };
        // Its own activity, so the task id is in history before polling starts: a worker that dies
        // while polling resumes polling the same task instead of deploying again.
        let task = ctx
            .execute_activity(
                ChangeActivities::submit_deployment,
                submit,
                call_options("submit deployment"),
            )
            .await?;
        ctx.state_mut(|s| {
            s.progress.task_id = Some(task.task_id.clone());
            s.progress.devices = validated
                .devices
                .iter()
                .map(|d| DeviceStatus {
                    device: d.hostname.clone(),
                    status: "PENDING".into(),
                    message: String::new(),
                })
                .collect();
        });

        loop {
            let wait = AwaitDeployment {
                task_id: task.task_id.clone(),
                known: ctx.state(|s| s.progress.devices.clone()),
            };
            let snapshot = ctx
                .execute_activity(ChangeActivities::await_deployment, wait, await_options())
                .await?;
            record_snapshot(ctx, &snapshot);
            if snapshot.finished {
                advance(ctx, ChangeStep::Verifying, "verifying per-device status");
                return Ok(snapshot);
            }
        }
    }

    async fn close(
        ctx: &mut WorkflowContext<Self>,
        ticket: &ChangeTicket,
        closure: CloseCode,
        notes: String,
    ) -> WorkflowResult<()> {
        let close = CloseChangeTicket {
            ticket: ticket.clone(),
            closure,
            notes,
        };
        // Detached from workflow cancellation: closing the ticket is the cleanup itself.
        let mut options = call_options("close ticket");
        options.cancellation_token = Some(WorkflowCancellationToken::new());
        ctx.execute_activity(ChangeActivities::close_change_ticket, close, options)
            .await?;
        Ok(())
    }
}

/// Decides how the ticket closes from the final deployment snapshot.
fn conclude(
    ticket: &ChangeTicket,
    snapshot: DeploymentSnapshot,
) -> (CloseCode, String, ChangeResult) {
    let failed: Vec<&DeviceStatus> = snapshot.devices.iter().filter(|d| !d.succeeded()).collect();
    let failure_reason = if let Some(reason) = &snapshot.failure_reason {
        Some(reason.clone())
    } else if !failed.is_empty() {
        Some(
            failed
                .iter()
                .map(|d| {
                    format!("{}: {} {}", d.device, d.status, d.message)
                        .trim()
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    } else {
        None
    };
    let deployment = snapshot
        .deployment_id
        .clone()
        .unwrap_or_else(|| "unknown".into());
    let (outcome, closure, notes) = match &failure_reason {
        None => (
            ChangeOutcome::Succeeded,
            CloseCode::Successful,
            format!(
                "Template deployment {deployment} succeeded on {} device(s).",
                snapshot.devices.len()
            ),
        ),
        Some(reason) => (
            ChangeOutcome::Failed,
            CloseCode::Unsuccessful,
            format!("Template deployment {deployment} failed: {reason}"),
        ),
    };
    let result = ChangeResult {
        outcome,
        ticket_number: ticket.number.clone(),
        deployment_id: snapshot.deployment_id,
        devices: snapshot.devices,
        failure_reason,
    };
    (closure, notes, result)
}

fn record_snapshot(ctx: &WorkflowContext<TemplateDeployment>, snapshot: &DeploymentSnapshot) {
    ctx.state_mut(|s| {
        let p = &mut s.progress;
        p.deployment_id = snapshot.deployment_id.clone().or(p.deployment_id.take());
        p.devices = snapshot.devices.clone();
        let total = p.devices.len().max(1);
        let done = p.devices.iter().filter(|d| d.is_final()).count();
        let span = ChangeStep::Verifying.percent() - ChangeStep::Deploying.percent();
        p.percent = ChangeStep::Deploying.percent() + (span as usize * done / total) as u8;
        p.message = format!("deployed {done} of {total} device(s)");
    });
}

fn advance(ctx: &WorkflowContext<TemplateDeployment>, step: ChangeStep, message: &str) {
    ctx.state_mut(|s| {
        s.progress.step = step;
        s.progress.percent = step.percent();
        s.progress.message = message.to_string();
    });
}

fn ticket_description(validated: &ValidatedDeployment) -> String {
    let devices: Vec<String> = validated
        .devices
        .iter()
        .map(|d| format!("{} ({})", d.hostname, d.management_ip))
        .collect();
    format!(
        "Deploy Catalyst Center template \"{}\" (project {}, id {}) to: {}.\n\nRendered preview for {}:\n{}",
        validated.template_name,
        validated.project_name,
        validated.template_id,
        devices.join(", "),
        validated
            .devices
            .first()
            .map(|d| d.hostname.as_str())
            .unwrap_or("-"),
        validated.preview
    )
}

fn invalid_request(reason: String) -> WorkflowTermination {
    FailureType::InvalidRequest.terminate(format!("invalid request: {reason}"))
}

fn retry_policy() -> RetryPolicy {
    RetryPolicy::builder()
        .initial_interval(Duration::from_millis(500))
        .backoff_coefficient(2.0)
        .maximum_interval(Duration::from_secs(30))
        .build()
}

/// Ordinary calls: retried with backoff for up to ten minutes; non-retryable errors stop at once.
fn call_options(summary: &str) -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: Duration::from_secs(600),
        start_to_close: Duration::from_secs(60),
    })
    .retry_policy(retry_policy())
    .summary(summary.to_string())
    .build()
}

/// Polling: heartbeats every poll, so a dead worker is noticed within seconds and polling resumes.
fn await_options() -> ActivityOptions {
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: Duration::from_secs(3600),
        start_to_close: Duration::from_secs(300),
    })
    .heartbeat_timeout(Duration::from_secs(5))
    .retry_policy(retry_policy())
    .summary("await deployment".to_string())
    .build()
}
