//! The `changeflow` binary as a user runs it: help, demo, dev, and its error messages.

mod common;

use common::TempDir;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn changeflow() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_changeflow"));
    command
        .env_remove("CHANGEFLOW_TEMPORAL_ADDRESS")
        .env("CHANGEFLOW_LOG", "warn");
    command
}

#[test]
fn every_subcommand_explains_itself() {
    for (args, expected) in [
        (vec!["--help"], "demo"),
        (vec!["demo", "--help"], "--deploy-seconds"),
        (vec!["dev", "--help"], "--data-dir"),
        (vec!["worker", "--help"], "CHANGEFLOW_CATALYST_PASSWORD"),
        (vec!["simulate", "--help"], "--rate-limit-rate"),
        (vec!["token", "--help"], "--no-mfa"),
        (vec!["audit", "list", "--help"], "--workflow-id"),
        (vec!["audit", "verify", "--help"], "first broken record"),
        (vec!["policy", "test", "--help"], "test_"),
        (vec!["worker", "--help"], "--vault-address"),
        (
            vec!["serve", "--help"],
            "In-process worker (with --in-process-worker)",
        ),
    ] {
        let out = changeflow().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(expected),
            "{args:?} help lacks {expected}: {text}"
        );
    }
}

#[test]
fn demo_runs_a_change_end_to_end_and_history_survives_a_restart() {
    let dir = TempDir::new("changeflow-cli");
    let out = changeflow()
        .args(["demo", "--deploy-seconds", "1", "--data-dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let demo_result: Value =
        serde_json::from_slice(&out.stdout).expect("the result is JSON on stdout");
    assert_eq!(demo_result["outcome"], "succeeded");
    assert!(
        demo_result["ticket_number"]
            .as_str()
            .unwrap()
            .starts_with("CHG")
    );
    assert!(
        stderr.contains("[100%] completed"),
        "live progress shown: {stderr}"
    );
    assert!(
        stderr.contains("Workflow history: http://127.0.0.1:"),
        "{stderr}"
    );
    let workflow_id = demo_result["change_id"]
        .as_str()
        .expect("the result names the change")
        .to_string();
    assert!(
        stderr.contains("Calling deploy_template at http://127.0.0.1:"),
        "the demo goes through MCP: {stderr}"
    );

    // The embedded server was stopped with the demo; a new one on the same data dir still has
    // the execution.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = changeflow::embedded_temporal_options(&dir.0);
        let server = tokio::task::spawn_blocking(move || {
            changeflow_devstack::EmbeddedTemporal::start(&options)
        })
        .await
        .unwrap()
        .unwrap();
        let client = changeflow_engine::temporal::connect(&server.address(), "default", "test")
            .await
            .unwrap();
        let result = changeflow::changes::result(&client, &workflow_id)
            .await
            .expect("history survived");
        assert_eq!(
            result.ticket_number,
            demo_result["ticket_number"].as_str().unwrap()
        );
    });
}

#[test]
fn the_normal_demo_shows_the_approval_step_and_approves_as_carol() {
    let dir = TempDir::new("changeflow-cli");
    let out = changeflow()
        .args([
            "demo",
            "--change-type",
            "normal",
            "--deploy-seconds",
            "1",
            "--data-dir",
        ])
        .arg(&dir.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let status: Value = serde_json::from_slice(&out.stdout).expect("the result is JSON on stdout");
    assert_eq!(status["step"], "completed", "{status}");
    assert_eq!(status["change_type"], "normal");
    assert_eq!(status["decisions"][0]["approver"], "carol", "{status}");
    for shown in [
        "as a normal change",
        "awaiting approval by carol",
        "Calling approve_change",
        "Approved by carol",
        "] completed",
    ] {
        assert!(stderr.contains(shown), "shows '{shown}': {stderr}");
    }
}

#[test]
fn a_failed_demo_change_exits_non_zero_with_the_reason() {
    let dir = TempDir::new("changeflow-cli");
    let out = changeflow()
        .args([
            "demo",
            "--deploy-seconds",
            "1",
            "--failing-device",
            "sj-access-02",
            "--data-dir",
        ])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("closed unsuccessful") && stderr.contains("sj-access-02"),
        "{stderr}"
    );

    let refused = changeflow()
        .args([
            "demo",
            "--deploy-seconds",
            "1",
            "--user",
            "bob",
            "--data-dir",
        ])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("The call was refused: no group of bob grants execute on catalyst-center; write and execute on production devices require MFA"),
        "{stderr}"
    );
}

#[test]
fn dev_publishes_its_endpoints_and_stops_everything_it_started() {
    let dir = TempDir::new("changeflow-cli");
    let mut dev = changeflow()
        .args(["dev", "--data-dir"])
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoints_file = dir.0.join("endpoints.json");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !endpoints_file.exists() {
        assert!(Instant::now() < deadline, "endpoints.json never appeared");
        assert!(dev.try_wait().unwrap().is_none(), "dev exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let endpoints: Value =
        serde_json::from_slice(&std::fs::read(&endpoints_file).unwrap()).unwrap();
    for key in [
        "mcp",
        "rest",
        "oidc_issuer",
        "dev_client_secret",
        "vault",
        "vault_token",
        "temporal",
        "temporal_ui",
        "servicenow",
        "catalyst_center",
        "ca_file",
        "credentials",
        "ui",
        "github",
        "github_tokens",
    ] {
        assert!(
            !endpoints[key].is_null(),
            "endpoints.json lacks {key}: {endpoints}"
        );
    }
    let temporal: std::net::SocketAddr = endpoints["temporal"].as_str().unwrap().parse().unwrap();
    let vault: std::net::SocketAddr = endpoints["vault"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .parse()
        .unwrap();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ca = std::fs::read(endpoints["ca_file"].as_str().unwrap()).unwrap();
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .build()
            .unwrap();
        let creds = &endpoints["credentials"];
        let sn = http
            .get(format!(
                "{}/api/now/table/change_request",
                endpoints["servicenow"].as_str().unwrap()
            ))
            .basic_auth(
                creds["servicenow_username"].as_str().unwrap(),
                creds["servicenow_password"].as_str(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            sn.status(),
            200,
            "ServiceNow simulator answers over TLS with the published CA"
        );
        let ui = http
            .get(endpoints["temporal_ui"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert!(ui.status().is_success(), "Temporal Web UI answers");

        // `changeflow token` issues tokens the server verifies through discovery and JWKS.
        let token = |args: &[&str]| {
            let out = changeflow()
                .arg("token")
                .args(args)
                .arg("--data-dir")
                .arg(&dir.0)
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).trim().to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        };
        let config = changeflow_engine::identity::VerifierConfig::new(
            endpoints["oidc_issuer"].as_str().unwrap(),
            "changeflow",
        );
        let verifier =
            changeflow_engine::identity::TokenVerifier::discover(config, reqwest::Client::new())
                .await
                .unwrap();
        let (ok, alice, _) = token(&["--user", "alice"]);
        assert!(ok);
        let identity = verifier.verify(&alice).await.expect("dev token verifies");
        assert_eq!(identity.subject, "alice");
        assert!(identity.amr.contains(&"mfa".to_string()));
        let (_, no_mfa, _) = token(&["--user", "alice", "--no-mfa"]);
        assert!(
            !verifier
                .verify(&no_mfa)
                .await
                .unwrap()
                .amr
                .contains(&"mfa".to_string())
        );
        let (_, elsewhere, _) = token(&[
            "--user",
            "bob",
            "--audience",
            "https://other.example/mcp",
            "--ttl",
            "30",
        ]);
        assert_eq!(
            verifier.verify(&elsewhere).await.unwrap_err(),
            changeflow_engine::identity::TokenError::Audience
        );
        let (ok, _, err) = token(&["--user", "mallory"]);
        assert!(!ok && err.contains("unknown dev user 'mallory'"), "{err}");

        // The dev stack's MCP endpoint takes those tokens and refuses requests without one.
        let mcp = endpoints["mcp"].as_str().unwrap();
        let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        let post = |token: Option<&str>| {
            let mut request = http.post(mcp).header("Accept", "application/json, text/event-stream").json(&initialize);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            request.send()
        };
        assert_eq!(post(None).await.unwrap().status(), 401);
        let answered = post(Some(&alice)).await.unwrap();
        assert_eq!(answered.status(), 200);
        assert!(answered.text().await.unwrap().contains("\"changeflow\""), "serverInfo names changeflow");
    });

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dev.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = dev.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "dev did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "dev exits cleanly: {status}");
    assert!(!endpoints_file.exists(), "endpoints.json removed on exit");
    assert!(
        std::net::TcpStream::connect_timeout(&temporal, Duration::from_millis(500)).is_err(),
        "the embedded Temporal server was stopped"
    );
    assert!(
        std::net::TcpStream::connect_timeout(&vault, Duration::from_millis(500)).is_err(),
        "the embedded OpenBao server was stopped"
    );
}

#[test]
fn misconfiguration_gets_a_clear_error() {
    let nowhere = TempDir::new("changeflow-cli");
    let out = changeflow()
        .args(["token", "--user", "alice", "--data-dir"])
        .arg(&nowhere.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("start `changeflow dev` first"));

    let out = changeflow()
        .args([
            "worker",
            "--servicenow-url",
            "https://sn.example",
            "--catalyst-url",
            "https://cc.example",
        ])
        .env_remove("CHANGEFLOW_SERVICENOW_USERNAME")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("ServiceNow credentials missing: set CHANGEFLOW_SERVICENOW_USERNAME")
    );

    // Secrets come from the environment only: as a flag, one is refused and never echoed.
    let out = changeflow()
        .args([
            "worker",
            "--servicenow-url",
            "https://sn.example",
            "--catalyst-url",
            "https://cc.example",
            "--servicenow-password",
            "hunter2",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("set CHANGEFLOW_SERVICENOW_PASSWORD in the environment"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");

    let dir = TempDir::new("changeflow-cli");
    let out = changeflow()
        .args(["demo", "--temporal-address", "not a url", "--data-dir"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid Temporal address 'not a url'"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = changeflow()
        .args(["demo", "--deploy-seconds", "-1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn simulate_serves_both_simulators_with_the_requested_faults() {
    use std::io::BufRead;
    let dir = TempDir::new("changeflow-cli");
    let mut sim = changeflow()
        .args([
            "simulate",
            "--plain-http",
            "--rate-limit-rate",
            "1",
            "--retry-after",
            "9",
            "--data-dir",
        ])
        .arg(&dir.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The endpoints JSON is the first thing on stdout; read until it parses.
    let mut reader = std::io::BufReader::new(sim.stdout.take().unwrap());
    let mut text = String::new();
    let endpoints: Value = loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "simulate printed no endpoints"
        );
        text.push_str(&line);
        if let Ok(value) = serde_json::from_str(&text) {
            break value;
        }
    };
    let catalyst = endpoints["catalyst_center"].as_str().unwrap().to_string();
    assert!(catalyst.starts_with("http://127.0.0.1:"), "{catalyst}");
    assert!(
        endpoints["ca_file"].is_null(),
        "no CA when serving plain HTTP"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let response = runtime
        .block_on(
            reqwest::Client::new()
                .post(format!("{catalyst}/dna/system/api/v1/auth/token"))
                .send(),
        )
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "9");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sim.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        sim.wait().unwrap().success(),
        "simulate stops cleanly on SIGTERM"
    );
}

#[test]
fn audit_list_filters_and_verify_names_the_first_broken_record() {
    use changeflow_engine::audit::{AuditEntry, AuditStore};
    let dir = TempDir::new("changeflow-cli");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store = AuditStore::open_in(&dir.0).await.unwrap();
        for (subject, tool) in [
            ("alice", "deploy_template"),
            ("bob", "get_change_request"),
            ("alice", "list_devices"),
        ] {
            let entry = AuditEntry {
                subject: subject.into(),
                tool: tool.into(),
                decision: "allow".into(),
                ..Default::default()
            };
            store.append(entry).await.unwrap();
        }
    });
    let run = |args: &[&str]| {
        changeflow()
            .arg("audit")
            .args(args)
            .arg("--data-dir")
            .arg(&dir.0)
            .output()
            .unwrap()
    };

    let listed = run(&["list", "--subject", "alice"]);
    assert!(listed.status.success());
    let records: Vec<Value> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["tool"], "list_devices");
    assert_eq!(records[1]["seq"], 3);

    let verified = run(&["verify"]);
    assert!(verified.status.success());
    assert!(String::from_utf8_lossy(&verified.stderr).contains("3 record(s) verified"));

    runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&changeflow_engine::audit::default_url(&dir.0))
            .await
            .unwrap();
        sqlx::query("UPDATE audit_records SET subject = 'mallory' WHERE seq = 2")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    });
    let broken = run(&["verify"]);
    assert_eq!(broken.status.code(), Some(1));
    let text = String::from_utf8_lossy(&broken.stderr);
    assert!(
        text.contains("BROKEN at record 2 of 3") && text.contains("edited"),
        "{text}"
    );

    let bad_time = run(&["list", "--since", "last tuesday"]);
    assert!(!bad_time.status.success());
    assert!(String::from_utf8_lossy(&bad_time.stderr).contains("expected RFC 3339"));
}

#[test]
fn policy_test_runs_the_rego_tests_and_fails_on_a_broken_rule() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policy");
    let out = changeflow()
        .args(["policy", "--dir"])
        .arg(&shipped)
        .arg("test")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count() >= 6,
        "{stdout}"
    );

    let dir = TempDir::new("changeflow-policy");
    std::fs::copy(shipped.join("authz.rego"), dir.0.join("authz.rego")).unwrap();
    let tests = std::fs::read_to_string(shipped.join("authz_test.rego")).unwrap();
    std::fs::write(
        dir.0.join("authz_test.rego"),
        tests.replace(
            "not authz.allow with input as deploy(bob",
            "authz.allow with input as deploy(bob",
        ),
    )
    .unwrap();
    let out = changeflow()
        .args(["policy", "--dir"])
        .arg(&dir.0)
        .arg("test")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("FAIL  data.changeflow.authz_test.test_service_desk_cannot_deploy")
    );
}

#[test]
fn serve_runs_the_front_door_against_a_configured_temporal_and_provider() {
    let out = changeflow()
        .args(["serve", "--oidc-issuer", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("serve needs --temporal-address"));

    let dir = TempDir::new("changeflow-cli");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = changeflow::embedded_temporal_options(&dir.0.join("temporal"));
        let temporal = tokio::task::spawn_blocking(move || changeflow_devstack::EmbeddedTemporal::start(&options)).await.unwrap().unwrap();
        let issuer = changeflow_devstack::dev_issuer::start(&dir.0.join("idp"), 0).await.unwrap();
        let port = common::free_port();
        let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_changeflow"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--oidc-issuer", issuer.url(), "--temporal-address", &temporal.address(), "--shutdown-grace-secs", "2", "--data-dir"])
            .arg(&dir.0)
            .env("CHANGEFLOW_LOG", "info")
            .kill_on_drop(true)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("serve.log")).unwrap())
            .spawn()
            .unwrap();
        let metadata_url = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource");
        let deadline = Instant::now() + Duration::from_secs(30);
        let metadata: Value = loop {
            if let Ok(response) = reqwest::get(&metadata_url).await {
                break response.json().await.unwrap();
            }
            assert!(Instant::now() < deadline, "serve never answered");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(metadata["resource"], format!("http://127.0.0.1:{port}/mcp"));
        assert_eq!(metadata["authorization_servers"][0], issuer.url());
        // Tokens for this resource (RFC 8707 audience) get in; the dev default audience does not.
        let token = |audience: &str| issuer.issuer.mint(&changeflow_devstack::dev_issuer::DevTokenRequest { user: "alice".into(), audience: audience.into(), ttl: Duration::from_secs(60), mfa: None }).unwrap();
        let ping = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}});
        let send = |t: String| reqwest::Client::new().post(format!("http://127.0.0.1:{port}/mcp")).header("Accept", "application/json, text/event-stream").bearer_auth(t).json(&ping).send();
        assert_eq!(send(token(&format!("http://127.0.0.1:{port}/mcp"))).await.unwrap().status(), 200);
        assert_eq!(send(token("changeflow")).await.unwrap().status(), 401);

        // SIGTERM with a request in flight (no worker polls the queue, so the read it runs
        // never ends): new connections are refused, the request gets the grace period, and the
        // process exits 0 soon after it.
        let resource_token = token(&format!("http://127.0.0.1:{port}/mcp"));
        let in_flight = tokio::spawn(
            reqwest::Client::new()
                .post(format!("http://127.0.0.1:{port}/api/v1/mcp/catalyst-center/tools/list_templates"))
                .bearer_auth(resource_token)
                .json(&serde_json::json!({"arguments": {}}))
                .send(),
        );
        tokio::time::sleep(Duration::from_millis(800)).await;
        let asked = Instant::now();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(serve.id().unwrap() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(reqwest::get(&metadata_url).await.is_err(), "no new connections while draining");
        let status = tokio::time::timeout(Duration::from_secs(10), serve.wait()).await.expect("serve exits after its grace period").unwrap();
        assert!(status.success(), "{status:?}");
        let took = asked.elapsed();
        assert!(took >= Duration::from_millis(1500) && took < Duration::from_secs(6), "waited the grace period, no more: {took:?}");
        let answered = in_flight.await.unwrap();
        assert!(answered.is_err() || !answered.unwrap().status().is_success(), "the unfinished request was cut");
        let log = std::fs::read_to_string(dir.0.join("serve.log")).unwrap();
        assert!(log.contains("finishing requests in flight") && log.contains("still in flight"), "{log}");
    });
}

#[test]
fn a_configuration_file_sets_options_under_flags_and_environment_and_refuses_secrets() {
    let dir = TempDir::new("changeflow-config");
    let show = |config: &std::path::Path, extra: &[&str], env: &[(&str, &str)]| {
        let out = changeflow()
            .arg("--config")
            .arg(config)
            .args(extra)
            .args(["config", "show"])
            .env_remove("CHANGEFLOW_NAMESPACE")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    // The shipped example: every key is an option, and each shows as coming from the file.
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("changeflow.example.toml");
    let keys = std::fs::read_to_string(&example)
        .unwrap()
        .lines()
        .filter(|l| l.contains(" = ") && !l.trim_start().starts_with('#'))
        .count();
    let (code, out, err) = show(&example, &[], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.matches("# file").count(), keys, "{out}");
    assert!(out.contains("approval-poll-secs = \"30\"  # file"), "{out}");
    assert!(
        out.contains("servicenow-password = \"<unset>\"  # environment"),
        "secrets only say whether they are set: {out}"
    );

    // Flag > environment > file > default.
    let file = dir.0.join("changeflow.toml");
    std::fs::write(
        &file,
        "namespace = \"from-file\"\n[serve]\nlisten = \"0.0.0.0:9999\"\n",
    )
    .unwrap();
    let (_, out, _) = show(&file, &[], &[]);
    assert!(out.contains("namespace = \"from-file\"  # file"), "{out}");
    assert!(
        out.contains("task-queue = \"changeflow\"  # default"),
        "{out}"
    );
    let (_, out, _) = show(&file, &[], &[("CHANGEFLOW_NAMESPACE", "from-env")]);
    assert!(
        out.contains("namespace = \"from-env\"  # environment CHANGEFLOW_NAMESPACE"),
        "{out}"
    );
    let (_, out, _) = show(
        &file,
        &["--namespace", "from-flag"],
        &[("CHANGEFLOW_NAMESPACE", "from-env")],
    );
    assert!(out.contains("namespace = \"from-flag\"  # flag"), "{out}");

    // A command's table reaches that command: the worker's required URLs come from the file.
    let worker = dir.0.join("worker.toml");
    std::fs::write(
        &worker,
        "temporal-address = \"127.0.0.1:1\"\n[worker]\nservicenow-url = \"https://sn.example\"\ncatalyst-url = \"https://cc.example\"\n",
    )
    .unwrap();
    let out = changeflow()
        .arg("--config")
        .arg(&worker)
        .arg("worker")
        .env_remove("CHANGEFLOW_SERVICENOW_USERNAME")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("required"),
        "the file supplied the URLs: {err}"
    );
    assert!(err.contains("ServiceNow credentials missing"), "{err}");

    // Refused: a secret, an unknown option, an unknown section, a missing file.
    for (text, problem) in [
        (
            "[worker]\nservicenow-password = \"hunter2\"\n",
            "is a secret",
        ),
        ("[serve]\nui-client-secret = \"hunter2\"\n", "is a secret"),
        ("colour = \"blue\"\n", "unknown option colour"),
        ("[deploy]\nfast = true\n", "unknown section [deploy]"),
    ] {
        std::fs::write(&file, text).unwrap();
        let (code, _, err) = show(&file, &[], &[]);
        assert_eq!(code, Some(2), "{text}: {err}");
        assert!(err.contains(problem), "{text}: {err}");
        assert!(!err.contains("hunter2"), "the secret is not echoed: {err}");
    }
    let (code, _, err) = show(&dir.0.join("missing.toml"), &[], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn serve_with_an_in_process_worker_runs_calls_with_no_other_worker() {
    // Asked for without the worker's options: a usage error naming them, before anything is
    // started. Without --in-process-worker they are not needed.
    let serve_without_urls = |extra: &[&str]| {
        changeflow()
            .args([
                "serve",
                "--oidc-issuer",
                "http://127.0.0.1:9",
                "--temporal-address",
                "127.0.0.1:9",
            ])
            .args(extra)
            .env_remove("CHANGEFLOW_SERVICENOW_URL")
            .env_remove("CHANGEFLOW_CATALYST_URL")
            .env_remove("CHANGEFLOW_IN_PROCESS_WORKER")
            .output()
            .unwrap()
    };
    let out = serve_without_urls(&[
        "--in-process-worker",
        "--servicenow-url",
        "https://sn.example",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("required arguments were not provided:\n  --catalyst-url <CATALYST_URL>\n\n"),
        "only the missing one: {stderr}"
    );
    let out = serve_without_urls(&[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot connect to Temporal at 127.0.0.1:9"),
        "got past the options: {stderr}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let h = common::Harness::start(common::HarnessOptions::default()).await;
        let issuer = changeflow_devstack::dev_issuer::start(&h.dir.0.join("idp"), 0)
            .await
            .unwrap();
        let creds = &h.sims.credentials;
        let serve = |port: u16, extra: &[&str], log: &str| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_changeflow"))
                .args([
                    "serve",
                    "--in-process-worker",
                    "--listen",
                    &format!("127.0.0.1:{port}"),
                    "--oidc-issuer",
                    issuer.url(),
                ])
                .args([
                    "--temporal-address",
                    &h.temporal.address(),
                    "--task-queue",
                    &h.task_queue,
                    "--shutdown-grace-secs",
                    "2",
                ])
                .args([
                    "--servicenow-url",
                    &h.sims.servicenow_url,
                    "--catalyst-url",
                    &h.sims.catalyst_url,
                ])
                .arg("--ca-file")
                .arg(h.sims.ca_file.as_ref().unwrap())
                .args(extra)
                .arg("--data-dir")
                .arg(&h.dir.0)
                .envs(h.credential_env())
                .env("CHANGEFLOW_LOG", "info")
                .kill_on_drop(true)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(h.dir.0.join(log)).unwrap())
                .spawn()
                .unwrap()
        };

        // The worker cannot start (its metrics address is taken): serve does not go on
        // without it, it exits 1 saying why.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_at = taken.local_addr().unwrap().to_string();
        let mut broken = serve(
            common::free_port(),
            &["--sdk-metrics-listen", &taken_at],
            "broken.log",
        );
        let status = tokio::time::timeout(Duration::from_secs(30), broken.wait())
            .await
            .expect("serve stops when its worker does")
            .unwrap();
        assert_eq!(status.code(), Some(1));
        let log = std::fs::read_to_string(h.dir.0.join("broken.log")).unwrap();
        assert!(
            log.contains("in-process worker")
                && log.contains(&format!(
                    "cannot serve the Temporal SDK metrics on {taken_at}"
                )),
            "{log}"
        );

        // No `changeflow worker` polls this task queue: the read is run by serve's own worker.
        let port = common::free_port();
        let mut running = serve(port, &[], "serve.log");
        let token = issuer
            .issuer
            .mint(&changeflow_devstack::dev_issuer::DevTokenRequest {
                user: "alice".into(),
                audience: format!("http://127.0.0.1:{port}/mcp"),
                ttl: Duration::from_secs(60),
                mfa: None,
            })
            .unwrap();
        let read = || {
            reqwest::Client::new()
                .post(format!(
                    "http://127.0.0.1:{port}/api/v1/mcp/catalyst-center/tools/list_devices"
                ))
                .bearer_auth(&token)
                .json(&serde_json::json!({"arguments": {}}))
                .timeout(Duration::from_secs(30))
                .send()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let answer = loop {
            match read().await {
                Ok(answer) => break answer,
                Err(e) => assert!(Instant::now() < deadline, "serve never answered: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(answer.status(), 200);
        let body = answer.text().await.unwrap();
        assert!(
            body.contains(changeflow_simulators::seed::DEVICES[0].0),
            "{body}"
        );

        // SIGTERM: the front door drains, then the worker stops, and serve exits 0.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(running.id().unwrap() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = tokio::time::timeout(Duration::from_secs(15), running.wait())
            .await
            .expect("serve exits")
            .unwrap();
        assert!(status.success(), "{status:?}");
        let log = std::fs::read_to_string(h.dir.0.join("serve.log")).unwrap();
        assert!(
            log.contains("worker started")
                && log.contains("front door stopped")
                && log.contains("worker stopped"),
            "{log}"
        );
        assert!(
            !log.contains(&creds.catalyst_password),
            "no secret in the log"
        );
    });
}
