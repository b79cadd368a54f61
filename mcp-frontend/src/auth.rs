//! Authentication of every MCP request: a valid bearer token or a 401 with the RFC 9728
//! challenge that tells the client where to find the authorization server.

use crate::front_door::{Authentication, FrontDoor};
use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use changeflow_engine::identity::{protected_resource_metadata as metadata, www_authenticate};
use changeflow_engine::metrics as m;
use std::sync::Arc;

fn metadata_url(front: &FrontDoor) -> String {
    let origin = front
        .resource
        .trim_end_matches('/')
        .trim_end_matches("/mcp");
    format!("{origin}/.well-known/oauth-protected-resource")
}

/// `GET /.well-known/oauth-protected-resource`.
pub async fn protected_resource_metadata(
    State(front): State<Arc<FrontDoor>>,
) -> Json<serde_json::Value> {
    let issuers: Vec<&str> = match &front.authentication {
        Authentication::Bearer(verifier) => vec![verifier.config().issuer.as_str()],
        Authentication::FixedTestIdentity(_) => vec![],
    };
    Json(metadata(&front.resource, &issuers, &["mcp"]))
}

/// Verifies the bearer token and attaches the `VerifiedIdentity` to the request.
pub async fn require_bearer(
    State(front): State<Arc<FrontDoor>>,
    mut request: Request,
    next: Next,
) -> Response {
    let verifier = match &front.authentication {
        Authentication::Bearer(verifier) => verifier,
        Authentication::FixedTestIdentity(identity) => {
            request.extensions_mut().insert(identity.clone());
            return next.run(request).await;
        }
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .map(str::to_string);
    let Some(token) = presented else {
        metrics::counter!(m::AUTHN, "result" => "missing").increment(1);
        return challenge(&front, None);
    };
    let started = std::time::Instant::now();
    let verified = verifier.verify(&token).await;
    metrics::histogram!(m::AUTHN_SECONDS).record(started.elapsed().as_secs_f64());
    let result = if verified.is_ok() {
        "success"
    } else {
        "failure"
    };
    metrics::counter!(m::AUTHN, "result" => result).increment(1);
    match verified {
        Ok(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        Err(error) => {
            tracing::info!(%error, "bearer token refused");
            challenge(&front, Some(&error))
        }
    }
}

fn challenge(
    front: &FrontDoor,
    error: Option<&changeflow_engine::identity::TokenError>,
) -> Response {
    let mut response = (StatusCode::UNAUTHORIZED, "authentication required").into_response();
    if let Ok(value) = HeaderValue::from_str(&www_authenticate(&metadata_url(front), error)) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}
