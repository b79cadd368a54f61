//! One tool call, whatever the protocol: check the arguments, ask the policy, write the audit
//! record, then start or read the workflow. MCP (`server`) and REST (`rest`) both call this.

use crate::FrontDoor;
use crate::changes;
use crate::tools::{self, ChangeIdArgs, DeployTemplateArgs, ToolSpec};
use changeflow_engine::audit::{AuditEntry, canonical_hash};
use changeflow_engine::identity::VerifiedIdentity;
use changeflow_engine::policy::{PolicyIdentity, PolicyInput, PolicyTool};
use changeflow_workflows::operations::*;
use changeflow_workflows::{ChangeOutcome, ChangeProgress, DeploymentRequest};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// By default, calls with the same caller, tool and arguments within ten minutes reuse one
/// workflow (see `FrontDoor::idempotency_window`).
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(600);

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
            message: format!("{:?}: {}", p.step, p.message).to_lowercase(),
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

/// What came of a call.
#[derive(Debug)]
pub enum Outcome {
    /// Done: the structured result.
    Done(Value),
    /// The change ran and failed: the structured result, with the reason.
    ChangeFailed(Value),
    /// A tool result that is not structured content (the conformance fixtures).
    Tool(crate::tasks::ToolResult),
    /// The call failed at the protocol level (a JSON-RPC error, not a tool error).
    ProtocolError(String),
    /// A long-running change was started (or found running) and not waited for.
    Started { change_id: String },
    /// The policy refused: which permission is missing and why.
    Denied {
        missing_permission: String,
        reason: String,
    },
    /// The arguments are wrong; nothing was done.
    Invalid(String),
    /// The named change does not exist.
    NotFound(String),
    /// The workflow could not be started or did not complete.
    Failed(String),
}

/// The audit store failed; nothing was done.
#[derive(Debug, thiserror::Error)]
#[error("the audit store is unavailable; nothing was done")]
pub struct AuditUnavailable;

enum Call {
    Deploy(DeployTemplateArgs),
    Change(String),
    List(changes::ChangeFilter),
    /// A conformance fixture (test profile only).
    Fixture(changeflow_workflows::fixtures::FixtureCall),
    /// A quick downstream operation; `idempotency_key` is set for writes.
    Operation {
        operation: Operation,
        write: bool,
        idempotency_key: Option<String>,
    },
}

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
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let digest = canonical_hash(&json!([identity.subject, tool, nanos.to_string(), n]));
    format!("{prefix}-{}", &digest[..32])
}

fn from_args<T: DeserializeOwned>(arguments: &Value) -> Result<T, String> {
    serde_json::from_value(arguments.clone()).map_err(|e| e.to_string())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() || value.chars().count() > max {
        Err(format!("{field} must be 1 to {max} characters"))
    } else {
        Ok(())
    }
}

fn check_optional_id(field: &str, value: &Option<String>) -> Result<(), String> {
    value
        .as_deref()
        .map_or(Ok(()), |v| tools::check_id(field, v))
}

fn check_limit(limit: Option<u32>) -> Result<(), String> {
    match limit {
        Some(n) if !(1..=200).contains(&n) => Err("limit must be between 1 and 200".into()),
        _ => Ok(()),
    }
}

/// Parses and checks the arguments of a downstream operation tool, as its schema states.
fn operation(name: &str, arguments: &Value) -> Option<Result<Operation, String>> {
    let checked = match name {
        "list_templates" => from_args::<ListTemplates>(arguments).and_then(|a| {
            if let Some(p) = &a.project_name {
                check_text("project_name", p, 128)?;
            }
            Ok(Operation::ListTemplates(a))
        }),
        "get_template" => from_args::<GetTemplate>(arguments).and_then(|a| {
            tools::check_id("template_id", &a.template_id)?;
            Ok(Operation::GetTemplate(a))
        }),
        "list_devices" => from_args::<ListDevices>(arguments).and_then(|a| {
            check_optional_id("hostname", &a.hostname)?;
            if let Some(family) = &a.family {
                check_text("family", family, 64)?;
            }
            if let Some(r) = &a.reachability
                && r != "Reachable"
                && r != "Unreachable"
            {
                return Err("reachability must be Reachable or Unreachable".into());
            }
            check_limit(a.limit)?;
            Ok(Operation::ListDevices(a))
        }),
        "preview_template" => from_args::<PreviewTemplate>(arguments).and_then(|a| {
            tools::check_id("template_id", &a.template_id)?;
            tools::check_id("device", &a.device)?;
            if a.parameters.len() > 50 || a.parameters.values().any(|v| v.len() > 1024) {
                return Err("at most 50 parameters of at most 1024 characters each".into());
            }
            Ok(Operation::PreviewTemplate(a))
        }),
        "get_change_request" => from_args::<GetChangeRequest>(arguments).and_then(|a| {
            tools::check_id("number", &a.number)?;
            Ok(Operation::GetChangeRequest(a))
        }),
        "list_change_requests" => from_args::<ListChangeRequests>(arguments).and_then(|a| {
            if let Some(state) = &a.state
                && !tools::TICKET_STATES.contains(&state.as_str())
            {
                return Err(format!(
                    "state must be one of {}",
                    tools::TICKET_STATES.join(", ")
                ));
            }
            check_optional_id("requested_by", &a.requested_by)?;
            check_limit(a.limit)?;
            Ok(Operation::ListChangeRequests(a))
        }),
        "create_change_request" => from_args::<CreateChangeRequest>(arguments).and_then(|a| {
            check_text("short_description", &a.short_description, 160)?;
            if let Some(d) = &a.description {
                check_text("description", d, 4000)?;
            }
            check_optional_id("idempotency_key", &a.idempotency_key)?;
            Ok(Operation::CreateChangeRequest(a))
        }),
        "add_work_note" => from_args::<AddWorkNote>(arguments).and_then(|a| {
            tools::check_id("number", &a.number)?;
            check_text("note", &a.note, 4000)?;
            check_optional_id("idempotency_key", &a.idempotency_key)?;
            Ok(Operation::AddWorkNote(a))
        }),
        "close_change_request" => from_args::<CloseChangeRequest>(arguments).and_then(|a| {
            tools::check_id("number", &a.number)?;
            check_text("close_notes", &a.close_notes, 4000)?;
            Ok(Operation::CloseChangeRequest(a))
        }),
        _ => return None,
    };
    Some(checked)
}

fn idempotency_key(operation: &Operation) -> Option<String> {
    match operation {
        Operation::CreateChangeRequest(a) => a.idempotency_key.clone(),
        Operation::AddWorkNote(a) => a.idempotency_key.clone(),
        _ => None,
    }
}

fn parse(spec: &ToolSpec, arguments: &Value) -> Result<Call, String> {
    if spec.server == tools::FIXTURE_SERVER {
        return Ok(Call::Fixture(changeflow_workflows::fixtures::FixtureCall {
            tool: spec.name.to_string(),
            arguments: arguments.clone(),
        }));
    }
    if let Some(parsed) = operation(spec.name, arguments) {
        return parsed.map(|operation| Call::Operation {
            idempotency_key: idempotency_key(&operation),
            write: !spec.read_only,
            operation,
        });
    }
    match spec.name {
        "list_changes" => serde_json::from_value::<changes::ChangeFilter>(arguments.clone())
            .map_err(|e| e.to_string())
            .and_then(|f| f.validate().map(Call::List)),
        "deploy_template" => serde_json::from_value::<DeployTemplateArgs>(arguments.clone())
            .map_err(|e| e.to_string())
            .and_then(|a| a.check().map(|_| Call::Deploy(a))),
        _ => serde_json::from_value::<ChangeIdArgs>(arguments.clone())
            .map_err(|e| e.to_string())
            .and_then(|a| {
                tools::check_id("change_id", &a.change_id).map(|_| Call::Change(a.change_id))
            }),
    }
}

fn policy_input(identity: &VerifiedIdentity, spec: &ToolSpec, arguments: &Value) -> PolicyInput {
    PolicyInput {
        identity: PolicyIdentity {
            subject: identity.subject.clone(),
            groups: identity.groups.clone(),
            amr: identity.amr.clone(),
            client_id: identity.client_id.clone().unwrap_or_default(),
        },
        resource: spec.server.to_string(),
        action: spec.action.to_string(),
        tool: PolicyTool {
            name: spec.name.to_string(),
            arguments: arguments.clone(),
        },
        context: json!({"time": now_secs(), "client": identity.client_id}),
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
                &self.arguments,
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
        let as_tool = if method == "tasks/get" {
            "get_change_status"
        } else {
            "cancel_change"
        };
        let spec = tools::find(Some("changes"), as_tool).expect("the changes tools exist");
        let arguments = json!({"change_id": task_id});
        let decision = self
            .policy
            .decide(&policy_input(&identity, spec, &arguments));
        if !decision.allow {
            self.record(
                &identity,
                ("tasks", method),
                &arguments,
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
        if changes::started_within(&self.temporal, &previous, self.idempotency_window).await {
            previous
        } else {
            id(&format!("window:{bucket}"))
        }
    }

    async fn record(
        &self,
        identity: &VerifiedIdentity,
        (server, tool): (&str, &str),
        arguments: &Value,
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
        };
        self.audit.append(entry).await.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "audit store unavailable");
            AuditUnavailable
        })
    }

    /// Runs one tool call end to end. Without an audit record nothing happens: an audit-store
    /// failure is an error and no workflow is touched.
    pub async fn invoke(
        &self,
        identity: &VerifiedIdentity,
        spec: &ToolSpec,
        arguments: Value,
        wait: Wait,
        mut on_progress: impl FnMut(&str, &Progress),
    ) -> Result<Outcome, AuditUnavailable> {
        let call = match parse(spec, &arguments) {
            Ok(call) => call,
            Err(problem) => {
                self.record(
                    identity,
                    (spec.server, spec.name),
                    &arguments,
                    ("none", &problem, ""),
                    "",
                    "invalid",
                )
                .await?;
                return Ok(Outcome::Invalid(problem));
            }
        };
        let decision = self
            .policy
            .decide(&policy_input(identity, spec, &arguments));
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
                &arguments,
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
            Call::Fixture(fixture) => {
                let id = fresh_id("fixture", identity, spec.name);
                let started = changes::start_fixture(
                    &self.temporal,
                    &self.task_queue,
                    &id,
                    &identity.subject,
                    fixture,
                )
                .await;
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
                    return Ok(Outcome::Started { change_id: id });
                }
                let finished = changes::watch(
                    crate::tasks::finished(&self.temporal, &id, "ConformanceFixture"),
                    || changes::fixture_progress(&self.temporal, &id),
                    |p| {
                        on_progress(
                            &id,
                            &Progress {
                                percent: p.percent,
                                message: p.message.clone(),
                            },
                        )
                    },
                )
                .await;
                Ok(match finished {
                    crate::tasks::TaskState::Completed(result) => Outcome::Tool(result),
                    crate::tasks::TaskState::Failed(message) => Outcome::ProtocolError(message),
                    other => Outcome::Failed(format!("{other:?}").to_lowercase()),
                })
            }
            Call::Operation {
                operation,
                write,
                idempotency_key,
            } => {
                let id = if write {
                    self.idempotent_id(
                        "op",
                        identity,
                        spec.name,
                        &arguments,
                        idempotency_key.as_deref(),
                    )
                    .await
                } else {
                    fresh_id("read", identity, spec.name)
                };
                let request = OperationRequest {
                    operation,
                    requested_by: identity.subject.clone(),
                };
                let result =
                    changes::run_operation(&self.temporal, &self.task_queue, &id, request).await;
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
                    Err(changes::OperationFailure::Failed(message)) => Outcome::Failed(message),
                })
            }
            Call::List(filter) => {
                note("", "read").await?;
                Ok(match changes::list(&self.temporal, &filter).await {
                    Ok(list) => Outcome::Done(json!({"changes": list})),
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
                let request = DeploymentRequest {
                    template_id: args.template_id,
                    parameters: args.parameters,
                    devices: args.devices,
                    requested_by: identity.subject.clone(),
                    short_description: args.short_description,
                };
                if let Err(e) = changes::start(&self.temporal, &self.task_queue, &id, request).await
                {
                    note(&id, "start failed").await?;
                    return Ok(Outcome::Failed(e.to_string()));
                }
                note(&id, "started").await?;
                if wait == Wait::UntilStarted {
                    return Ok(Outcome::Started { change_id: id });
                }
                let report = |p: &ChangeProgress| on_progress(&id, &Progress::from(p));
                match changes::follow(&self.temporal, &id, report).await {
                    Ok(result) => {
                        let failed = result.outcome == ChangeOutcome::Failed;
                        note(&id, if failed { "failed" } else { "completed" }).await?;
                        let value = changes::result_value(&id, &result);
                        Ok(if failed {
                            Outcome::ChangeFailed(value)
                        } else {
                            Outcome::Done(value)
                        })
                    }
                    Err(e) => {
                        note(&id, "error").await?;
                        Ok(Outcome::Failed(format!(
                            "change {id} did not complete: {e}"
                        )))
                    }
                }
            }
            Call::Change(id) => {
                let Ok(status) = changes::status(&self.temporal, &id).await else {
                    note(&id, "not found").await?;
                    return Ok(Outcome::NotFound(format!("no change '{id}'")));
                };
                if spec.name == "cancel_change" {
                    let cancelled = changes::cancel(
                        &self.temporal,
                        &id,
                        &format!("canceled by {}", identity.subject),
                    )
                    .await;
                    note(
                        &id,
                        if cancelled.is_ok() {
                            "cancel requested"
                        } else {
                            "cancel failed"
                        },
                    )
                    .await?;
                    return Ok(match cancelled {
                        Ok(()) => Outcome::Done(json!({"change_id": id, "cancel_requested": true})),
                        Err(e) => Outcome::Failed(e.to_string()),
                    });
                }
                note(&id, "read").await?;
                let status = format!("{status:?}").to_lowercase();
                if spec.name == "get_change_history" {
                    return Ok(match changes::history(&self.temporal, &id).await {
                        Ok(timeline) => Outcome::Done(
                            json!({"change_id": id, "status": status, "timeline": timeline}),
                        ),
                        Err(e) => Outcome::Failed(e.to_string()),
                    });
                }
                let progress = changes::progress(&self.temporal, &id).await;
                let mut value = serde_json::to_value(&progress).unwrap_or_default();
                if !value.is_object() {
                    value = json!({});
                }
                value["change_id"] = json!(id);
                value["status"] = json!(status);
                Ok(Outcome::Done(value))
            }
        }
    }
}
