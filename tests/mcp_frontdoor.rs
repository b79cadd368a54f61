//! The MCP front door over real HTTP: bearer authentication with the RFC 9728 challenge,
//! policy and audit on every call, and `deploy_template` running a real workflow with progress
//! notifications. Speaks raw JSON-RPC so the wire format itself is under test.

mod common;

use changeflow::mcp_client::McpClient;
use changeflow_devstack::dev_issuer::{self, DevTokenRequest};
use changeflow_engine::audit::{AuditFilter, AuditStore};
use changeflow_engine::identity::{TokenVerifier, VerifierConfig};
use changeflow_engine::policy::PolicyEngine;
use changeflow_mcp_frontend::{Authentication, FrontDoor};
use common::{Harness, HarnessOptions};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

struct Door {
    url: String,
    http: reqwest::Client,
    issuer: dev_issuer::RunningDevIssuer,
    audit: Arc<AuditStore>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn front_door(h: &Harness) -> Door {
    front_door_with_window(
        h,
        changeflow_mcp_frontend::invoke::DEFAULT_IDEMPOTENCY_WINDOW,
    )
    .await
}

async fn front_door_with_window(h: &Harness, idempotency_window: Duration) -> Door {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policy");
    front_door_with(h, idempotency_window, &shipped).await
}

async fn front_door_with(
    h: &Harness,
    idempotency_window: Duration,
    policy_dir: &std::path::Path,
) -> Door {
    let issuer = dev_issuer::start(&h.dir.0.join("idp"), 0).await.unwrap();
    let verifier = TokenVerifier::discover(
        VerifierConfig::new(issuer.url(), "changeflow"),
        reqwest::Client::new(),
    )
    .await
    .unwrap();
    let policy = PolicyEngine::load(policy_dir).unwrap();
    let audit = Arc::new(AuditStore::open_in(&h.dir.0.join("audit")).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let front = Arc::new(FrontDoor {
        authentication: Authentication::Bearer(Arc::new(verifier)),
        catalog: changeflow_mcp_frontend::Catalog::Production,
        policy: Arc::new(policy),
        audit: audit.clone(),
        temporal: Arc::new(changeflow_mcp_frontend::temporal::TemporalWorkflows::new(
            h.client.clone(),
            h.task_queue.clone(),
        )),
        resource: format!("{url}/mcp"),
        allowed_hosts: vec!["127.0.0.1".into(), "localhost".into()],
        allowed_origins: vec!["http://127.0.0.1:*".into()],
        idempotency_window,
        approval_poll_secs: 1,
        verification: Arc::new(
            changeflow::front_door::verification_catalog(std::path::Path::new("policy")).unwrap(),
        ),
        evidence: changeflow_mcp_frontend::evidence::EvidenceSources {
            histories: Some(Arc::new(changeflow::replay::BinaryHistories)),
            snapshot_dir: Some(h.snapshot_dir()),
        },
        in_flight: Default::default(),
        devices: Default::default(),
        web: None,
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(changeflow_mcp_frontend::run(listener, front, async {
        let _ = stopped.await;
    }));
    Door {
        url,
        http: reqwest::Client::new(),
        issuer,
        audit,
        _stop: stop,
    }
}

impl Door {
    fn token(&self, user: &str) -> String {
        self.issuer
            .issuer
            .mint(&DevTokenRequest {
                user: user.into(),
                audience: "changeflow".into(),
                ttl: Duration::from_secs(600),
                mfa: None,
            })
            .unwrap()
    }

    async fn client(&self, path: &str, token: &str) -> (McpClient, Value) {
        McpClient::connect(&format!("{}{path}", self.url), token)
            .await
            .expect("initialize")
    }

    /// A raw POST, for what a well-behaved client would not send.
    async fn raw(&self, path: &str, token: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .header("Accept", "application/json, text/event-stream")
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }
}

/// Calls a tool; returns its result and the progress messages streamed before it.
async fn call(client: &mut McpClient, tool: &str, arguments: Value) -> (Value, Vec<String>) {
    let mut progress = Vec::new();
    let result = client
        .call_tool(tool, arguments, |_, message| {
            progress.push(message.to_string())
        })
        .await
        .unwrap();
    (result, progress)
}

fn ntp_arguments() -> Value {
    json!({
        "template_id": changeflow_simulators::seed::id("template", "NTP Servers"),
        "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"},
        "devices": ["sj-access-01"],
        "idempotency_key": "ticket-4711",
        "change_type": "standard"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_get_the_rfc9728_challenge() {
    let h = Harness::start(HarnessOptions::default()).await;
    let door = front_door(&h).await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let refused = door.raw("/mcp", None, &ping).await;
    assert_eq!(refused.status(), 401);
    let challenge = refused.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
            door.url
        )
    );
    let bad = door
        .raw("/mcp/catalyst-center", Some("not.a.token"), &ping)
        .await;
    assert_eq!(bad.status(), 401);
    assert!(
        bad.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );

    let metadata: Value = door
        .http
        .get(format!("{}/.well-known/oauth-protected-resource", door.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], format!("{}/mcp", door.url));
    assert_eq!(metadata["authorization_servers"][0], door.issuer.url());

    let huge = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x".repeat(300 * 1024)}});
    assert_eq!(
        door.raw("/mcp", Some(&door.token("alice")), &huge)
            .await
            .status(),
        413,
        "oversized bodies are refused before parsing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_runs_as_a_workflow_with_progress_policy_and_audit() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let alice = door.token("alice");

    let (mut client, init) = door.client("/mcp", &alice).await;
    assert_eq!(init["serverInfo"]["name"], "changeflow");
    assert!(client.session_id().is_some(), "a 2025-11-25 session");
    let listed = client
        .request("tools/list", json!({}), |_| {})
        .await
        .unwrap();
    let tools: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        vec![
            "deploy_template",
            "list_templates",
            "get_template",
            "list_devices",
            "preview_template",
            "run_show_commands",
            "get_change_request",
            "list_change_requests",
            "create_change_request",
            "add_work_note",
            "close_change_request",
            "get_change_status",
            "list_changes",
            "get_change_history",
            "cancel_change",
            "approve_change",
            "reject_change",
            "list_pending_approvals",
            "search_audit",
            "verify_audit_chain",
            "get_change_evidence",
            "get_file_contents",
            "list_branches",
            "create_branch",
            "list_commits",
            "get_commit",
            "create_or_update_file",
            "create_pull_request",
            "list_pull_requests",
            "pull_request_read",
            "pull_request_review_write",
            "merge_pull_request",
        ]
    );
    assert!(
        listed["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["outputSchema"]["type"] == "object"
                && t["inputSchema"]["additionalProperties"] == false),
        "every tool declares its input and output schemas"
    );
    let (mut cc, _) = door.client("/mcp/catalyst-center", &alice).await;
    let listed = cc.request("tools/list", json!({}), |_| {}).await.unwrap();
    assert_eq!(
        listed["tools"].as_array().unwrap().len(),
        6,
        "one server's tools only"
    );

    let (result, progress) = call(&mut client, "deploy_template", ntp_arguments()).await;
    let content = &result["structuredContent"];
    assert_eq!(content["outcome"], "succeeded", "{result}");
    assert!(
        content["ticket_number"]
            .as_str()
            .unwrap()
            .starts_with("CHG")
    );
    let change_id = content["change_id"].as_str().unwrap().to_string();
    assert!(
        progress.iter().any(|m| m.contains("deploying")),
        "progress notifications were streamed: {progress:?}"
    );

    // The same caller, tool and idempotency key: the same change, no second deployment.
    let (again, _) = call(&mut client, "deploy_template", ntp_arguments()).await;
    assert_eq!(again["structuredContent"]["change_id"], change_id.as_str());
    assert_eq!(h.sims.stats.deploy_requests(), 1);

    let (status, _) = call(
        &mut client,
        "get_change_status",
        json!({"change_id": change_id}),
    )
    .await;
    assert_eq!(status["structuredContent"]["status"], "completed");
    assert_eq!(status["structuredContent"]["step"], "completed");

    let ticket = content["ticket_number"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (listed, _) = call(
            &mut client,
            "list_changes",
            json!({"requested_by": "alice", "ticket_number": ticket}),
        )
        .await;
        let changes = listed["structuredContent"]["changes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(found) = changes
            .iter()
            .find(|c| c["change_id"] == change_id.as_str())
        {
            assert_eq!(found["status"], "completed");
            assert_eq!(found["devices"], json!(["sj-access-01"]));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the change never appeared in list_changes"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (filter, expected) in [
        (
            json!({"device": "sj-access-01", "status": "completed"}),
            true,
        ),
        (json!({"device": "lon-core-01"}), false),
        (json!({"status": "running"}), false),
        (json!({"requested_by": "bob"}), false),
        (json!({"since": "2000-01-01T00:00:00Z", "limit": 5}), true),
    ] {
        let (listed, _) = call(&mut client, "list_changes", filter.clone()).await;
        let found = listed["structuredContent"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["change_id"] == change_id.as_str());
        assert_eq!(found, expected, "{filter}");
    }
    let (bad, _) = call(
        &mut client,
        "list_changes",
        json!({"requested_by": "x' OR '1'='1"}),
    )
    .await;
    assert_eq!(
        bad["isError"], true,
        "values that could break the query are refused"
    );
    let (bad, _) = call(&mut client, "list_changes", json!({"since": "yesterday"})).await;
    assert!(
        bad["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("RFC 3339")
    );

    let (history, _) = call(
        &mut client,
        "get_change_history",
        json!({"change_id": change_id}),
    )
    .await;
    let timeline = history["structuredContent"]["timeline"]
        .as_array()
        .unwrap()
        .clone();
    let completed: Vec<&str> = timeline
        .iter()
        .filter(|e| e["event"] == "step completed")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        completed.first(),
        Some(&"validate_deployment"),
        "{timeline:?}"
    );
    assert_eq!(completed.last(), Some(&"close_change_ticket"));
    for step in [
        "open_change_ticket",
        "advance_ticket",
        "submit_deployment",
        "await_deployment",
    ] {
        assert!(completed.contains(&step), "{step} in {completed:?}");
    }
    assert_eq!(timeline.first().unwrap()["event"], "change started");
    assert_eq!(timeline.last().unwrap()["event"], "change completed");

    let records = door
        .audit
        .list(&AuditFilter {
            workflow_id: Some(change_id.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let outcomes: Vec<&str> = records.iter().map(|r| r.entry.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        vec![
            "started",
            "completed",
            "started",
            "completed",
            "read",
            "read"
        ]
    );
    assert!(records.iter().all(|r| r.entry.subject == "alice"
        && r.entry.decision == "allow"
        && !r.entry.policy_revision.is_empty()));
    assert_eq!(door.audit.verify().await.unwrap().first_broken, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_and_invalid_calls_change_nothing_and_are_audited() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;

    let (mut bob, _) = door.client("/mcp", &door.token("bob")).await;
    let (denied, _) = call(&mut bob, "deploy_template", ntp_arguments()).await;
    assert_eq!(denied["isError"], true);
    assert_eq!(
        denied["structuredContent"]["missing_permission"],
        "execute on catalyst-center"
    );

    let no_mfa = door
        .issuer
        .issuer
        .mint(&DevTokenRequest {
            user: "alice".into(),
            audience: "changeflow".into(),
            ttl: Duration::from_secs(60),
            mfa: Some(false),
        })
        .unwrap();
    let (mut alice_no_mfa, _) = door.client("/mcp", &no_mfa).await;
    let (refused, _) = call(&mut alice_no_mfa, "deploy_template", ntp_arguments()).await;
    assert!(
        refused["structuredContent"]["reason"]
            .as_str()
            .unwrap()
            .contains("MFA"),
        "{refused}"
    );

    let (mut alice, _) = door.client("/mcp", &door.token("alice")).await;
    let mut bad = ntp_arguments();
    bad["password"] = json!("hunter2");
    let (invalid, _) = call(&mut alice, "deploy_template", bad).await;
    assert_eq!(invalid["isError"], true);
    assert!(
        invalid["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("unknown field"),
        "{invalid}"
    );

    assert_eq!(h.sims.stats.deploy_requests(), 0);
    assert!(h.sims.servicenow.change_requests().is_empty());
    let outcomes: Vec<String> = door
        .audit
        .list(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            format!(
                "{} {} {}",
                r.entry.subject, r.entry.decision, r.entry.outcome
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec!["bob deny denied", "alice deny denied", "alice none invalid"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_sdk_works_in_both_protocol_eras() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/python_client.py");
    for (mode, device) in [("legacy", "sj-access-01"), ("2026-07-28", "lon-access-01")] {
        let output = tokio::process::Command::new(&python)
            .arg(&script)
            .env("MCP_URL", format!("{}/mcp", door.url))
            .env("MCP_TOKEN", door.token("alice"))
            .env("MCP_MODE", mode)
            .env(
                "TEMPLATE_ID",
                changeflow_simulators::seed::id("template", "NTP Servers"),
            )
            .env("DEVICE", device)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{mode}:\n{stdout}\n{stderr}");
        // The SDK ends its session with DELETE and logs anything but 200/204 as a failure.
        assert!(
            !stderr.contains("Session termination failed"),
            "{mode}: {stderr}"
        );
        assert_eq!(
            stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
            6,
            "{mode}: {stdout}"
        );
    }
    assert_eq!(h.sims.stats.deploy_requests(), 2, "one deployment per mode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_proxy_serves_the_same_tools_under_the_same_rules() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let url = |path: &str| format!("{}{path}", door.url);
    let alice = door.token("alice");

    assert_eq!(
        door.http
            .get(url("/api/v1/mcp/catalyst-center/tools"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let listed = door
        .http
        .get(url("/api/v1/mcp/catalyst-center/tools"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200, "{:?}", listed.headers());
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["tools"][0]["name"], "deploy_template");
    assert_eq!(listed["tools"][0]["annotations"]["long_running"], true);

    let deploy = |token: String, key: &'static str, body: Value| {
        door.http
            .post(url("/api/v1/mcp/catalyst-center/tools/deploy_template"))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let mut arguments = ntp_arguments();
    arguments.as_object_mut().unwrap().remove("idempotency_key");

    let denied = deploy(door.token("bob"), "rest-1", json!({"arguments": arguments}))
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let denied: Value = denied.json().await.unwrap();
    assert_eq!(denied["missing_permission"], "execute on catalyst-center");
    assert_eq!(denied["retryable"], false);

    let invalid = deploy(
        alice.clone(),
        "rest-1",
        json!({"arguments": arguments, "extra": 1}),
    )
    .await
    .unwrap();
    assert_eq!(
        invalid.status(),
        400,
        "unknown top-level fields are refused"
    );
    let unknown = door
        .http
        .post(url("/api/v1/mcp/catalyst-center/tools/reboot_everything"))
        .bearer_auth(&alice)
        .json(&json!({"arguments": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let started = deploy(alice.clone(), "rest-1", json!({"arguments": arguments}))
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let started: Value = started.json().await.unwrap();
    assert_eq!(started["status_url"], location.as_str());
    let retried: Value = deploy(alice.clone(), "rest-1", json!({"arguments": arguments}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        retried["change_id"], started["change_id"],
        "the same Idempotency-Key is the same change"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let status = loop {
        let status: Value = door
            .http
            .get(url(&location))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["status"] != "running" {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the change never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["step"], "completed");
    assert_eq!(h.sims.stats.deploy_requests(), 1);
    let missing = door
        .http
        .get(url("/api/v1/changes/change-nope"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let openapi: Value = door
        .http
        .get(url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openapi["openapi"], "3.1.0");
    let post = &openapi["paths"]["/api/v1/mcp/catalyst-center/tools/deploy_template"]["post"];
    assert_eq!(
        post["requestBody"]["content"]["application/json"]["schema"]["properties"]["arguments"]["additionalProperties"],
        false
    );
    assert!(post["responses"]["202"].is_object());
    let audited = door.audit.list(&AuditFilter::default()).await.unwrap();
    assert!(
        audited
            .iter()
            .any(|r| r.entry.subject == "bob" && r.entry.outcome == "denied"),
        "REST calls are audited too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_hosts_and_batches_are_refused() {
    let h = Harness::start(HarnessOptions::default()).await;
    let door = front_door(&h).await;
    let alice = door.token("alice");
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let post = |headers: Vec<(&'static str, String)>, body: Value| {
        let mut request = door
            .http
            .post(format!("{}/mcp", door.url))
            .header("Accept", "application/json, text/event-stream")
            .bearer_auth(&alice)
            .json(&body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    assert_eq!(
        post(vec![("Origin", door.url.clone())], init.clone())
            .await
            .unwrap()
            .status(),
        200,
        "the loopback origin is allowed"
    );
    assert_eq!(
        post(
            vec![("Origin", "https://evil.example".into())],
            init.clone()
        )
        .await
        .unwrap()
        .status(),
        403,
        "a foreign origin is refused"
    );
    let port = door.url.rsplit(':').next().unwrap().to_string();
    assert!(
        post(vec![("Host", format!("evil.example:{port}"))], init.clone())
            .await
            .unwrap()
            .status()
            .is_client_error(),
        "a foreign Host is refused"
    );
    let batch = json!([init.clone(), {"jsonrpc": "2.0", "id": 2, "method": "ping"}]);
    let refused = post(vec![], batch).await.unwrap();
    assert!(
        refused.status().is_client_error(),
        "JSON-RPC batches are refused: {}",
        refused.status()
    );

    // Ending a session: 204 for a live one (as the SDKs expect), then 404, as for any unknown.
    let opened = post(vec![], init.clone()).await.unwrap();
    let session = opened.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let end = |session: String| {
        door.http
            .delete(format!("{}/mcp", door.url))
            .bearer_auth(&alice)
            .header("Mcp-Session-Id", session)
            .header("MCP-Protocol-Version", "2025-11-25")
            .send()
    };
    assert_eq!(end(session.clone()).await.unwrap().status(), 204);
    assert_eq!(end(session).await.unwrap().status(), 404);
    assert_eq!(end("no-such-session".into()).await.unwrap().status(), 404);
}

/// The workflow type and status of a workflow, from Temporal.
async fn workflow(h: &Harness, id: &str) -> (String, String) {
    let handle = h
        .client
        .get_workflow_handle::<temporalio_client::UntypedWorkflow>(id);
    let description = handle.describe(Default::default()).await.unwrap();
    (
        description.workflow_type().to_string(),
        format!("{:?}", description.status()),
    )
}

fn tool_error_text(result: &Value) -> String {
    assert_eq!(result["isError"], true, "a tool error: {result}");
    result["content"][0]["text"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalyst_and_servicenow_tools_run_as_short_workflows() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let bob = door.token("bob"); // service-desk: ServiceNow read/write, Catalyst Center read
    let (mut cc, _) = door.client("/mcp/catalyst-center", &bob).await;
    let (mut snow, _) = door.client("/mcp/servicenow", &bob).await;

    let (templates, _) = call(&mut cc, "list_templates", json!({})).await;
    let names: Vec<&str> = templates["structuredContent"]["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"NTP Servers"), "{templates}");
    let ntp = changeflow_simulators::seed::id("template", "NTP Servers");
    let (template, _) = call(&mut cc, "get_template", json!({"template_id": ntp})).await;
    let detail = &template["structuredContent"];
    assert_eq!(detail["name"], "NTP Servers");
    assert!(
        detail["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "ntp_primary" && p["required"] == true),
        "{detail}"
    );
    let (missing, _) = call(
        &mut cc,
        "get_template",
        json!({"template_id": "no-such-template"}),
    )
    .await;
    assert!(
        tool_error_text(&missing).contains("does not exist"),
        "{missing}"
    );

    // Read-only commands through Command Runner, as a workflow; anything else never leaves.
    let (shown, _) = call(
        &mut cc,
        "run_show_commands",
        json!({"devices": ["sj-access-01"], "commands": ["show version", "show running-config | include hostname"]}),
    )
    .await;
    let results = &shown["structuredContent"]["devices"][0];
    assert_eq!(results["device"], "sj-access-01", "{shown}");
    assert_eq!(results["results"][0]["status"], "success", "{shown}");
    assert!(
        results["results"][0]["output"]
            .as_str()
            .unwrap()
            .contains("Cisco IOS XE Software"),
        "{shown}"
    );
    assert_eq!(
        results["results"][1]["output"], "hostname sj-access-01\n",
        "{shown}"
    );
    let requests_before = h
        .sims
        .stats
        .catalyst_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let (configure, _) = call(
        &mut cc,
        "run_show_commands",
        json!({"devices": ["sj-access-01"], "commands": ["configure terminal"]}),
    )
    .await;
    assert_eq!(configure["isError"], true, "{configure}");
    assert!(
        tool_error_text(&configure).contains("\"configure terminal\" is not a read-only command"),
        "{configure}"
    );
    assert_eq!(
        h.sims
            .stats
            .catalyst_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        requests_before,
        "a refused command never reaches Catalyst Center"
    );

    let (devices, _) = call(
        &mut cc,
        "list_devices",
        json!({"reachability": "Unreachable"}),
    )
    .await;
    let devices = devices["structuredContent"]["devices"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!devices.is_empty());
    assert!(devices.iter().all(|d| d["reachability"] == "Unreachable"));

    let (preview, _) = call(
        &mut cc,
        "preview_template",
        json!({"template_id": ntp, "device": "sj-access-01",
               "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"}}),
    )
    .await;
    let rendered = preview["structuredContent"]["rendered"].as_str().unwrap();
    assert!(rendered.contains("10.255.0.1"), "{preview}");
    assert_eq!(
        h.sims.stats.deploy_requests(),
        0,
        "a preview deploys nothing"
    );

    // A write: opened once, however often the same call is retried within the window.
    let before = h.sims.servicenow.change_requests().len();
    let create = json!({"short_description": "Replace uplink optics on sj-core-01"});
    let (created, _) = call(&mut snow, "create_change_request", create.clone()).await;
    let ticket = created["structuredContent"].clone();
    let number = ticket["number"].as_str().unwrap().to_string();
    assert_eq!(ticket["state"], "new");
    assert_eq!(
        ticket["requested_by"], "bob",
        "the caller, never an argument"
    );
    let (again, _) = call(&mut snow, "create_change_request", create).await;
    assert_eq!(again["structuredContent"]["number"], number.as_str());
    assert_eq!(h.sims.servicenow.change_requests().len(), before + 1);
    let (spoofed, _) = call(
        &mut snow,
        "create_change_request",
        json!({"short_description": "x", "requested_by": "carol"}),
    )
    .await;
    assert!(
        tool_error_text(&spoofed).contains("unknown field"),
        "{spoofed}"
    );
    assert_eq!(h.sims.servicenow.change_requests().len(), before + 1);

    let (noted, _) = call(
        &mut snow,
        "add_work_note",
        json!({"number": number, "note": "optics ordered"}),
    )
    .await;
    assert_eq!(
        noted["structuredContent"]["number"],
        number.as_str(),
        "{noted}"
    );

    // Closing from New is not allowed by the state model: refused, nothing changes.
    let (refused, _) = call(
        &mut snow,
        "close_change_request",
        json!({"number": number, "close_code": "successful", "close_notes": "done"}),
    )
    .await;
    assert!(
        tool_error_text(&refused).contains("cancel it instead"),
        "{refused}"
    );
    assert_eq!(h.ticket(&number).get("state"), "-5");
    let (canceled, _) = call(
        &mut snow,
        "close_change_request",
        json!({"number": number, "close_code": "canceled", "close_notes": "not needed"}),
    )
    .await;
    assert_eq!(
        canceled["structuredContent"]["state"], "canceled",
        "{canceled}"
    );
    assert_eq!(h.ticket(&number).get("state"), "4");

    let (read, _) = call(&mut snow, "get_change_request", json!({"number": number})).await;
    assert_eq!(read["structuredContent"]["state"], "canceled");
    let (listed, _) = call(
        &mut snow,
        "list_change_requests",
        json!({"state": "canceled", "requested_by": "bob"}),
    )
    .await;
    let listed = listed["structuredContent"]["change_requests"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        listed.iter().any(|t| t["number"] == number.as_str()),
        "{listed:?}"
    );
    let (unknown, _) = call(
        &mut snow,
        "get_change_request",
        json!({"number": "CHG9999999"}),
    )
    .await;
    assert!(tool_error_text(&unknown).contains("does not exist"));

    // Every call was a workflow: find them in Temporal through the audit trail.
    let records = door.audit.list(&AuditFilter::default()).await.unwrap();
    let workflows: Vec<String> = records
        .iter()
        .filter(|r| r.entry.tool == "create_change_request" || r.entry.tool == "list_templates")
        .map(|r| r.entry.workflow_id.clone())
        .filter(|id| !id.is_empty())
        .collect();
    assert!(workflows.len() >= 3, "{workflows:?}");
    for id in &workflows {
        let (kind, status) = workflow(&h, id).await;
        assert_eq!(kind, "DownstreamOperation");
        assert_eq!(status, "Completed");
    }

    // Policy: alice (network engineer) may read Catalyst Center but not write ServiceNow.
    let alice = door.token("alice");
    let (mut alice_snow, _) = door.client("/mcp/servicenow", &alice).await;
    let (denied, _) = call(
        &mut alice_snow,
        "create_change_request",
        json!({"short_description": "sneaky"}),
    )
    .await;
    assert_eq!(denied["isError"], true);
    assert_eq!(
        denied["structuredContent"]["missing_permission"],
        "write on servicenow"
    );
    assert_eq!(h.sims.servicenow.change_requests().len(), before + 1);
}

const TASKS: &str = "io.modelcontextprotocol/tasks";

/// Polls `tasks/get` until the task leaves `working`.
async fn settle(client: &mut McpClient, task_id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let task = client
            .request("tasks/get", json!({"taskId": task_id}), |_| {})
            .await
            .unwrap();
        if task["status"] != "working" {
            return task;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "task never ended: {task}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_its_workflow_and_survives_a_frontend_restart() {
    let h = Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(8),
        ..Default::default()
    })
    .await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let with_tasks = json!({"extensions": {TASKS: {}}});
    let mut client = McpClient::stateless(
        &format!("{}/mcp", door.url),
        &door.token("alice"),
        with_tasks.clone(),
    );
    let call = json!({"name": "deploy_template", "arguments": ntp_arguments()});
    let created = client
        .request("tools/call", call.clone(), |_| {})
        .await
        .unwrap();
    assert_eq!(created["resultType"], "task", "{created}");
    assert_eq!(created["status"], "working");
    let task_id = created["taskId"].as_str().unwrap().to_string();
    assert_eq!(
        workflow(&h, &task_id).await.0,
        "TemplateDeployment",
        "the task id is the workflow id"
    );
    let running = client
        .request("tasks/get", json!({"taskId": task_id}), |_| {})
        .await
        .unwrap();
    assert_eq!(running["status"], "working");
    assert!(running["statusMessage"].is_string(), "{running}");
    assert!(running.get("result").is_none());

    // The same call while the change runs is the same task: its start is refused as a
    // duplicate, the run is looked up, and it was created when the first call started it.
    let repeated = client
        .request("tools/call", call.clone(), |_| {})
        .await
        .unwrap();
    assert_eq!(repeated["taskId"], task_id.as_str(), "{repeated}");
    assert_eq!(repeated["status"], "working", "{repeated}");
    let at = |task: &Value| {
        let text = task["createdAt"].as_str().unwrap_or_default().to_string();
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|e| panic!("createdAt {text:?}: {e}"))
    };
    let (first, again) = (at(&created), at(&repeated));
    assert!(
        again <= first && first - again < time::Duration::seconds(5),
        "the repeat names the first start ({again}), not its own call; the first said {first}"
    );

    // A new front-door instance (nothing shared but Temporal) answers for the same task.
    drop(door);
    let door = front_door(&h).await;
    let alice = door.token("alice");
    let mut client = McpClient::stateless(&format!("{}/mcp", door.url), &alice, with_tasks.clone());
    let done = settle(&mut client, &task_id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let result = &done["result"]["structuredContent"];
    assert_eq!(result["outcome"], "succeeded", "{done}");
    assert_eq!(result["change_id"], task_id.as_str());
    assert_eq!(h.sims.stats.deploy_requests(), 1);

    // The same call again is the same task, already completed: nothing is deployed twice.
    let again = client.request("tools/call", call, |_| {}).await.unwrap();
    assert_eq!(again["taskId"], task_id.as_str());
    assert_eq!(again["status"], "completed");
    assert_eq!(h.sims.stats.deploy_requests(), 1);

    let unknown = client
        .request("tasks/get", json!({"taskId": "change-nope"}), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("-32602"), "{unknown}");
    let mut without_tasks = McpClient::stateless(&format!("{}/mcp", door.url), &alice, json!({}));
    let refused = without_tasks
        .request("tasks/get", json!({"taskId": task_id}), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("-32021"),
        "missing client capability: {refused}"
    );
    let mut dave = McpClient::stateless(
        &format!("{}/mcp", door.url),
        &door.token("dave"),
        with_tasks.clone(),
    );
    let denied = dave
        .request("tasks/get", json!({"taskId": task_id}), |_| {})
        .await
        .unwrap_err()
        .to_string();
    assert!(denied.contains("read on changes"), "{denied}");

    // tasks/cancel cancels the workflow, which closes its ticket as canceled.
    let mut arguments = ntp_arguments();
    arguments["idempotency_key"] = json!("ticket-4712");
    let created = client
        .request(
            "tools/call",
            json!({"name": "deploy_template", "arguments": arguments}),
            |_| {},
        )
        .await
        .unwrap();
    let second = created["taskId"].as_str().unwrap().to_string();
    h.wait_for_progress(&second, Duration::from_secs(60), |p| p.task_id.is_some())
        .await;
    let ack = client
        .request("tasks/cancel", json!({"taskId": second}), |_| {})
        .await
        .unwrap();
    assert_eq!(ack, json!({"resultType": "complete"}));
    let cancelled = settle(&mut client, &second).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let status = client
        .request(
            "tools/call",
            json!({"name": "get_change_status", "arguments": {"change_id": second}}),
            |_| {},
        )
        .await
        .unwrap();
    let ticket = status["structuredContent"]["ticket_number"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        h.ticket(&ticket).get("state"),
        "4",
        "canceled in ServiceNow"
    );
    // Cancelling a task that has ended is acknowledged and changes nothing.
    let ack = client
        .request("tasks/cancel", json!({"taskId": task_id}), |_| {})
        .await
        .unwrap();
    assert_eq!(ack["resultType"], "complete");
    assert_eq!(settle(&mut client, &task_id).await["status"], "completed");
}

/// Runs the MCP Inspector CLI (`@modelcontextprotocol/inspector`, on the Node.js 22 that
/// `make tools` installs into `.tools/node`) and returns its JSON output.
async fn inspector(door: &Door, token: &str, home: &std::path::Path, args: &[&str]) -> Value {
    let (stdout, _) = inspector_run(door, token, home, args).await;
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("inspector JSON ({e}): {stdout}"))
}

/// Runs the Inspector CLI; its stdout and stderr, once it succeeded.
async fn inspector_run(
    door: &Door,
    token: &str,
    home: &std::path::Path,
    args: &[&str],
) -> (String, String) {
    let bin =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node/node_modules/.bin");
    assert!(
        bin.join("mcp-inspector").exists(),
        "run `make tools` to install the MCP Inspector"
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::process::Command::new(bin.join("mcp-inspector"))
        .arg("--cli")
        .arg(format!("{}/mcp", door.url))
        .args(["--protocol-era", "modern", "--format", "json", "--quiet"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(args)
        .env("PATH", path)
        // Its catalog and client config live under HOME: keep them out of the user's.
        .env("HOME", home)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "inspector {args:?}:\n{stdout}\n{stderr}"
    );
    (stdout.into_owned(), stderr.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_inspector_cli_runs_a_deploy_as_a_task_to_completion() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let alice = door.token("alice");
    let home = h.dir.0.join("inspector-home");
    std::fs::create_dir_all(&home).unwrap();

    // Its portability lint (`--strict`) finds nothing to warn about in any tool's schemas.
    let (stdout, stderr) = inspector_run(
        &door,
        &alice,
        &home,
        &["--method", "tools/list", "--strict"],
    )
    .await;
    assert!(
        !stderr.contains("Warning") && !stderr.contains("Error"),
        "{stderr}"
    );
    let listed: Value = serde_json::from_str(&stdout).unwrap();
    let tools = listed["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), changeflow_mcp_frontend::tools::TOOLS.len());
    assert!(
        tools.iter().any(|t| t["name"] == "deploy_template"),
        "{listed}"
    );

    let mut arguments = ntp_arguments();
    arguments["idempotency_key"] = json!("inspector");
    let arguments = arguments.to_string();
    let called = inspector(
        &door,
        &alice,
        &home,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "deploy_template",
            "--tool-args-json",
            &arguments,
        ],
    )
    .await;
    let result = &called["result"]["structuredContent"];
    assert_eq!(result["outcome"], "succeeded", "{called}");
    let change_id = result["change_id"].as_str().unwrap();

    // It was a task: the Inspector polled tasks/get for that workflow until it completed.
    let records = door.audit.list(&AuditFilter::default()).await.unwrap();
    let polls = records
        .iter()
        .filter(|r| r.entry.tool == "tasks/get" && r.entry.workflow_id == change_id)
        .count();
    assert!(polls >= 1, "tasks/get was polled: {records:?}");
    assert_eq!(
        workflow(&h, change_id).await,
        ("TemplateDeployment".to_string(), "Completed".to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_window_is_configurable_and_slides() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let window = Duration::from_secs(5);
    let door = front_door_with_window(&h, window).await;
    let (mut snow, _) = door.client("/mcp/servicenow", &door.token("bob")).await;
    let create = json!({"short_description": "Rotate SNMP community on sj-core-01"});
    let number = |result: &Value| {
        result["structuredContent"]["number"]
            .as_str()
            .unwrap()
            .to_string()
    };

    let (first, _) = call(&mut snow, "create_change_request", create.clone()).await;
    // Retries within the window, whichever time bucket they fall in, find the first one.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (retry, _) = call(&mut snow, "create_change_request", create.clone()).await;
        assert_eq!(number(&retry), number(&first), "a retry within the window");
    }
    tokio::time::sleep(window + Duration::from_secs(1)).await;
    let (later, _) = call(&mut snow, "create_change_request", create).await;
    assert_ne!(
        number(&later),
        number(&first),
        "the same call after the window is a new one"
    );
    let opened = h
        .sims
        .servicenow
        .change_requests()
        .into_iter()
        .filter(|r| r.get("short_description") == "Rotate SNMP community on sj-core-01")
        .count();
    assert_eq!(opened, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_outlives_its_clients_connection_and_is_found_again() {
    let h = Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(5),
        ..Default::default()
    })
    .await;
    let mut worker = h.spawn_worker();
    let door = front_door(&h).await;
    let alice = door.token("alice");
    let (mut client, _) = door.client("/mcp", &alice).await;

    // A client without tasks waits for the result; it hangs up after the first progress report.
    let (said, mut heard) = tokio::sync::mpsc::unbounded_channel::<String>();
    let waiting = tokio::spawn(async move {
        client
            .call_tool("deploy_template", ntp_arguments(), |_, message| {
                let _ = said.send(message.to_string());
            })
            .await
    });
    let first = tokio::time::timeout(Duration::from_secs(60), heard.recv())
        .await
        .expect("a progress notification")
        .unwrap();
    waiting.abort();
    let change_id = first.split(':').next().unwrap().to_string();
    assert!(
        change_id.starts_with("change-"),
        "progress names the change: {first}"
    );

    // The change runs on; a new connection finds it and sees it finish.
    let (mut again, _) = door.client("/mcp", &alice).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let status = loop {
        let (status, _) = call(
            &mut again,
            "get_change_status",
            json!({"change_id": change_id}),
        )
        .await;
        if status["structuredContent"]["status"] != "running" {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        status["structuredContent"]["status"], "completed",
        "{status}"
    );
    assert_eq!(status["structuredContent"]["step"], "completed", "{status}");
    let ticket = status["structuredContent"]["ticket_number"]
        .as_str()
        .unwrap();
    assert_eq!(h.ticket(ticket).get("state"), "3", "closed in ServiceNow");
    assert_eq!(h.sims.stats.deploy_requests(), 1);

    // An ended change's progress cannot change: the front door remembers it rather than
    // asking a worker to replay the history again, so it answers with no worker left.
    worker.kill();
    let (remembered, _) = tokio::time::timeout(
        Duration::from_secs(20),
        call(
            &mut again,
            "get_change_status",
            json!({"change_id": change_id}),
        ),
    )
    .await
    .expect("an ended change's status needs no worker");
    assert_eq!(remembered["structuredContent"], status["structuredContent"]);

    // A change that never was is named as such (its query fails, and so does the describe).
    let (unknown, _) = call(
        &mut again,
        "get_change_status",
        json!({"change_id": "change-that-never-was"}),
    )
    .await;
    assert!(
        tool_error_text(&unknown).contains("no change 'change-that-never-was'"),
        "{unknown}"
    );
}

/// schemathesis (PyPI) generates requests from the REST proxy's own OpenAPI document, valid and
/// invalid, reads and writes against the simulators, and checks every answer against the
/// document (`--checks all`): the document and the behaviour agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_proxy_agrees_with_its_openapi_document() {
    let h = Harness::start(HarnessOptions::default()).await;
    // A worker with GitHub (admin's token in OpenBao), so the GitHub tools answer as GitHub
    // would.
    let (_vault, env) = h.vault(&["admin"]).await;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let _worker = h.spawn_worker_with_env(&env);
    let door = front_door(&h).await;
    let token = door.token("admin");
    let schemathesis =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "run `make tools` to install schemathesis"
    );
    let output = tokio::process::Command::new(&schemathesis)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", door.url))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all", "--max-examples", "12", "--seed", "4711"])
        // Each deploy would run a whole change; one is enough to check its 202 answer.
        .args(["--exclude-operation-id", "catalyst_center_deploy_template"])
        .args(["--max-response-time", "30"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("HOME", h.dir.0.join("schemathesis-home"))
        .current_dir(&h.dir.0)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stdout.contains("Failures:"),
        "schemathesis found issues:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(" passed"), "nothing was tested:\n{stdout}");
}

/// Polls a read tool until `done` holds for its structured result (visibility and progress
/// are eventually consistent).
async fn until(
    client: &mut McpClient,
    tool: &str,
    arguments: Value,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (result, _) = call(client, tool, arguments.clone()).await;
        if done(&result["structuredContent"]) {
            return result["structuredContent"].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{tool} never showed it: {result}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_change_is_approved_over_mcp_by_an_approver_only() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let (mut alice, _) = door.client("/mcp", &door.token("alice")).await;
    let mut arguments = ntp_arguments();
    arguments["change_type"] = json!("normal");
    arguments["idempotency_key"] = json!("governed-1");

    // A client without tasks is not held while the change waits for a person.
    let (waiting, progress) = call(&mut alice, "deploy_template", arguments).await;
    let waiting = &waiting["structuredContent"];
    assert_eq!(waiting["status"], "awaiting_approval", "{waiting}");
    assert_eq!(waiting["approvers"], json!(["carol"]));
    assert!(
        waiting["ticket_number"]
            .as_str()
            .unwrap()
            .starts_with("CHG")
    );
    assert!(
        progress.iter().any(|p| p.contains("awaiting_approval")),
        "progress flowed while the call was open: {progress:?}"
    );
    let change_id = waiting["change_id"].as_str().unwrap().to_string();
    let status = until(
        &mut alice,
        "get_change_status",
        json!({"change_id": change_id}),
        |s| s["step"] == "awaiting_approval",
    )
    .await;
    assert_eq!(status["approvers"], json!(["carol"]));
    assert!(status["waiting_since"].is_string(), "{status}");
    until(
        &mut alice,
        "list_changes",
        json!({"status": "awaiting_approval"}),
        |l| {
            l["changes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["change_id"] == change_id.as_str())
        },
    )
    .await;

    // Operators see it among the running changes by step.
    let metrics = door
        .http
        .get(format!("{}/metrics", door.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let waiting_now = metrics
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"changeflow_changes_in_progress{step="awaiting_approval"} "#)
        })
        .and_then(|v| v.parse::<f64>().ok());
    assert!(waiting_now >= Some(1.0), "{metrics}");

    // A client with tasks keeps a working task that says what the change waits for.
    let mut with_tasks = McpClient::stateless(
        &format!("{}/mcp", door.url),
        &door.token("alice"),
        json!({"extensions": {TASKS: {}}}),
    );
    let mut tasked = ntp_arguments();
    tasked["change_type"] = json!("normal");
    tasked["idempotency_key"] = json!("governed-task");
    let created = with_tasks
        .request(
            "tools/call",
            json!({"name": "deploy_template", "arguments": tasked}),
            |_| {},
        )
        .await
        .unwrap();
    let task_id = created["taskId"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let task = with_tasks
            .request("tasks/get", json!({"taskId": task_id}), |_| {})
            .await
            .unwrap();
        assert_eq!(task["status"], "working", "{task}");
        if task["statusMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("awaiting approval by carol")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{task}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    with_tasks
        .request("tasks/cancel", json!({"taskId": task_id}), |_| {})
        .await
        .unwrap();

    // The requester is refused by policy; so are people outside change-approvers and an
    // approver without MFA. Nothing reaches the change.
    let decision = json!({"change_id": change_id, "comment": "lgtm"});
    let (own, _) = call(&mut alice, "approve_change", decision.clone()).await;
    assert_eq!(own["isError"], true, "{own}");
    assert!(
        own["structuredContent"]["reason"]
            .as_str()
            .unwrap()
            .contains("alice requested this change"),
        "{own}"
    );
    let (mut bob, _) = door.client("/mcp", &door.token("bob")).await;
    let (bobs, _) = call(&mut bob, "approve_change", decision.clone()).await;
    assert_eq!(
        bobs["structuredContent"]["missing_permission"], "write on approvals",
        "{bobs}"
    );
    let carol_no_mfa = door
        .issuer
        .issuer
        .mint(&DevTokenRequest {
            user: "carol".into(),
            audience: "changeflow".into(),
            ttl: Duration::from_secs(60),
            mfa: Some(false),
        })
        .unwrap();
    let (mut weak, _) = door.client("/mcp/approvals", &carol_no_mfa).await;
    let (weak, _) = call(&mut weak, "approve_change", decision.clone()).await;
    assert!(
        weak["structuredContent"]["reason"]
            .as_str()
            .unwrap()
            .contains("MFA"),
        "{weak}"
    );

    // Carol finds it among her pending approvals, on the approvals server, and approves.
    let (mut carol, _) = door.client("/mcp/approvals", &door.token("carol")).await;
    let pending = until(&mut carol, "list_pending_approvals", json!({}), |l| {
        l["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["change_id"] == change_id.as_str())
    })
    .await;
    assert!(
        pending["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["step"] == "awaiting_approval")
    );
    let (mut alice_on_approvals, _) = door.client("/mcp/approvals", &door.token("alice")).await;
    let (nothing, _) = call(&mut alice_on_approvals, "list_pending_approvals", json!({})).await;
    assert!(
        nothing["structuredContent"].get("changes").is_none(),
        "alice has no approvals to list: {nothing}"
    );

    // A front-door restart loses nothing: the change lives in Temporal.
    drop(door);
    let door = front_door(&h).await;
    let (mut carol, _) = door.client("/mcp/approvals", &door.token("carol")).await;
    let (approved, _) = call(&mut carol, "approve_change", decision.clone()).await;
    let approved = &approved["structuredContent"];
    assert_eq!(approved["accepted"], true, "{approved}");
    assert_eq!(approved["verdict"], "approved");
    assert_eq!(approved["approver"], "carol");
    let (mut alice, _) = door.client("/mcp", &door.token("alice")).await;
    let done = until(
        &mut alice,
        "get_change_status",
        json!({"change_id": change_id}),
        |s| s["status"] == "completed",
    )
    .await;
    assert_eq!(done["step"], "completed", "{done}");
    assert_eq!(done["decisions"][0]["approver"], "carol");
    assert_eq!(h.sims.stats.deploy_requests(), 1);
    let decisions: Vec<String> = door
        .audit
        .list(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.entry.tool == "approve_change")
        .map(|r| {
            format!(
                "{} {} {}",
                r.entry.subject, r.entry.decision, r.entry.outcome
            )
        })
        .collect();
    assert_eq!(
        decisions,
        vec![
            "alice deny denied",
            "bob deny denied",
            "carol deny denied",
            "carol allow approved"
        ],
        "every decision is audited, refused ones too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_approval_is_refused_by_the_change_even_when_policy_allows_it() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    // A policy with a mistake: alice may decide on approvals, and self-approval is not denied.
    let policy = h.dir.0.join("lax-policy");
    std::fs::create_dir_all(&policy).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policy");
    for name in ["authz.rego", "governance.rego"] {
        let text = std::fs::read_to_string(shipped.join(name)).unwrap();
        let text = text
            .replace(
                "input.change.requested_by == input.identity.subject",
                "false",
            )
            .replace(
                "\"github\": {\"read\"},\n\t},",
                "\"github\": {\"read\"},\n\t\t\"approvals\": {\"read\", \"write\"},\n\t},",
            );
        std::fs::write(policy.join(name), text).unwrap();
    }
    let door = front_door_with(
        &h,
        changeflow_mcp_frontend::invoke::DEFAULT_IDEMPOTENCY_WINDOW,
        &policy,
    )
    .await;
    let (mut alice, _) = door.client("/mcp", &door.token("alice")).await;
    let mut arguments = ntp_arguments();
    arguments["change_type"] = json!("normal");
    let (waiting, _) = call(&mut alice, "deploy_template", arguments).await;
    let change_id = waiting["structuredContent"]["change_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (own, _) = call(
        &mut alice,
        "approve_change",
        json!({"change_id": change_id}),
    )
    .await;
    let text = tool_error_text(&own);
    assert!(
        text.contains("alice requested this change and cannot approve"),
        "{text}"
    );
    let audited: Vec<String> = door
        .audit
        .list(&AuditFilter::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.entry.tool == "approve_change")
        .map(|r| format!("{} {}", r.entry.decision, r.entry.outcome))
        .collect();
    assert_eq!(
        audited,
        vec!["allow refused"],
        "the lax policy allowed it; the change refused"
    );

    // Rejected by carol instead: the change ends rejected, nothing deployed.
    let (mut carol, _) = door.client("/mcp", &door.token("carol")).await;
    let (missing, _) = call(&mut carol, "reject_change", json!({"change_id": change_id})).await;
    assert!(tool_error_text(&missing).contains("comment"), "{missing}");
    let (rejected, _) = call(
        &mut carol,
        "reject_change",
        json!({"change_id": change_id, "comment": "not during the freeze"}),
    )
    .await;
    assert_eq!(
        rejected["structuredContent"]["verdict"], "rejected",
        "{rejected}"
    );
    let done = until(
        &mut alice,
        "get_change_status",
        json!({"change_id": change_id}),
        |s| s["status"] == "completed",
    )
    .await;
    assert_eq!(done["step"], "rejected", "{done}");
    assert_eq!(h.sims.stats.deploy_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_rules_refuse_at_the_door_before_any_ticket() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let (mut alice, _) = door.client("/mcp", &door.token("alice")).await;

    let mut snmp = ntp_arguments();
    snmp["template_id"] = json!(changeflow_simulators::seed::id(
        "template",
        "SNMP Community"
    ));
    snmp["parameters"] = json!({"community": "s3cret-ro"});
    let (standard, _) = call(&mut alice, "deploy_template", snmp).await;
    assert!(
        standard["structuredContent"]["reason"]
            .as_str()
            .unwrap()
            .contains("rule standard_templates"),
        "{standard}"
    );

    // Next Friday evening on a core switch: the weekend freeze.
    let now = time::OffsetDateTime::now_utc();
    let days = (4 + 7 - now.weekday().number_days_from_monday()) % 7 + 7;
    let friday =
        (now + time::Duration::days(i64::from(days))).replace_time(time::macros::time!(18:00));
    let format = &time::format_description::well_known::Rfc3339;
    let mut frozen = ntp_arguments();
    frozen["change_type"] = json!("normal");
    frozen["devices"] = json!(["sj-core-01"]);
    frozen["window_start"] = json!(friday.format(format).unwrap());
    frozen["window_end"] = json!((friday + time::Duration::hours(2)).format(format).unwrap());
    let (blackout, _) = call(&mut alice, "deploy_template", frozen.clone()).await;
    let reason = blackout["structuredContent"]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("rule blackouts (core weekend freeze)") && reason.contains("sj-core-01"),
        "{reason}"
    );

    // A normal change of a template without a declared inverse on a core switch needs a
    // back-out plan; naming one lets it through.
    let mut gateway = ntp_arguments();
    gateway["template_id"] = json!(changeflow_simulators::seed::id(
        "template",
        "Management Gateway"
    ));
    gateway["parameters"] = json!({"gateway": "10.10.0.254"});
    gateway["change_type"] = json!("normal");
    gateway["devices"] = json!(["sj-core-01"]);
    let (unprotected, _) = call(&mut alice, "deploy_template", gateway.clone()).await;
    assert!(
        unprotected["structuredContent"]["reason"]
            .as_str()
            .unwrap()
            .contains("rule backout_required: a normal change on production devices (sj-core-01)"),
        "{unprotected}"
    );
    let mut with_bogus_backout = gateway.clone();
    with_bogus_backout["backout"] = json!({"template_id": "x", "bogus": true});
    let (bogus, _) = call(&mut alice, "deploy_template", with_bogus_backout).await;
    assert!(tool_error_text(&bogus).contains("bogus"), "{bogus}");

    let mut emergency = frozen;
    emergency["change_type"] = json!("emergency");
    let (unjustified, _) = call(&mut alice, "deploy_template", emergency).await;
    assert!(
        tool_error_text(&unjustified).contains("justification"),
        "{unjustified}"
    );

    assert!(
        h.sims.servicenow.change_requests().is_empty(),
        "no ticket was opened"
    );
    assert_eq!(h.sims.stats.deploy_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_search_and_verify_the_audit_log_and_nothing_more() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let (mut alice, _) = door.client("/mcp", &door.token("alice")).await;
    let (deployed, _) = call(&mut alice, "deploy_template", ntp_arguments()).await;
    let change = deployed["structuredContent"]["change_id"]
        .as_str()
        .unwrap()
        .to_string();

    let (mut erin, _) = door.client("/mcp/audit", &door.token("erin")).await;
    let (found, _) = call(
        &mut erin,
        "search_audit",
        json!({"change_id": change, "tool": "deploy_template"}),
    )
    .await;
    let records = found["structuredContent"]["records"].as_array().unwrap();
    assert!(!records.is_empty(), "{found}");
    assert!(
        records.iter().all(|r| r["subject"] == "alice"
            && r["decision"] == "allow"
            && r["workflow_id"] == change.as_str()),
        "{found}"
    );
    // Paged: one record a page, the next page follows on.
    let (first, _) = call(&mut erin, "search_audit", json!({"limit": 1})).await;
    let next = first["structuredContent"]["next_offset"].as_u64().unwrap();
    assert_eq!(next, 1, "{first}");
    let (second, _) = call(
        &mut erin,
        "search_audit",
        json!({"limit": 1, "offset": next}),
    )
    .await;
    assert_eq!(
        second["structuredContent"]["records"][0]["seq"],
        first["structuredContent"]["records"][0]["seq"]
            .as_i64()
            .unwrap()
            + 1,
        "{second}"
    );
    let (verdict, _) = call(&mut erin, "verify_audit_chain", json!({})).await;
    let verdict = &verdict["structuredContent"];
    assert_eq!(verdict["intact"], true, "{verdict}");
    assert_eq!(verdict["head"].as_str().unwrap().len(), 64, "{verdict}");

    // The change's evidence: built, but unsigned (this worker has no Vault), and saying so.
    let (evidence, _) = call(
        &mut erin,
        "get_change_evidence",
        json!({"change_id": change}),
    )
    .await;
    let overview = &evidence["structuredContent"];
    assert_eq!(overview["signed"], false, "{evidence}");
    let manifest = &overview["manifest"];
    assert_eq!(manifest["change_id"], change.as_str(), "{evidence}");
    assert_eq!(manifest["exported_by"], "erin", "{evidence}");
    assert_eq!(manifest["replay"]["deterministic"], true, "{evidence}");
    assert!(
        manifest["omissions"].as_array().unwrap().iter().any(|o| o
            .as_str()
            .unwrap()
            .contains("evidence signing needs Vault's Transit")),
        "{evidence}"
    );
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for expected in [
        "history/history.pb",
        "history/history.json",
        "audit/records.jsonl",
        "audit/chain-segment.jsonl",
        "servicenow/ticket.json",
        "checks/verdicts.json",
        "summary.md",
    ] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }
    assert!(
        paths
            .iter()
            .any(|p| p.starts_with("snapshots/sha256") || p.starts_with("snapshots/")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("policy/")),
        "the deciding policy's text: {paths:?}"
    );
    let summary = overview["summary"].as_str().unwrap();
    assert!(
        summary.contains("| Requested by | `alice` |") && summary.contains("**succeeded**"),
        "{summary}"
    );
    // The bundle itself over REST, for erin only.
    let download = door
        .http
        .get(format!(
            "{}{}",
            door.url,
            overview["download"].as_str().unwrap()
        ))
        .bearer_auth(door.token("erin"))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "application/gzip");
    let archive = download.bytes().await.unwrap();
    let bundle_path = h.dir.0.join("rest-evidence.tar.gz");
    std::fs::write(&bundle_path, &archive).unwrap();
    let bundle = changeflow_mcp_frontend::evidence::Bundle::read(&bundle_path).unwrap();
    let report = changeflow_mcp_frontend::evidence::verify(
        &bundle,
        None,
        Some(&changeflow::replay::BinaryHistories),
    )
    .await;
    assert!(report.problems.is_empty(), "{report:?}");
    let refused = door
        .http
        .get(format!("{}/api/v1/changes/{change}/evidence", door.url))
        .bearer_auth(door.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let (alice_evidence, _) = call(
        &mut alice,
        "get_change_evidence",
        json!({"change_id": change}),
    )
    .await;
    assert_eq!(alice_evidence["isError"], true, "{alice_evidence}");
    let (unknown, _) = call(
        &mut erin,
        "get_change_evidence",
        json!({"change_id": "change-that-never-was"}),
    )
    .await;
    assert_eq!(unknown["isError"], true, "{unknown}");

    // Changes read-only; nothing else.
    let (mut erin_everywhere, _) = door.client("/mcp", &door.token("erin")).await;
    let (history, _) = call(
        &mut erin_everywhere,
        "get_change_history",
        json!({"change_id": change}),
    )
    .await;
    assert!(
        history["structuredContent"]["timeline"].is_array(),
        "{history}"
    );
    for (tool, arguments) in [
        ("deploy_template", ntp_arguments()),
        ("cancel_change", json!({"change_id": change})),
        ("approve_change", json!({"change_id": change})),
        ("list_devices", json!({})),
    ] {
        let (refused, _) = call(&mut erin_everywhere, tool, arguments).await;
        assert_eq!(refused["isError"], true, "{tool}: {refused}");
    }
    let (not_alice, _) = call(&mut alice, "search_audit", json!({})).await;
    assert_eq!(not_alice["isError"], true, "{not_alice}");
    assert!(
        not_alice["structuredContent"]["missing_permission"]
            .as_str()
            .unwrap_or_default()
            .contains("read on audit"),
        "{not_alice}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keep_verifying_while_the_identity_provider_is_down() {
    let h = Harness::start(HarnessOptions::default()).await;
    let door = front_door(&h).await;
    let alice = door.token("alice");
    let Door {
        url,
        http,
        issuer,
        audit: _audit,
        _stop,
    } = door;
    let issuer_url = issuer.url().to_string();
    let port: u16 = issuer_url.rsplit(':').next().unwrap().parse().unwrap();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
    let call = |token: String| {
        http.post(format!("{url}/mcp"))
            .header("Accept", "application/json, text/event-stream")
            .bearer_auth(token)
            .json(&initialize)
            .send()
    };
    let ready = || http.get(format!("{url}/readyz")).send();
    let body = ready().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(body["checks"]["oidc_provider"], "ok", "{body}");

    // The provider goes away.
    drop(issuer);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        call(alice.clone()).await.unwrap().status(),
        200,
        "cached keys still verify"
    );
    let stranger = dev_issuer::DevIssuer::load_or_create(&h.dir.0.join("other-idp"), &issuer_url)
        .unwrap()
        .mint(&DevTokenRequest {
            user: "alice".into(),
            audience: "changeflow".into(),
            ttl: Duration::from_secs(60),
            mfa: None,
        })
        .unwrap();
    assert_eq!(
        call(stranger).await.unwrap().status(),
        401,
        "a token signed by a key nobody can fetch is refused"
    );
    let response = ready().await.unwrap();
    assert_eq!(response.status(), 200, "still ready: tokens verify");
    let body = response.json::<Value>().await.unwrap();
    assert_eq!(body["checks"]["oidc_provider"], "unreachable", "{body}");
    assert_eq!(body["degraded"], json!(["oidc_provider"]));

    // Back on the same address: reported healthy again.
    let _issuer = dev_issuer::start(&h.dir.0.join("idp"), port).await.unwrap();
    let body = ready().await.unwrap().json::<Value>().await.unwrap();
    assert_eq!(body["checks"]["oidc_provider"], "ok", "{body}");
    assert!(body.get("degraded").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporal_restart_mid_change_is_ridden_out_without_restarting_anything_else() {
    let mut h = Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(6),
        ..Default::default()
    })
    .await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let token = door.token("alice");
    let rest = |tool: &str, arguments: Value| {
        door.http
            .post(format!(
                "{}/api/v1/mcp/catalyst-center/tools/{tool}",
                door.url
            ))
            .bearer_auth(&token)
            .json(&json!({"arguments": arguments}))
            .send()
    };
    let started = rest("deploy_template", ntp_arguments()).await.unwrap();
    assert_eq!(started.status(), 202);
    let change_id = started.json::<Value>().await.unwrap()["change_id"]
        .as_str()
        .unwrap()
        .to_string();
    h.wait_for_progress(&change_id, Duration::from_secs(90), |p| {
        p.step == changeflow_workflows::ChangeStep::Deploying
    })
    .await;

    // Temporal goes down mid-deployment: calls fail fast and say they may be retried.
    let port: u16 = h
        .temporal
        .address()
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    h.temporal.stop();
    let asked = std::time::Instant::now();
    let refused = rest("list_templates", json!({})).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "fails fast: {:?}",
        asked.elapsed()
    );
    assert_eq!(refused.json::<Value>().await.unwrap()["retryable"], true);

    // Back on the same database and port: the worker and the front door reconnect by
    // themselves, the change completes, and it deployed once.
    let mut options = changeflow::embedded_temporal_options(&h.dir.0.join("temporal"));
    options.port = port;
    h.temporal =
        tokio::task::spawn_blocking(move || changeflow_devstack::EmbeddedTemporal::start(&options))
            .await
            .unwrap()
            .expect("Temporal restarts on its database");
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        changeflow::changes::result(&h.client, &change_id),
    )
    .await
    .expect("the change completes after the restart")
    .unwrap();
    assert_eq!(
        result.outcome,
        changeflow_workflows::ChangeOutcome::Succeeded,
        "{result:?}"
    );
    assert_eq!(h.sims.stats.deploy_requests(), 1, "deployed once");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let answered = rest("list_templates", json!({})).await.unwrap();
        if answered.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the front door never recovered"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
