//! Side effects of changeflow's workflows: the implementations of the activities declared in
//! `changeflow_workflows::activities`, over real HTTP clients for ServiceNow and Catalyst Center.

pub mod catalyst;
pub mod checks;
pub mod github;
pub mod http;
mod operations;
pub mod servicenow;
pub mod session;
mod template_sync;
pub mod validation;

use catalyst::{CatalystClient, NetworkDevice};
use changeflow_credentials::CredentialProvider;
use changeflow_workflows::activities::definitions as change_activities;
use changeflow_workflows::*;
use http::DownstreamError;
use serde_json::Value;
use servicenow::{CloseMode, ServiceNowClient};
use session::Api;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// Where the downstream systems are and how to reach them.
#[derive(Debug, Clone)]
pub struct DownstreamConfig {
    pub servicenow_url: String,
    pub catalyst_url: String,
    /// GitHub's API (`https://api.github.com`, or a GitHub Enterprise `https://host/api/v3`);
    /// without it the GitHub tools and templates from Git say this worker has none.
    pub github_url: Option<String>,
    /// Extra CA certificates (PEM bundle) to trust, e.g. a corporate CA or the simulators' CA.
    pub ca_file: Option<PathBuf>,
    /// Pause between deployment task polls.
    pub poll_interval: Duration,
    /// Where device check snapshots are kept (outside workflow history).
    pub snapshot_dir: PathBuf,
}

/// The activity implementations a worker registers.
pub struct DownstreamActivities {
    servicenow: ServiceNowClient,
    catalyst: CatalystClient,
    github: github::GitHubClient,
    poll_interval: Duration,
    snapshots: checks::SnapshotStore,
    /// Signs evidence with the key Vault keeps (`sign_evidence`).
    signer: Arc<dyn CredentialProvider>,
}

/// Changes that ended, by `type` and `outcome` (counted when their ticket is closed).
pub const CHANGES: &str = "changeflow_changes_total";
/// How long changes took from start to end, in seconds, by `type`.
pub const CHANGE_SECONDS: &str = "changeflow_change_duration_seconds";

/// Longest one polling activity waits without news before reporting back to the workflow.
const MAX_QUIET_POLL: Duration = Duration::from_secs(60);

impl DownstreamActivities {
    pub fn new(
        config: &DownstreamConfig,
        credentials: Arc<dyn CredentialProvider>,
    ) -> Result<Self, DownstreamError> {
        let http = http::http_client(config.ca_file.as_deref())?;
        for (name, url) in [
            ("ServiceNow", &config.servicenow_url),
            ("Catalyst Center", &config.catalyst_url),
        ]
        .into_iter()
        .chain(config.github_url.as_ref().map(|url| ("GitHub", url)))
        {
            url::Url::parse(url)
                .map_err(|e| DownstreamError::Configuration(format!("{name} URL '{url}': {e}")))?;
        }
        Ok(Self {
            servicenow: ServiceNowClient::new(
                Api::new(
                    servicenow::SYSTEM,
                    &config.servicenow_url,
                    http.clone(),
                    servicenow::authorize,
                ),
                credentials.clone(),
            ),
            catalyst: CatalystClient::new(
                Api::new(
                    catalyst::SYSTEM,
                    &config.catalyst_url,
                    http.clone(),
                    catalyst::authorize,
                ),
                credentials.clone(),
            ),
            github: github::GitHubClient::new(
                config.github_url.as_deref(),
                http,
                credentials.clone(),
            ),
            signer: credentials,
            poll_interval: config.poll_interval,
            snapshots: checks::SnapshotStore::new(&config.snapshot_dir),
        })
    }

    async fn validate(
        &self,
        request: DeploymentRequest,
    ) -> Result<ValidatedDeployment, DownstreamError> {
        // The request's shape was checked by the workflow (`DeploymentRequest::validate`).
        let template = match self.catalyst.template(request.change.template()).await {
            Err(DownstreamError::NotFound { message, .. }) => {
                return Err(DownstreamError::Invalid(message));
            }
            other => other?,
        };
        let mut problems =
            validation::parameter_problems(&template.parameters, &request.change.parameters);
        let mut devices = Vec::new();
        for name in &request.change.devices {
            match self.catalyst.find_device(name).await? {
                None => problems.push(format!("device '{name}' is not known to Catalyst Center")),
                Some(device) if !device.device.managed => problems.push(format!(
                    "device '{name}' is not managed (collection status {})",
                    device.collection_status
                )),
                Some(device) if !device.is_reachable() => {
                    let reason = &device.reachability_failure_reason;
                    problems.push(format!(
                        "device '{name}' is unreachable{}",
                        if reason.is_empty() {
                            String::new()
                        } else {
                            format!(": {reason}")
                        }
                    ));
                }
                Some(NetworkDevice { device, .. }) => devices.push(DeviceRef {
                    id: device.device_id,
                    hostname: device.hostname,
                    management_ip: device.management_ip,
                }),
            }
        }
        if !problems.is_empty() {
            return Err(DownstreamError::Invalid(problems.join("; ")));
        }
        let Some(first) = devices.first() else {
            return Err(DownstreamError::Invalid("no target devices".into()));
        };
        let preview = self
            .catalyst
            .preview(
                request.change.template(),
                &request.change.parameters,
                &first.id,
            )
            .await?;
        if !preview.errors.is_empty() {
            return Err(DownstreamError::Invalid(format!(
                "template preview failed: {}",
                preview.errors.join("; ")
            )));
        }
        Ok(ValidatedDeployment {
            template_id: request.change.template().to_string(),
            template_name: template.name,
            project_name: template.project_name,
            parameters: request.change.parameters,
            devices,
            preview: preview.rendered,
        })
    }

    async fn open_ticket(&self, ticket: NewChangeTicket) -> Result<ChangeTicket, DownstreamError> {
        let record = self.servicenow.open_once(&ticket).await?;
        let field = |name: &str| servicenow::field(&record, name).to_string();
        if field("sys_id").is_empty() || field("number").is_empty() {
            return Err(DownstreamError::protocol(
                "ServiceNow",
                "change request without sys_id or number",
            ));
        }
        Ok(ChangeTicket {
            sys_id: field("sys_id"),
            number: field("number"),
        })
    }

    async fn submit(
        &self,
        deployment: SubmitDeployment,
    ) -> Result<DeploymentTask, DownstreamError> {
        let task_id = self
            .catalyst
            .deploy(
                &deployment.template_id,
                &deployment.parameters,
                &deployment.devices,
            )
            .await?;
        Ok(DeploymentTask { task_id })
    }

    /// One look at the task and, once known, the deployment's per-device status.
    async fn snapshot(
        &self,
        task_id: &str,
        known: &[DeviceStatus],
    ) -> Result<DeploymentSnapshot, DownstreamError> {
        let task = self.catalyst.task(task_id).await?;
        let mut devices = known.to_vec();
        let mut status_finished = true;
        if let Some(id) = &task.deployment_id {
            let status = self.catalyst.deployment_status(id).await?;
            status_finished = !status.in_progress;
            if let Some(reported) = status.devices {
                devices = reported;
            }
        }
        let failure_reason = task.is_error.then(|| {
            task.failure_reason
                .clone()
                .unwrap_or_else(|| "deployment task failed".into())
        });
        Ok(DeploymentSnapshot {
            task_id: task_id.to_string(),
            deployment_id: task.deployment_id,
            finished: task.is_error || (task.finished && status_finished),
            failure_reason,
            devices,
        })
    }

    /// Captures the commands on every device, stores each device's snapshot and evaluates
    /// the rules against it (and its baseline).
    async fn check(&self, check: CheckDevices) -> Result<Vec<DeviceCheck>, DownstreamError> {
        use checks::DeviceCli;
        let name = format!("changeflow {} {}", check.phase.as_str(), check.change_id);
        let mut outputs = self
            .catalyst
            .run(&check.devices, &check.commands, &name)
            .await?;
        let captured_at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let mut verdicts = Vec::new();
        for device in &check.devices {
            let snapshot = checks::Snapshot {
                change_id: check.change_id.clone(),
                phase: check.phase,
                device: device.hostname.clone(),
                captured_at: captured_at.clone(),
                outputs: outputs.remove(&device.hostname).unwrap_or_default(),
            };
            let reference = self.snapshots.put(&snapshot)?;
            let baseline = match check.baseline.get(&device.hostname) {
                Some(reference) => Some(self.snapshots.get(reference)?),
                None => None,
            };
            let failures = checks::evaluate(
                &check.rules,
                &snapshot,
                &checks::Expectations {
                    rendered: &check.rendered,
                    parameters: &check.parameters,
                    baseline: baseline.as_ref(),
                },
            );
            verdicts.push(DeviceCheck {
                device: device.hostname.clone(),
                phase: check.phase,
                passed: failures.is_empty(),
                snapshot: reference,
                failures,
            });
        }
        Ok(verdicts)
    }

    async fn close(&self, close: CloseChangeTicket) -> Result<(), DownstreamError> {
        let record = self.servicenow.get(&close.ticket.sys_id).await?;
        self.servicenow
            .close(record, close.closure, &close.notes, CloseMode::BestEffort)
            .await?;
        Ok(())
    }
}

#[activities]
impl DownstreamActivities {
    #[activity(definition = change_activities::ResolveTemplateSource)]
    pub async fn resolve_template_source(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: changeflow_workflows::github::ResolveTemplateSource,
    ) -> Result<changeflow_workflows::github::ResolvedSource, ActivityError> {
        self.github
            .resolve(&request.requested_by, &request.source)
            .await
            .map_err(DownstreamError::into_activity_error)
    }

    #[activity(definition = change_activities::SyncTemplate)]
    pub async fn sync_template(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: changeflow_workflows::github::SyncTemplate,
    ) -> Result<changeflow_workflows::github::SyncedTemplate, ActivityError> {
        self.sync(request)
            .await
            .map_err(DownstreamError::into_activity_error)
    }

    #[activity(definition = change_activities::ValidateDeployment)]
    pub async fn validate_deployment(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: DeploymentRequest,
    ) -> Result<ValidatedDeployment, ActivityError> {
        self.validate(request)
            .await
            .map_err(DownstreamError::into_activity_error)
    }

    #[activity(definition = change_activities::OpenChangeTicket)]
    pub async fn open_change_ticket(
        self: Arc<Self>,
        _ctx: ActivityContext,
        ticket: NewChangeTicket,
    ) -> Result<ChangeTicket, ActivityError> {
        self.open_ticket(ticket)
            .await
            .map_err(DownstreamError::into_activity_error)
    }

    #[activity(definition = change_activities::AdvanceTicket)]
    pub async fn advance_ticket(
        self: Arc<Self>,
        _ctx: ActivityContext,
        advance: AdvanceTicket,
    ) -> Result<(), ActivityError> {
        self.servicenow
            .advance(&advance.ticket.sys_id, advance.change_type, advance.to)
            .await
            .map_err(DownstreamError::into_activity_error)
    }

    #[activity(definition = change_activities::PendingApprovers)]
    pub async fn pending_approvers(
        self: Arc<Self>,
        _ctx: ActivityContext,
        ticket: ChangeTicket,
    ) -> Result<PendingApprovers, ActivityError> {
        let approvals = self
            .servicenow
            .approvals(&ticket.sys_id)
            .await
            .map_err(DownstreamError::into_activity_error)?;
        Ok(PendingApprovers {
            approvers: approvals
                .into_iter()
                .filter(|a| a.state == "requested")
                .map(|a| a.approver)
                .collect(),
        })
    }

    /// Looks at the change's approval every `poll_secs` until ServiceNow has a decision,
    /// heartbeating every second in between so a lost worker is noticed and a cancellation
    /// (a decision arrived through changeflow) ends it at once.
    #[activity(definition = change_activities::AwaitApproval)]
    pub async fn await_approval(
        self: Arc<Self>,
        ctx: ActivityContext,
        wait: AwaitApproval,
    ) -> Result<ApprovalDecision, ActivityError> {
        loop {
            let decided = self
                .servicenow
                .decided(&wait.ticket.sys_id)
                .await
                .map_err(DownstreamError::into_activity_error)?;
            if let Some(decision) = decided {
                return Ok(decision);
            }
            for _ in 0..wait.poll_secs.max(1) {
                ctx.record_heartbeat(()).await?;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = ctx.cancelled() => return Err(ActivityError::cancelled()),
                }
            }
        }
    }

    #[activity(definition = change_activities::RecordDecision)]
    pub async fn record_decision(
        self: Arc<Self>,
        _ctx: ActivityContext,
        record: RecordDecision,
    ) -> Result<ApprovalRollup, ActivityError> {
        self.servicenow
            .record_decision(&record.ticket.sys_id, &record.decision)
            .await
            .map_err(DownstreamError::into_activity_error)
    }

    #[activity(definition = change_activities::SubmitDeployment)]
    pub async fn submit_deployment(
        self: Arc<Self>,
        _ctx: ActivityContext,
        deployment: SubmitDeployment,
    ) -> Result<DeploymentTask, ActivityError> {
        self.submit(deployment)
            .await
            .map_err(DownstreamError::into_activity_error)
    }

    /// Polls until the task ends, a device's status changes, or a minute passes without news;
    /// heartbeats on every poll so a lost worker is noticed and polling resumes elsewhere.
    #[activity(definition = change_activities::AwaitDeployment)]
    pub async fn await_deployment(
        self: Arc<Self>,
        ctx: ActivityContext,
        wait: AwaitDeployment,
    ) -> Result<DeploymentSnapshot, ActivityError> {
        let started = Instant::now();
        loop {
            let snapshot = self
                .snapshot(&wait.task_id, &wait.known)
                .await
                .map_err(DownstreamError::into_activity_error)?;
            if snapshot.finished
                || snapshot.devices != wait.known
                || started.elapsed() > MAX_QUIET_POLL
            {
                return Ok(snapshot);
            }
            ctx.record_heartbeat(snapshot.devices.len()).await?;
            tokio::select! {
                _ = tokio::time::sleep(self.poll_interval) => {}
                _ = ctx.cancelled() => return Err(ActivityError::cancelled()),
            }
        }
    }

    #[activity(definition = change_activities::CheckDevices)]
    pub async fn check_devices(
        self: Arc<Self>,
        _ctx: ActivityContext,
        check: CheckDevices,
    ) -> Result<Vec<DeviceCheck>, ActivityError> {
        self.check(check)
            .await
            .map_err(DownstreamError::into_activity_error)
    }

    #[activity(definition = change_activities::PerformOperation)]
    pub async fn perform_operation(
        self: Arc<Self>,
        ctx: ActivityContext,
        request: OperationRequest,
    ) -> Result<Value, ActivityError> {
        let correlation_id = ctx.info().workflow_id.clone().unwrap_or_default();
        self.perform(request, &correlation_id)
            .await
            .map_err(DownstreamError::into_activity_error)
    }

    #[activity(definition = change_activities::CloseChangeTicket)]
    pub async fn close_change_ticket(
        self: Arc<Self>,
        _ctx: ActivityContext,
        close: CloseChangeTicket,
    ) -> Result<(), ActivityError> {
        let (change_type, outcome, started_at) =
            (close.change_type, close.outcome, close.started_at);
        self.close(close)
            .await
            .map_err(DownstreamError::into_activity_error)?;
        metrics::counter!(CHANGES, "type" => change_type.as_str(), "outcome" => outcome.as_str())
            .increment(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        metrics::histogram!(CHANGE_SECONDS, "type" => change_type.as_str())
            .record((now - started_at).max(0) as f64);
        Ok(())
    }
}
