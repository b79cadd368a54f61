//! Starting, watching and cancelling changes from the client side.

use crate::results::{ChangeSummary, ExecutionState, TimelineEntry};
use changeflow_workflows::failure::FailureType;
use changeflow_workflows::limits::{self, ID_PATTERN};
use changeflow_workflows::{
    ApprovalDecision, Arguments, ChangeProgress, ChangeResult, ChangeStep, DecisionReceipt,
    DeploymentRequest, DeviceCheck, DownstreamOperation, OperationRequest, TemplateDeployment,
    search,
};
use futures_util::StreamExt;
use schemars::JsonSchema;
use std::time::Duration;
use temporalio_client::{
    Client, QueryRejectCondition, WorkflowCancelOptions, WorkflowExecuteUpdateOptions,
    WorkflowGetResultOptions, WorkflowIdConflictPolicy, WorkflowIdReusePolicy,
    WorkflowQueryOptions, WorkflowStartOptions,
    errors::{WorkflowGetResultError, WorkflowStartError, WorkflowUpdateError},
};
use temporalio_common::protos::temporal::api::failure::v1::failure::FailureInfo;
use temporalio_common::search_attributes::SearchAttributes;

/// Why a change could not be started, read or cancelled.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ChangeError {
    /// The request is malformed; nothing was started.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Temporal refused or could not be reached.
    #[error("{0}")]
    Temporal(String),
}

/// What a start did: made a new run, or found the id's change already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// A new run began now.
    New,
    /// The id was already used, running or finished: that change, nothing new started.
    Existing,
}

/// Starts a `TemplateDeployment` with the given workflow id. An id that was already used,
/// running or finished, is that change: nothing new starts (idempotent retries never deploy
/// twice), and the answer says so.
pub async fn start(
    client: &Client,
    task_queue: &str,
    workflow_id: &str,
    request: DeploymentRequest,
) -> Result<Started, ChangeError> {
    request.validate().map_err(ChangeError::Invalid)?;
    let (requester, devices) = (request.requested_by.clone(), request.change.devices.clone());
    let memo = listing_memo(&request.change);
    let started = client
        .start_workflow(
            TemplateDeployment::run,
            request,
            WorkflowStartOptions::new(task_queue, workflow_id)
                .search_attributes(SearchAttributes::new([
                    search::REQUESTER.value_set(requester),
                    search::DEVICES.value_set(devices),
                ]))
                .memo(memo)
                .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
                // A running change with this id is refused like an ended one, so that a start
                // that succeeds is known to be new (the SDK does not pass on whether
                // `UseExisting` found a run) and no description has to be asked for.
                .id_conflict_policy(WorkflowIdConflictPolicy::Fail)
                .enable_eager_workflow_start(true)
                .build(),
        )
        .await;
    match started {
        Ok(_) => Ok(Started::New),
        Err(WorkflowStartError::AlreadyStarted { .. }) => Ok(Started::Existing),
        Err(e) => Err(ChangeError::Temporal(e.to_string())),
    }
}

/// What a list shows of a change besides its search attributes (its template, type and
/// window): a memo, returned with each listed workflow and never indexed or queried.
fn listing_memo(
    change: &changeflow_workflows::arguments::DeployTemplate,
) -> temporalio_common::MemoValues {
    let mut memo = temporalio_common::MemoValues::new();
    memo.insert(memo::TEMPLATE, change.template_key());
    memo.insert(memo::CHANGE_TYPE, change.change_type.as_str().to_string());
    if let (Some(start), Some(end)) = (&change.window_start, &change.window_end) {
        memo.insert(memo::WINDOW_START, start.clone());
        memo.insert(memo::WINDOW_END, end.clone());
    }
    memo
}

/// The memo's keys.
mod memo {
    pub const TEMPLATE: &str = "template_id";
    pub const CHANGE_TYPE: &str = "change_type";
    pub const WINDOW_START: &str = "window_start";
    pub const WINDOW_END: &str = "window_end";
}

/// Why a quick operation produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperationFailure {
    /// The named ticket, template or device does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The downstream system refused the request as invalid; nothing was changed.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The record's state does not allow the request; nothing was changed.
    #[error("conflict: {0}")]
    Conflict(String),
    /// Anything else: unreachable systems, Temporal errors.
    #[error("failed: {0}")]
    Failed(String),
}

/// The application error type and message of a failed workflow.
pub fn failure_detail(err: &WorkflowGetResultError) -> (String, String) {
    match err {
        WorkflowGetResultError::Failed(failure) => {
            let failure = failure.failure();
            let type_name = match &failure.failure_info {
                Some(FailureInfo::ApplicationFailureInfo(info)) => info.r#type.clone(),
                _ => String::new(),
            };
            (type_name, failure.message.clone())
        }
        other => (String::new(), other.to_string()),
    }
}

/// Start options of a tool's workflow: tagged with its requester, and an id already used means
/// that call (nothing new starts).
pub(crate) fn tool_start_options(
    task_queue: &str,
    workflow_id: &str,
    requester: &str,
) -> WorkflowStartOptions {
    WorkflowStartOptions::new(task_queue, workflow_id)
        .search_attributes(SearchAttributes::new([
            search::REQUESTER.value_set(requester.to_string())
        ]))
        .id_reuse_policy(WorkflowIdReusePolicy::RejectDuplicate)
        .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
        // A worker sharing this client (`changeflow dev`) takes the first workflow task from
        // the start's answer instead of polling for it; without one this asks for nothing.
        .enable_eager_workflow_start(true)
        .build()
}

/// Runs one quick downstream operation as a `DownstreamOperation` workflow and waits for its
/// result. A workflow id already used is that call: its result is returned, nothing new runs.
pub async fn run_operation(
    client: &Client,
    task_queue: &str,
    workflow_id: &str,
    request: OperationRequest,
) -> Result<serde_json::Value, OperationFailure> {
    let options = tool_start_options(task_queue, workflow_id, &request.requested_by);
    // The handle of the run just started names its run: waiting on it spares Temporal looking
    // up the workflow's current run. An id already used waits on that call's current run.
    let result = match client
        .start_workflow(DownstreamOperation::run, request, options)
        .await
    {
        Ok(handle) => handle.get_result(WorkflowGetResultOptions::default()).await,
        Err(WorkflowStartError::AlreadyStarted { .. }) => {
            client
                .get_workflow_handle::<DownstreamOperation>(workflow_id)
                .get_result(WorkflowGetResultOptions::default())
                .await
        }
        Err(e) => return Err(OperationFailure::Failed(e.to_string())),
    };
    result.map_err(|err| {
        let (type_name, message) = failure_detail(&err);
        match FailureType::parse(&type_name) {
            Some(FailureType::NotFound) => OperationFailure::NotFound(message),
            Some(FailureType::InvalidRequest | FailureType::Rejected) => {
                OperationFailure::Invalid(message)
            }
            Some(FailureType::Conflict) => OperationFailure::Conflict(message),
            _ => OperationFailure::Failed(message),
        }
    })
}

/// The change's current progress, or `None` while no worker has answered yet.
pub async fn progress(client: &Client, workflow_id: &str) -> Option<ChangeProgress> {
    query_progress(client, workflow_id, WorkflowQueryOptions::default()).await
}

/// A running change's progress from one query that also tells that it runs: the server
/// rejects the query of a change that has ended (`QueryRejectCondition::NotOpen`) without
/// asking a worker. `None` when it ended, does not exist or no worker answered.
pub async fn open_progress(client: &Client, workflow_id: &str) -> Option<ChangeProgress> {
    let options = WorkflowQueryOptions::builder()
        .reject_condition(QueryRejectCondition::NotOpen)
        .build();
    query_progress(client, workflow_id, options).await
}

async fn query_progress(
    client: &Client,
    workflow_id: &str,
    options: WorkflowQueryOptions,
) -> Option<ChangeProgress> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    handle
        .query(TemplateDeployment::progress, (), options)
        .await
        .ok()
}

/// Waits for the change to end.
pub async fn result(
    client: &Client,
    workflow_id: &str,
) -> Result<ChangeResult, WorkflowGetResultError> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    handle.get_result(WorkflowGetResultOptions::default()).await
}

/// A change's result as tools return it: the workflow's result with the change id.
pub fn result_value(workflow_id: &str, result: &ChangeResult) -> serde_json::Value {
    serde_json::to_value(crate::results::DeployResult::finished(workflow_id, result))
        .unwrap_or_default()
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No such change.
    #[error("no change '{0}'")]
    NotFound(String),
    /// The change refused it (its update validator): not awaiting approval, the requester's
    /// own, not an approver, a rejection without a comment.
    #[error("{0}")]
    Refused(String),
    /// Temporal could not be asked, or no worker answered.
    #[error("{0}")]
    Temporal(String),
}

/// How long a decision may wait for a worker to take it.
const DECISION_TIMEOUT: Duration = Duration::from_secs(30);

/// Delivers an approver's decision to a change as an update: accepted or refused at once.
pub async fn decide(
    client: &Client,
    workflow_id: &str,
    decision: ApprovalDecision,
) -> Result<DecisionReceipt, DecideError> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    let update = handle.execute_update(
        TemplateDeployment::decide,
        decision,
        WorkflowExecuteUpdateOptions::default(),
    );
    match tokio::time::timeout(DECISION_TIMEOUT, update).await {
        Err(_) => Err(DecideError::Temporal(format!(
            "no worker took the decision within {}s; try again",
            DECISION_TIMEOUT.as_secs()
        ))),
        Ok(Ok(receipt)) => Ok(receipt),
        Ok(Err(WorkflowUpdateError::NotFound(_))) => {
            Err(DecideError::NotFound(workflow_id.to_string()))
        }
        Ok(Err(WorkflowUpdateError::Failed(failure))) => {
            Err(DecideError::Refused(failure.message.clone()))
        }
        Ok(Err(other)) => Err(DecideError::Temporal(other.to_string())),
    }
}

/// How many changes are running in `step`, counted in Temporal visibility; `None` when
/// Temporal does not answer within two seconds.
pub async fn running_in_step(client: &Client, step: ChangeStep) -> Option<u64> {
    let query = format!(
        "WorkflowType = '{}' AND ExecutionStatus = 'Running' AND {} = '{}'",
        temporalio_common::WorkflowDefinition::name(&TemplateDeployment::run),
        search::STEP.name(),
        step.as_str()
    );
    let counted = client.count_workflows(query, Default::default());
    match tokio::time::timeout(Duration::from_secs(2), counted).await {
        Ok(Ok(count)) => Some(count.count() as u64),
        _ => None,
    }
}

/// Who requested a change (its `ChangeRequester` search attribute), if it exists.
pub async fn requester(client: &Client, workflow_id: &str) -> Option<String> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    let description = handle.describe(Default::default()).await.ok()?;
    description.search_attributes().get(&search::REQUESTER)
}

/// Requests cancellation; the workflow closes its ticket as canceled.
pub async fn cancel(client: &Client, workflow_id: &str, reason: &str) -> Result<(), ChangeError> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    handle
        .cancel(
            WorkflowCancelOptions::builder()
                .reason(reason.to_string())
                .build(),
        )
        .await
        .map_err(|e| ChangeError::Temporal(e.to_string()))
}

/// Whether Temporal answers within two seconds: describing a workflow that does not exist is
/// answered "not found" by a reachable server.
pub async fn reachable(client: &Client) -> bool {
    let handle = client
        .get_workflow_handle::<temporalio_client::UntypedWorkflow>("changeflow-readiness-probe");
    let described =
        tokio::time::timeout(Duration::from_secs(2), handle.describe(Default::default())).await;
    matches!(
        described,
        Ok(Ok(_) | Err(temporalio_client::errors::WorkflowInteractionError::NotFound(_)))
    )
}

/// Whether a workflow with this id exists and started less than `window` ago.
pub async fn started_within(client: &Client, workflow_id: &str, window: Duration) -> bool {
    let handle = client.get_workflow_handle::<temporalio_client::UntypedWorkflow>(workflow_id);
    match handle.describe(Default::default()).await {
        Ok(description) => description
            .start_time()
            .and_then(|started| started.elapsed().ok())
            .is_some_and(|age| age < window),
        Err(_) => false,
    }
}

/// The execution status of a change, if it exists.
pub async fn status(client: &Client, workflow_id: &str) -> Result<ExecutionState, ChangeError> {
    Ok(status_of_run(client, workflow_id).await?.0)
}

/// A change's execution state and the id of the run it describes.
pub async fn status_of_run(
    client: &Client,
    workflow_id: &str,
) -> Result<(ExecutionState, String), ChangeError> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    let description = handle
        .describe(Default::default())
        .await
        .map_err(|e| ChangeError::Temporal(e.to_string()))?;
    Ok((
        description.status().into(),
        description.run_id().to_string(),
    ))
}

/// What a watch ended with.
#[derive(Debug)]
pub enum Watched<T, P> {
    /// The outcome arrived.
    Done(T),
    /// Progress reached a point the watcher stops at (`until`).
    Stopped(P),
}

/// Waits for `outcome` while polling `progress` and calling `on_progress` with each new value
/// (and a last time when the outcome arrives, if progress moved since); stops early when a
/// progress satisfies `until`.
pub async fn watch<T, P: PartialEq, F: std::future::Future<Output = Option<P>>>(
    outcome: impl std::future::Future<Output = T>,
    mut progress: impl FnMut() -> F,
    mut on_progress: impl FnMut(&P),
    until: impl Fn(&P) -> bool,
) -> Watched<T, P> {
    tokio::pin!(outcome);
    let mut last: Option<P> = None;
    let mut ticker = tokio::time::interval(Duration::from_millis(300));
    loop {
        tokio::select! {
            done = &mut outcome => {
                if let Some(p) = progress().await
                    && last.as_ref() != Some(&p) {
                        on_progress(&p);
                    }
                return Watched::Done(done);
            }
            _ = ticker.tick() => {
                if let Some(p) = progress().await
                    && last.as_ref() != Some(&p) {
                        on_progress(&p);
                        if until(&p) {
                            return Watched::Stopped(p);
                        }
                        last = Some(p);
                    }
            }
        }
    }
}

/// The id prefix of a read's workflow (`read-...`, a fresh id); the archiver leaves these out
/// unless asked to archive reads.
pub const READ_PREFIX: &str = "read";

/// A fresh workflow id: `prefix-` and a hash of `scope` (who asks for what), the time and a
/// per-process sequence, so no two calls share one (reads are never deduplicated).
pub fn fresh_id(prefix: &str, scope: &serde_json::Value) -> String {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let digest =
        changeflow_engine::audit::canonical_hash(&serde_json::json!([scope, nanos.to_string(), n]));
    format!("{prefix}-{}", &digest[..32])
}

/// A workflow's whole history as Temporal has it (its latest run).
pub async fn fetch_history(
    client: &Client,
    workflow_id: &str,
) -> Result<temporalio_common::protos::temporal::api::history::v1::History, ChangeError> {
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    let events = handle
        .fetch_history(Default::default())
        .into_events()
        .await
        .map_err(|e| ChangeError::Temporal(format!("history of {workflow_id}: {e}")))?;
    Ok(temporalio_common::protos::temporal::api::history::v1::History { events })
}

/// The step timeline of one change, from its Temporal history: when it started, each
/// activity's scheduling, attempts and result, and how it ended.
pub async fn history(
    client: &Client,
    workflow_id: &str,
) -> Result<Vec<TimelineEntry>, ChangeError> {
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
    let handle = client.get_workflow_handle::<TemplateDeployment>(workflow_id);
    let events = handle
        .fetch_history(Default::default())
        .into_events()
        .await
        .map_err(|e| ChangeError::Temporal(e.to_string()))?;
    let mut steps: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let mut timeline = Vec::new();
    for event in events {
        let at = event
            .event_time
            .map(|t| rfc3339(t.seconds, t.nanos))
            .unwrap_or_default();
        let step =
            |id: i64, steps: &std::collections::HashMap<i64, String>| steps.get(&id).cloned();
        let failure = |f: Option<
            temporalio_common::protos::temporal::api::failure::v1::Failure,
        >| f.map(|f| f.message);
        // What the workflow said a step is for ("pre_change check", "submit back-out").
        let summary = event
            .user_metadata
            .and_then(|m| m.summary)
            .and_then(|p| serde_json::from_slice::<String>(&p.data).ok());
        let (what, activity, detail) = match event.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(_)) => {
                ("change started", None, None)
            }
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                let name = a.activity_type.map(|t| t.name).unwrap_or_default();
                steps.insert(event.event_id, name.clone());
                ("step scheduled", Some(name), summary)
            }
            Some(Attributes::ActivityTaskStartedEventAttributes(a)) => (
                "step started",
                step(a.scheduled_event_id, &steps),
                Some(format!("attempt {}", a.attempt)),
            ),
            Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
                let name = step(a.scheduled_event_id, &steps);
                let detail = match name.as_deref() {
                    Some("check_devices") => a
                        .result
                        .and_then(|r| r.payloads.into_iter().next())
                        .and_then(|p| serde_json::from_slice::<Vec<DeviceCheck>>(&p.data).ok())
                        .map(|checks| verdicts(&checks)),
                    _ => None,
                };
                ("step completed", name, detail)
            }
            Some(Attributes::ActivityTaskFailedEventAttributes(a)) => (
                "step failed",
                step(a.scheduled_event_id, &steps),
                failure(a.failure),
            ),
            Some(Attributes::ActivityTaskTimedOutEventAttributes(a)) => {
                ("step timed out", step(a.scheduled_event_id, &steps), None)
            }
            Some(Attributes::ActivityTaskCanceledEventAttributes(a)) => {
                ("step canceled", step(a.scheduled_event_id, &steps), None)
            }
            Some(Attributes::WorkflowExecutionCancelRequestedEventAttributes(a)) => (
                "cancel requested",
                None,
                Some(a.cause).filter(|c| !c.is_empty()),
            ),
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(_)) => {
                ("change completed", None, None)
            }
            Some(Attributes::WorkflowExecutionFailedEventAttributes(a)) => {
                ("change failed", None, failure(a.failure))
            }
            Some(Attributes::WorkflowExecutionCanceledEventAttributes(_)) => {
                ("change canceled", None, None)
            }
            Some(Attributes::WorkflowExecutionTerminatedEventAttributes(a)) => {
                ("change terminated", None, Some(a.reason))
            }
            Some(Attributes::WorkflowExecutionTimedOutEventAttributes(_)) => {
                ("change timed out", None, None)
            }
            _ => continue,
        };
        timeline.push(TimelineEntry {
            at,
            event: what.to_string(),
            step: activity,
            detail,
        });
    }
    Ok(timeline)
}

/// A check's verdicts in one line: `post_change: sj-1 passed; sj-2 failed interfaces_not_down
/// (1 interface(s) up before the change are down)`.
fn verdicts(checks: &[DeviceCheck]) -> String {
    let phase = checks.first().map_or("", |c| c.phase.as_str());
    let each: Vec<String> = checks
        .iter()
        .map(|c| {
            if c.passed {
                format!("{} passed", c.device)
            } else {
                let rules: Vec<String> = c
                    .failures
                    .iter()
                    .map(|f| format!("{} ({})", f.rule, f.detail))
                    .collect();
                format!("{} failed {}", c.device, rules.join(", "))
            }
        })
        .collect();
    format!("{phase}: {}", each.join("; "))
}

/// A protobuf time as RFC 3339 (UTC, milliseconds).
pub(crate) fn rfc3339(seconds: i64, nanos: i32) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .map(|t| t + time::Duration::nanoseconds(i64::from(nanos)))
        .ok()
        .and_then(|t| t.format(format).ok())
        .unwrap_or_default()
}

/// Arguments naming one change.
#[derive(Debug, Clone, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeId {
    /// The change's workflow id
    #[schemars(regex(pattern = ID_PATTERN))]
    pub change_id: String,
}

impl Arguments for ChangeId {
    fn validate(&self) -> Result<(), String> {
        limits::id("change_id", &self.change_id)
    }
}

/// Arguments of `approve_change`.
#[derive(Debug, Clone, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approve {
    /// The change's id (from deploy_template or list_pending_approvals)
    #[schemars(regex(pattern = ID_PATTERN))]
    pub change_id: String,
    /// Written to your approval record in ServiceNow
    #[serde(default)]
    #[schemars(length(min = 1, max = limits::LONG_TEXT_MAX), regex(pattern = limits::NOT_BLANK))]
    pub comment: Option<String>,
}

impl Arguments for Approve {
    fn validate(&self) -> Result<(), String> {
        limits::id("change_id", &self.change_id)?;
        limits::optional_text("comment", self.comment.as_deref(), limits::LONG_TEXT_MAX)
    }
}

/// Arguments of `reject_change`: a rejection always says why.
#[derive(Debug, Clone, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reject {
    /// The change's id
    #[schemars(regex(pattern = ID_PATTERN))]
    pub change_id: String,
    /// Why: written to your approval record and the canceled ticket
    #[schemars(length(min = 1, max = limits::LONG_TEXT_MAX), regex(pattern = limits::NOT_BLANK))]
    pub comment: String,
}

impl Arguments for Reject {
    fn validate(&self) -> Result<(), String> {
        limits::id("change_id", &self.change_id)?;
        limits::text("comment", &self.comment, limits::LONG_TEXT_MAX).map_err(|_| {
            format!(
                "a rejection needs a comment saying why (1 to {} characters)",
                limits::LONG_TEXT_MAX
            )
        })
    }
}

/// Arguments of `list_pending_approvals`.
#[derive(Debug, Clone, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingApprovals {
    /// How many changes at most
    #[serde(default = "default_limit")]
    #[schemars(range(min = 1, max = limits::MAX_LIST_LIMIT))]
    pub limit: u32,
}

impl Arguments for PendingApprovals {
    fn validate(&self) -> Result<(), String> {
        limits::list_limit(Some(self.limit))
    }
}

/// Filters of `list` (the arguments of `list_changes`); every field is optional.
#[derive(Debug, Clone, serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeFilter {
    /// A workflow state (running, completed, ...) or a change step (awaiting_approval,
    /// scheduled, waiting_for_device, deploying, ...)
    #[serde(default)]
    pub status: Option<StatusFilter>,
    /// Only changes this user may approve now
    #[serde(default)]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub approver: Option<String>,
    #[serde(default)]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub requested_by: Option<String>,
    #[serde(default)]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub ticket_number: Option<String>,
    #[serde(default)]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub device: Option<String>,
    /// RFC 3339; changes started at or after
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub since: Option<String>,
    /// RFC 3339; changes started at or before
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub until: Option<String>,
    /// How many changes at most
    #[serde(default = "default_limit")]
    #[schemars(range(min = 1, max = limits::MAX_LIST_LIMIT))]
    pub limit: u32,
}

/// What `status` filters on: the workflow's state or the change's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StatusFilter {
    Execution(ExecutionState),
    Step(ChangeStep),
}

/// A list's length when the caller names none (`list_changes`, `search_audit`, ...).
pub(crate) fn default_limit() -> u32 {
    limits::DEFAULT_LIST_LIMIT
}

/// An RFC 3339 time in the one form visibility queries get.
pub(crate) fn rfc3339_bound(field: &str, text: &str) -> Result<String, String> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(text, rfc3339)
        .ok()
        .and_then(|t| t.format(rfc3339).ok())
        .ok_or_else(|| format!("{field} must be an RFC 3339 time, e.g. 2026-11-26T08:00:00Z"))
}

impl Arguments for ChangeFilter {
    /// Every value ends up inside a visibility query: identifiers and times are checked here.
    fn validate(&self) -> Result<(), String> {
        limits::optional_id("requested_by", self.requested_by.as_deref())?;
        limits::optional_id("approver", self.approver.as_deref())?;
        limits::optional_id("ticket_number", self.ticket_number.as_deref())?;
        limits::optional_id("device", self.device.as_deref())?;
        for (field, value) in [("since", &self.since), ("until", &self.until)] {
            if let Some(text) = value {
                rfc3339_bound(field, text)?;
            }
        }
        limits::list_limit(Some(self.limit))
    }
}

/// The Temporal visibility query of a validated filter: its values cannot close the quotes.
pub fn visibility_query(filter: &ChangeFilter) -> String {
    let mut clauses = vec![format!(
        "WorkflowType = '{}'",
        temporalio_common::WorkflowDefinition::name(&TemplateDeployment::run)
    )];
    match filter.status {
        Some(StatusFilter::Execution(status)) => {
            clauses.push(format!("ExecutionStatus = '{}'", status.visibility_name()));
        }
        Some(StatusFilter::Step(step)) => {
            clauses.push(format!("{} = '{}'", search::STEP.name(), step.as_str()));
        }
        None => {}
    }
    if filter.approver.is_some() {
        clauses.push("ExecutionStatus = 'Running'".into());
    }
    for (attribute, value) in [
        (search::REQUESTER.name(), &filter.requested_by),
        (search::TICKET.name(), &filter.ticket_number),
        (search::DEVICES.name(), &filter.device),
        (search::APPROVERS.name(), &filter.approver),
    ] {
        if let Some(value) = value {
            clauses.push(format!("{attribute} = '{value}'"));
        }
    }
    for (bound, value) in [(">=", &filter.since), ("<=", &filter.until)] {
        if let Some(time) = value.as_deref().and_then(|t| rfc3339_bound("", t).ok()) {
            clauses.push(format!("StartTime {bound} '{time}'"));
        }
    }
    clauses.join(" AND ")
}

/// Changes matching the filter, newest first.
pub async fn list(
    client: &Client,
    filter: &ChangeFilter,
) -> Result<Vec<ChangeSummary>, ChangeError> {
    let options = temporalio_client::WorkflowListOptions::builder()
        .limit(filter.limit as usize)
        .build();
    let mut stream = client.list_workflows(visibility_query(filter), options);
    let mut changes = Vec::new();
    while let Some(execution) = stream.next().await {
        let execution = execution.map_err(|e| ChangeError::Temporal(e.to_string()))?;
        let attributes = execution.search_attributes();
        let memo = execution.memo();
        let noted = |key: &str| memo.get::<String>(key).ok().flatten();
        let time = |t: Option<std::time::SystemTime>| {
            t.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| rfc3339(d.as_secs() as i64, d.subsec_nanos() as i32))
        };
        changes.push(ChangeSummary {
            change_id: execution.id().to_string(),
            status: execution.status().into(),
            step: attributes.get(&search::STEP),
            requested_by: attributes.get(&search::REQUESTER),
            ticket_number: attributes.get(&search::TICKET),
            devices: attributes.get(&search::DEVICES).unwrap_or_default(),
            template_id: noted(memo::TEMPLATE),
            change_type: noted(memo::CHANGE_TYPE),
            window_start: noted(memo::WINDOW_START),
            window_end: noted(memo::WINDOW_END),
            started_at: time(execution.start_time()),
            closed_at: time(execution.close_time()),
        });
    }
    Ok(changes)
}
