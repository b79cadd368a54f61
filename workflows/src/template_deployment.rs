//! `TemplateDeployment`: a governed change. Validate → open the change ticket (its type, window
//! and justification) → approval (normal and emergency changes: wait, durably, for an
//! approver's decision, made through the `decide` update or in ServiceNow) → Scheduled → wait
//! for the window (normal and standard changes) → device locks → Implement → pre-check (each
//! device's baseline) → deploy → post-check → close. A deployment that fails on some devices,
//! fails its post-check or is canceled is backed out on the devices it changed, which are then
//! checked again; a back-out that fails ends the change `backout_failed`, naming the devices.
//!
//! Once a ticket exists, every way out of the workflow closes it: successful, unsuccessful with
//! the reason, or canceled (by request, rejection, no decision in time, a missed window).
//! Progress lives in workflow state and is answered by the `progress` query. Time is workflow
//! time only.

use crate::activities::ChangeActivities;
use crate::arguments::{ChangeType, CloseCode, TicketState, Window};
use crate::device_lock::{DeviceLock, LockHolder, LockNews, LockRequest, lock_id};
use crate::failure::{FailureType, failure_message, failure_type};
use crate::github::{
    GitSource, ResolveTemplateSource, ResolvedSource, SyncTemplate, SyncedTemplate,
};
use crate::types::*;
use std::collections::BTreeMap;
use std::time::Duration;
use temporalio_common::{ActivityCloseTimeouts, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ChildWorkflowOptions, ChildWorkflowStartError,
    ParentClosePolicy, SignalWorkflowOptions, StartChildWorkflowExecutionFailedCause,
    SyncWorkflowContext, WorkflowCancellationToken, WorkflowContext, WorkflowContextView,
    WorkflowIdReusePolicy, WorkflowResult, WorkflowTermination,
};

#[workflow]
#[derive(Default)]
pub struct TemplateDeployment {
    progress: ChangeProgress,
    /// Who asked for the change: never its approver.
    requested_by: String,
    /// A decision accepted by the `decide` update, not yet written to ServiceNow.
    decision: Option<ApprovalDecision>,
    /// What the locks of devices this change waits for have told it, by device.
    lock_news: BTreeMap<String, LockNews>,
    /// When the change started (workflow time, seconds since the epoch).
    started_at: i64,
}

/// Why the steps after ticket creation stopped early.
enum Interruption {
    /// Cancelled by request; what was done about a deployment in flight, if one was.
    Canceled(Option<String>),
    Failed(String),
    /// The change failed and was undone on every device it changed: why, and per device.
    BackedOut {
        reason: String,
        report: String,
    },
    /// The change failed and undoing it failed: why, and per device (`needs_attention`).
    BackoutFailed {
        reason: String,
        report: String,
    },
    /// An approver rejected the change.
    Rejected(String),
    /// No decision in time, or the window was missed.
    Expired(String),
}

/// What ended a wait for approval.
enum Woken {
    Update,
    Polled(Box<Result<ApprovalDecision, ActivityExecutionError>>),
    TimedOut,
    Cancelled,
}

impl From<ActivityExecutionError> for Interruption {
    fn from(err: ActivityExecutionError) -> Self {
        match err {
            ActivityExecutionError::Cancelled(_) => Interruption::Canceled(None),
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
        let window = request.change.window().ok().flatten();
        let started_at = now_secs(ctx);
        ctx.state_mut(|s| {
            s.started_at = started_at;
            s.requested_by = request.requested_by.clone();
            s.progress.change_type = request.change.change_type;
            s.progress.window_start = window.map(|w| rfc3339(w.start));
            s.progress.window_end = window.map(|w| rfc3339(w.end));
        });

        let mut request = request;
        let source = match &request.change.source {
            Some(source) => match Self::sync_from_git(
                ctx,
                source,
                request.source_commit.as_deref(),
                &request.requested_by,
            )
            .await
            {
                Ok((resolved, synced)) => {
                    request.change.template_id = Some(synced.version_id.clone());
                    Some(resolved)
                }
                Err(stop) => return Err(stop),
            },
            None => None,
        };

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
            short_description: request.change.short_description.clone().unwrap_or_else(|| {
                format!(
                    "Deploy template {} to {} device(s)",
                    validated.template_name,
                    validated.devices.len()
                )
            }),
            description: ticket_description(&validated),
            requested_by: request.requested_by.clone(),
            change_type: request.change.change_type,
            justification: request.change.justification.clone(),
            window,
            work_note: source
                .as_ref()
                .map(|s| format!("Template from Git: {}", s.describe())),
        };
        // Not cancellable: a ticket opened while a cancellation raced it must be known to be
        // closed. A cancellation then takes effect at the next step, which closes it.
        let open_options = detach(call_options("open ticket"), true);
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

        let governed = Self::govern(ctx, &ticket, &request, window).await;
        let deployed = match governed {
            Ok(()) => {
                Self::implement(ctx, &ticket, &validated, &request.verification, window).await
            }
            Err(stop) => Err(stop),
        };
        let (closure, notes, result) = match deployed {
            Ok(()) => {
                let deployment = ctx
                    .state(|s| s.progress.deployment_id.clone())
                    .unwrap_or_else(|| "unknown".into());
                (
                    CloseCode::Successful,
                    format!(
                        "Template deployment {deployment} succeeded on {} device(s); post-change checks passed.",
                        validated.devices.len()
                    ),
                    result(ctx, &ticket, ChangeOutcome::Succeeded, None),
                )
            }
            Err(Interruption::Canceled(done)) => {
                advance(
                    ctx,
                    ChangeStep::ClosingTicket,
                    "change canceled; closing the ticket",
                );
                let notes = match (done, ctx.state(|s| s.progress.task_id.clone())) {
                    (Some(done), _) => format!("Canceled by request during deployment. {done}"),
                    (None, Some(task)) => format!(
                        "Canceled by request while Catalyst Center task {task} was running."
                    ),
                    (None, None) => "Canceled by request before deployment started.".to_string(),
                };
                Self::close(
                    ctx,
                    &ticket,
                    CloseCode::Canceled,
                    notes,
                    ChangeOutcome::Canceled,
                )
                .await?;
                advance(
                    ctx,
                    ChangeStep::Canceled,
                    "change canceled; ticket closed as canceled",
                );
                return Err(WorkflowTermination::cancelled());
            }
            Err(Interruption::Failed(reason)) => (
                CloseCode::Unsuccessful,
                format!("Change failed: {reason}"),
                result(ctx, &ticket, ChangeOutcome::Failed, Some(reason)),
            ),
            Err(Interruption::BackedOut { reason, report }) => (
                CloseCode::Unsuccessful,
                format!("Backed out: {reason}\n\nPer device: {report}"),
                result(
                    ctx,
                    &ticket,
                    ChangeOutcome::Failed,
                    Some(format!("backed out: {reason}")),
                ),
            ),
            Err(Interruption::BackoutFailed { reason, report }) => {
                let devices = ctx.state(|s| s.progress.verified.needs_attention.join(", "));
                (
                    CloseCode::Unsuccessful,
                    format!(
                        "BACK-OUT FAILED - MANUAL INTERVENTION REQUIRED on {devices}.\n\nThe change failed ({reason}) and undoing it did not succeed on those devices; they may carry part of the change.\n\nPer device: {report}"
                    ),
                    result(
                        ctx,
                        &ticket,
                        ChangeOutcome::BackoutFailed,
                        Some(format!(
                            "back-out failed on {devices} (needs manual intervention): {reason}"
                        )),
                    ),
                )
            }
            Err(Interruption::Rejected(reason)) => (
                CloseCode::Canceled,
                reason.clone(),
                result(ctx, &ticket, ChangeOutcome::Rejected, Some(reason)),
            ),
            Err(Interruption::Expired(reason)) => (
                CloseCode::Canceled,
                format!("Change canceled: {reason}"),
                result(ctx, &ticket, ChangeOutcome::Canceled, Some(reason)),
            ),
        };

        advance(ctx, ChangeStep::ClosingTicket, "closing the change request");
        Self::close(ctx, &ticket, closure, notes, result.outcome).await?;
        let message = match result.outcome {
            ChangeOutcome::Succeeded => "change completed successfully".to_string(),
            _ => result
                .failure_reason
                .clone()
                .unwrap_or_else(|| "change failed".into()),
        };
        advance(ctx, result.outcome.final_step(), &message);
        Ok(result)
    }

    /// The current progress of this change.
    #[query]
    pub fn progress(&self, _ctx: &WorkflowContextView) -> ChangeProgress {
        self.progress.clone()
    }

    /// Refuses a decision the change cannot take, before it enters history: the requester's
    /// own (whatever the policy said), one while no approval is awaited, one by somebody who
    /// is not an approver, a rejection without a comment.
    #[update_validator(decide)]
    fn validate_decide(
        &self,
        _ctx: &WorkflowContextView,
        decision: &ApprovalDecision,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if decision.approver == self.requested_by {
            return Err(format!(
                "{} requested this change and cannot approve or reject it",
                decision.approver
            )
            .into());
        }
        if self.progress.step != ChangeStep::AwaitingApproval || self.decision.is_some() {
            return Err(format!(
                "the change is not awaiting approval (it is {})",
                self.progress.step.as_str()
            )
            .into());
        }
        if !self.progress.approvers.contains(&decision.approver) {
            return Err(format!(
                "{} is not an approver of this change (approvers: {})",
                decision.approver,
                self.progress.approvers.join(", ")
            )
            .into());
        }
        if decision.verdict == Verdict::Rejected && decision.comment.trim().is_empty() {
            return Err("a rejection needs a comment saying why".into());
        }
        Ok(())
    }

    /// News from the lock of a device this change waits for: who holds it, or that it is free.
    #[signal]
    pub fn device_news(&mut self, _ctx: &mut SyncWorkflowContext<Self>, news: LockNews) {
        self.lock_news.insert(news.device.clone(), news);
    }

    /// An approver's decision, delivered as an update so the caller learns at once whether it
    /// was accepted. The workflow writes it to ServiceNow and acts on it.
    #[update]
    pub fn decide(
        &mut self,
        _ctx: &mut SyncWorkflowContext<Self>,
        decision: ApprovalDecision,
    ) -> DecisionReceipt {
        let receipt = DecisionReceipt {
            approver: decision.approver.clone(),
            verdict: decision.verdict,
            ticket_number: self.progress.ticket_number.clone(),
        };
        self.decision = Some(decision);
        receipt
    }
}

impl TemplateDeployment {
    /// Approval (normal and emergency changes), then Scheduled and the window (normal and
    /// standard changes). Returns when the change may be implemented.
    async fn govern(
        ctx: &mut WorkflowContext<Self>,
        ticket: &ChangeTicket,
        request: &DeploymentRequest,
        window: Option<Window>,
    ) -> Result<(), Interruption> {
        let change_type = request.change.change_type;
        if change_type.needs_approval() {
            // Entering Authorize creates the approval records in ServiceNow.
            Self::advance_ticket(ctx, ticket, change_type, TicketState::Authorize).await?;
            Self::await_approval(ctx, ticket, request).await?;
        }
        Self::advance_ticket(ctx, ticket, change_type, TicketState::Scheduled).await?;
        let Some(window) = window.filter(|_| change_type.waits_for_window()) else {
            return Ok(());
        };
        let now = now_secs(ctx);
        if now >= window.end {
            return Err(Interruption::Expired(format!(
                "missed its window: it could start only at {}, after the window ended at {}",
                rfc3339(now),
                rfc3339(window.end)
            )));
        }
        if now < window.start {
            wait_on(
                ctx,
                ChangeStep::Scheduled,
                format!(
                    "scheduled: waits for its window, {} to {}",
                    rfc3339(window.start),
                    rfc3339(window.end)
                ),
            );
            let wait = Duration::from_secs((window.start - now) as u64);
            temporalio_sdk::workflows::select! {
                _ = ctx.timer(wait) => {}
                _ = ctx.cancelled() => {}
            }
            if ctx.cancellation_token().is_cancelled() {
                return Err(Interruption::Canceled(None));
            }
        }
        Ok(())
    }

    /// Waits for the change's approval: a decision through the `decide` update, or one made in
    /// ServiceNow (seen by a polling activity), until the approval timeout.
    async fn await_approval(
        ctx: &mut WorkflowContext<Self>,
        ticket: &ChangeTicket,
        request: &DeploymentRequest,
    ) -> Result<(), Interruption> {
        let timeout = request
            .change
            .approval_timeout_secs()
            .unwrap_or(crate::limits::DEFAULT_APPROVAL_TIMEOUT_SECS);
        let deadline = now_secs(ctx) + timeout as i64;
        loop {
            let pending = ctx
                .execute_activity(
                    ChangeActivities::pending_approvers,
                    ticket.clone(),
                    call_options("pending approvers"),
                )
                .await?;
            ctx.state_mut(|s| s.progress.approvers = pending.approvers.clone());
            let by = if pending.approvers.is_empty() {
                "an approver (ServiceNow lists none yet)".to_string()
            } else {
                pending.approvers.join(" or ")
            };
            wait_on(
                ctx,
                ChangeStep::AwaitingApproval,
                format!("awaiting approval by {by}"),
            );
            ctx.upsert_search_attributes([search::APPROVERS.value_set(pending.approvers)]);

            let polling = ctx.cancellation_token().child_token();
            let mut options = poll_options(request.approval_poll_secs, timeout);
            options.cancellation_token = Some(polling.clone());
            let remaining =
                Duration::from_secs(deadline.saturating_sub(now_secs(ctx)).max(0) as u64);
            let woken = temporalio_sdk::workflows::select! {
                woke = ctx.wait_condition(|s: &Self| s.decision.is_some()) => match woke {
                    Ok(()) => Woken::Update,
                    Err(_) => Woken::Cancelled,
                },
                polled = ctx.execute_activity(
                    ChangeActivities::await_approval,
                    AwaitApproval { ticket: ticket.clone(), poll_secs: request.approval_poll_secs },
                    options,
                ) => Woken::Polled(Box::new(polled)),
                _ = ctx.timer(remaining) => Woken::TimedOut,
            };
            polling.cancel();
            ctx.upsert_search_attributes([search::APPROVERS.value_set(Vec::new())]);
            let decision = match woken {
                Woken::Cancelled => return Err(Interruption::Canceled(None)),
                Woken::TimedOut => {
                    return Err(Interruption::Expired(format!(
                        "no approval decision within {}",
                        request.change.approval_timeout.as_deref().unwrap_or("168h")
                    )));
                }
                Woken::Polled(polled) => match *polled {
                    Ok(decision) => {
                        note_decision(ctx, &decision);
                        decision
                    }
                    Err(ActivityExecutionError::Cancelled(_)) => {
                        return Err(Interruption::Canceled(None));
                    }
                    Err(err) => return Err(Interruption::Failed(failure_message(&err))),
                },
                Woken::Update => {
                    let Some(decision) = ctx.state_mut(|s| s.decision.take()) else {
                        continue;
                    };
                    note_decision(ctx, &decision);
                    let written = RecordDecision {
                        ticket: ticket.clone(),
                        decision: decision.clone(),
                    };
                    let rollup = ctx
                        .execute_activity(
                            ChangeActivities::record_decision,
                            written,
                            call_options("record decision"),
                        )
                        .await?;
                    match rollup {
                        ApprovalRollup::Requested => continue,
                        ApprovalRollup::Approved => ApprovalDecision {
                            verdict: Verdict::Approved,
                            ..decision
                        },
                        ApprovalRollup::Rejected => ApprovalDecision {
                            verdict: Verdict::Rejected,
                            ..decision
                        },
                    }
                }
            };
            return match decision.verdict {
                Verdict::Approved => Ok(()),
                Verdict::Rejected => Err(Interruption::Rejected(format!(
                    "Rejected by {}: {}",
                    decision.approver,
                    if decision.comment.is_empty() {
                        "no comment given"
                    } else {
                        decision.comment.as_str()
                    }
                ))),
            };
        }
    }

    async fn advance_ticket(
        ctx: &mut WorkflowContext<Self>,
        ticket: &ChangeTicket,
        change_type: ChangeType,
        to: TicketState,
    ) -> Result<(), Interruption> {
        let advance = AdvanceTicket {
            ticket: ticket.clone(),
            change_type,
            to,
        };
        ctx.execute_activity(
            ChangeActivities::advance_ticket,
            advance,
            call_options("advance ticket"),
        )
        .await?;
        Ok(())
    }

    /// Device locks → Implement → pre-check → deploy → post-check, backing out when the
    /// deployment fails on a device, its post-check fails or it is canceled; the locks are
    /// released when all of that is over.
    async fn implement(
        ctx: &mut WorkflowContext<Self>,
        ticket: &ChangeTicket,
        validated: &ValidatedDeployment,
        verification: &Verification,
        window: Option<Window>,
    ) -> Result<(), Interruption> {
        let locks = Self::acquire_devices(ctx, ticket, validated, window).await?;
        let outcome = Self::deploy_verified(ctx, ticket, validated, verification, window).await;
        for device in &locks {
            // A lock that cannot be told ends with this change anyway (parent close).
            let _ = ctx
                .external_workflow(lock_id(device), None)
                .signal(DeviceLock::release, (), SignalWorkflowOptions::default())
                .await;
        }
        outcome
    }

    async fn deploy_verified(
        ctx: &mut WorkflowContext<Self>,
        ticket: &ChangeTicket,
        validated: &ValidatedDeployment,
        verification: &Verification,
        window: Option<Window>,
    ) -> Result<(), Interruption> {
        let change_type = ctx.state(|s| s.progress.change_type);
        if let Some(window) = window.filter(|_| change_type.waits_for_window())
            && now_secs(ctx) >= window.end
        {
            return Err(Interruption::Expired(format!(
                "missed its window: it ended at {} before the deployment could start",
                rfc3339(window.end)
            )));
        }
        advance(
            ctx,
            ChangeStep::Implementing,
            "moving the change request to Implement",
        );
        Self::advance_ticket(ctx, ticket, change_type, TicketState::Implement).await?;

        let plan = &verification.checks;
        advance(
            ctx,
            ChangeStep::PreChecking,
            &format!(
                "capturing each device's baseline ({})",
                plan.commands.join(", ")
            ),
        );
        let pre = Self::check(
            ctx,
            CheckPhase::PreChange,
            &validated.devices,
            &CheckPlan {
                commands: plan.commands.clone(),
                rules: vec![Rule::Reachable],
            },
            validated,
            BTreeMap::new(),
            false,
        )
        .await?;
        let unready = failing(&pre);
        if !unready.is_empty() {
            return Err(Interruption::Failed(format!(
                "pre-change check failed, nothing was deployed: {}",
                unready.join("; ")
            )));
        }
        let baseline: BTreeMap<String, String> = pre
            .iter()
            .map(|c| (c.device.clone(), c.snapshot.clone()))
            .collect();

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
        let deployed = Self::deploy(ctx, Deployed::Change, submit, false).await;
        let (snapshot, canceled) = match deployed {
            Ok(snapshot) => (snapshot, false),
            Err(ActivityExecutionError::Cancelled(_)) => {
                // Catalyst Center cannot stop a deployment: let it end, then undo what it did.
                let Some(task_id) = ctx.state(|s| s.progress.task_id.clone()) else {
                    return Err(Interruption::Canceled(None));
                };
                let snapshot = Self::follow(ctx, Deployed::Change, task_id, true)
                    .await
                    .map_err(|e| Interruption::Failed(failure_message(&e)))?;
                (snapshot, true)
            }
            Err(err) => return Err(err.into()),
        };
        let changed: Vec<DeviceRef> = validated
            .devices
            .iter()
            .filter(|d| {
                snapshot
                    .devices
                    .iter()
                    .any(|s| s.device == d.hostname && s.succeeded())
            })
            .cloned()
            .collect();
        if canceled {
            return Self::back_out_canceled(ctx, validated, verification, &changed, &baseline)
                .await;
        }
        if let Some(reason) = deployment_failure(&snapshot) {
            let deployment = snapshot.deployment_id.as_deref().unwrap_or("unknown");
            return Self::back_out(
                ctx,
                validated,
                verification,
                &changed,
                format!("template deployment {deployment} failed: {reason}"),
                &baseline,
            )
            .await;
        }

        advance(
            ctx,
            ChangeStep::Verifying,
            "checking the devices after the change",
        );
        // Detached: a cancellation now still finds the devices changed, and backs them out.
        let post = Self::check(
            ctx,
            CheckPhase::PostChange,
            &validated.devices,
            plan,
            validated,
            baseline.clone(),
            true,
        )
        .await?;
        if ctx.cancellation_token().is_cancelled() {
            return Self::back_out_canceled(ctx, validated, verification, &changed, &baseline)
                .await;
        }
        let failing = failing(&post);
        if failing.is_empty() {
            return Ok(());
        }
        Self::back_out(
            ctx,
            validated,
            verification,
            &changed,
            format!("post-change check failed: {}", failing.join("; ")),
            &baseline,
        )
        .await
    }

    /// A change canceled once its deployment ran: backed out, and canceled if that worked.
    async fn back_out_canceled(
        ctx: &mut WorkflowContext<Self>,
        validated: &ValidatedDeployment,
        verification: &Verification,
        changed: &[DeviceRef],
        baseline: &BTreeMap<String, String>,
    ) -> Result<(), Interruption> {
        if changed.is_empty() {
            return Err(Interruption::Canceled(Some(
                "No device was changed, so nothing was backed out.".into(),
            )));
        }
        let undone = Self::back_out(
            ctx,
            validated,
            verification,
            changed,
            "canceled by request".into(),
            baseline,
        )
        .await;
        match undone {
            Err(Interruption::BackedOut { report, .. }) => Err(Interruption::Canceled(Some(
                format!("The deployment was backed out. Per device: {report}"),
            ))),
            other => other,
        }
    }

    /// Undoes the change on the devices it changed (never on the others), then checks them
    /// again. Detached from cancellation: a back-out always runs to its end. Returns
    /// `BackedOut` when every device is restored, `BackoutFailed` (naming the devices in
    /// `needs_attention`) otherwise.
    async fn back_out(
        ctx: &mut WorkflowContext<Self>,
        validated: &ValidatedDeployment,
        verification: &Verification,
        changed: &[DeviceRef],
        reason: String,
        baseline: &BTreeMap<String, String>,
    ) -> Result<(), Interruption> {
        if changed.is_empty() {
            return Err(Interruption::Failed(format!(
                "{reason}; no device was changed, so there is nothing to back out"
            )));
        }
        let names: Vec<String> = changed.iter().map(|d| d.hostname.clone()).collect();
        let Some(plan) = verification.backout.clone() else {
            ctx.state_mut(|s| s.progress.verified.needs_attention = names.clone());
            return Err(Interruption::BackoutFailed {
                report: format!(
                    "{} carry the change: the request named no back-out and the template declares no inverse",
                    names.join(", ")
                ),
                reason,
            });
        };
        advance(
            ctx,
            ChangeStep::BackingOut,
            &format!("backing out on {}: {reason}", names.join(", ")),
        );
        ctx.state_mut(|s| {
            s.progress.verified.backout = Some(BackoutProgress {
                reason: reason.clone(),
                template_id: plan.template_id.clone(),
                task_id: None,
                deployment_id: None,
                devices: pending(changed),
            })
        });
        let submit = SubmitDeployment {
            template_id: plan.template_id.clone(),
            parameters: plan
                .parameters
                .clone()
                .unwrap_or_else(|| validated.parameters.clone()),
            devices: changed.to_vec(),
        };
        let mut attention: Vec<String> = Vec::new();
        let mut report: Vec<String> = Vec::new();
        match Self::deploy(ctx, Deployed::Backout, submit, true).await {
            Ok(snapshot) => {
                for device in &snapshot.devices {
                    if !device.succeeded() {
                        attention.push(device.device.clone());
                        report.push(format!(
                            "{}: back-out deployment {} {}",
                            device.device, device.status, device.message
                        ));
                    }
                }
            }
            Err(err) => {
                attention = names.clone();
                report.push(format!(
                    "back-out deployment failed: {}",
                    failure_message(&err)
                ));
            }
        }
        let undone: Vec<DeviceRef> = changed
            .iter()
            .filter(|d| !attention.contains(&d.hostname))
            .cloned()
            .collect();
        if !undone.is_empty() {
            let checked = Self::check(
                ctx,
                CheckPhase::PostBackout,
                &undone,
                &verification.checks.for_backout(),
                validated,
                baseline.clone(),
                true,
            )
            .await;
            match checked {
                Ok(checks) => {
                    for check in checks {
                        if check.passed {
                            report.push(format!("{}: backed out, checks passed", check.device));
                        } else {
                            report.push(format!(
                                "{}: backed out but checks failed ({})",
                                check.device,
                                check.summary()
                            ));
                            attention.push(check.device.clone());
                        }
                    }
                }
                Err(err) => {
                    report.push(format!(
                        "post-back-out check failed: {}",
                        failure_message(&err)
                    ));
                    attention.extend(undone.iter().map(|d| d.hostname.clone()));
                }
            }
        }
        for device in &validated.devices {
            if !names.contains(&device.hostname) {
                report.push(format!("{}: not changed, left alone", device.hostname));
            }
        }
        let report = report.join("; ");
        if attention.is_empty() {
            return Err(Interruption::BackedOut { reason, report });
        }
        attention.sort();
        attention.dedup();
        ctx.state_mut(|s| s.progress.verified.needs_attention = attention);
        Err(Interruption::BackoutFailed { reason, report })
    }

    /// Submits a deployment and follows it to its end. Submitting is its own activity, so the
    /// task id is in history before polling starts: a worker that dies while polling resumes
    /// polling the same task instead of deploying again.
    async fn deploy(
        ctx: &mut WorkflowContext<Self>,
        which: Deployed,
        submit: SubmitDeployment,
        detached: bool,
    ) -> Result<DeploymentSnapshot, ActivityExecutionError> {
        let pending = pending(&submit.devices);
        // Not cancellable: a deployment submitted while a cancellation raced it must be known,
        // so that it can be followed and backed out.
        let options = detach(call_options(which.summary()), true);
        let task = ctx
            .execute_activity(ChangeActivities::submit_deployment, submit, options)
            .await?;
        ctx.state_mut(|s| match which {
            Deployed::Change => {
                s.progress.task_id = Some(task.task_id.clone());
                s.progress.devices = pending;
            }
            Deployed::Backout => {
                if let Some(b) = s.progress.verified.backout.as_mut() {
                    b.task_id = Some(task.task_id.clone());
                    b.devices = pending;
                }
            }
        });
        Self::follow(ctx, which, task.task_id, detached).await
    }

    /// Polls a deployment until it ends, recording each snapshot.
    async fn follow(
        ctx: &mut WorkflowContext<Self>,
        which: Deployed,
        task_id: String,
        detached: bool,
    ) -> Result<DeploymentSnapshot, ActivityExecutionError> {
        loop {
            let known = ctx.state(|s| match which {
                Deployed::Change => s.progress.devices.clone(),
                Deployed::Backout => s
                    .progress
                    .verified
                    .backout
                    .as_ref()
                    .map(|b| b.devices.clone())
                    .unwrap_or_default(),
            });
            let wait = AwaitDeployment {
                task_id: task_id.clone(),
                known,
            };
            let options = detach(await_options(), detached);
            let snapshot = ctx
                .execute_activity(ChangeActivities::await_deployment, wait, options)
                .await?;
            record_snapshot(ctx, which, &snapshot);
            if snapshot.finished {
                return Ok(snapshot);
            }
        }
    }

    /// Runs one round of device checks and records the verdicts.
    #[allow(clippy::too_many_arguments)]
    async fn check(
        ctx: &mut WorkflowContext<Self>,
        phase: CheckPhase,
        devices: &[DeviceRef],
        plan: &CheckPlan,
        validated: &ValidatedDeployment,
        baseline: BTreeMap<String, String>,
        detached: bool,
    ) -> Result<Vec<DeviceCheck>, ActivityExecutionError> {
        let input = CheckDevices {
            change_id: ctx.workflow_id().to_string(),
            phase,
            devices: devices.to_vec(),
            commands: plan.commands.clone(),
            rules: plan.rules.clone(),
            rendered: validated.preview.clone(),
            parameters: validated.parameters.clone(),
            baseline,
        };
        let options = detach(call_options(&format!("{} check", phase.as_str())), detached);
        let checks = ctx
            .execute_activity(ChangeActivities::check_devices, input, options)
            .await?;
        ctx.state_mut(|s| s.progress.verified.checks.extend(checks.iter().cloned()));
        Ok(checks)
    }

    /// Takes every device of the change, one at a time in name order, so two changes never
    /// wait for each other; while another change holds one, the change is `waiting_for_device`
    /// and says which change (and ticket) holds it. Each lock is a child workflow that ends
    /// when it is released or this change ends.
    async fn acquire_devices(
        ctx: &mut WorkflowContext<Self>,
        ticket: &ChangeTicket,
        validated: &ValidatedDeployment,
        window: Option<Window>,
    ) -> Result<Vec<String>, Interruption> {
        let mut devices: Vec<String> = validated
            .devices
            .iter()
            .map(|d| d.hostname.clone())
            .collect();
        devices.sort();
        devices.dedup();
        let holder = LockHolder {
            change_id: ctx.workflow_id().to_string(),
            ticket_number: Some(ticket.number.clone()),
        };
        let change_type = ctx.state(|s| s.progress.change_type);
        let mut locks = Vec::new();
        for device in devices {
            loop {
                let request = LockRequest {
                    device: device.clone(),
                    holder: holder.clone(),
                };
                let options = ChildWorkflowOptions::builder()
                    .workflow_id(lock_id(&device))
                    .parent_close_policy(ParentClosePolicy::Terminate)
                    .id_reuse_policy(WorkflowIdReusePolicy::AllowDuplicate)
                    .static_summary(format!("{device} held by {}", ticket.number))
                    .build();
                let started = ctx
                    .start_child_workflow(DeviceLock::run, request, options)
                    .await;
                match started {
                    Ok(_lock) => {
                        locks.push(device.clone());
                        break;
                    }
                    Err(ChildWorkflowStartError::StartFailed {
                        cause: StartChildWorkflowExecutionFailedCause::WorkflowAlreadyExists,
                        ..
                    }) => Self::wait_for_device(ctx, &device).await?,
                    Err(ChildWorkflowStartError::Cancelled(_)) => {
                        return Err(Interruption::Canceled(None));
                    }
                    Err(other) => return Err(Interruption::Failed(other.to_string())),
                }
                if let Some(window) = window.filter(|_| change_type.waits_for_window())
                    && now_secs(ctx) >= window.end
                {
                    return Err(Interruption::Expired(format!(
                        "missed its window: device {device} was still held by another change when the window ended at {}",
                        rfc3339(window.end)
                    )));
                }
            }
        }
        ctx.state_mut(|s| s.progress.held_by = None);
        Ok(locks)
    }

    /// Asks the lock of `device` to say who holds it and to tell when it is free, then waits
    /// for that (or at most 30 s, in case the holder ended without telling).
    async fn wait_for_device(
        ctx: &mut WorkflowContext<Self>,
        device: &str,
    ) -> Result<(), Interruption> {
        ctx.state_mut(|s| s.lock_news.remove(device));
        let me = ctx.workflow_id().to_string();
        // The lock may have ended since: then the next attempt takes the device.
        let _ = ctx
            .external_workflow(lock_id(device), None)
            .signal(DeviceLock::wait, me, SignalWorkflowOptions::default())
            .await;
        temporalio_sdk::workflows::select! {
            _ = ctx.wait_condition(|s: &Self| s.lock_news.contains_key(device)) => {}
            _ = ctx.timer(Duration::from_secs(5)) => {}
        }
        let holder = ctx.state(|s| s.lock_news.get(device).map(|n| n.holder.clone()));
        let by = holder.as_ref().map_or_else(
            || "another change".to_string(),
            |h| match &h.ticket_number {
                Some(number) => format!("change {} (ticket {number})", h.change_id),
                None => format!("change {}", h.change_id),
            },
        );
        wait_on(
            ctx,
            ChangeStep::WaitingForDevice,
            format!("waiting for device {device}, held by {by}"),
        );
        ctx.state_mut(|s| s.progress.held_by = holder);
        temporalio_sdk::workflows::select! {
            _ = ctx.wait_condition(|s: &Self| s.lock_news.get(device).is_some_and(|n| n.released)) => {}
            _ = ctx.timer(Duration::from_secs(30)) => {}
            _ = ctx.cancelled() => {}
        }
        if ctx.cancellation_token().is_cancelled() {
            return Err(Interruption::Canceled(None));
        }
        Ok(())
    }

    async fn close(
        ctx: &mut WorkflowContext<Self>,
        ticket: &ChangeTicket,
        closure: CloseCode,
        notes: String,
        outcome: ChangeOutcome,
    ) -> WorkflowResult<()> {
        let close = CloseChangeTicket {
            ticket: ticket.clone(),
            closure,
            notes,
            change_type: ctx.state(|s| s.progress.change_type),
            outcome,
            started_at: ctx.state(|s| s.started_at),
        };
        // Detached from workflow cancellation: closing the ticket is the cleanup itself.
        let options = detach(call_options("close ticket"), true);
        ctx.execute_activity(ChangeActivities::close_change_ticket, close, options)
            .await?;
        Ok(())
    }
}

/// Which deployment a snapshot belongs to.
#[derive(Clone, Copy)]
enum Deployed {
    Change,
    Backout,
}

impl Deployed {
    fn summary(self) -> &'static str {
        match self {
            Deployed::Change => "submit deployment",
            Deployed::Backout => "submit back-out",
        }
    }
}

/// What each device that failed its checks failed.
fn failing(checks: &[DeviceCheck]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| !c.passed)
        .map(DeviceCheck::summary)
        .collect()
}

/// Devices about to be deployed to, as `PENDING`.
fn pending(devices: &[DeviceRef]) -> Vec<DeviceStatus> {
    devices
        .iter()
        .map(|d| DeviceStatus {
            device: d.hostname.clone(),
            status: "PENDING".into(),
            message: String::new(),
        })
        .collect()
}

/// Why a finished deployment failed: the task's reason, or each failed device's.
fn deployment_failure(snapshot: &DeploymentSnapshot) -> Option<String> {
    if let Some(reason) = &snapshot.failure_reason {
        return Some(reason.clone());
    }
    let failed: Vec<String> = snapshot
        .devices
        .iter()
        .filter(|d| !d.succeeded())
        .map(|d| {
            format!("{}: {} {}", d.device, d.status, d.message)
                .trim()
                .to_string()
        })
        .collect();
    (!failed.is_empty()).then(|| failed.join("; "))
}

fn record_snapshot(
    ctx: &WorkflowContext<TemplateDeployment>,
    which: Deployed,
    snapshot: &DeploymentSnapshot,
) {
    ctx.state_mut(|s| {
        let p = &mut s.progress;
        if let Deployed::Backout = which {
            if let Some(b) = p.verified.backout.as_mut() {
                b.deployment_id = snapshot.deployment_id.clone().or(b.deployment_id.take());
                b.devices = snapshot.devices.clone();
                let done = b.devices.iter().filter(|d| d.is_final()).count();
                p.message = format!("backed out {done} of {} device(s)", b.devices.len());
            }
            return;
        }
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
    let changed = ctx.state_mut(|s| {
        let changed = s.progress.step != step;
        s.progress.step = step;
        s.progress.percent = step.percent();
        s.progress.message = message.to_string();
        if !step.is_waiting() {
            s.progress.waiting_since = None;
        }
        changed
    });
    if changed {
        ctx.upsert_search_attributes([search::STEP.value_set(step.as_str().to_string())]);
    }
}

/// Enters a wait for a person or a window: the step, what it waits for, and since when.
fn wait_on(ctx: &WorkflowContext<TemplateDeployment>, step: ChangeStep, message: String) {
    let since = rfc3339(now_secs(ctx));
    advance(ctx, step, &format!("{message} (since {since})"));
    ctx.state_mut(|s| s.progress.waiting_since = Some(since));
}

fn note_decision(ctx: &WorkflowContext<TemplateDeployment>, decision: &ApprovalDecision) {
    let at = rfc3339(now_secs(ctx));
    ctx.state_mut(|s| {
        s.progress.decisions.push(DecisionRecord {
            approver: decision.approver.clone(),
            verdict: decision.verdict,
            comment: decision.comment.clone(),
            source: decision.source,
            at,
        })
    });
}

/// The result of a change, from what it recorded.
fn result(
    ctx: &WorkflowContext<TemplateDeployment>,
    ticket: &ChangeTicket,
    outcome: ChangeOutcome,
    failure_reason: Option<String>,
) -> ChangeResult {
    ctx.state(|s| ChangeResult {
        outcome,
        ticket_number: ticket.number.clone(),
        deployment_id: s.progress.deployment_id.clone(),
        devices: s.progress.devices.clone(),
        failure_reason,
        verified: s.progress.verified.clone(),
    })
}

/// Workflow time, in seconds since the Unix epoch.
fn now_secs(ctx: &WorkflowContext<TemplateDeployment>) -> i64 {
    ctx.workflow_time()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64)
}

/// Seconds since the epoch as RFC 3339 (UTC).
fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

impl TemplateDeployment {
    /// A template from Git: its ref resolved to a commit first (the change is pinned to that
    /// text even if the branch moves), then that file synced into Catalyst Center as a
    /// committed version, which the change deploys. Both facts go into its progress.
    async fn sync_from_git(
        ctx: &mut WorkflowContext<Self>,
        source: &GitSource,
        pinned: Option<&str>,
        requested_by: &str,
    ) -> Result<(ResolvedSource, SyncedTemplate), WorkflowTermination> {
        let mut resolving = source.clone();
        if let Some(commit) = pinned {
            resolving.reference = Some(commit.to_string());
        }
        advance(
            ctx,
            ChangeStep::Validating,
            &format!(
                "resolving {} {} at {}",
                source.repository,
                source.path,
                source.reference.as_deref().unwrap_or("the default branch")
            ),
        );
        let resolved = ctx
            .execute_activity(
                ChangeActivities::resolve_template_source,
                ResolveTemplateSource {
                    source: resolving,
                    requested_by: requested_by.to_string(),
                },
                call_options("resolve the Git source"),
            )
            .await;
        let mut resolved = Self::source_step(ctx, resolved)?;
        // What was asked for, not the commit it was pinned to.
        resolved.requested_ref = source
            .reference
            .clone()
            .unwrap_or_else(|| resolved.default_branch.clone());
        ctx.state_mut(|s| s.progress.source = Some(resolved.clone()));
        advance(
            ctx,
            ChangeStep::Validating,
            &format!(
                "syncing {} at {} into Catalyst Center",
                resolved.path, resolved.commit_sha
            ),
        );
        let synced = ctx
            .execute_activity(
                ChangeActivities::sync_template,
                SyncTemplate {
                    source: resolved.clone(),
                    requested_by: requested_by.to_string(),
                },
                call_options("sync the template into Catalyst Center"),
            )
            .await;
        let synced = Self::source_step(ctx, synced)?;
        ctx.state_mut(|s| s.progress.template_version = Some(synced.clone()));
        Ok((resolved, synced))
    }

    /// A step before the ticket: a wrong request (unknown branch or file) says so, a
    /// cancellation cancels, anything else fails the change with its error.
    fn source_step<T>(
        ctx: &mut WorkflowContext<Self>,
        outcome: Result<T, ActivityExecutionError>,
    ) -> Result<T, WorkflowTermination> {
        match outcome {
            Ok(value) => Ok(value),
            Err(ActivityExecutionError::Cancelled(_)) => Err(WorkflowTermination::cancelled()),
            Err(err)
                if [FailureType::InvalidRequest, FailureType::NotFound]
                    .iter()
                    .any(|t| failure_type(&err).as_deref() == Some(t.as_str())) =>
            {
                Err(invalid_request(failure_message(&err)))
            }
            Err(err) => {
                advance(ctx, ChangeStep::Failed, &failure_message(&err));
                Err(err.into())
            }
        }
    }
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

/// With `detached`, the activity is not cancelled when the workflow is (cleanup, and steps
/// whose effect must be known).
fn detach(mut options: ActivityOptions, detached: bool) -> ActivityOptions {
    if detached {
        options.cancellation_token = Some(WorkflowCancellationToken::new());
    }
    options
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

/// Approval polling: heartbeats while it waits between looks; lives as long as approvers have.
fn poll_options(poll_secs: u64, timeout_secs: u64) -> ActivityOptions {
    let lifetime = Duration::from_secs(timeout_secs + 3600);
    ActivityOptions::with_close_timeouts(ActivityCloseTimeouts::ScheduleAndStartToClose {
        schedule_to_close: lifetime,
        start_to_close: lifetime,
    })
    .heartbeat_timeout(Duration::from_secs(poll_secs.clamp(5, 60) * 2))
    .retry_policy(retry_policy())
    .summary("await approval in ServiceNow".to_string())
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
