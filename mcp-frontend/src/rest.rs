//! The REST proxy for clients that do not speak MCP: the same tools, identity, policy and audit
//! (through `FrontDoor::invoke`), as plain HTTP. Quick tools answer 200 with the result; a
//! change answers 202 with its id and status URL. One error type maps to status codes, and
//! every message says whether retrying is safe.

use crate::front_door::FrontDoor;
use crate::outcome::{AuditUnavailable, Outcome, Wait};
use crate::tools::{self, ToolSpec};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use changeflow_engine::identity::VerifiedIdentity;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

/// Everything the proxy answers other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no tool '{0}' on this server")]
    UnknownTool(String),
    #[error("{0}")]
    Invalid(String),
    #[error("permission denied: {reason}")]
    Denied {
        missing_permission: String,
        reason: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// Too many calls running on this front door; retry after the seconds given.
    #[error("{}", crate::outcome::overloaded_message(*.0))]
    Overloaded(u64),
}

/// What a 503 asks a client to wait before retrying, in seconds.
const RETRY_AFTER_SECS: &str = "5";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::UnknownTool(_) | ApiError::NotFound(_) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": self.to_string(), "retryable": false}),
            ),
            ApiError::Conflict(_) => (
                StatusCode::CONFLICT,
                json!({"error": "conflict", "message": self.to_string(), "retryable": false}),
            ),
            ApiError::Invalid(_) => (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "message": self.to_string(), "retryable": false}),
            ),
            ApiError::Denied {
                missing_permission,
                reason,
            } => (
                StatusCode::FORBIDDEN,
                json!({"error": "permission_denied", "missing_permission": missing_permission, "reason": reason, "retryable": false}),
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "unavailable", "message": self.to_string(), "retryable": true}),
            ),
            ApiError::Overloaded(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"error": "overloaded", "message": self.to_string(), "retryable": true}),
            ),
        };
        let retry_after = match &self {
            ApiError::Overloaded(secs) => secs.to_string(),
            _ => RETRY_AFTER_SECS.to_string(),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE
            && let Ok(value) = axum::http::HeaderValue::from_str(&retry_after)
        {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

/// The authenticated routes under `/api/v1`.
pub fn router(front: Arc<FrontDoor>) -> Router {
    Router::new()
        .route("/api/v1/mcp/{server}/tools", get(list_tools))
        .route("/api/v1/mcp/{server}/tools/{tool}", post(call_tool))
        .route("/api/v1/changes/{id}", get(change_status))
        .route("/api/v1/changes/{id}/evidence", get(change_evidence))
        .with_state(front)
}

fn spec(server: &str, tool: &str) -> Result<&'static ToolSpec, ApiError> {
    tools::find(Some(server), tool).ok_or_else(|| ApiError::UnknownTool(tool.to_string()))
}

fn describe(spec: &ToolSpec) -> Value {
    json!({
        "name": spec.name,
        "title": spec.title,
        "description": spec.description,
        "input_schema": (spec.input_schema)(),
        "output_schema": (spec.output_schema)(),
        "annotations": {"read_only": spec.read_only, "destructive": spec.destructive, "idempotent": spec.idempotent, "long_running": spec.long_running},
    })
}

async fn list_tools(Path(server): Path<String>) -> Result<Json<Value>, ApiError> {
    if !tools::SERVERS.contains(&server.as_str()) {
        return Err(ApiError::NotFound(format!("no server '{server}'")));
    }
    let list: Vec<Value> = tools::TOOLS
        .iter()
        .filter(|t| t.server == server)
        .map(describe)
        .collect();
    Ok(Json(json!({"server": server, "tools": list})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CallBody {
    #[serde(default)]
    arguments: serde_json::Map<String, Value>,
}

async fn call_tool(
    State(front): State<Arc<FrontDoor>>,
    Extension(identity): Extension<VerifiedIdentity>,
    Path((server, tool)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Json<CallBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let spec = spec(&server, &tool)?;
    let Json(body) =
        body.map_err(|e| ApiError::Invalid(format!("request body: {}", e.body_text())))?;
    let mut arguments = body.arguments;
    if let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()) {
        if spec.name != "deploy_template" {
            return Err(ApiError::Invalid(format!(
                "{} does not take an Idempotency-Key",
                spec.name
            )));
        }
        match arguments.get("idempotency_key") {
            Some(existing) if existing != key => {
                return Err(ApiError::Invalid(
                    "Idempotency-Key differs from arguments.idempotency_key".into(),
                ));
            }
            _ => {
                arguments.insert("idempotency_key".into(), Value::String(key.to_string()));
            }
        }
    }
    let wait = if spec.long_running {
        Wait::UntilStarted
    } else {
        Wait::ForResult
    };
    respond(
        front
            .invoke(&identity, spec, Value::Object(arguments), wait, |_, _| {})
            .await,
    )
}

async fn change_status(
    State(front): State<Arc<FrontDoor>>,
    Extension(identity): Extension<VerifiedIdentity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    respond(on_change(&front, &identity, ("changes", "get_change_status"), &id).await?)
}

/// Calls a tool whose one argument is the change named in the path.
async fn on_change(
    front: &FrontDoor,
    identity: &VerifiedIdentity,
    (server, tool): (&str, &str),
    id: &str,
) -> Result<Result<Outcome, AuditUnavailable>, ApiError> {
    let spec = spec(server, tool)?;
    Ok(front
        .invoke(
            identity,
            spec,
            json!({"change_id": id}),
            Wait::ForResult,
            |_, _| {},
        )
        .await)
}

fn respond(outcome: Result<Outcome, AuditUnavailable>) -> Result<Response, ApiError> {
    match outcome.map_err(|e| ApiError::Unavailable(format!("{e}; retrying is safe")))? {
        Outcome::Done(value) | Outcome::ChangeFailed(value) => {
            Ok((StatusCode::OK, Json(value)).into_response())
        }
        Outcome::Started { change_id, .. } => {
            let status_url = format!("/api/v1/changes/{change_id}");
            let mut response = (
                StatusCode::ACCEPTED,
                Json(json!({"change_id": change_id, "status_url": status_url})),
            )
                .into_response();
            if let Ok(location) = status_url.parse() {
                response.headers_mut().insert(header::LOCATION, location);
            }
            Ok(response)
        }
        Outcome::Denied {
            missing_permission,
            reason,
        } => Err(ApiError::Denied {
            missing_permission,
            reason,
        }),
        Outcome::Invalid(problem) => {
            Err(ApiError::Invalid(format!("invalid arguments: {problem}")))
        }
        Outcome::NotFound(message) => Err(ApiError::NotFound(message)),
        Outcome::Conflict(message) => Err(ApiError::Conflict(message)),
        Outcome::Tool(result) => Ok((StatusCode::OK, Json(result.to_json())).into_response()),
        Outcome::ProtocolError(message) => Err(ApiError::Unavailable(message)),
        Outcome::Failed(message) => Err(ApiError::Unavailable(format!(
            "{message}; retrying with the same arguments is safe"
        ))),
        Outcome::Overloaded { retry_after_secs } => Err(ApiError::Overloaded(retry_after_secs)),
        Outcome::Evidence(bundle) => bundle
            .overview_value()
            .map(|overview| (StatusCode::OK, Json(overview)).into_response())
            .map_err(ApiError::Unavailable),
    }
}

/// `GET /api/v1/changes/{id}/evidence`: the change's evidence bundle as a tar.gz download,
/// authorized and audited as `get_change_evidence`.
async fn change_evidence(
    State(front): State<Arc<FrontDoor>>,
    Extension(identity): Extension<VerifiedIdentity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let outcome = on_change(&front, &identity, ("audit", "get_change_evidence"), &id).await?;
    let Ok(Outcome::Evidence(bundle)) = outcome else {
        return respond(outcome);
    };
    bundle_download(&bundle).map_err(ApiError::Unavailable)
}

/// An evidence bundle as a tar.gz attachment (the REST proxy's and the web view's download).
pub(crate) fn bundle_download(bundle: &crate::evidence::Bundle) -> Result<Response, String> {
    let archive = bundle.tar_gz()?;
    let disposition = format!("attachment; filename=\"{}.tar.gz\"", bundle.name());
    let mut response = (StatusCode::OK, archive).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/gzip"),
    );
    if let Ok(value) = header::HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// The error answers every authenticated operation can give, plus `extra`.
fn error_responses(extra: &[(&str, &str)]) -> serde_json::Map<String, Value> {
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}});
    let mut responses = serde_json::Map::new();
    responses.insert(
        "400".into(),
        json!({"description": "invalid request", "content": error}),
    );
    responses.insert(
        "401".into(),
        json!({"description": "authentication required (RFC 9728 challenge in WWW-Authenticate)"}),
    );
    responses.insert(
        "403".into(),
        json!({"description": "permission denied", "content": error}),
    );
    responses.insert(
        "503".into(),
        json!({"description": "temporarily unavailable; retrying is safe", "content": error}),
    );
    for (status, description) in extra {
        responses.insert(
            status.to_string(),
            json!({"description": description, "content": error}),
        );
    }
    responses
}

/// `GET /api/v1/openapi.json`, generated from the tool registry: each tool's argument and
/// result schemas are the ones MCP clients see.
pub async fn openapi(State(front): State<Arc<FrontDoor>>) -> Json<Value> {
    let mut paths = serde_json::Map::new();
    for server in tools::SERVERS {
        let mut responses = error_responses(&[("404", "no such server")]);
        responses.insert("200".into(), json!({"description": "the tools"}));
        paths.insert(
            format!("/api/v1/mcp/{server}/tools"),
            json!({"get": {"operationId": format!("{}_tools", server.replace('-', "_")), "summary": format!("List the tools of {server}"), "responses": responses}}),
        );
    }
    for spec in tools::TOOLS {
        // `arguments` may be left out when the tool requires none (`{}` is a call without them).
        let input = (spec.input_schema)();
        let mut body = json!({"type": "object", "additionalProperties": false, "properties": {"arguments": input}});
        if input["required"].as_array().is_some_and(|r| !r.is_empty()) {
            body["required"] = json!(["arguments"]);
        }
        let mut responses = error_responses(&[
            (
                "404",
                "unknown tool, or the named change, ticket, template or device does not exist",
            ),
            (
                "409",
                "the state of the named change or ticket does not allow this; nothing was done",
            ),
        ]);
        if spec.long_running {
            responses.insert("202".into(), json!({
                "description": "change started; poll status_url",
                "headers": {"Location": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": {
                    "type": "object", "required": ["change_id", "status_url"],
                    "properties": {"change_id": {"type": "string"}, "status_url": {"type": "string"}}
                }}}
            }));
        } else {
            responses.insert("200".into(), json!({"description": "the result", "content": {"application/json": {"schema": (spec.output_schema)()}}}));
        }
        let mut operation = json!({
            "operationId": format!("{}_{}", spec.server.replace('-', "_"), spec.name),
            "summary": spec.title,
            "description": spec.description,
            "requestBody": {"required": true, "content": {"application/json": {"schema": body}}},
            "responses": responses,
        });
        if spec.long_running {
            operation["parameters"] = json!([{"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "pattern": changeflow_workflows::limits::ID_PATTERN}}]);
        }
        paths.insert(
            format!("/api/v1/mcp/{}/tools/{}", spec.server, spec.name),
            json!({"post": operation}),
        );
    }
    let status = tools::find(Some("changes"), "get_change_status").expect("registered");
    let mut responses = error_responses(&[("404", "no such change")]);
    responses.insert("200".into(), json!({"description": "the status", "content": {"application/json": {"schema": (status.output_schema)()}}}));
    paths.insert(
        "/api/v1/changes/{id}".into(),
        json!({"get": {"operationId": "change_status", "summary": "A change's status", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": changeflow_workflows::limits::ID_PATTERN}}], "responses": responses}}),
    );
    let mut responses = error_responses(&[("404", "no such change")]);
    responses.insert("200".into(), json!({"description": "the evidence bundle (tar.gz): manifest.json, summary.md, signature.json, the history, audit records, policy texts, the ticket, check snapshots", "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}}}));
    paths.insert(
        "/api/v1/changes/{id}/evidence".into(),
        json!({"get": {"operationId": "change_evidence", "summary": "A change's evidence bundle", "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": changeflow_workflows::limits::ID_PATTERN}}], "responses": responses}}),
    );
    Json(json!({
        "openapi": "3.1.0",
        "info": {"title": "changeflow REST proxy", "version": env!("CARGO_PKG_VERSION")},
        "servers": [{"url": front.resource.trim_end_matches("/mcp")}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "retryable": {"type": "boolean"}, "missing_permission": {"type": "string"}, "reason": {"type": "string"}}}},
        },
        "paths": paths,
    }))
}
