//! The MCP front door over real HTTP: bearer authentication with the RFC 9728 challenge,
//! policy and audit on every call, and `deploy_template` running a real workflow with progress
//! notifications. Speaks raw JSON-RPC so the wire format itself is under test.

mod common;

use changeflow_engine::audit::{AuditFilter, AuditStore};
use changeflow_engine::dev_issuer::{self, DevTokenRequest};
use changeflow_engine::identity::{TokenVerifier, VerifierConfig};
use changeflow_engine::policy::PolicyEngine;
use changeflow_mcp_frontend::FrontDoor;
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
    let issuer = dev_issuer::start(&h.dir.0.join("idp"), 0).await.unwrap();
    let verifier = TokenVerifier::discover(
        VerifierConfig::new(issuer.url(), "changeflow"),
        reqwest::Client::new(),
    )
    .await
    .unwrap();
    let policy =
        PolicyEngine::load(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policy"))
            .unwrap();
    let audit = Arc::new(AuditStore::open_in(&h.dir.0.join("audit")).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let front = Arc::new(FrontDoor {
        verifier: Arc::new(verifier),
        policy: Arc::new(policy),
        audit: audit.clone(),
        temporal: h.client.clone(),
        task_queue: h.task_queue.clone(),
        resource: format!("{url}/mcp"),
        allowed_hosts: vec!["127.0.0.1".into(), "localhost".into()],
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

    /// POSTs one JSON-RPC message; returns the status, headers and every JSON message received
    /// (a JSON body, or each `data:` event of an SSE stream).
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        session: Option<&str>,
        body: &Value,
    ) -> (u16, reqwest::header::HeaderMap, Vec<Value>) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.url))
            .header("Accept", "application/json, text/event-stream")
            .header("MCP-Protocol-Version", "2025-11-25")
            .json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(session) = session {
            request = request.header("Mcp-Session-Id", session);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let messages = if text.trim_start().starts_with('{') {
            vec![serde_json::from_str(&text).unwrap()]
        } else {
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str(d.trim()).ok())
                .collect()
        };
        (status, headers, messages)
    }

    /// initialize + notifications/initialized on `path`; returns the session and the initialize answer.
    async fn session<'a>(&'a self, path: &'a str, token: &str) -> (McpSession<'a>, Value) {
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}});
        let (status, headers, messages) = self.post(path, Some(token), None, &init).await;
        assert_eq!(status, 200, "{messages:?}");
        let id = headers
            .get("mcp-session-id")
            .expect("a session")
            .to_str()
            .unwrap()
            .to_string();
        let notified = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let (status, ..) = self.post(path, Some(token), Some(&id), &notified).await;
        assert!(status == 202 || status == 200, "initialized: {status}");
        let session = McpSession {
            door: self,
            path,
            token: token.to_string(),
            id,
        };
        (
            session,
            messages.into_iter().find(|m| m["id"] == 1).unwrap(),
        )
    }
}

/// An initialized MCP session of one caller on one endpoint.
struct McpSession<'a> {
    door: &'a Door,
    path: &'a str,
    token: String,
    id: String,
}

impl McpSession<'_> {
    async fn request(&self, id: u64, method: &str, params: Value) -> Vec<Value> {
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let (status, _, messages) = self
            .door
            .post(self.path, Some(&self.token), Some(&self.id), &body)
            .await;
        assert_eq!(status, 200);
        messages
    }

    /// A tools/call; returns the response and the progress notifications streamed before it.
    async fn call(
        &self,
        id: u64,
        tool: &str,
        arguments: Value,
        progress: bool,
    ) -> (Value, Vec<Value>) {
        let mut params = json!({"name": tool, "arguments": arguments});
        if progress {
            params["_meta"] = json!({"progressToken": format!("p-{id}")});
        }
        let messages = self.request(id, "tools/call", params).await;
        let result = messages
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no response to {id}: {messages:?}"));
        let notifications = messages
            .into_iter()
            .filter(|m| m["method"] == "notifications/progress")
            .collect();
        (result, notifications)
    }
}

fn ntp_arguments() -> Value {
    json!({
        "template_id": changeflow_simulators::seed::id("template", "NTP Servers"),
        "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"},
        "devices": ["sj-access-01"],
        "idempotency_key": "ticket-4711"
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_token_get_the_rfc9728_challenge() {
    let h = Harness::start(HarnessOptions::default()).await;
    let door = front_door(&h).await;
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, headers, _) = door.post("/mcp", None, None, &ping).await;
    assert_eq!(status, 401);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert_eq!(
        challenge,
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
            door.url
        )
    );
    let (status, headers, _) = door
        .post("/mcp/catalyst-center", Some("not.a.token"), None, &ping)
        .await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
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
    let (status, ..) = door
        .post("/mcp", Some(&door.token("alice")), None, &huge)
        .await;
    assert_eq!(status, 413, "oversized bodies are refused before parsing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_runs_as_a_workflow_with_progress_policy_and_audit() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let door = front_door(&h).await;
    let alice = door.token("alice");

    let (session, init) = door.session("/mcp", &alice).await;
    assert_eq!(init["result"]["serverInfo"]["name"], "changeflow");
    let messages = session.request(2, "tools/list", json!({})).await;
    let tools: Vec<&str> = messages[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        tools,
        vec!["deploy_template", "get_change_status", "cancel_change"]
    );
    let (cc_session, _) = door.session("/mcp/catalyst-center", &alice).await;
    let messages = cc_session.request(2, "tools/list", json!({})).await;
    assert_eq!(
        messages[0]["result"]["tools"].as_array().unwrap().len(),
        1,
        "one server's tools only"
    );

    let (result, progress) = session
        .call(3, "deploy_template", ntp_arguments(), true)
        .await;
    let content = &result["result"]["structuredContent"];
    assert_eq!(content["outcome"], "succeeded", "{result}");
    assert!(
        content["ticket_number"]
            .as_str()
            .unwrap()
            .starts_with("CHG")
    );
    let change_id = content["change_id"].as_str().unwrap().to_string();
    assert!(!progress.is_empty(), "progress notifications were streamed");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "p-3")
    );
    assert!(progress.iter().any(|p| {
        p["params"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("deploying")
    }));

    // The same caller, tool and idempotency key: the same change, no second deployment.
    let (again, _) = session
        .call(4, "deploy_template", ntp_arguments(), false)
        .await;
    assert_eq!(
        again["result"]["structuredContent"]["change_id"],
        change_id.as_str()
    );
    assert_eq!(h.sims.stats.deploy_requests(), 1);

    let (status, _) = session
        .call(
            5,
            "get_change_status",
            json!({"change_id": change_id}),
            false,
        )
        .await;
    assert_eq!(status["result"]["structuredContent"]["status"], "completed");
    assert_eq!(status["result"]["structuredContent"]["step"], "completed");

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
        vec!["started", "completed", "started", "completed", "read"]
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

    let bob = door.token("bob");
    let (session, _) = door.session("/mcp", &bob).await;
    let (denied, _) = session
        .call(2, "deploy_template", ntp_arguments(), false)
        .await;
    assert_eq!(denied["result"]["isError"], true);
    assert_eq!(
        denied["result"]["structuredContent"]["missing_permission"],
        "execute on catalyst-center"
    );

    let alice_no_mfa = door
        .issuer
        .issuer
        .mint(&DevTokenRequest {
            user: "alice".into(),
            audience: "changeflow".into(),
            ttl: Duration::from_secs(60),
            mfa: Some(false),
        })
        .unwrap();
    let (session, _) = door.session("/mcp", &alice_no_mfa).await;
    let (no_mfa, _) = session
        .call(2, "deploy_template", ntp_arguments(), false)
        .await;
    assert!(
        no_mfa["result"]["structuredContent"]["reason"]
            .as_str()
            .unwrap()
            .contains("MFA"),
        "{no_mfa}"
    );

    let alice = door.token("alice");
    let (session, _) = door.session("/mcp", &alice).await;
    let mut bad = ntp_arguments();
    bad["password"] = json!("hunter2");
    let (invalid, _) = session.call(2, "deploy_template", bad, false).await;
    assert_eq!(invalid["result"]["isError"], true);
    assert!(
        invalid["result"]["content"][0]["text"]
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
