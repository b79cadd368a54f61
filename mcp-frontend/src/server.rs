//! The MCP handler: lists the tools of its server (or all) and hands every call, with its
//! verified identity and progress token, to `FrontDoor::invoke`.

use crate::FrontDoor;
use crate::invoke::{Outcome, Wait};
use crate::tools;
use changeflow_engine::identity::VerifiedIdentity;
use changeflow_workflows::ChangeProgress;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use std::sync::Arc;

#[derive(Clone)]
pub struct ChangeflowMcp {
    front: Arc<FrontDoor>,
    server: Option<&'static str>,
}

impl ChangeflowMcp {
    pub fn new(front: Arc<FrontDoor>, server: Option<&'static str>) -> Self {
        Self { front, server }
    }
}

fn tool_error(message: impl Into<String>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(message.into())]).into()
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
                    .with_raw_output_schema(Arc::new(match (t.output_schema)() {
                        Value::Object(map) => map,
                        _ => Default::default(),
                    }))
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
        let token = context.meta.get_progress_token();
        let peer = context.peer.clone();
        let report = |p: &ChangeProgress| {
            if let Some(token) = &token {
                let param = ProgressNotificationParam::new(token.clone(), f64::from(p.percent))
                    .with_total(100.0)
                    .with_message(format!("{:?}: {}", p.step, p.message).to_lowercase());
                let peer = peer.clone();
                tokio::spawn(async move {
                    let _ = peer.notify_progress(param).await;
                });
            }
        };
        let outcome = self
            .front
            .invoke(&identity, spec, arguments, Wait::ForResult, report)
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        Ok(match outcome {
            Outcome::Done(value) => CallToolResult::structured(value).into(),
            Outcome::ChangeFailed(value) => CallToolResult::structured_error(value).into(),
            Outcome::Denied { missing_permission, reason } => {
                CallToolResult::structured_error(json!({"error": "permission denied", "missing_permission": missing_permission, "reason": reason})).into()
            }
            Outcome::Invalid(problem) => tool_error(format!("invalid arguments: {problem}")),
            Outcome::NotFound(message) | Outcome::Failed(message) => tool_error(message),
            Outcome::Started { change_id } => CallToolResult::structured(json!({"change_id": change_id})).into(),
        })
    }
}
