//! What the front door asks of Temporal, as one small interface. `TemporalWorkflows` implements
//! it (over `changes`, `tasks` and `fixtures`); the front door's own tests implement it in
//! memory, so `app()` and `invoke()` run without a socket or a Temporal server.

use crate::changes::{
    self, ChangeError, ChangeFilter, DecideError, OperationFailure as Failure, Started, Watched,
};
use crate::results::{ChangeSummary, ExecutionState, TimelineEntry};
use crate::tasks::{self, TaskLookupError, TaskView};
use async_trait::async_trait;
#[cfg(feature = "fixtures")]
use changeflow_workflows::fixtures::FixtureCall;
use changeflow_workflows::{
    ApprovalDecision, ChangeProgress, ChangeResult, ChangeStep, DecisionReceipt, DeploymentRequest,
    OperationRequest,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use temporalio_client::Client;

/// The workflows behind the tools: start, read, cancel, list.
#[async_trait]
pub trait Workflows: Send + Sync {
    /// Starts a `TemplateDeployment` under `id`; an id already used is that change
    /// (`Started::Existing`).
    async fn start_change(
        &self,
        id: &str,
        request: DeploymentRequest,
    ) -> Result<Started, ChangeError>;
    /// Runs a `DownstreamOperation` under `id` and waits for its result.
    async fn run_operation(&self, id: &str, request: OperationRequest) -> Result<Value, Failure>;
    /// Whether Temporal answers (readiness).
    async fn reachable(&self) -> bool;
    /// Whether a workflow `id` exists and started less than `window` ago.
    async fn started_within(&self, id: &str, window: Duration) -> bool;
    /// A change's execution state, if it exists.
    async fn status(&self, id: &str) -> Result<ExecutionState, ChangeError>;
    /// A change's progress, once a worker answers.
    async fn progress(&self, id: &str) -> Option<ChangeProgress>;
    /// A change's execution state and progress (`get_change_status`).
    async fn status_and_progress(
        &self,
        id: &str,
    ) -> Result<(ExecutionState, Option<ChangeProgress>), ChangeError> {
        let state = self.status(id).await?;
        Ok((state, self.progress(id).await))
    }
    /// Waits for a change's result.
    async fn change_result(&self, id: &str) -> Result<ChangeResult, String>;
    /// Requests a change's cancellation.
    async fn cancel(&self, id: &str, reason: &str) -> Result<(), ChangeError>;
    /// Delivers an approver's decision (an update: accepted or refused at once).
    async fn decide(
        &self,
        id: &str,
        decision: ApprovalDecision,
    ) -> Result<DecisionReceipt, DecideError>;
    /// Who requested a change, if it exists.
    async fn requester(&self, id: &str) -> Option<String>;
    /// How many changes are running in `step` (Temporal visibility), if Temporal answers.
    async fn running_in_step(&self, step: ChangeStep) -> Option<u64>;
    /// A change's step timeline.
    async fn history(&self, id: &str) -> Result<Vec<TimelineEntry>, ChangeError>;
    /// A workflow's whole history, protobuf `History` bytes (evidence, replay).
    async fn fetch_history(&self, id: &str) -> Result<Vec<u8>, ChangeError>;
    /// Changes matching a filter, newest first.
    async fn list(&self, filter: &ChangeFilter) -> Result<Vec<ChangeSummary>, ChangeError>;
    /// A workflow seen as an MCP task.
    async fn task(&self, id: &str) -> Result<TaskView, TaskLookupError>;
    /// A task just started by a call (`working` unless it had already ended).
    async fn started_task(&self, id: &str) -> Result<TaskView, TaskLookupError> {
        self.task(id).await
    }
    /// Delivers answers to a task's input requests.
    async fn respond(
        &self,
        id: &str,
        answers: BTreeMap<String, Value>,
    ) -> Result<(), TaskLookupError>;
    /// Starts a conformance fixture's workflow for `by`.
    #[cfg(feature = "fixtures")]
    async fn start_fixture(&self, id: &str, by: &str, call: FixtureCall)
    -> Result<(), ChangeError>;
    /// A fixture's progress.
    #[cfg(feature = "fixtures")]
    async fn fixture_progress(&self, id: &str) -> Option<crate::outcome::Progress>;
    /// Waits for a fixture to end.
    #[cfg(feature = "fixtures")]
    async fn fixture_finished(&self, id: &str) -> tasks::TaskState;
}

/// Temporal itself: the SDK's client and the task queue the tools' workflows run on.
pub struct TemporalWorkflows {
    pub client: Client,
    pub task_queue: String,
    ended: EndedProgress,
}

impl TemporalWorkflows {
    pub fn new(client: Client, task_queue: impl Into<String>) -> Self {
        Self {
            client,
            task_queue: task_queue.into(),
            ended: EndedProgress::default(),
        }
    }
}

/// The progress of runs that have ended, which cannot change any more: asked once, then
/// answered from memory. A query on an ended run makes a worker replay its whole history.
/// Bounded: past `ENDED_PROGRESS_MAX` runs it starts afresh.
#[derive(Default)]
struct EndedProgress(Mutex<HashMap<(String, String), ChangeProgress>>);

/// How many ended runs' progress a front door remembers.
const ENDED_PROGRESS_MAX: usize = 1024;

impl EndedProgress {
    fn get(&self, key: &(String, String)) -> Option<ChangeProgress> {
        self.0.lock().ok()?.get(key).cloned()
    }

    fn keep(&self, key: (String, String), progress: ChangeProgress) {
        if let Ok(mut runs) = self.0.lock() {
            if runs.len() >= ENDED_PROGRESS_MAX {
                runs.clear();
            }
            runs.insert(key, progress);
        }
    }
}

#[async_trait]
impl Workflows for TemporalWorkflows {
    async fn start_change(
        &self,
        id: &str,
        request: DeploymentRequest,
    ) -> Result<Started, ChangeError> {
        changes::start(&self.client, &self.task_queue, id, request).await
    }

    async fn run_operation(&self, id: &str, request: OperationRequest) -> Result<Value, Failure> {
        changes::run_operation(&self.client, &self.task_queue, id, request).await
    }

    async fn reachable(&self) -> bool {
        changes::reachable(&self.client).await
    }

    async fn started_within(&self, id: &str, window: Duration) -> bool {
        changes::started_within(&self.client, id, window).await
    }

    async fn status(&self, id: &str) -> Result<ExecutionState, ChangeError> {
        changes::status(&self.client, id).await
    }

    async fn progress(&self, id: &str) -> Option<ChangeProgress> {
        changes::progress(&self.client, id).await
    }

    async fn status_and_progress(
        &self,
        id: &str,
    ) -> Result<(ExecutionState, Option<ChangeProgress>), ChangeError> {
        // A running change (what pollers mostly ask about) costs one query; one that ended,
        // a rejected query and a describe for its run, whose progress is then kept.
        if let Some(progress) = changes::open_progress(&self.client, id).await {
            return Ok((ExecutionState::Running, Some(progress)));
        }
        let (state, run) = changes::status_of_run(&self.client, id).await?;
        if state == ExecutionState::Running {
            // The query failed (or the change started again since): no progress to show yet.
            return Ok((state, None));
        }
        let key = (id.to_string(), run);
        if let Some(progress) = self.ended.get(&key) {
            return Ok((state, Some(progress)));
        }
        let progress = self.progress(id).await;
        if let Some(progress) = &progress {
            self.ended.keep(key, progress.clone());
        }
        Ok((state, progress))
    }

    async fn change_result(&self, id: &str) -> Result<ChangeResult, String> {
        let result = changes::result(&self.client, id).await;
        result.map_err(|e| e.to_string())
    }

    async fn cancel(&self, id: &str, reason: &str) -> Result<(), ChangeError> {
        changes::cancel(&self.client, id, reason).await
    }

    async fn history(&self, id: &str) -> Result<Vec<TimelineEntry>, ChangeError> {
        changes::history(&self.client, id).await
    }

    async fn fetch_history(&self, id: &str) -> Result<Vec<u8>, ChangeError> {
        use prost::Message as _;
        Ok(changes::fetch_history(&self.client, id)
            .await?
            .encode_to_vec())
    }

    async fn decide(
        &self,
        id: &str,
        decision: ApprovalDecision,
    ) -> Result<DecisionReceipt, DecideError> {
        changes::decide(&self.client, id, decision).await
    }

    async fn requester(&self, id: &str) -> Option<String> {
        changes::requester(&self.client, id).await
    }

    async fn running_in_step(&self, step: ChangeStep) -> Option<u64> {
        changes::running_in_step(&self.client, step).await
    }

    async fn list(&self, filter: &ChangeFilter) -> Result<Vec<ChangeSummary>, ChangeError> {
        changes::list(&self.client, filter).await
    }

    async fn task(&self, id: &str) -> Result<TaskView, TaskLookupError> {
        tasks::view(&self.client, id).await
    }

    async fn started_task(&self, id: &str) -> Result<TaskView, TaskLookupError> {
        tasks::view_started(&self.client, id).await
    }

    async fn respond(
        &self,
        id: &str,
        answers: BTreeMap<String, Value>,
    ) -> Result<(), TaskLookupError> {
        tasks::respond(&self.client, id, answers).await
    }

    #[cfg(feature = "fixtures")]
    async fn start_fixture(
        &self,
        id: &str,
        by: &str,
        call: FixtureCall,
    ) -> Result<(), ChangeError> {
        crate::fixtures::start(&self.client, &self.task_queue, id, by, call).await
    }

    #[cfg(feature = "fixtures")]
    async fn fixture_progress(&self, id: &str) -> Option<crate::outcome::Progress> {
        crate::fixtures::progress(&self.client, id).await
    }

    #[cfg(feature = "fixtures")]
    async fn fixture_finished(&self, id: &str) -> tasks::TaskState {
        tasks::finished(&self.client, id, Some(tasks::Kind::Fixture)).await
    }
}

/// Waits for a change's result while calling `on_progress` whenever its progress changes;
/// returns early, with its progress, once the change waits for a person, a window or a device
/// (no caller is held for days).
pub async fn follow(
    workflows: &dyn Workflows,
    id: &str,
    on_progress: impl FnMut(&ChangeProgress),
) -> Watched<Result<ChangeResult, String>, ChangeProgress> {
    changes::watch(
        workflows.change_result(id),
        || workflows.progress(id),
        on_progress,
        |p: &ChangeProgress| p.step.is_waiting(),
    )
    .await
}
