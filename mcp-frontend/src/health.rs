//! Liveness and readiness for load balancers and orchestrators, on the front door and (its own
//! listener) the worker: no authentication, and answers that name the checks and nothing more.

use crate::front_door::{Authentication, FrontDoor};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// `GET /metrics`: the process's metrics in Prometheus's text format.
pub async fn metrics() -> Response {
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    let text = changeflow_engine::metrics::render();
    ([(axum::http::header::CONTENT_TYPE, content_type)], text).into_response()
}

/// The front door's `GET /metrics`: the process's metrics plus the running changes by step,
/// counted in Temporal visibility at scrape time (a step Temporal does not answer for keeps its
/// last value).
pub async fn front_door_metrics(State(front): State<Arc<FrontDoor>>) -> Response {
    let counts =
        futures_util::future::join_all(changeflow_workflows::ChangeStep::IN_PROGRESS.map(|step| {
            let front = front.clone();
            async move { (step, front.temporal.running_in_step(step).await) }
        }))
        .await;
    for (step, count) in counts {
        if let Some(count) = count {
            metrics::gauge!(changeflow_engine::metrics::CHANGES_IN_PROGRESS, "step" => step.as_str())
                .set(count as f64);
        }
    }
    metrics().await
}

/// `GET /healthz`: the process answers.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: Temporal reachable, a policy loaded, the audit store writable and the OIDC
/// provider's keys fetched; 503 naming the failing checks otherwise. Whether the provider
/// answers now is reported (`degraded`) without failing readiness: tokens keep verifying with
/// the cached keys, so taking every instance out of rotation would only make things worse.
pub async fn readyz(State(front): State<Arc<FrontDoor>>) -> Response {
    let keys = async {
        match &front.authentication {
            Authentication::Bearer(verifier) => (
                verifier.has_keys().await,
                verifier.provider_reachable().await,
            ),
            Authentication::FixedTestIdentity(_) => (true, true),
        }
    };
    let (temporal, audit_store, (oidc_keys, oidc_provider)) =
        tokio::join!(front.temporal.reachable(), front.audit.writable(), keys);
    let policy = !front.policy.revision().is_empty();
    readiness(
        &[
            ("temporal", temporal),
            ("policy", policy),
            ("audit_store", audit_store),
            ("oidc_keys", oidc_keys),
        ],
        &[("oidc_provider", oidc_provider)],
    )
}

/// The readiness answer for named checks: 200 when all pass, else 503 with the failing ones.
/// `advisory` checks are reported (`degraded`) but never make it fail.
pub fn readiness(checks: &[(&str, bool)], advisory: &[(&str, bool)]) -> Response {
    let names = |list: &[(&str, bool)]| -> Vec<String> {
        list.iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| name.to_string())
            .collect()
    };
    let (failing, degraded) = (names(checks), names(advisory));
    let mut results: Map<String, Value> = checks
        .iter()
        .map(|(name, ok)| (name.to_string(), json!(if *ok { "ok" } else { "failing" })))
        .collect();
    for (name, ok) in advisory {
        results.insert(
            name.to_string(),
            json!(if *ok { "ok" } else { "unreachable" }),
        );
    }
    let mut body = json!({"status": "ready", "checks": results});
    if !degraded.is_empty() {
        body["degraded"] = json!(degraded);
    }
    if failing.is_empty() {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        body["status"] = json!("not ready");
        body["failing"] = json!(failing);
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    }
}

/// Serves the worker's `/healthz` and `/readyz` (Temporal answers) on `listener` until
/// `shutdown` resolves.
pub async fn serve_worker(
    listener: tokio::net::TcpListener,
    client: temporalio_client::Client,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ready = move || {
        let client = client.clone();
        async move {
            readiness(
                &[("temporal", crate::changes::reachable(&client).await)],
                &[],
            )
        }
    };
    changeflow_engine::metrics::prometheus();
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics));
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
