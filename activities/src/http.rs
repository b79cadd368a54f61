//! What every downstream call shares: one error type that knows whether retrying is safe and
//! when, the mapping of HTTP answers onto it, and a short in-call retry for idempotent reads.

use changeflow_workflows::failure::FailureType;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::ActivityError;

/// `Retry-After` assumed when a 429 carries none (the vendors' clients use 15 seconds).
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(15);
/// Longest `Retry-After` waited inside one call; longer waits go back to Temporal's retry.
const MAX_IN_CALL_WAIT: Duration = Duration::from_secs(5);
const IN_CALL_ATTEMPTS: u32 = 3;

/// Why a downstream call failed. Display never includes credentials or tokens.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DownstreamError {
    /// The request is wrong and will stay wrong (4xx other than 401/404/429).
    #[error("{system} rejected the request ({status}): {message}")]
    Rejected {
        system: &'static str,
        status: u16,
        message: String,
    },
    /// The named thing does not exist.
    #[error("{system}: {message}")]
    NotFound {
        system: &'static str,
        message: String,
    },
    /// The credentials were refused even after a fresh login.
    #[error("{system} refused the configured credentials")]
    Unauthorized { system: &'static str },
    /// Rate limited; retry after the given delay.
    #[error("{system} rate limit exceeded; retry after {}s", retry_after.as_secs())]
    RateLimited {
        system: &'static str,
        retry_after: Duration,
    },
    /// The system answered with a server error.
    #[error("{system} is unavailable ({status}): {message}")]
    Unavailable {
        system: &'static str,
        status: u16,
        message: String,
    },
    /// The system could not be reached or did not answer in time.
    #[error("cannot reach {system}: {message}")]
    Transport {
        system: &'static str,
        message: String,
    },
    /// The answer did not have the documented shape.
    #[error("unexpected answer from {system}: {message}")]
    Protocol {
        system: &'static str,
        message: String,
    },
    /// The requested change is invalid (validation problems, listed).
    #[error("{0}")]
    Invalid(String),
    /// The record's state does not allow the request.
    #[error("{0}")]
    Conflict(String),
    /// Credentials could not be obtained.
    #[error("credentials: {message}")]
    Credentials { message: String, retryable: bool },
    /// Local set-up is wrong (CA file unreadable, bad URL).
    #[error("configuration: {0}")]
    Configuration(String),
}

impl DownstreamError {
    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DownstreamError::RateLimited { .. }
            | DownstreamError::Unavailable { .. }
            | DownstreamError::Transport { .. } => true,
            DownstreamError::Credentials { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The delay the system asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            DownstreamError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The failure type recorded in Temporal.
    pub fn failure_type(&self) -> FailureType {
        match self {
            DownstreamError::Rejected { .. } => FailureType::Rejected,
            DownstreamError::NotFound { .. } => FailureType::NotFound,
            DownstreamError::Unauthorized { .. } => FailureType::Unauthorized,
            DownstreamError::RateLimited { .. } => FailureType::RateLimited,
            DownstreamError::Unavailable { .. } => FailureType::Unavailable,
            DownstreamError::Transport { .. } => FailureType::Transport,
            DownstreamError::Protocol { .. } => FailureType::Protocol,
            DownstreamError::Invalid(_) => FailureType::InvalidRequest,
            DownstreamError::Conflict(_) => FailureType::Conflict,
            DownstreamError::Credentials { .. } => FailureType::Credentials,
            DownstreamError::Configuration(_) => FailureType::Configuration,
        }
    }

    pub(crate) fn transport(system: &'static str, err: reqwest::Error) -> Self {
        // Without the URL: query strings may name things that do not belong in history.
        let message = if err.is_timeout() {
            "request timed out".to_string()
        } else if err.is_connect() {
            "connection failed".to_string()
        } else {
            err.without_url().to_string()
        };
        DownstreamError::Transport { system, message }
    }

    pub(crate) fn protocol(system: &'static str, message: impl Into<String>) -> Self {
        DownstreamError::Protocol {
            system,
            message: message.into(),
        }
    }
}

impl From<changeflow_credentials::CredentialError> for DownstreamError {
    fn from(err: changeflow_credentials::CredentialError) -> Self {
        use changeflow_credentials::CredentialError;
        let retryable = matches!(err, CredentialError::Unavailable(_));
        DownstreamError::Credentials {
            message: err.to_string(),
            retryable,
        }
    }
}

impl DownstreamError {
    /// The Temporal failure for this error: typed, retryable or not, with the requested delay.
    /// (Never rely on `?` here: the SDK's blanket conversion would make every error retryable.)
    pub fn into_activity_error(self) -> ActivityError {
        let err = self;
        let retryable = err.is_retryable();
        let failure = ApplicationFailure::builder(err.to_string())
            .type_name(err.failure_type().as_str().to_string())
            .non_retryable(!retryable)
            .maybe_next_retry_delay(err.retry_after())
            .build();
        ActivityError::application(failure)
    }
}

/// Maps a non-success HTTP answer onto a `DownstreamError`, using the vendor's error text.
pub fn classify(
    system: &'static str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> DownstreamError {
    let message = error_message(body)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    match status.as_u16() {
        429 => DownstreamError::RateLimited {
            system,
            retry_after: retry_after(headers).unwrap_or(DEFAULT_RETRY_AFTER),
        },
        401 => DownstreamError::Unauthorized { system },
        404 => DownstreamError::NotFound { system, message },
        400..=499 => DownstreamError::Rejected {
            system,
            status: status.as_u16(),
            message,
        },
        code => DownstreamError::Unavailable {
            system,
            status: code,
            message,
        },
    }
}

/// Seconds form of `Retry-After` (HTTP dates are treated as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    text.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The human part of either vendor's error envelope.
fn error_message(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    // ServiceNow: {"error": {"message", "detail"}}; Catalyst: {"response": {"message", "detail"}},
    // {"description": ...} or {"error": "..."}.
    let nested = value
        .get("error")
        .or_else(|| value.get("response"))
        .filter(|v| v.is_object());
    if let Some(obj) = nested {
        let message = obj.get("message").and_then(text);
        let detail = obj.get("detail").and_then(text);
        return match (message, detail) {
            (Some(m), Some(d)) if m != d => Some(format!("{m}: {d}")),
            (Some(m), _) => Some(m),
            (None, d) => d,
        };
    }
    // GitHub: {"message", "errors": [strings, or {"message"?, "code", "field"}]}.
    if let Some(message) = value.get("message").and_then(text) {
        let details: Vec<String> = value["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                text(e)
                    .or_else(|| text(&e["message"]))
                    .or_else(|| Some(format!("{} {}", e["field"].as_str()?, e["code"].as_str()?)))
            })
            .collect();
        return Some(if details.is_empty() {
            message
        } else {
            format!("{message}: {}", details.join("; "))
        });
    }
    value
        .get("description")
        .and_then(text)
        .or_else(|| value.get("error").and_then(text))
}

/// A request for `url` with `query` and, when given, a JSON body.
pub fn request(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    query: &[(&str, &str)],
    body: Option<&Value>,
) -> reqwest::RequestBuilder {
    let request = http.request(method, url).query(query);
    match body {
        Some(body) => request.json(body),
        None => request,
    }
}

/// Sends a request and reads its JSON answer; any other answer becomes a classified error.
/// The call is an OpenTelemetry client span, child of the current context (the activity's),
/// and carries it downstream in `traceparent`.
pub async fn send_json(
    system: &'static str,
    request: reqwest::RequestBuilder,
) -> Result<Value, DownstreamError> {
    use opentelemetry::trace::{
        FutureExt as _, SpanKind, Status, TraceContextExt as _, Tracer as _,
    };
    let (client, request) = request.build_split();
    let mut request = request.map_err(|e| DownstreamError::transport(system, e))?;
    // The path only: query strings may name things that do not belong in a trace.
    let tracer = opentelemetry::global::tracer("changeflow");
    let span = tracer
        .span_builder(format!("{} {}", request.method(), request.url().path()))
        .with_kind(SpanKind::Client)
        .with_attributes([
            opentelemetry::KeyValue::new("http.request.method", request.method().to_string()),
            opentelemetry::KeyValue::new(
                "server.address",
                request.url().host_str().unwrap_or_default().to_string(),
            ),
            opentelemetry::KeyValue::new("url.path", request.url().path().to_string()),
            opentelemetry::KeyValue::new("changeflow.system", system),
        ])
        .start_with_context(&tracer, &opentelemetry::Context::current());
    let context = opentelemetry::Context::current_with_span(span);
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(request.headers_mut()))
    });
    let answered = async {
        let response = client
            .execute(request)
            .await
            .map_err(|e| DownstreamError::transport(system, e))?;
        let status = response.status();
        context.span().set_attribute(opentelemetry::KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        if status.is_success() {
            return response
                .json()
                .await
                .map_err(|e| DownstreamError::protocol(system, e.to_string()));
        }
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Err(classify(system, status, &headers, &body))
    }
    .with_context(context.clone())
    .await;
    if let Err(err) = &answered {
        context.span().set_status(Status::error(err.to_string()));
    }
    context.span().end();
    answered
}

/// Writes trace context into HTTP headers (`traceparent`).
struct HeaderInjector<'a>(&'a mut reqwest::header::HeaderMap);

impl opentelemetry::propagation::Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(key.as_bytes()),
            reqwest::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Runs an idempotent call, retrying briefly on rate limits and server errors so that a blip
/// does not cost a whole activity attempt. Longer waits are left to Temporal.
pub async fn with_retries<T, F, Fut>(mut call: F) -> Result<T, DownstreamError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DownstreamError>>,
{
    let mut attempt = 1;
    loop {
        match call().await {
            Err(err) if err.is_retryable() && attempt < IN_CALL_ATTEMPTS => {
                let wait = err
                    .retry_after()
                    .unwrap_or(Duration::from_millis(200 * 2u64.pow(attempt)));
                if wait > MAX_IN_CALL_WAIT {
                    return Err(err);
                }
                tracing::debug!(error = %err, ?wait, attempt, "retrying downstream call");
                tokio::time::sleep(wait).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Builds the shared HTTP client: connection reuse, timeouts, and the configured CA bundle
/// trusted in addition to the system roots.
pub fn http_client(ca_file: Option<&Path>) -> Result<reqwest::Client, DownstreamError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("changeflow/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            DownstreamError::Configuration(format!("CA file {}: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            DownstreamError::Configuration(format!("CA file {}: {e}", path.display()))
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| DownstreamError::Configuration(format!("HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    /// A downstream call carries the caller's trace in `traceparent` (W3C), so the vendor's
    /// own tracing can join it.
    #[tokio::test]
    async fn calls_carry_the_current_trace_in_traceparent() {
        use opentelemetry::trace::{
            FutureExt as _, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId,
            TraceState,
        };
        use std::io::{Read, Write};
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        // A one-shot HTTP server that answers `{}` and hands back the request it read.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = vec![0u8; 4096];
            let n = stream.read(&mut request).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")
                .unwrap();
            String::from_utf8_lossy(&request[..n]).to_string()
        });
        let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let parent = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
            trace,
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ));
        let http = reqwest::Client::new();
        let answer = send_json("Test", http.get(&url))
            .with_context(parent)
            .await
            .unwrap();
        assert_eq!(answer, serde_json::json!({}));
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(
            request.contains("traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{request}"
        );
    }

    fn check(status: u16, headers: &[(&str, &str)], body: &str, expected: &str, retryable: bool) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let err = classify(
            "Catalyst Center",
            StatusCode::from_u16(status).unwrap(),
            &map,
            body,
        );
        assert_eq!(err.to_string(), expected);
        assert_eq!(err.is_retryable(), retryable, "{err}");
    }

    #[test]
    fn answers_are_classified_by_status_with_the_vendor_message() {
        check(
            429,
            &[("retry-after", "7")],
            "{}",
            "Catalyst Center rate limit exceeded; retry after 7s",
            true,
        );
        check(
            429,
            &[],
            "{}",
            "Catalyst Center rate limit exceeded; retry after 15s",
            true,
        );
        check(
            500,
            &[],
            r#"{"response":{"errorCode":"X","message":"Internal server error","detail":"boom"},"version":"1.0"}"#,
            "Catalyst Center is unavailable (500): Internal server error: boom",
            true,
        );
        check(
            400,
            &[],
            r#"{"status":"failed","description":"Template with id x does not exist"}"#,
            "Catalyst Center rejected the request (400): Template with id x does not exist",
            false,
        );
        check(
            404,
            &[],
            r#"{"error":{"message":"No Record found","detail":null},"status":"failure"}"#,
            "Catalyst Center: No Record found",
            false,
        );
        check(
            401,
            &[],
            "",
            "Catalyst Center refused the configured credentials",
            false,
        );
        check(
            503,
            &[],
            "not json",
            "Catalyst Center is unavailable (503): Service Unavailable",
            true,
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idempotent_calls_ride_out_short_blips_but_not_long_waits() {
        let mut calls = 0;
        let result = with_retries(|| {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(DownstreamError::Unavailable {
                        system: "s",
                        status: 503,
                        message: String::new(),
                    })
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result.unwrap(), 3);

        let mut calls = 0;
        let result: Result<(), _> = with_retries(|| {
            calls += 1;
            async {
                Err(DownstreamError::RateLimited {
                    system: "s",
                    retry_after: Duration::from_secs(60),
                })
            }
        })
        .await;
        assert!(matches!(result, Err(DownstreamError::RateLimited { .. })));
        assert_eq!(calls, 1, "a long Retry-After goes back to Temporal at once");

        let mut calls = 0;
        let result: Result<(), _> = with_retries(|| {
            calls += 1;
            async {
                Err(DownstreamError::Rejected {
                    system: "s",
                    status: 400,
                    message: String::new(),
                })
            }
        })
        .await;
        assert!(result.is_err());
        assert_eq!(calls, 1, "4xx is never retried");
    }
}
