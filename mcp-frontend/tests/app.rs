//! The front door's HTTP application without a socket or a Temporal server: `app()` driven with
//! axum's `oneshot`, real policy, audit store and token verification, and the workflows
//! replaced by an in-memory `Workflows` that records what it was asked.

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use changeflow_devstack::dev_issuer::{DevIssuer, DevTokenRequest};
use changeflow_engine::audit::{AuditFilter, AuditStore};
use changeflow_engine::identity::{TokenVerifier, VerifierConfig};
use changeflow_engine::policy::PolicyEngine;
use changeflow_mcp_frontend::changes::{
    ChangeError, ChangeFilter, DecideError, OperationFailure, Started,
};
use changeflow_mcp_frontend::results::{ChangeSummary, ExecutionState, TimelineEntry};
use changeflow_mcp_frontend::tasks::{TaskLookupError, TaskView};
use changeflow_mcp_frontend::temporal::Workflows;
use changeflow_mcp_frontend::{Authentication, Catalog, FrontDoor, app};
use changeflow_workflows::{
    ApprovalDecision, ChangeProgress, ChangeResult, DecisionReceipt, DeploymentRequest,
    OperationRequest,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;

/// Records every start; reads find nothing.
#[derive(Default)]
struct Recorded {
    /// (what, workflow id)
    starts: Mutex<Vec<(String, String)>>,
    /// Temporal is down.
    down: std::sync::atomic::AtomicBool,
    /// Quick operations wait while a test holds this for writing (slow workflows).
    gate: tokio::sync::RwLock<()>,
}

impl Recorded {
    fn starts(&self) -> Vec<(String, String)> {
        self.starts.lock().unwrap().clone()
    }
    fn note(&self, what: &str, id: &str) {
        self.starts
            .lock()
            .unwrap()
            .push((what.to_string(), id.to_string()));
    }
}

#[async_trait]
impl Workflows for Recorded {
    async fn start_change(
        &self,
        id: &str,
        _request: DeploymentRequest,
    ) -> Result<Started, ChangeError> {
        self.note("change", id);
        Ok(Started::New)
    }
    async fn run_operation(
        &self,
        id: &str,
        request: OperationRequest,
    ) -> Result<Value, OperationFailure> {
        self.note("operation", id);
        let _open = self.gate.read().await;
        let operation = serde_json::to_value(&request.operation).unwrap()["operation"].clone();
        if operation == "list_devices" {
            // The inventory policy judges deployments with: an access switch, as Catalyst
            // Center describes it, so that the weekend freeze on core devices (and on devices
            // it does not describe) does not make these tests depend on the day they run.
            let access = json!({"hostname": "sj-access-01", "role": "ACCESS", "family": "Switches and Hubs"});
            return Ok(json!({"operation": operation, "devices": [access]}));
        }
        Ok(json!({ "operation": operation }))
    }
    async fn reachable(&self) -> bool {
        !self.down.load(std::sync::atomic::Ordering::Relaxed)
    }
    async fn started_within(&self, _id: &str, _window: Duration) -> bool {
        false
    }
    async fn status(&self, id: &str) -> Result<ExecutionState, ChangeError> {
        Err(ChangeError::Temporal(format!("no workflow {id}")))
    }
    async fn progress(&self, _id: &str) -> Option<ChangeProgress> {
        None
    }
    async fn change_result(&self, id: &str) -> Result<ChangeResult, String> {
        Err(format!("no workflow {id}"))
    }
    async fn cancel(&self, id: &str, _reason: &str) -> Result<(), ChangeError> {
        Err(ChangeError::Temporal(format!("no workflow {id}")))
    }
    async fn history(&self, id: &str) -> Result<Vec<TimelineEntry>, ChangeError> {
        Err(ChangeError::Temporal(format!("no workflow {id}")))
    }
    async fn fetch_history(&self, id: &str) -> Result<Vec<u8>, ChangeError> {
        Err(ChangeError::Temporal(format!("no workflow {id}")))
    }
    async fn list(&self, _filter: &ChangeFilter) -> Result<Vec<ChangeSummary>, ChangeError> {
        Ok(Vec::new())
    }
    async fn decide(
        &self,
        id: &str,
        decision: ApprovalDecision,
    ) -> Result<DecisionReceipt, DecideError> {
        self.note("decide", id);
        Ok(DecisionReceipt {
            approver: decision.approver,
            verdict: decision.verdict,
            ticket_number: Some("CHG0030001".into()),
        })
    }
    async fn running_in_step(&self, step: changeflow_workflows::ChangeStep) -> Option<u64> {
        (step == changeflow_workflows::ChangeStep::AwaitingApproval).then_some(2)
    }
    /// Changes named `change-of-<user>` exist and were requested by that user.
    async fn requester(&self, id: &str) -> Option<String> {
        id.strip_prefix("change-of-").map(str::to_string)
    }
    async fn task(&self, id: &str) -> Result<TaskView, TaskLookupError> {
        Err(TaskLookupError::NotFound(id.to_string()))
    }
    async fn respond(
        &self,
        id: &str,
        _responses: BTreeMap<String, Value>,
    ) -> Result<(), TaskLookupError> {
        Err(TaskLookupError::NotFound(id.to_string()))
    }
    #[cfg(feature = "fixtures")]
    async fn start_fixture(
        &self,
        id: &str,
        _by: &str,
        _call: changeflow_workflows::fixtures::FixtureCall,
    ) -> Result<(), ChangeError> {
        self.note("fixture", id);
        Ok(())
    }
    #[cfg(feature = "fixtures")]
    async fn fixture_progress(
        &self,
        _id: &str,
    ) -> Option<changeflow_mcp_frontend::outcome::Progress> {
        None
    }
    #[cfg(feature = "fixtures")]
    async fn fixture_finished(&self, _id: &str) -> changeflow_mcp_frontend::tasks::TaskState {
        changeflow_mcp_frontend::tasks::TaskState::Failed("not in memory".into())
    }
}

struct Fixture {
    front: Arc<FrontDoor>,
    workflows: Arc<Recorded>,
    audit: Arc<AuditStore>,
    issuer: DevIssuer,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const ISSUER: &str = "https://idp.invalid";
const AUDIENCE: &str = "changeflow";

async fn fixture() -> Fixture {
    fixture_with(
        None,
        changeflow_mcp_frontend::front_door::DEFAULT_MAX_IN_FLIGHT,
    )
    .await
}

/// The fixture, with its audit store at `audit_url` (SQLite in its directory by default) and
/// at most `in_flight` workflow calls at once.
async fn fixture_with(audit_url: Option<&str>, in_flight: usize) -> Fixture {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cf-app-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let issuer = DevIssuer::load_or_create(&dir.join("idp"), ISSUER).unwrap();
    let verifier = TokenVerifier::with_keys(
        VerifierConfig::new(ISSUER, AUDIENCE),
        &json!({"keys": [issuer.jwk()]}),
        &format!("{ISSUER}/jwks"),
        reqwest::Client::new(),
    )
    .unwrap();
    let policy =
        PolicyEngine::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy"))
            .unwrap();
    let audit = Arc::new(match audit_url {
        Some(url) => AuditStore::open(url).await.unwrap(),
        None => AuditStore::open_in(&dir.join("audit")).await.unwrap(),
    });
    let workflows = Arc::new(Recorded::default());
    let front = Arc::new(FrontDoor {
        authentication: Authentication::Bearer(Arc::new(verifier)),
        catalog: Catalog::Production,
        policy: Arc::new(policy),
        audit: audit.clone(),
        temporal: workflows.clone(),
        resource: "http://127.0.0.1:8080/mcp".into(),
        allowed_hosts: vec!["127.0.0.1".into(), "localhost".into()],
        allowed_origins: vec!["http://127.0.0.1:*".into()],
        idempotency_window: Duration::from_secs(600),
        approval_poll_secs: 30,
        verification: Arc::new(
            changeflow_workflows::verification::Catalog::parse(include_str!(
                "../../policy/verification.toml"
            ))
            .unwrap(),
        ),
        evidence: Default::default(),
        in_flight: changeflow_mcp_frontend::front_door::InFlight::new(in_flight),
        devices: Default::default(),
        web: None,
    });
    Fixture {
        front,
        workflows,
        audit,
        issuer,
        _dir: TempDir(dir),
    }
}

impl Fixture {
    fn token(&self, user: &str) -> String {
        self.issuer
            .mint(&DevTokenRequest {
                user: user.into(),
                audience: AUDIENCE.into(),
                ttl: Duration::from_secs(600),
                mfa: None,
            })
            .unwrap()
    }

    /// One request through the whole application; the status, headers and JSON body.
    async fn send(&self, request: Request<Body>) -> (StatusCode, header::HeaderMap, Value) {
        let response = app(self.front.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, headers, body)
    }

    fn post(&self, path: &str, token: Option<&str>, body: Value) -> Request<Body> {
        let mut request = Request::post(path)
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream");
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let body = body.to_string();
        request
            .header(header::CONTENT_LENGTH, body.len())
            .body(Body::from(body))
            .unwrap()
    }

    async fn tool(&self, user: &str, tool: &str, arguments: Value) -> (StatusCode, Value) {
        let server = changeflow_mcp_frontend::tools::find(None, tool)
            .unwrap()
            .server;
        let request = self.post(
            &format!("/api/v1/mcp/{server}/tools/{tool}"),
            Some(&self.token(user)),
            json!({"arguments": arguments}),
        );
        let (status, _, body) = self.send(request).await;
        (status, body)
    }
}

#[tokio::test]
async fn requests_without_a_valid_token_get_the_challenge_and_touch_nothing() {
    let f = fixture().await;
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}});
    for token in [None, Some("not-a-jwt")] {
        let (status, headers, _) = f.send(f.post("/mcp", token, init.clone())).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let challenge = headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            challenge.contains(
                "resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource\""
            ),
            "{challenge}"
        );
    }
    // A token for another audience is refused too.
    let foreign = f
        .issuer
        .mint(&DevTokenRequest {
            user: "alice".into(),
            audience: "someone-else".into(),
            ttl: Duration::from_secs(600),
            mfa: None,
        })
        .unwrap();
    let (status, _, _) = f.send(f.post("/mcp", Some(&foreign), init)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(f.workflows.starts().is_empty());
    assert!(
        f.audit
            .list(&AuditFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn oversized_bodies_batches_and_foreign_origins_are_refused() {
    let f = fixture().await;
    let alice = f.token("alice");
    let big = json!({"arguments": {"family": "x".repeat(300 * 1024)}});
    let request = f.post(
        "/api/v1/mcp/catalyst-center/tools/list_devices",
        Some(&alice),
        big,
    );
    assert_eq!(f.send(request).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let batch = json!([init.clone(), {"jsonrpc": "2.0", "id": 2, "method": "ping"}]);
    let (status, _, _) = f.send(f.post("/mcp", Some(&alice), batch)).await;
    assert!(status.is_client_error(), "a batch is refused: {status}");

    let mut foreign = f.post("/mcp", Some(&alice), init);
    foreign
        .headers_mut()
        .insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(f.send(foreign).await.0, StatusCode::FORBIDDEN);
    assert!(f.workflows.starts().is_empty());
}

#[tokio::test]
async fn a_policy_denial_is_audited_and_starts_nothing() {
    let f = fixture().await;
    // bob (service-desk) may not deploy.
    let (status, body) = f
        .tool(
            "bob",
            "deploy_template",
            json!({"template_id": "t-1", "devices": ["sj-access-01"]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["missing_permission"], "execute on catalyst-center");
    let records = f.audit.list(&AuditFilter::default()).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].entry.subject, "bob");
    assert_eq!(records[0].entry.decision, "deny");
    assert_eq!(records[0].entry.outcome, "denied");
    assert!(f.workflows.starts().is_empty());
    // The rules behind the decision stay readable under the revision the record names.
    let kept = f
        .audit
        .policy_revision(&records[0].entry.policy_revision)
        .await
        .unwrap()
        .expect("the deciding revision's text is kept");
    assert!(
        kept["authz.rego"].contains("package changeflow.authz"),
        "{kept:?}"
    );
    assert!(kept.contains_key("governance.rego"), "{kept:?}");
}

#[tokio::test]
async fn only_an_approver_other_than_the_requester_reaches_the_change() {
    let f = fixture().await;
    let decision = json!({"change_id": "change-of-alice", "comment": "ok"});
    let (status, body) = f.tool("alice", "approve_change", decision.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("alice requested this change"),
        "{body}"
    );
    let (status, _) = f.tool("bob", "reject_change", decision.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        f.workflows.starts().is_empty(),
        "no refused decision reached the change"
    );

    let (status, body) = f.tool("carol", "approve_change", decision).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], true);
    assert_eq!(body["approver"], "carol");
    assert_eq!(
        f.workflows.starts(),
        vec![("decide".to_string(), "change-of-alice".to_string())]
    );
    let outcomes: Vec<String> = f
        .audit
        .list(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {} {}", r.entry.subject, r.entry.tool, r.entry.outcome))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            "alice approve_change denied",
            "bob reject_change denied",
            "carol approve_change approved"
        ]
    );
    let records = f.audit.list(&AuditFilter::default()).await.unwrap();
    assert!(
        records.iter().all(|r| r.entry.note == "ok"),
        "the comment is in every record"
    );
}

#[tokio::test]
async fn an_emergency_justification_lands_in_the_audit_record() {
    let f = fixture().await;
    let (status, body) = f
        .tool(
            "alice",
            "deploy_template",
            json!({
                "template_id": "t-1",
                "devices": ["sj-core-01"],
                "change_type": "emergency",
                "justification": "core uplink flapping since 03:10",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let records = f.audit.list(&AuditFilter::default()).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].entry.note, "core uplink flapping since 03:10");
    assert!(f.audit.verify().await.unwrap().first_broken.is_none());
}

#[tokio::test]
async fn a_burst_of_change_requests_shares_one_device_inventory_read() {
    let f = fixture().await;
    for n in 0..3 {
        let (status, body) = f
            .tool(
                "alice",
                "deploy_template",
                json!({
                    "template_id": "t-1",
                    "devices": ["sj-core-01"],
                    "change_type": "emergency",
                    "justification": "core uplink flapping",
                    "idempotency_key": format!("burst-{n}"),
                }),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let starts = f.workflows.starts();
    let count = |what: &str| starts.iter().filter(|(w, _)| w == what).count();
    assert_eq!(
        (count("operation"), count("change")),
        (1, 3),
        "one inventory read for policy, three changes: {starts:?}"
    );
}

#[tokio::test]
async fn argument_errors_name_the_problem_are_audited_and_start_nothing() {
    let f = fixture().await;
    for (arguments, problem) in [
        (json!({"limit": 0}), "limit"),
        (json!({"hostname": "a b"}), "hostname"),
        (json!({"family": null}), "must not be null"),
        (json!({"password": "x"}), "unknown field"),
    ] {
        let (status, body) = f.tool("alice", "list_devices", arguments).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains(problem),
            "{problem}: {body}"
        );
    }
    let records = f.audit.list(&AuditFilter::default()).await.unwrap();
    assert_eq!(records.len(), 4);
    assert!(records.iter().all(|r| r.entry.outcome == "invalid"));
    assert!(f.workflows.starts().is_empty());

    // An integral float is an integer: the call goes through.
    let (status, body) = f
        .tool("alice", "list_devices", json!({"limit": 14.0}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(f.workflows.starts().len(), 1);
}

#[tokio::test]
async fn a_repeated_write_reuses_its_workflow_id_and_a_read_never_does() {
    let f = fixture().await;
    // bob (service-desk) and carol (change-approvers) may write to ServiceNow.
    let note = json!({"number": "CHG0030001", "note": "checked"});
    for _ in 0..2 {
        let (status, body) = f.tool("bob", "add_work_note", note.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut keyed = note.clone();
    keyed["idempotency_key"] = json!("k-1");
    f.tool("bob", "add_work_note", keyed.clone()).await;
    f.tool("bob", "add_work_note", keyed).await;
    f.tool("carol", "add_work_note", note).await;
    for _ in 0..2 {
        f.tool("alice", "list_templates", json!({})).await;
    }
    let ids: Vec<String> = f.workflows.starts().into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), 7);
    assert_eq!(
        ids[0], ids[1],
        "same caller, tool and arguments in the window"
    );
    assert_eq!(ids[2], ids[3], "same idempotency key");
    assert_ne!(ids[0], ids[2], "a key is a scope of its own");
    assert_ne!(ids[0], ids[4], "another caller");
    assert_ne!(ids[5], ids[6], "reads always get fresh ids");
    assert!(ids[0].starts_with("op-") && ids[5].starts_with("read-"));

    // A deploy through REST with an Idempotency-Key: 202, and the same change twice.
    let deploy = |key: &str| {
        let mut request = f.post(
            "/api/v1/mcp/catalyst-center/tools/deploy_template",
            Some(&f.token("alice")),
            json!({"arguments": {"template_id": "t-1", "devices": ["sj-access-01"], "backout": {"template_id": "t-1-undo"}}}),
        );
        request
            .headers_mut()
            .insert("idempotency-key", key.parse().unwrap());
        f.send(request)
    };
    let (first, headers, body) = deploy("change-7").await;
    assert_eq!(first, StatusCode::ACCEPTED, "{body}");
    let change_id = body["change_id"].as_str().unwrap().to_string();
    assert_eq!(
        headers[header::LOCATION].to_str().unwrap(),
        format!("/api/v1/changes/{change_id}")
    );
    assert_eq!(deploy("change-7").await.2["change_id"], change_id.as_str());
    assert_ne!(deploy("change-8").await.2["change_id"], change_id.as_str());
}

#[tokio::test]
async fn health_needs_no_token_and_readiness_names_what_fails() {
    let f = fixture().await;
    let get = |path: &str| {
        Request::get(path)
            .header(header::HOST, "lb.internal:8080")
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = f.send(get("/healthz")).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );

    let (status, _, body) = f.send(get("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for check in ["temporal", "policy", "audit_store", "oidc_keys"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }

    f.workflows
        .down
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (status, _, body) = f.send(get("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["failing"], json!(["temporal"]), "{body}");
    assert_eq!(body["checks"]["audit_store"], "ok");
    // Liveness does not depend on what the service needs.
    assert_eq!(f.send(get("/healthz")).await.0, StatusCode::OK);
    // The audit probe left no record behind.
    assert!(
        f.audit
            .list(&AuditFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(f.audit.verify().await.unwrap().first_broken.is_none());
}

#[tokio::test]
async fn every_tool_call_logs_one_ecs_line_with_tool_user_outcome_and_duration() {
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .event_format(changeflow_engine::telemetry::Ecs::new(
            "changeflow-frontdoor",
        ))
        .with_writer(move || writer.clone())
        .finish();
    // Global, so that every thread's events reach it (per-thread subscribers race with the
    // other tests over tracing's callsite cache); this test's calls are told apart by caller.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let f = fixture().await;
    let token = f.token("admin");
    let (status, _) = f.tool("admin", "list_templates", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = f
        .tool(
            "dave",
            "deploy_template",
            json!({"template_id": "t-1", "devices": ["sj-access-01"]}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    let calls: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["message"] == "tool call")
        .filter(|l| {
            (l["user.name"] == "admin" && l["changeflow.tool"] == "list_templates")
                || (l["user.name"] == "dave" && l["changeflow.tool"] == "deploy_template")
        })
        .collect();
    assert_eq!(calls.len(), 2, "{text}");
    assert_eq!(calls[0]["changeflow.tool"], "list_templates");
    assert_eq!(calls[0]["user.name"], "admin");
    assert_eq!(calls[0]["event.outcome"], "success");
    assert!(calls[0]["event.duration"].as_u64().unwrap() > 0);
    assert_eq!(calls[1]["changeflow.tool"], "deploy_template");
    assert_eq!(calls[1]["user.name"], "dave");
    assert_eq!(calls[1]["event.outcome"], "failure");
    assert_eq!(calls[1]["changeflow.outcome"], "denied");
    assert!(!text.contains(&token), "no token in the log");
}

#[tokio::test]
async fn metrics_count_calls_decisions_and_audit_writes_in_prometheus_format() {
    let f = fixture().await;
    let (status, _) = f.tool("admin", "list_devices", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let request = Request::get("/metrics")
        .header(header::HOST, "prometheus.internal:8080")
        .body(Body::empty())
        .unwrap();
    let response = app(f.front.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "no token needed");
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    // Every sample line is `name{labels} value`.
    let sample = samples(&text);
    let value = |series: &str| -> f64 {
        sample
            .iter()
            .find(|(name, _)| name == series)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert!(
        value(
            r#"changeflow_tool_calls_total{server="catalyst-center",tool="list_devices",outcome="completed"}"#
        ) >= 1.0
    );
    assert!(
        value(
            r#"changeflow_authz_decisions_total{action="read",resource="catalyst-center",decision="allow"}"#
        ) >= 1.0
    );
    assert!(value(r#"changeflow_authn_total{result="success"}"#) >= 1.0);
    assert!(value(r#"changeflow_audit_writes_total{result="success"}"#) >= 1.0);
    assert!(
        value(
            r#"changeflow_http_requests_total{method="POST",route="/api/v1/mcp/catalyst-center/tools/list_devices",status="200"}"#
        ) >= 1.0,
        "REST requests by route and status"
    );
    assert!(
        value("process_resident_memory_bytes") > 0.0,
        "process memory"
    );
    assert!(
        value("process_cpu_seconds_total") >= 0.0,
        "process CPU (whole seconds)"
    );
    assert_eq!(
        value(r#"changeflow_changes_in_progress{step="awaiting_approval"}"#),
        2.0,
        "running changes by step, counted in visibility at scrape time"
    );
    assert!(
        value(
            r#"changeflow_tool_call_duration_seconds_count{server="catalyst-center",tool="list_devices"}"#
        ) >= 1.0
    );
}

/// The samples of a Prometheus text exposition: (series, value); panics on a malformed line.
fn samples(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("malformed sample: {line}"));
            let name_end = series.find('{').unwrap_or(series.len());
            assert!(
                series[..name_end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "malformed name: {line}"
            );
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("malformed value: {line}"));
            (series.to_string(), value)
        })
        .collect()
}

/// Runs `sql` on the PostgreSQL server as its administrator.
async fn as_admin(admin_url: &str, sql: &str) {
    let admin = sqlx::AnyPool::connect(admin_url).await.unwrap();
    sqlx::query(sql).execute(&admin).await.unwrap();
    admin.close().await;
}

#[tokio::test]
async fn an_unreachable_audit_store_refuses_calls_retryably_and_service_resumes() {
    let Ok(admin_url) = std::env::var("CHANGEFLOW_TEST_POSTGRES_URL") else {
        eprintln!("CHANGEFLOW_TEST_POSTGRES_URL not set: SKIPPING the audit-store outage test");
        return;
    };
    sqlx::any::install_default_drivers();
    let name = format!("cf_outage_{}", std::process::id());
    as_admin(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
    as_admin(&admin_url, &format!("CREATE DATABASE {name}")).await;
    let mut url = url::Url::parse(&admin_url).unwrap();
    url.set_path(&name);
    let f = fixture_with(
        Some(url.as_str()),
        changeflow_mcp_frontend::front_door::DEFAULT_MAX_IN_FLIGHT,
    )
    .await;
    let call = || f.tool("admin", "list_devices", json!({}));
    assert_eq!(call().await.0, StatusCode::OK);
    let started = f.workflows.starts().len();

    // The database stops taking connections, and the ones it had are cut.
    as_admin(
        &admin_url,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
    )
    .await;
    as_admin(
        &admin_url,
        &format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
    )
    .await;
    let request = f.post(
        "/api/v1/mcp/catalyst-center/tools/list_devices",
        Some(&f.token("admin")),
        json!({"arguments": {}}),
    );
    let (status, headers, body) = f.send(request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "5");
    assert_eq!(body["retryable"], true);
    assert_eq!(f.workflows.starts().len(), started, "nothing was started");
    let ready = Request::get("/readyz")
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = f.send(ready).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.to_string().contains("audit_store"), "{body}");

    // Back again: service resumes by itself.
    as_admin(
        &admin_url,
        &format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while call().await.0 != StatusCode::OK {
        assert!(
            std::time::Instant::now() < deadline,
            "service never resumed"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(f.audit.verify().await.unwrap().first_broken.is_none());
    drop(f);
    as_admin(
        &admin_url,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await;
}

/// Past its bound on workflow calls the front door refuses at once, retryably, over REST and
/// MCP; status, listings and tools/list keep answering; nothing refused was started; and once
/// the calls in flight end, calls are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_bound_the_front_door_sheds_calls_and_recovers_by_itself() {
    let f = Arc::new(fixture_with(None, 3).await);
    let hold = f.workflows.gate.write().await;
    let mut running = Vec::new();
    for n in 0..3 {
        let f = f.clone();
        running.push(tokio::spawn(async move {
            f.tool(
                "alice",
                "list_devices",
                json!({"hostname": format!("sj-access-0{n}")}),
            )
            .await
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while f.workflows.starts().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the calls never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // REST: 503, Retry-After, retryable, fast.
    let started = std::time::Instant::now();
    let request = f.post(
        "/api/v1/mcp/catalyst-center/tools/list_devices",
        Some(&f.token("alice")),
        json!({"arguments": {}}),
    );
    let (status, headers, body) = f.send(request).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "1");
    assert_eq!(body["error"], "overloaded", "{body}");
    assert_eq!(body["retryable"], true, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at once"
    );
    // A change start is refused the same way.
    let (status, body) = f
        .tool(
            "alice",
            "deploy_template",
            json!({"template_id": "t", "devices": ["lab-1"], "change_type": "normal"}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");

    // MCP (stateless era): a tool error saying so, retryable.
    let answer = stateless_call(&f, "list_devices").await;
    let result = &answer["result"];
    assert_eq!(result["isError"], true, "{answer}");
    assert_eq!(
        result["structuredContent"]["error"], "overloaded",
        "{answer}"
    );
    assert_eq!(result["structuredContent"]["retryable"], true, "{answer}");

    // Queries and listings keep answering.
    let (status, _) = f
        .tool(
            "alice",
            "get_change_status",
            json!({"change_id": "change-x"}),
        )
        .await;
    assert_ne!(status, StatusCode::SERVICE_UNAVAILABLE);
    let listing = Request::get("/api/v1/mcp/catalyst-center/tools")
        .header(header::HOST, "127.0.0.1:8080")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", f.token("alice")),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(listing).await.0, StatusCode::OK);
    assert_eq!(f.workflows.starts().len(), 3, "nothing refused was started");
    let shed = changeflow_engine::metrics::prometheus().render();
    assert!(
        shed.contains(
            "changeflow_calls_shed_total{server=\"catalyst-center\",tool=\"list_devices\"}"
        ),
        "{shed}"
    );

    // The calls in flight finish; the next call is taken.
    drop(hold);
    for call in running {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = f.tool("alice", "list_devices", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(f.workflows.starts().len(), 4);
    let answer = stateless_call(&f, "list_devices").await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert!(
        answer["result"]["structuredContent"].is_object(),
        "{answer}"
    );
    assert_eq!(f.workflows.starts().len(), 5);
}

/// A 2026-07-28 (stateless) `tools/call` with no arguments. Its first message is its answer,
/// so it comes as one JSON body, not a stream of one event.
async fn stateless_call(f: &Fixture, tool: &'static str) -> Value {
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": tool, "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}, "io.modelcontextprotocol/clientInfo": {"name": "t", "version": "1"}}}});
    let mut mcp = f.post("/mcp", Some(&f.token("alice")), call);
    for (name, value) in [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ] {
        mcp.headers_mut()
            .insert(name, header::HeaderValue::from_static(value));
    }
    let (status, headers, answer) = f.send(mcp).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/json",
        "a one-message answer is plain JSON"
    );
    assert_eq!(answer["jsonrpc"], "2.0", "one JSON-RPC message: {answer}");
    answer
}
