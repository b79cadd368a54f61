//! One tool call, whatever the protocol: check the arguments, ask the policy, write the audit
//! record, then start or read the workflow. MCP (`server`) and REST (`rest`) both call this.

use crate::changes;
use crate::changes::{ChangeFilter, DecideError, StatusFilter, Watched};
use crate::front_door::FrontDoor;
use crate::outcome::{AuditUnavailable, Outcome, Progress, Wait};
use crate::results::{CancelResult, ChangeHistory, ChangeList, ChangeStatus};
use crate::results::{ChangeList as PendingList, DecisionResult, DeployResult};
use crate::tools::{self, Call, ChangeAction, ToolSpec};
use changeflow_engine::audit::{AuditEntry, canonical_hash};
use changeflow_engine::identity::VerifiedIdentity;
use changeflow_engine::metrics as m;
use changeflow_engine::policy::{PolicyIdentity, PolicyInput, PolicyTool};
use changeflow_workflows::arguments::ListDevices;
use changeflow_workflows::github::{
    GetMergeFacts, GitSource, MergePullRequest, ResolveSource, ResolvedSource,
};
use changeflow_workflows::limits::MAX_LIST_LIMIT;
use changeflow_workflows::operations::{Operation, OperationRequest};
use changeflow_workflows::{
    ApprovalDecision, ChangeProgress, ChangeStep, DecisionSource, DeploymentRequest, Verdict,
};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What an overloaded front door asks callers to wait before retrying.
pub const RETRY_AFTER_OVERLOAD_SECS: u64 = 1;

/// By default, calls with the same caller, tool and arguments within ten minutes reuse one
/// workflow (see `FrontDoor::idempotency_window`).
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(600);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A write's workflow id for one scope (an idempotency key or a time bucket).
fn scoped_id(
    prefix: &str,
    identity: &VerifiedIdentity,
    tool: &str,
    arguments: &Value,
    scope: &str,
) -> String {
    let mut args = arguments.clone();
    if let Some(map) = args.as_object_mut() {
        map.remove("idempotency_key");
    }
    let digest = canonical_hash(&json!([identity.subject, tool, args, scope]));
    format!("{prefix}-{}", &digest[..32])
}

/// A fresh workflow id for a read: reads are never deduplicated, so each sees current data.
fn fresh_id(prefix: &str, identity: &VerifiedIdentity, tool: &str) -> String {
    changes::fresh_id(prefix, &json!([identity.subject, tool]))
}

/// What policy is told beyond the call itself: the change a tool names (its requester), or
/// for a deployment its back-out plan, and the devices a deployment targets (as Catalyst
/// Center describes them).
#[derive(Debug, Default)]
struct Facts {
    change: Option<Value>,
    devices: Option<Vec<Value>>,
    source: Option<Value>,
    pull_request: Option<Value>,
}

fn policy_input(
    identity: &VerifiedIdentity,
    spec: &ToolSpec,
    arguments: &Value,
    facts: Facts,
) -> PolicyInput {
    PolicyInput {
        identity: PolicyIdentity::from(identity),
        resource: spec.server.to_string(),
        action: spec.action.to_string(),
        tool: PolicyTool {
            name: spec.name.to_string(),
            arguments: arguments.clone(),
        },
        context: json!({"time": now_secs(), "client": identity.client_id}),
        change: facts.change,
        devices: facts.devices,
        source: facts.source,
        pull_request: facts.pull_request,
    }
}

/// An allowed task request, to audit its outcome with.
pub struct TaskPermit<'a> {
    front: &'a FrontDoor,
    identity: VerifiedIdentity,
    method: &'static str,
    arguments: Value,
    decision: (String, String),
}

impl TaskPermit<'_> {
    /// Who asked.
    pub fn identity(&self) -> &VerifiedIdentity {
        &self.identity
    }

    pub async fn note(&self, outcome: &str) -> Result<(), AuditUnavailable> {
        let task_id = self.arguments["change_id"].as_str().unwrap_or_default();
        self.front
            .record(
                &self.identity,
                ("tasks", self.method),
                (&self.arguments, None),
                ("allow", &self.decision.0, &self.decision.1),
                task_id,
                outcome,
            )
            .await
    }
}

impl FrontDoor {
    /// Policy for a task request (`tasks/get`, `tasks/update`, `tasks/cancel`): judged as the
    /// tool with the same effect on that change (`get_change_status`, `cancel_change`), audited
    /// under the request's own name. A denial is audited here and returned.
    pub async fn authorize_task(
        &self,
        identity: VerifiedIdentity,
        method: &'static str,
        task_id: &str,
    ) -> Result<Result<TaskPermit<'_>, Outcome>, AuditUnavailable> {
        let spec = tools::task_request_tool(method);
        let arguments = json!({"change_id": task_id});
        let decision = self.decide(&identity, spec, &arguments, Facts::default());
        if !decision.allow {
            self.record(
                &identity,
                ("tasks", method),
                (&arguments, None),
                ("deny", &decision.reason, &decision.revision),
                task_id,
                "denied",
            )
            .await?;
            return Ok(Err(Outcome::Denied {
                missing_permission: format!("{} on {}", spec.action, spec.server),
                reason: decision.reason,
            }));
        }
        Ok(Ok(TaskPermit {
            front: self,
            identity,
            method,
            arguments,
            decision: (decision.reason, decision.revision),
        }))
    }

    /// The workflow id of a write: the same caller, tool and arguments with the same
    /// idempotency key, or within the idempotency window, give the id of the workflow already
    /// started, so a retried call finds it instead of writing twice. The window slides: ids
    /// are per time bucket, and a call also reuses the previous bucket's workflow when that
    /// started less than a window ago.
    async fn idempotent_id(
        &self,
        prefix: &str,
        identity: &VerifiedIdentity,
        tool: &str,
        arguments: &Value,
        key: Option<&str>,
    ) -> String {
        let id = |scope: &str| scoped_id(prefix, identity, tool, arguments, scope);
        if let Some(key) = key {
            return id(&format!("key:{key}"));
        }
        let bucket = now_secs() / self.idempotency_window.as_secs().max(1);
        let previous = id(&format!("window:{}", bucket.saturating_sub(1)));
        if self
            .temporal
            .started_within(&previous, self.idempotency_window)
            .await
        {
            previous
        } else {
            id(&format!("window:{bucket}"))
        }
    }

    /// Whether policy would allow `identity` this call, with the facts a real call would get:
    /// for showing a control, never instead of the call's own decision (not audited, not
    /// counted).
    pub async fn permits(&self, identity: &VerifiedIdentity, tool: &str, arguments: Value) -> bool {
        let Some(spec) = tools::find(None, tool) else {
            return false;
        };
        let Ok(call) = (spec.parse)(arguments.clone()) else {
            return false;
        };
        let facts = self.facts(&call).await;
        self.policy
            .decide(&policy_input(identity, spec, &arguments, facts))
            .allow
    }

    /// The policy's decision on a call, counted and timed.
    fn decide(
        &self,
        identity: &VerifiedIdentity,
        spec: &ToolSpec,
        arguments: &Value,
        facts: Facts,
    ) -> changeflow_engine::policy::PolicyDecision {
        let started = std::time::Instant::now();
        let span = tracing::info_span!(
            "policy decision",
            changeflow.decision = tracing::field::Empty
        );
        let decision = span.in_scope(|| {
            self.policy
                .decide(&policy_input(identity, spec, arguments, facts))
        });
        metrics::histogram!(m::POLICY_SECONDS).record(started.elapsed().as_secs_f64());
        let verdict = if decision.allow { "allow" } else { "deny" };
        span.record("changeflow.decision", verdict);
        metrics::counter!(m::AUTHZ_DECISIONS, "action" => spec.action, "resource" => spec.server, "decision" => verdict)
            .increment(1);
        decision
    }

    /// The facts policy needs for this call, short of device facts (see `run_call`).
    async fn facts(&self, call: &Call) -> Facts {
        match call {
            Call::Decide(_, change, _) => Facts {
                change: self
                    .temporal
                    .requester(&change.change_id)
                    .await
                    .map(|requester| json!({"requested_by": requester})),
                ..Facts::default()
            },
            _ => Facts::default(),
        }
    }

    /// A GitHub read for policy, as the caller, through a `DownstreamOperation` workflow (the
    /// front door never talks to GitHub itself); the error's text when it fails.
    async fn github_fact(
        &self,
        identity: &VerifiedIdentity,
        tool: &str,
        operation: Operation,
    ) -> Result<Value, String> {
        let request = OperationRequest::new(operation, &identity.subject);
        let id = fresh_id(changes::READ_PREFIX, identity, tool);
        self.temporal
            .run_operation(&id, request)
            .await
            .map_err(|e| e.to_string())
    }

    /// The pull request a merge names: author, base, default branch, approvers. When GitHub
    /// cannot say, `{"unknown": why}`: the merge rule then refuses (fail safe).
    async fn merge_facts(&self, identity: &VerifiedIdentity, merge: &MergePullRequest) -> Value {
        let operation = Operation::GetMergeFacts(GetMergeFacts {
            owner: merge.owner.clone(),
            repo: merge.repo.clone(),
            pull_number: merge.pull_number,
        });
        self.github_fact(identity, "merge_pull_request", operation)
            .await
            .unwrap_or_else(|why| json!({"unknown": why}))
    }

    /// A deployment's Git source resolved as the caller sees it.
    async fn source_facts(
        &self,
        identity: &VerifiedIdentity,
        source: &GitSource,
    ) -> Result<ResolvedSource, String> {
        let operation = Operation::ResolveSource(ResolveSource {
            source: source.clone(),
        });
        let value = self
            .github_fact(identity, "deploy_template", operation)
            .await?;
        serde_json::from_value(value).map_err(|e| format!("unexpected resolution: {e}"))
    }

    /// The devices as Catalyst Center describes them (hostname, role, family), read through a
    /// `list_devices` workflow; a device it did not describe has role `UNKNOWN`, which the
    /// blackout rules treat as core (fail safe).
    async fn device_facts(&self, identity: &VerifiedIdentity, names: &[String]) -> Vec<Value> {
        let request = OperationRequest::new(
            Operation::ListDevices(ListDevices {
                hostname: None,
                family: None,
                reachability: None,
                limit: Some(MAX_LIST_LIMIT),
            }),
            &identity.subject,
        );
        let id = fresh_id(changes::READ_PREFIX, identity, "list_devices");
        let temporal = self.temporal.clone();
        let read = async move {
            match temporal.run_operation(&id, request).await {
                Ok(listed) => listed["devices"].as_array().cloned(),
                Err(e) => {
                    tracing::warn!(error = ?e, "device facts for policy unavailable; devices count as UNKNOWN");
                    None
                }
            }
        };
        let known = self.devices.get_or_read(read).await.unwrap_or_default();
        names
            .iter()
            .map(|name| {
                let device = known
                    .iter()
                    .find(|d| d["hostname"] == name.as_str() || d["device_id"] == name.as_str());
                let text = |field: &str| {
                    device
                        .and_then(|d| d[field].as_str())
                        .filter(|v| !v.is_empty())
                        .map(str::to_string)
                };
                json!({
                    "hostname": name,
                    "role": text("role").map_or_else(|| "UNKNOWN".to_string(), |r| r.to_uppercase()),
                    "family": text("family").unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn record(
        &self,
        identity: &VerifiedIdentity,
        (server, tool): (&str, &str),
        (arguments, note): (&Value, Option<&str>),
        decision: (&str, &str, &str),
        workflow_id: &str,
        outcome: &str,
    ) -> Result<(), AuditUnavailable> {
        let entry = AuditEntry {
            subject: identity.subject.clone(),
            client: identity.client_id.clone().unwrap_or_default(),
            server: server.to_string(),
            tool: tool.to_string(),
            arguments_hash: canonical_hash(arguments),
            decision: decision.0.to_string(),
            reason: decision.1.to_string(),
            policy_revision: decision.2.to_string(),
            workflow_id: workflow_id.to_string(),
            outcome: outcome.to_string(),
            note: note
                .or_else(|| {
                    ["justification", "comment"]
                        .iter()
                        .find_map(|field| arguments.get(*field).and_then(Value::as_str))
                })
                .unwrap_or_default()
                .to_string(),
        };
        // The rules behind the decision stay readable: the revision's text is kept once.
        if !self.audit.kept_policy_revision(decision.2) {
            let (current, files) = self.policy.sources();
            if current == decision.2
                && let Err(e) = self.audit.keep_policy_revision(&current, &files).await
            {
                tracing::error!(error = %e, "audit store unavailable");
                return Err(AuditUnavailable);
            }
        }
        let appended = {
            use tracing::Instrument as _;
            let span = tracing::info_span!("audit append", changeflow.outcome = outcome);
            self.audit.append(entry).instrument(span).await
        };
        let result = if appended.is_ok() {
            "success"
        } else {
            "failure"
        };
        metrics::counter!(m::AUDIT_WRITES, "result" => result).increment(1);
        appended.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "audit store unavailable");
            AuditUnavailable
        })
    }

    /// Runs one tool call end to end and logs it in one line (tool, user, client, outcome,
    /// duration, change). Without an audit record nothing happens: an audit-store failure is an
    /// error and no workflow is touched.
    pub async fn invoke(
        &self,
        identity: &VerifiedIdentity,
        spec: &ToolSpec,
        arguments: Value,
        wait: Wait,
        on_progress: impl FnMut(&str, &Progress),
    ) -> Result<Outcome, AuditUnavailable> {
        use tracing::Instrument as _;
        let started = std::time::Instant::now();
        // The root of the call's trace (with --otlp-endpoint), whatever span the transport has
        // open for the session: authentication has happened;
        // policy, audit and the workflow start are inside it, and the workflow and its
        // activities continue it through Temporal headers.
        let span = tracing::info_span!(
            parent: None,
            "tool call",
            otel.name = %format!("tool {}", spec.name),
            otel.kind = "server",
            changeflow.server = spec.server,
            changeflow.tool = spec.name,
            user.name = %identity.subject,
        );
        let outcome = self
            .run_call(identity, spec, arguments, wait, on_progress)
            .instrument(span.clone())
            .await;
        let _in_call = span.enter();
        let (word, change_id) = match &outcome {
            Ok(outcome) => (outcome.word(), outcome.change_id()),
            Err(_) => ("audit unavailable", None),
        };
        tracing::info!(
            server = spec.server,
            tool = spec.name,
            user = %identity.subject,
            client = identity.client_id.as_deref().unwrap_or_default(),
            outcome = word,
            duration_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            change_id = change_id.as_deref().unwrap_or_default(),
            "tool call"
        );
        metrics::counter!(m::TOOL_CALLS, "server" => spec.server, "tool" => spec.name, "outcome" => word)
            .increment(1);
        metrics::histogram!(m::TOOL_CALL_SECONDS, "server" => spec.server, "tool" => spec.name)
            .record(started.elapsed().as_secs_f64());
        outcome
    }

    async fn run_call(
        &self,
        identity: &VerifiedIdentity,
        spec: &ToolSpec,
        arguments: Value,
        wait: Wait,
        mut on_progress: impl FnMut(&str, &Progress),
    ) -> Result<Outcome, AuditUnavailable> {
        let call = match (spec.parse)(arguments.clone()) {
            Ok(call) => call,
            Err(problem) => {
                self.record(
                    identity,
                    (spec.server, spec.name),
                    (&arguments, None),
                    ("none", &problem, ""),
                    "",
                    "invalid",
                )
                .await?;
                return Ok(Outcome::Invalid(problem));
            }
        };
        // Past the bound on workflow calls, refuse at once (before policy and audit: a refusal
        // that changes nothing costs nothing) rather than queue behind the calls running.
        let slot = if call.runs_workflow() {
            match self.in_flight.try_slot() {
                Some(slot) => Some(slot),
                None => {
                    metrics::counter!(m::CALLS_SHED, "server" => spec.server, "tool" => spec.name)
                        .increment(1);
                    return Ok(Outcome::Overloaded {
                        retry_after_secs: RETRY_AFTER_OVERLOAD_SECS,
                    });
                }
            }
        } else {
            None
        };
        let facts = self.facts(&call).await;
        let mut decision = self.decide(identity, spec, &arguments, facts);
        let mut source: Option<ResolvedSource> = None;
        // Without an audit record nothing happens: a store that cannot take one now refuses
        // the call before any workflow is started or read.
        if decision.allow && !self.audit.writable().await {
            tracing::error!("audit store not writable; refusing the call");
            metrics::counter!(m::AUDIT_WRITES, "result" => "failure").increment(1);
            return Err(AuditUnavailable);
        }
        if decision.allow
            && let Call::Deploy(args) = &call
        {
            // Only a deployment the caller may make learns its devices' facts (a read through
            // Temporal), and is judged again with them: the blackout rules may still refuse it.
            // The back-out it would get (its own, or its template's declared inverse), for the
            // rules requiring one.
            let plan = self
                .verification
                .plan(&args.template_key(), args.backout.as_ref());
            let backout = plan
                .backout
                .map(|b| json!({"template_id": b.template_id, "source": plan.backout_source}));
            // A template from Git: the commit its ref names now, and the pull request that
            // merged it (the change is then pinned to that commit).
            let source_facts = match &args.source {
                Some(git) => {
                    let resolved = self.source_facts(identity, git).await;
                    let fact = match &resolved {
                        Ok(r) => json!(r),
                        Err(problem) => json!({"unresolved": problem}),
                    };
                    source = resolved.ok();
                    Some(fact)
                }
                None => None,
            };
            let facts = Facts {
                change: Some(json!({ "backout": backout })),
                devices: Some(self.device_facts(identity, &args.devices).await),
                source: source_facts,
                ..Facts::default()
            };
            decision = self.decide(identity, spec, &arguments, facts);
        }
        if decision.allow
            && let Call::Operation(Operation::MergePullRequest(merge)) = &call
        {
            // A merge the caller may make learns the pull request's author and approvals.
            let facts = Facts {
                pull_request: Some(self.merge_facts(identity, merge).await),
                ..Facts::default()
            };
            decision = self.decide(identity, spec, &arguments, facts);
        }
        let source_note = source
            .as_ref()
            .map(|s| format!("template from Git: {}", s.describe()));
        let verdict = if decision.allow { "allow" } else { "deny" };
        let audited = (
            verdict,
            decision.reason.as_str(),
            decision.revision.as_str(),
        );
        // Every record after the decision carries the same caller, tool, arguments and verdict.
        let note = async |workflow_id: &str, outcome: &str| {
            self.record(
                identity,
                (spec.server, spec.name),
                (&arguments, source_note.as_deref()),
                audited,
                workflow_id,
                outcome,
            )
            .await
        };
        if !decision.allow {
            note("", "denied").await?;
            return Ok(Outcome::Denied {
                missing_permission: format!("{} on {}", spec.action, spec.server),
                reason: decision.reason.clone(),
            });
        }

        match call {
            #[cfg(feature = "fixtures")]
            Call::Fixture(fixture_arguments) => {
                let id = fresh_id("fixture", identity, spec.name);
                let call = changeflow_workflows::fixtures::FixtureCall {
                    tool: spec.name.to_string(),
                    arguments: fixture_arguments,
                };
                let by = &identity.subject;
                let started = self.temporal.start_fixture(&id, by, call).await;
                note(
                    &id,
                    if started.is_ok() {
                        "started"
                    } else {
                        "start failed"
                    },
                )
                .await?;
                if let Err(e) = started {
                    return Ok(Outcome::Failed(e.to_string()));
                }
                if wait == Wait::UntilStarted {
                    return Ok(Outcome::Started {
                        change_id: id,
                        new_change: false,
                    });
                }
                let Watched::Done(finished) = changes::watch(
                    self.temporal.fixture_finished(&id),
                    || self.temporal.fixture_progress(&id),
                    |p| on_progress(&id, p),
                    |_| false,
                )
                .await
                else {
                    unreachable!("a fixture watch never stops early");
                };
                Ok(match finished {
                    crate::tasks::TaskState::Completed(result) => Outcome::Tool(result),
                    crate::tasks::TaskState::Failed(message) => Outcome::ProtocolError(message),
                    other => Outcome::Failed(format!("{other:?}").to_lowercase()),
                })
            }
            Call::Operation(operation) => {
                let id = if spec.read_only {
                    fresh_id(changes::READ_PREFIX, identity, spec.name)
                } else {
                    self.idempotent_id(
                        "op",
                        identity,
                        spec.name,
                        &arguments,
                        operation.idempotency_key(),
                    )
                    .await
                };
                let request = OperationRequest::new(operation, &identity.subject);
                let result = self.temporal.run_operation(&id, request).await;
                note(
                    &id,
                    if result.is_ok() {
                        "completed"
                    } else {
                        "failed"
                    },
                )
                .await?;
                Ok(match result {
                    Ok(value) => Outcome::Done(value),
                    Err(changes::OperationFailure::NotFound(message)) => Outcome::NotFound(message),
                    Err(changes::OperationFailure::Invalid(message)) => Outcome::Invalid(message),
                    Err(changes::OperationFailure::Conflict(message)) => Outcome::Conflict(message),
                    Err(changes::OperationFailure::Failed(message)) => Outcome::Failed(message),
                })
            }
            Call::List(filter) => {
                note("", "read").await?;
                Ok(match self.temporal.list(&filter).await {
                    Ok(changes) => Outcome::done(ChangeList { changes }),
                    Err(e) => Outcome::Failed(e.to_string()),
                })
            }
            Call::Deploy(args) => {
                let id = self
                    .idempotent_id(
                        "change",
                        identity,
                        spec.name,
                        &arguments,
                        args.idempotency_key.as_deref(),
                    )
                    .await;
                let mut request = DeploymentRequest::new(args, identity.subject.clone());
                request.approval_poll_secs = self.approval_poll_secs;
                // Pinned: the workflow deploys the commit policy judged, even if the branch
                // has moved since.
                request.source_commit = source.as_ref().map(|s| s.commit_sha.clone());
                request.verification = self.verification.plan(
                    &request.change.template_key(),
                    request.change.backout.as_ref(),
                );
                let started = match self.temporal.start_change(&id, request).await {
                    Ok(started) => started,
                    Err(e) => {
                        note(&id, "start failed").await?;
                        return Ok(Outcome::Failed(e.to_string()));
                    }
                };
                note(&id, "started").await?;
                // Started: following the change is queries, which do not count.
                drop(slot);
                if wait == Wait::UntilStarted {
                    return Ok(Outcome::Started {
                        change_id: id,
                        new_change: started == changes::Started::New,
                    });
                }
                let report = |p: &ChangeProgress| on_progress(&id, &Progress::from(p));
                match crate::temporal::follow(self.temporal.as_ref(), &id, report).await {
                    Watched::Stopped(progress) => {
                        note(&id, progress.step.as_str()).await?;
                        Ok(Outcome::done(DeployResult::waiting(&id, &progress)))
                    }
                    Watched::Done(Ok(result)) => {
                        let failed = result.outcome.is_failure();
                        note(&id, result.outcome.final_step().as_str()).await?;
                        let value = changes::result_value(&id, &result);
                        Ok(if failed {
                            Outcome::ChangeFailed(value)
                        } else {
                            Outcome::Done(value)
                        })
                    }
                    Watched::Done(Err(e)) => {
                        note(&id, "error").await?;
                        Ok(Outcome::Failed(format!(
                            "change {id} did not complete: {e}"
                        )))
                    }
                }
            }
            Call::Decide(verdict, change, comment) => {
                let id = change.change_id;
                let decision = ApprovalDecision {
                    approver: identity.subject.clone(),
                    verdict,
                    comment: comment.unwrap_or_default(),
                    source: DecisionSource::Changeflow,
                };
                let decided = self.temporal.decide(&id, decision).await;
                let word = match (&decided, verdict) {
                    (Ok(_), Verdict::Approved) => "approved",
                    (Ok(_), Verdict::Rejected) => "rejected",
                    (Err(DecideError::NotFound(_)), _) => "not found",
                    (Err(DecideError::Refused(_)), _) => "refused",
                    (Err(DecideError::Temporal(_)), _) => "error",
                };
                note(&id, word).await?;
                Ok(match decided {
                    Ok(receipt) => Outcome::done(DecisionResult {
                        change_id: id,
                        approver: receipt.approver,
                        verdict: receipt.verdict,
                        ticket_number: receipt.ticket_number,
                        accepted: true,
                    }),
                    Err(DecideError::NotFound(id)) => {
                        Outcome::NotFound(format!("no change '{id}'"))
                    }
                    Err(DecideError::Refused(why)) => {
                        Outcome::Conflict(format!("the change refused the decision: {why}"))
                    }
                    Err(DecideError::Temporal(why)) => Outcome::Failed(why),
                })
            }
            Call::SearchAudit(args) => {
                note("", "read").await?;
                Ok(match crate::audit_tools::search(&self.audit, &args).await {
                    Ok(page) => Outcome::done(page),
                    Err(e) => Outcome::Failed(e),
                })
            }
            Call::VerifyAudit => {
                note("", "read").await?;
                Ok(match self.audit.verify().await {
                    Ok(report) => Outcome::done(crate::audit_tools::ChainVerdict::from(report)),
                    Err(e) => Outcome::Failed(e.to_string()),
                })
            }
            Call::Evidence(change) => {
                let id = change.change_id;
                // Audited first: the bundle then holds the record of its own export.
                note(&id, "exported").await?;
                Ok(
                    match crate::evidence::collect(
                        self.temporal.as_ref(),
                        &self.audit,
                        &self.evidence,
                        &id,
                        &identity.subject,
                    )
                    .await
                    {
                        Ok(bundle) => Outcome::Evidence(Box::new(bundle)),
                        Err(crate::evidence::EvidenceError::NotFound(_)) => {
                            Outcome::NotFound(format!("no change '{id}'"))
                        }
                        Err(e) => Outcome::Failed(e.to_string()),
                    },
                )
            }
            Call::Pending(limit) => {
                note("", "read").await?;
                let filter = ChangeFilter {
                    status: Some(StatusFilter::Step(ChangeStep::AwaitingApproval)),
                    approver: Some(identity.subject.clone()),
                    requested_by: None,
                    ticket_number: None,
                    device: None,
                    since: None,
                    until: None,
                    limit,
                };
                Ok(match self.temporal.list(&filter).await {
                    Ok(changes) => Outcome::done(PendingList { changes }),
                    Err(e) => Outcome::Failed(e.to_string()),
                })
            }
            Call::Change(action, change) => {
                let id = change.change_id;
                let read = if action == ChangeAction::Status {
                    self.temporal.status_and_progress(&id).await
                } else {
                    self.temporal.status(&id).await.map(|state| (state, None))
                };
                let Ok((status, progress)) = read else {
                    note(&id, "not found").await?;
                    return Ok(Outcome::NotFound(format!("no change '{id}'")));
                };
                if action == ChangeAction::Cancel {
                    let cancelled = self
                        .temporal
                        .cancel(&id, &format!("canceled by {}", identity.subject))
                        .await;
                    let outcome = if cancelled.is_ok() {
                        "cancel requested"
                    } else {
                        "cancel failed"
                    };
                    note(&id, outcome).await?;
                    return Ok(match cancelled {
                        Ok(()) => Outcome::done(CancelResult {
                            change_id: id,
                            cancel_requested: true,
                        }),
                        Err(e) => Outcome::Failed(e.to_string()),
                    });
                }
                note(&id, "read").await?;
                if action == ChangeAction::History {
                    return Ok(match self.temporal.history(&id).await {
                        Ok(timeline) => Outcome::done(ChangeHistory {
                            change_id: id,
                            status,
                            timeline,
                        }),
                        Err(e) => Outcome::Failed(e.to_string()),
                    });
                }
                Ok(Outcome::done(ChangeStatus::new(&id, status, progress)))
            }
        }
    }
}
