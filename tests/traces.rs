//! OpenTelemetry traces end to end: `changeflow dev` exports over OTLP/HTTP to a receiver in this
//! test, which decodes the protocol with the `opentelemetry-proto` types. One `deploy_template`
//! call is one trace: the front door's span → the workflow start → the workflow → an activity
//! → its HTTP call to Catalyst Center; the JSON log line of the call carries the trace id.

mod common;

use common::TempDir;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A received span: name, trace id, span id, parent span id (hex).
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace: String,
    id: String,
    parent: String,
    service: String,
}

/// An OTLP/HTTP trace receiver on a free loopback port; returns its URL and what it received.
async fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut spans = store.lock().unwrap();
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| r.attributes.iter())
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.as_ref())
                        .map(|v| format!("{:?}", v.value))
                        .unwrap_or_default();
                    for scope in resource.scope_spans {
                        for span in scope.spans {
                            spans.push(Received {
                                name: span.name,
                                trace: hex(&span.trace_id),
                                id: hex(&span.span_id),
                                parent: hex(&span.parent_span_id),
                                service: service.clone(),
                            });
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    ExportTraceServiceResponse::default().encode_to_vec(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_is_one_trace_from_the_front_door_to_the_http_call() {
    let (otlp, spans) = receiver().await;
    let dir = TempDir::new("changeflow-traces");
    let log = dir.0.join("dev.log");
    let dev = common::DevProcess::start(
        dir.0.join("changeflow"),
        &[
            ("CHANGEFLOW_OTLP_ENDPOINT", otlp.as_str()),
            ("CHANGEFLOW_LOG_FORMAT", "json"),
        ],
        &log,
    )
    .await;
    let mut client = dev.client("alice").await;
    let arguments = json!({
        "template_id": changeflow_simulators::seed::id("template", "NTP Servers"),
        "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"},
        "devices": ["sj-access-01"],
        "change_type": "standard",
    });
    let result = client
        .call_tool("deploy_template", arguments, |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        result["structuredContent"]["status"], "completed",
        "{result}"
    );

    // The chain, each span the parent of the next, all in one trace.
    let chain = [
        "tool deploy_template",
        "StartWorkflow:TemplateDeployment",
        "RunWorkflow:TemplateDeployment",
        "StartActivity:submit_deployment",
        "RunActivity:submit_deployment",
        "POST /dna/intent/api/v2/template-programmer/template/deploy",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let received = spans.lock().unwrap().clone();
        if let Some(found) = follow_chain(&received, &chain) {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no complete chain {chain:?} among {:#?}",
            received
                .iter()
                .map(|s| (&s.name, &s.id, &s.parent))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        found[0].parent, "",
        "the tool call is the root of its trace"
    );
    assert!(
        found.iter().all(|s| s.trace == found[0].trace),
        "{found:#?}"
    );
    assert!(found[0].service.contains("changeflow"), "{found:#?}");
    // Policy and audit are steps of the call.
    let all = spans.lock().unwrap().clone();
    for step in ["policy decision", "audit append"] {
        assert!(
            all.iter()
                .any(|s| s.name == step && s.parent == found[0].id),
            "no {step} span under the call"
        );
    }

    // The call's ECS log line names the same trace.
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "tool call" && l["changeflow.tool"] == "deploy_template")
        .unwrap_or_else(|| panic!("no tool call line in:\n{text}"));
    assert_eq!(line["trace.id"], found[0].trace.as_str(), "{line}");
    assert_eq!(line["span.id"], found[0].id.as_str(), "{line}");
    for line in text.lines().filter(|l| l.starts_with('{')) {
        common::assert_ecs_line(line, "changeflow-dev");
    }
}

/// Finds spans named as in `chain`, each the child of the one before.
fn follow_chain(spans: &[Received], chain: &[&str]) -> Option<Vec<Received>> {
    let mut found: Vec<Received> = Vec::new();
    for name in chain {
        let next = spans
            .iter()
            .find(|s| {
                s.name == *name
                    && found
                        .last()
                        .is_none_or(|parent| s.parent == parent.id && s.trace == parent.trace)
            })?
            .clone();
        found.push(next);
    }
    Some(found)
}
