//! The HTTP application: RFC 9728 metadata and the OpenAPI document in the open, then behind
//! bearer authentication and a body limit the MCP endpoints and the REST proxy.

use crate::front_door::{Catalog, FrontDoor};
use crate::{auth, health, rest, server, tools};
use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::common::server_side_http::SessionId;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::sync::Arc;

/// Largest request body accepted; larger ones get 413 before any parsing.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The HTTP application: metadata and the OpenAPI document, then behind auth `/mcp` (all
/// servers), `/mcp/{server}` and the REST proxy under `/api/v1`.
pub fn app(front: Arc<FrontDoor>) -> Router {
    // Before the first call, so that nothing recorded is lost.
    changeflow_engine::metrics::prometheus();
    let mut mcp = Router::new().nest_service("/mcp", mcp_service(&front, None));
    if front.catalog == Catalog::Production {
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
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(tokio::sync::Semaphore::new(
                front.in_flight.requests_at_once(),
            )),
            take_turns,
        ));
    let mut open = Router::new();
    if let (Catalog::Production, Some(web)) = (front.catalog, &front.web) {
        open = crate::ui::router(front.clone(), web.clone());
    }
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
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::front_door_metrics))
        .route("/readyz", get(health::readyz))
        .with_state(front)
        .merge(open)
        .merge(mcp)
        .layer(axum::middleware::from_fn(count_http))
}

/// At most `InFlight::requests_at_once` MCP and REST requests are worked on at once; the others
/// wait for a turn holding only their parsed headers, so a thousand clients cost a thousand
/// small waits rather than a thousand requests' worth of protocol state (rmcp's per-request
/// channels and tasks, Temporal calls).
async fn take_turns(
    axum::extract::State(turns): axum::extract::State<Arc<tokio::sync::Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(_turn) = turns.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    next.run(request).await
}

/// Counts and times every HTTP request by method, route and status (MCP, the REST proxy,
/// health and metadata alike).
async fn count_http(request: Request, next: Next) -> Response {
    use changeflow_engine::metrics as m;
    let started = std::time::Instant::now();
    let method = match *request.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let route = route_label(request.uri().path());
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(m::HTTP_REQUESTS, "method" => method, "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(m::HTTP_SECONDS, "method" => method, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// A request path as a bounded metric label: the known paths themselves, change ids as
/// `{id}`, anything else `other`.
fn route_label(path: &str) -> String {
    const FIXED: [&str; 8] = [
        "/mcp",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/openapi.json",
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/api/v1/changes",
    ];
    if FIXED.contains(&path) {
        return path.to_string();
    }
    if path.starts_with("/api/v1/changes/") {
        return "/api/v1/changes/{id}".into();
    }
    let known_server = |s: &str| tools::SERVERS.contains(&s);
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let known = match parts.as_slice() {
        ["mcp", server] => known_server(server),
        ["api", "v1", "mcp", server, "tools"] => known_server(server),
        ["api", "v1", "mcp", server, "tools", tool] => {
            known_server(server) && tools::find(Some(server), tool).is_some()
        }
        _ => false,
    };
    if known {
        path.to_string()
    } else {
        "other".into()
    }
}

/// One MCP endpoint: rmcp's Streamable HTTP service with its own session manager, behind
/// `end_session`.
fn mcp_service(front: &Arc<FrontDoor>, server: Option<&'static str>) -> Router {
    let mut config = StreamableHttpServerConfig::default();
    // A 2026-07-28 (stateless) call whose first message is its answer gets it as one JSON body
    // instead of a one-event stream; a call that reports progress first still streams.
    config.json_response = true;
    config.allowed_hosts = front.allowed_hosts.clone();
    config.allowed_origins = front.allowed_origins.clone();
    let config = config.enforce_origin_validation();
    let front = front.clone();
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.completed_cache_ttl = RESUMABLE_FOR;
    let sessions = Arc::new(sessions);
    let service = StreamableHttpService::new(
        move || Ok(server::ChangeflowMcp::new(front.clone(), server)),
        sessions.clone(),
        config,
    );
    Router::new()
        .fallback_service(service)
        .layer(axum::middleware::from_fn(move |request, next| {
            end_session(sessions.clone(), request, next)
        }))
}

/// How long a 2025-11-25 session keeps a finished request's stream for a client resuming it
/// (`Last-Event-ID`): long enough to reconnect, short enough that a thousand busy sessions do
/// not each keep a minute of answers (rmcp's default is 60 s).
pub const RESUMABLE_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// Ending a 2025-11-25 session (`DELETE` with `Mcp-Session-Id`) answers 204, as clients expect
/// (rmcp answers 202, which the official SDKs log as a failed termination), and an unknown
/// session 404.
async fn end_session(sessions: Arc<LocalSessionManager>, request: Request, next: Next) -> Response {
    if request.method() != Method::DELETE {
        return next.run(request).await;
    }
    let session = request
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(SessionId::from);
    if let Some(id) = &session
        && !sessions.has_session(id).await.unwrap_or(false)
    {
        return (StatusCode::NOT_FOUND, "no such MCP session").into_response();
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::ACCEPTED {
        return StatusCode::NO_CONTENT.into_response();
    }
    response
}

/// Serves `app` on `listener` until `shutdown` resolves.
pub async fn run(
    listener: tokio::net::TcpListener,
    front: Arc<FrontDoor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // Without TCP_NODELAY, a response written in parts (an SSE stream's priming event, then
    // the message) waits out the client's delayed ACK: 40 ms per request on a kept-alive
    // connection.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    // A `Router` served as is applies its state again for every connection (about 18 KB each,
    // measured with heaptrack at 1000 connections); made into a service once, connections share it.
    axum::serve(listener, app(front).into_make_service())
        .with_graceful_shutdown(shutdown)
        .await
}
