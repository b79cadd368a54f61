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
use futures_util::future::{BoxFuture, FutureExt, Shared};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    ended: Arc<EndedProgress>,
    looking_up: Coalesced<StatusAndProgress>,
}

type StatusAndProgress = Result<(ExecutionState, Option<ChangeProgress>), ChangeError>;

impl TemporalWorkflows {
    pub fn new(client: Client, task_queue: impl Into<String>) -> Self {
        Self {
            client,
            task_queue: task_queue.into(),
            ended: Arc::default(),
            looking_up: Coalesced::default(),
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

/// Where a change stands and its progress. A running change (what pollers mostly ask about)
/// costs one query; one that ended, a rejected query and a describe for its run, whose
/// progress is then kept.
async fn status_and_progress(
    client: Client,
    ended: Arc<EndedProgress>,
    id: String,
) -> StatusAndProgress {
    if let Some(progress) = changes::open_progress(&client, &id).await {
        return Ok((ExecutionState::Running, Some(progress)));
    }
    let (state, run) = changes::status_of_run(&client, &id).await?;
    if state == ExecutionState::Running {
        // The query failed (or the change started again since): no progress to show yet.
        return Ok((state, None));
    }
    let key = (id, run);
    if let Some(progress) = ended.get(&key) {
        return Ok((state, Some(progress)));
    }
    let progress = changes::progress(&client, &key.0).await;
    if let Some(progress) = &progress {
        ended.keep(key, progress.clone());
    }
    Ok((state, progress))
}

/// Lookups of one key shared by the callers waiting for them: many watchers polling the same
/// change (a NOC wall, a thousand clients) cost Temporal one query at a time, not one each.
/// A caller never gets an answer asked before it came: it joins a lookup that has not asked
/// yet, or else starts the next one, which asks once the one asking now has answered (so
/// callers arriving meanwhile share it). An entry goes as soon as one of its callers finishes
/// or gives up, unless a newer lookup has taken its place.
struct Coalesced<T> {
    lookups: Mutex<HashMap<String, Lookup<T>>>,
}

struct Lookup<T> {
    answer: Shared<BoxFuture<'static, T>>,
    /// Whether it has begun asking: callers from then on start the next lookup.
    asked: Arc<AtomicBool>,
}

impl<T> Default for Coalesced<T> {
    fn default() -> Self {
        Self {
            lookups: Mutex::default(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Coalesced<T> {
    /// The answer of a lookup for `key` that asks after this call began: a waiting one's, or
    /// `lookup()`'s, started now or after the one asking now.
    async fn run<F>(&self, key: &str, lookup: impl FnOnce() -> F) -> T
    where
        F: Future<Output = T> + Send + 'static,
    {
        let answer = {
            let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
            match lookups.get(key) {
                Some(waiting) if !waiting.asked.load(Ordering::SeqCst) => waiting.answer.clone(),
                current => {
                    let before = current.map(|l| l.answer.clone());
                    let asked = Arc::new(AtomicBool::new(false));
                    let (now_asking, ask) = (asked.clone(), lookup());
                    let answer = async move {
                        if let Some(before) = before {
                            before.await;
                        }
                        now_asking.store(true, Ordering::SeqCst);
                        ask.await
                    }
                    .boxed()
                    .shared();
                    let entry = Lookup {
                        answer: answer.clone(),
                        asked,
                    };
                    lookups.insert(key.to_string(), entry);
                    answer
                }
            }
        };
        let _leave = Leave {
            coalesced: self,
            key,
            answer: &answer,
        };
        answer.clone().await
    }
}

/// Removes a caller's lookup when the caller is done with it, answered or cancelled (unless a
/// newer lookup has taken its place).
struct Leave<'a, T> {
    coalesced: &'a Coalesced<T>,
    key: &'a str,
    answer: &'a Shared<BoxFuture<'static, T>>,
}

impl<T> Drop for Leave<'_, T> {
    fn drop(&mut self) {
        let mut lookups = self
            .coalesced
            .lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if lookups
            .get(self.key)
            .is_some_and(|l| l.answer.ptr_eq(self.answer))
        {
            lookups.remove(self.key);
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
        let (client, ended) = (self.client.clone(), self.ended.clone());
        let owned = id.to_string();
        self.looking_up
            .run(id, move || status_and_progress(client, ended, owned))
            .await
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

#[cfg(test)]
mod tests {
    use super::Coalesced;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    /// Callers of one `Coalesced` whose lookups are numbered in the order they are made and
    /// answer their number once `go` says so.
    struct Callers {
        coalesced: Arc<Coalesced<usize>>,
        made: Arc<AtomicUsize>,
        go: watch::Sender<bool>,
    }

    impl Callers {
        fn new() -> Self {
            Self {
                coalesced: Arc::default(),
                made: Arc::default(),
                go: watch::channel(false).0,
            }
        }

        fn lookup(
            &self,
        ) -> impl FnOnce() -> futures_util::future::BoxFuture<'static, usize> + use<> {
            let (made, mut release) = (self.made.clone(), self.go.subscribe());
            move || {
                let number = made.fetch_add(1, Ordering::SeqCst) + 1;
                Box::pin(async move {
                    let _ = release.wait_for(|go| *go).await;
                    number
                })
            }
        }

        /// A caller asking about `key`, run until it waits (the test runtime has one thread).
        async fn call(&self, key: &'static str) -> JoinHandle<usize> {
            let (coalesced, lookup) = (self.coalesced.clone(), self.lookup());
            let caller = tokio::spawn(async move { coalesced.run(key, lookup).await });
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            caller
        }

        fn release(&self) {
            self.go.send_replace(true);
        }

        fn lookups_left(&self) -> usize {
            self.coalesced.lookups.lock().unwrap().len()
        }
    }

    #[tokio::test]
    async fn callers_share_the_next_lookup_of_a_key_never_one_that_asked_before_they_came() {
        let callers = Callers::new();
        let first = callers.call("chg-1").await;
        // The first lookup is asking: these two share the next, which asks after it.
        let second = callers.call("chg-1").await;
        let third = callers.call("chg-1").await;
        let other = callers.call("chg-2").await;
        assert_eq!(
            callers.made.load(Ordering::SeqCst),
            3,
            "two of chg-1, one of chg-2"
        );
        callers.release();
        assert_eq!(first.await.unwrap(), 1);
        assert_eq!(second.await.unwrap(), 2);
        assert_eq!(third.await.unwrap(), 2);
        assert_eq!(other.await.unwrap(), 3);
        assert_eq!(callers.lookups_left(), 0);
        // A lookup that has answered is not shared with a later caller.
        assert_eq!(callers.call("chg-1").await.await.unwrap(), 4);
    }

    #[tokio::test]
    async fn a_caller_that_gives_up_leaves_no_lookup_behind_and_the_next_asks_afresh() {
        let callers = Callers::new();
        let first = callers.call("chg-1").await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(
            callers.lookups_left(),
            0,
            "the abandoned lookup is not offered"
        );
        let next = callers.call("chg-1").await;
        callers.release();
        assert_eq!(next.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_waiting_lookup_still_answers_when_the_caller_of_the_one_before_gives_up() {
        let callers = Callers::new();
        let first = callers.call("chg-1").await;
        let second = callers.call("chg-1").await;
        first.abort();
        assert!(first.await.unwrap_err().is_cancelled());
        callers.release();
        assert_eq!(second.await.unwrap(), 2);
        assert_eq!(callers.lookups_left(), 0);
    }
}
