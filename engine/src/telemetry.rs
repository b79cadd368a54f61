//! Logging set-up: human-readable lines by default, Elastic Common Schema (ECS) JSON lines on
//! request, so Filebeat's default ECS mapping ingests them unchanged. Logs go to stderr so that
//! stdout carries only data.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value, json};
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The ECS version the JSON lines follow.
pub const ECS_VERSION: &str = "8.11.0";

/// Installs the global subscriber once; later calls are ignored. `service` names the process in
/// ECS lines (`changeflow-frontdoor`, `changeflow-worker`, ...).
pub fn init_logging(json: bool, default_level: &str, service: &'static str) {
    let _ = init(json, default_level, service, None);
}

/// What `init` set up; dropping it exports the spans still buffered.
#[must_use = "dropping it shuts the trace exporter down"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs logging (as `init_logging`) and, with an OTLP endpoint (`http://collector:4318`),
/// OpenTelemetry traces: `tracing` spans become OpenTelemetry spans (a tool call's span is the
/// root of its trace), the Temporal SDK's plugin (`temporal::connect`) adds workflow and activity
/// spans through Temporal headers, and spans are exported in batches over OTLP/HTTP (protobuf)
/// to `<endpoint>/v1/traces`, with W3C trace context as the propagation format. Workflow span ids
/// come from the SDK's replay-safe generator.
pub fn init(
    json: bool,
    default_level: &str,
    service: &'static str,
    otlp_endpoint: Option<&str>,
) -> Result<Telemetry, String> {
    let filter =
        EnvFilter::try_from_env("CHANGEFLOW_LOG").unwrap_or_else(|_| EnvFilter::new(default_level));
    let provider = otlp_endpoint
        .map(|endpoint| tracer_provider(endpoint, service))
        .transpose()?;
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("changeflow"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let lines = if json {
        tracing_subscriber::fmt::layer()
            .event_format(Ecs::new(service))
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(traces)
        .with(lines)
        .try_init();
    if let Some(provider) = &provider {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    Ok(Telemetry { provider })
}

fn tracer_provider(endpoint: &str, service: &'static str) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(url.clone())
        .build()
        .map_err(|e| format!("OTLP exporter for {url}: {e}"))?;
    Ok(SdkTracerProvider::builder()
        .with_id_generator(temporalio_sdk::opentelemetry::WorkflowIdGenerator::default())
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service)
                .build(),
        )
        .build())
}

/// The current OpenTelemetry span's trace and span ids (hex), when one is being recorded.
fn current_trace() -> Option<(String, String)> {
    use opentelemetry::trace::TraceContextExt;
    let context = opentelemetry::Context::current();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// Formats each event as one ECS JSON line. Fields with an ECS meaning land under their ECS
/// names (`user.name`, `client.address`, `event.outcome`, `event.duration`, `error.message`);
/// changeflow's own go under `changeflow.` (`changeflow.tool`, `changeflow.change_id`, ...).
pub struct Ecs {
    service: &'static str,
}

impl Ecs {
    pub fn new(service: &'static str) -> Self {
        Ecs { service }
    }

    /// The line for an event at `level` from `target` with its recorded fields.
    fn line(&self, level: &tracing::Level, target: &str, fields: EcsFields) -> Map<String, Value> {
        let now = time::OffsetDateTime::now_utc();
        let timestamp = now
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .unwrap_or_default();
        let mut line = Map::new();
        line.insert("@timestamp".into(), json!(timestamp));
        line.insert(
            "log.level".into(),
            json!(level.as_str().to_ascii_lowercase()),
        );
        line.insert("message".into(), json!(fields.message));
        line.insert("ecs.version".into(), json!(ECS_VERSION));
        line.insert("service.name".into(), json!(self.service));
        line.insert("service.version".into(), json!(env!("CARGO_PKG_VERSION")));
        line.insert(
            "event.dataset".into(),
            json!(format!("{}.log", self.service)),
        );
        line.insert("log.logger".into(), json!(target));
        if let Some((trace, span)) = current_trace() {
            line.insert("trace.id".into(), json!(trace));
            line.insert("span.id".into(), json!(span));
        }
        line.extend(fields.fields);
        line
    }
}

/// An event's fields, sorted into ECS names.
#[derive(Default)]
struct EcsFields {
    message: String,
    fields: Map<String, Value>,
}

impl EcsFields {
    fn put(&mut self, field: &Field, value: Value) {
        let (key, value) = match field.name() {
            "message" => {
                self.message = match value {
                    Value::String(text) => text,
                    other => other.to_string(),
                };
                return;
            }
            "outcome" => {
                // ECS allows only success, failure and unknown; the precise word stays ours.
                self.fields
                    .insert("event.outcome".into(), json!(event_outcome(&value)));
                ("changeflow.outcome".to_string(), text(value))
            }
            "user" => ("user.name".to_string(), text(value)),
            "client" => ("client.address".to_string(), text(value)),
            "error" => ("error.message".to_string(), text(value)),
            "duration_ns" => ("event.duration".to_string(), value),
            other => (format!("changeflow.{other}"), value),
        };
        self.fields.insert(key, value);
    }
}

fn text(value: Value) -> Value {
    match value {
        Value::String(_) => value,
        other => json!(other.to_string()),
    }
}

/// ECS `event.outcome` of changeflow's outcome words.
fn event_outcome(outcome: &Value) -> &'static str {
    match outcome.as_str().unwrap_or_default() {
        "completed" | "started" | "read" | "cancel requested" | "success" => "success",
        "" | "unknown" => "unknown",
        _ => "failure",
    }
}

impl Visit for EcsFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, json!(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, json!(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, json!(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, json!(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for Ecs
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = EcsFields::default();
        event.record(&mut fields);
        let metadata = event.metadata();
        let line = self.line(metadata.level(), metadata.target(), fields);
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Everything written, as one string.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn events_become_ecs_lines_with_changeflow_fields_namespaced() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(Ecs::new("changeflow-frontdoor"))
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                tool = "deploy_template",
                user = "alice",
                client = "127.0.0.1",
                outcome = "denied",
                duration_ns = 1_500_000u64,
                change_id = "change-1",
                "tool call"
            );
            tracing::warn!(error = "audit store unavailable", "refused");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let call = &lines[0];
        let timestamp = call["@timestamp"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
                .is_ok()
                && timestamp.ends_with('Z'),
            "{timestamp}"
        );
        assert_eq!(call["log.level"], "info");
        assert_eq!(call["message"], "tool call");
        assert_eq!(call["ecs.version"], ECS_VERSION);
        assert_eq!(call["service.name"], "changeflow-frontdoor");
        assert_eq!(call["event.dataset"], "changeflow-frontdoor.log");
        assert_eq!(call["changeflow.tool"], "deploy_template");
        assert_eq!(call["changeflow.change_id"], "change-1");
        assert_eq!(call["user.name"], "alice");
        assert_eq!(call["client.address"], "127.0.0.1");
        assert_eq!(call["event.outcome"], "failure");
        assert_eq!(call["changeflow.outcome"], "denied");
        assert_eq!(call["event.duration"], 1_500_000);
        assert_eq!(lines[1]["log.level"], "warn");
        assert_eq!(lines[1]["error.message"], "audit store unavailable");
    }
}
