//! The MCP handler: lists the tools of its server (or all), and runs every call through
//! identity → policy → audit → workflow.

use crate::FrontDoor;
use crate::changes;
use crate::tools::{self, ChangeIdArgs, DeployTemplateArgs, ToolSpec};
use changeflow_engine::audit::{AuditEntry, canonical_hash};
use changeflow_engine::identity::VerifiedIdentity;
use changeflow_engine::policy::{PolicyIdentity, PolicyInput, PolicyTool};
use changeflow_workflows::{ChangeOutcome, DeploymentRequest};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Calls with the same caller, tool and arguments within this window reuse one change.
pub const IDEMPOTENCY_WINDOW_SECS: u64 = 600;

#[derive(Clone)]
pub struct ChangeflowMcp {
    front: Arc<FrontDoor>,
    server: Option<&'static str>,
}

impl ChangeflowMcp {
    pub fn new(front: Arc<FrontDoor>, server: Option<&'static str>) -> Self {
        Self { front, server }
    }

    async fn audit(
        &self,
        identity: &VerifiedIdentity,
        spec: &ToolSpec,
        arguments: &Value,
        decision: (&str, &str, &str),
        workflow_id: &str,
        outcome: &str,
    ) -> Result<(), ErrorData> {
        let entry = AuditEntry {
            subject: identity.subject.clone(),
            client: identity.client_id.clone().unwrap_or_default(),
            server: spec.server.to_string(),
            tool: spec.name.to_string(),
            arguments_hash: canonical_hash(arguments),
            decision: decision.0.to_string(),
            reason: decision.1.to_string(),
            policy_revision: decision.2.to_string(),
            workflow_id: workflow_id.to_string(),
            outcome: outcome.to_string(),
        };
        // No audit record, no action: a store failure refuses the call.
        self.front
            .audit
            .append(entry)
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(error = %e, "audit store unavailable");
                ErrorData::internal_error("the audit store is unavailable; nothing was done", None)
            })
    }
}

fn tool_error(message: impl Into<String>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message.into())]).into()
}

/// The change id for a call: the same caller, tool and arguments (and idempotency key, or
/// the same time window) give the same id, so a retried call finds the running change.
fn change_id(identity: &VerifiedIdentity, arguments: &Value, key: Option<&str>) -> String {
    let window = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        / IDEMPOTENCY_WINDOW_SECS;
    let scope = match key {
        Some(key) => format!("key:{key}"),
        None => format!("window:{window}"),
    };
    let mut args = arguments.clone();
    if let Some(map) = args.as_object_mut() {
        map.remove("idempotency_key");
    }
    let digest = canonical_hash(&json!([identity.subject, "deploy_template", args, scope]));
    format!("change-{}", &digest[..32])
}

impl ServerHandler for ChangeflowMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("changeflow", env!("CARGO_PKG_VERSION")))
            .with_instructions("Network changes as durable workflows: deploy_template opens a ServiceNow change, deploys through Catalyst Center, verifies and closes the ticket.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = tools::TOOLS
            .iter()
            .filter(|t| self.server.is_none_or(|s| s == t.server))
            .map(|t| {
                let schema = match (t.input_schema)() {
                    Value::Object(map) => map,
                    _ => Default::default(),
                };
                Tool::new(t.name, t.description, Arc::new(schema))
                    .with_title(t.title)
                    .with_annotations(
                        ToolAnnotations::new()
                            .read_only(t.read_only)
                            .destructive(t.destructive)
                            .idempotent(t.idempotent),
                    )
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let Some(spec) = tools::find(self.server, &request.name) else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool '{}'", request.name),
                None,
            ));
        };
        let identity = context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<VerifiedIdentity>())
            .cloned()
            .ok_or_else(|| {
                ErrorData::internal_error("unauthenticated request reached a tool", None)
            })?;
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());

        let parsed = match spec.name {
            "deploy_template" => serde_json::from_value::<DeployTemplateArgs>(arguments.clone())
                .map_err(|e| e.to_string())
                .and_then(|a| a.check().map(|_| Call::Deploy(a))),
            _ => serde_json::from_value::<ChangeIdArgs>(arguments.clone())
                .map_err(|e| e.to_string())
                .and_then(|a| {
                    tools::check_id("change_id", &a.change_id).map(|_| Call::Change(a.change_id))
                }),
        };
        let call = match parsed {
            Ok(call) => call,
            Err(problem) => {
                self.audit(
                    &identity,
                    spec,
                    &arguments,
                    ("none", &problem, ""),
                    "",
                    "invalid",
                )
                .await?;
                return Ok(tool_error(format!("invalid arguments: {problem}")));
            }
        };

        let input = PolicyInput {
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
            context: json!({"time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0), "client": identity.client_id}),
        };
        let decision = self.front.policy.decide(&input);
        let verdict = if decision.allow { "allow" } else { "deny" };
        let audited = (
            verdict,
            decision.reason.as_str(),
            decision.revision.as_str(),
        );
        if !decision.allow {
            self.audit(&identity, spec, &arguments, audited, "", "denied")
                .await?;
            return Ok(CallToolResult::structured_error(json!({
                "error": "permission denied",
                "missing_permission": format!("{} on {}", spec.action, spec.server),
                "reason": decision.reason,
            }))
            .into());
        }

        match call {
            Call::Deploy(args) => {
                let id = change_id(&identity, &arguments, args.idempotency_key.as_deref());
                let request = DeploymentRequest {
                    template_id: args.template_id,
                    parameters: args.parameters,
                    devices: args.devices,
                    requested_by: identity.subject.clone(),
                    short_description: args.short_description,
                };
                if let Err(e) =
                    changes::start(&self.front.temporal, &self.front.task_queue, &id, request).await
                {
                    self.audit(&identity, spec, &arguments, audited, &id, "start failed")
                        .await?;
                    return Ok(tool_error(e.to_string()));
                }
                self.audit(&identity, spec, &arguments, audited, &id, "started")
                    .await?;
                let token = context.meta.get_progress_token();
                let peer = context.peer.clone();
                let outcome = changes::follow(&self.front.temporal, &id, |p| {
                    if let Some(token) = &token {
                        let param =
                            ProgressNotificationParam::new(token.clone(), f64::from(p.percent))
                                .with_total(100.0)
                                .with_message(
                                    format!("{:?}: {}", p.step, p.message).to_lowercase(),
                                );
                        let peer = peer.clone();
                        tokio::spawn(async move {
                            let _ = peer.notify_progress(param).await;
                        });
                    }
                })
                .await;
                match outcome {
                    Ok(result) => {
                        let failed = result.outcome == ChangeOutcome::Failed;
                        self.audit(
                            &identity,
                            spec,
                            &arguments,
                            audited,
                            &id,
                            if failed { "failed" } else { "completed" },
                        )
                        .await?;
                        let mut value = serde_json::to_value(&result).unwrap_or_default();
                        value["change_id"] = json!(id);
                        Ok(if failed {
                            CallToolResult::structured_error(value)
                        } else {
                            CallToolResult::structured(value)
                        }
                        .into())
                    }
                    Err(e) => {
                        self.audit(&identity, spec, &arguments, audited, &id, "error")
                            .await?;
                        Ok(tool_error(format!("change {id} did not complete: {e}")))
                    }
                }
            }
            Call::Change(id) => {
                let status = match changes::status(&self.front.temporal, &id).await {
                    Ok(status) => status,
                    Err(_) => {
                        self.audit(&identity, spec, &arguments, audited, &id, "not found")
                            .await?;
                        return Ok(tool_error(format!("no change '{id}'")));
                    }
                };
                if spec.name == "cancel_change" {
                    let cancelled = changes::cancel(
                        &self.front.temporal,
                        &id,
                        &format!("canceled by {}", identity.subject),
                    )
                    .await;
                    self.audit(
                        &identity,
                        spec,
                        &arguments,
                        audited,
                        &id,
                        if cancelled.is_ok() {
                            "cancel requested"
                        } else {
                            "cancel failed"
                        },
                    )
                    .await?;
                    return Ok(match cancelled {
                        Ok(()) => CallToolResult::structured(
                            json!({"change_id": id, "cancel_requested": true}),
                        )
                        .into(),
                        Err(e) => tool_error(e.to_string()),
                    });
                }
                self.audit(&identity, spec, &arguments, audited, &id, "read")
                    .await?;
                let progress = changes::progress(&self.front.temporal, &id).await;
                let mut value = serde_json::to_value(&progress).unwrap_or_default();
                if !value.is_object() {
                    value = json!({});
                }
                value["change_id"] = json!(id);
                value["status"] = json!(format!("{status:?}").to_lowercase());
                Ok(CallToolResult::structured(value).into())
            }
        }
    }
}

enum Call {
    Deploy(DeployTemplateArgs),
    Change(String),
}
