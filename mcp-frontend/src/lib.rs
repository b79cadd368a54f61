//! The MCP front door: Streamable HTTP (rmcp) inside an axum app. Every request is
//! authenticated (OIDC bearer token); every tool call is authorized by policy, audited, and
//! served by starting or reading a Temporal workflow. It never calls ServiceNow, Catalyst Center
//! or Vault itself.

pub mod auth;
pub mod changes;
pub mod invoke;
pub mod rest;
pub mod server;
pub mod tasks;
pub mod tools;

use axum::Router;
use axum::routing::get;
use changeflow_engine::audit::AuditStore;
use changeflow_engine::identity::{TokenVerifier, VerifiedIdentity};
use changeflow_engine::policy::PolicyEngine;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;
use temporalio_client::Client;

/// Largest request body accepted; larger ones get 413 before any parsing.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// How requests are authenticated.
pub enum Authentication {
    /// OpenID Connect bearer tokens: every production deployment.
    Bearer(Arc<TokenVerifier>),
    /// Every request acts as this identity, without a token: only the loopback-only
    /// conformance test profile (`changeflow conformance-server`) uses this.
    FixedTestIdentity(VerifiedIdentity),
}

/// Everything the front door needs; shared by all requests.
pub struct FrontDoor {
    pub authentication: Authentication,
    /// The tools served.
    pub catalog: tools::Catalog,
    pub policy: Arc<PolicyEngine>,
    pub audit: Arc<AuditStore>,
    pub temporal: Client,
    pub task_queue: String,
    /// This server's resource identifier (its `/mcp` URL), for RFC 9728 metadata.
    pub resource: String,
    /// Accepted `Host` values (loopback by default).
    pub allowed_hosts: Vec<String>,
    /// Accepted browser `Origin` values for MCP (e.g. `http://localhost:*`); requests without
    /// an Origin (non-browser clients) are unaffected.
    pub allowed_origins: Vec<String>,
    /// Calls with the same caller, tool and arguments within this window reuse one workflow.
    pub idempotency_window: std::time::Duration,
}

/// The HTTP application: metadata and the OpenAPI document, then behind auth `/mcp` (all
/// servers), `/mcp/{server}` and the REST proxy under `/api/v1`.
pub fn app(front: Arc<FrontDoor>) -> Router {
    let mut mcp = Router::new().nest_service("/mcp", mcp_service(&front, None));
    if front.catalog == tools::Catalog::Production {
        for server in tools::SERVERS {
            mcp = mcp.nest_service(&format!("/mcp/{server}"), mcp_service(&front, Some(server)));
        }
        mcp = mcp.merge(rest::router(front.clone()));
    }
    let mcp = mcp
        .layer(axum::middleware::from_fn_with_state(
            front.clone(),
            auth::require_bearer,
        ))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ));
    Router::new()
        .route(
            "/.well-known/oauth-protected-resource",
            get(auth::protected_resource_metadata),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp",
            get(auth::protected_resource_metadata),
        )
        .route("/api/v1/openapi.json", get(rest::openapi))
        .with_state(front)
        .merge(mcp)
}

fn mcp_service(
    front: &Arc<FrontDoor>,
    server: Option<&'static str>,
) -> StreamableHttpService<server::ChangeflowMcp, LocalSessionManager> {
    let mut config = StreamableHttpServerConfig::default();
    config.allowed_hosts = front.allowed_hosts.clone();
    config.allowed_origins = front.allowed_origins.clone();
    let config = config.enforce_origin_validation();
    let front = front.clone();
    StreamableHttpService::new(
        move || Ok(server::ChangeflowMcp::new(front.clone(), server)),
        Default::default(),
        config,
    )
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    front: Arc<FrontDoor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(front))
        .with_graceful_shutdown(shutdown)
        .await
}
