//! End-to-end tests of `TemplateDeployment`: a real Temporal dev server, the simulators over
//! HTTPS, and `changeflow worker` processes.

mod common;

use changeflow::changes;
use changeflow_simulators::FaultConfig;
use changeflow_workflows::{ChangeOutcome, ChangeStep, DeploymentRequest};
use common::{Harness, HarnessOptions, ntp_change};
use std::time::Duration;
use temporalio_client::errors::WorkflowGetResultError;

const LONG: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_opens_deploys_verifies_and_closes_the_ticket() {
    let h = Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(3),
        ..Default::default()
    })
    .await;
    let _worker = h.spawn_worker();
    let id = h
        .start_change(ntp_change(&["sj-access-01", "lon-access-01"]))
        .await;

    let deploying = h
        .wait_for_progress(&id, LONG, |p| {
            p.step == ChangeStep::Deploying && p.task_id.is_some()
        })
        .await;
    let number = deploying
        .ticket_number
        .clone()
        .expect("ticket number is visible while deploying");
    let during = h.ticket(&number);
    assert_eq!(
        during.get("state"),
        "-1",
        "ticket is in Implement during the deployment"
    );
    // Tokens revoked mid-change: both clients must log in again once and carry on.
    h.sims.catalyst.revoke_tokens();
    h.sims.servicenow.revoke_tokens();

    let result = tokio::time::timeout(LONG, changes::result(&h.client, &id))
        .await
        .unwrap()
        .expect("change completes");
    assert_eq!(result.outcome, ChangeOutcome::Succeeded, "{result:?}");
    assert_eq!(result.ticket_number, number);
    assert!(result.deployment_id.is_some());
    assert_eq!(result.devices.len(), 2);
    assert!(
        result.devices.iter().all(|d| d.status == "SUCCESS"),
        "{:?}",
        result.devices
    );

    let ticket = h.ticket(&number);
    assert_eq!(ticket.get("state"), "3", "closed");
    assert_eq!(ticket.get("close_code"), "successful");
    assert_eq!(ticket.get("type"), "standard");
    assert_eq!(ticket.get("correlation_id"), id);
    assert_eq!(
        ticket.get("requested_by"),
        uuid_of_user("alice"),
        "requested_by is the caller"
    );
    assert!(ticket.get("short_description").contains("NTP Servers"));
    assert!(
        ticket
            .get("description")
            .contains("ntp server 10.255.0.1 prefer"),
        "preview in description: {}",
        ticket.get("description")
    );
    assert!(
        ticket
            .get("close_notes")
            .contains("succeeded on 2 device(s)")
    );
    assert_eq!(h.sims.stats.deploy_requests(), 1);

    let progress = changes::progress(&h.client, &id)
        .await
        .expect("progress is answered after completion");
    assert_eq!(progress.step, ChangeStep::Completed);
    assert_eq!(progress.percent, 100);
}

fn uuid_of_user(user: &str) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, user.as_bytes())
        .simple()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_device_closes_the_ticket_unsuccessful_with_the_reason() {
    let faults = FaultConfig {
        failing_device: Some("sj-access-02".into()),
        ..Default::default()
    };
    let h = Harness::start(HarnessOptions {
        faults,
        ..Default::default()
    })
    .await;
    let _worker = h.spawn_worker();
    let id = h
        .start_change(ntp_change(&["sj-access-01", "sj-access-02"]))
        .await;

    let result = tokio::time::timeout(LONG, changes::result(&h.client, &id))
        .await
        .unwrap()
        .expect("change completes");
    assert_eq!(result.outcome, ChangeOutcome::Failed);
    let reason = result.failure_reason.clone().expect("a reason");
    assert!(
        reason.contains("sj-access-02") && reason.contains("FAILURE"),
        "{reason}"
    );
    let by_device = |name: &str| {
        result
            .devices
            .iter()
            .find(|d| d.device == name)
            .unwrap()
            .status
            .clone()
    };
    assert_eq!(by_device("sj-access-01"), "SUCCESS");
    assert_eq!(by_device("sj-access-02"), "FAILURE");

    let ticket = h.ticket(&result.ticket_number);
    assert_eq!(ticket.get("state"), "3");
    assert_eq!(ticket.get("close_code"), "unsuccessful");
    assert!(
        ticket.get("close_notes").contains("sj-access-02"),
        "{}",
        ticket.get("close_notes")
    );
    let progress = changes::progress(&h.client, &id).await.unwrap();
    assert_eq!(progress.step, ChangeStep::Failed);
}

async fn rides_out(faults: FaultConfig) {
    let h = Harness::start(HarnessOptions {
        faults,
        ..Default::default()
    })
    .await;
    let _worker = h.spawn_worker();
    let id = h
        .start_change(ntp_change(&["sj-core-01", "lon-dist-01"]))
        .await;
    let result = tokio::time::timeout(Duration::from_secs(240), changes::result(&h.client, &id))
        .await
        .unwrap()
        .expect("change completes despite the storm");
    assert_eq!(result.outcome, ChangeOutcome::Succeeded, "{result:?}");
    assert!(
        h.sims.stats.faults_injected() > 0,
        "the storm really happened"
    );
    assert_eq!(h.sims.stats.deploy_requests(), 1, "no duplicate deployment");
    assert_eq!(
        h.sims.servicenow.change_requests().len(),
        1,
        "no duplicate ticket"
    );
    assert_eq!(
        h.ticket(&result.ticket_number).get("close_code"),
        "successful"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_ridden_out_honouring_retry_after() {
    rides_out(FaultConfig {
        rate_limit_rate: 0.35,
        retry_after_secs: 1,
        ..Default::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_storm_is_ridden_out() {
    rides_out(FaultConfig {
        error_rate: 0.35,
        ..Default::default()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_input_is_rejected_before_any_ticket_is_opened() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let with = |mutate: fn(&mut DeploymentRequest)| {
        let mut r = ntp_change(&["sj-access-01"]);
        mutate(&mut r);
        r
    };
    let cases: Vec<(DeploymentRequest, &str)> = vec![
        (
            with(|r| r.change.template_id = Some("00000000-0000-0000-0000-000000000000".into())),
            "does not exist",
        ),
        (
            with(|r| {
                r.change
                    .parameters
                    .insert("ntp_primary".into(), "ten.dot.zero".into());
            }),
            "must be an IP address",
        ),
        (
            with(|r| {
                r.change.parameters.remove("ntp_secondary");
            }),
            "missing required parameter 'ntp_secondary'",
        ),
        (
            with(|r| {
                r.change
                    .parameters
                    .insert("enable_secret".into(), "x".into());
            }),
            "unknown parameter 'enable_secret'",
        ),
        (
            with(|r| r.change.devices = vec!["no-such-switch".into()]),
            "not known to Catalyst Center",
        ),
        (
            with(|r| r.change.devices = vec!["lon-access-03".into()]),
            "unreachable",
        ),
    ];
    for (request, expected) in cases {
        let id = h.start_change(request).await;
        let err = tokio::time::timeout(LONG, changes::result(&h.client, &id))
            .await
            .unwrap()
            .unwrap_err();
        let WorkflowGetResultError::Failed(failure) = &err else {
            panic!("expected a failed workflow, got {err:?}")
        };
        let text = format!("{failure:?}");
        assert!(text.contains(expected), "expected '{expected}' in {text}");
        assert!(
            text.contains("InvalidRequest"),
            "typed as InvalidRequest: {text}"
        );
    }
    // Shape errors are refused before a workflow is even started.
    let empty = with(|r| r.change.devices.clear());
    assert!(
        changes::start(&h.client, &h.task_queue, "change-never", empty)
            .await
            .is_err()
    );
    assert_eq!(
        h.sims.servicenow.change_requests().len(),
        0,
        "no ticket was opened"
    );
    assert_eq!(h.sims.stats.deploy_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_fail_the_change_clearly_without_calling_it_invalid() {
    let h = Harness::start(HarnessOptions::default()).await;
    let worker = h.spawn_worker_with_env(&[("CHANGEFLOW_CATALYST_PASSWORD", "wrong-password")]);
    let id = h.start_change(ntp_change(&["sj-access-01"])).await;
    let err = tokio::time::timeout(LONG, changes::result(&h.client, &id))
        .await
        .unwrap()
        .unwrap_err();
    let text = format!("{err:?}");
    assert!(
        text.contains("Catalyst Center refused the configured credentials"),
        "{text}"
    );
    assert!(
        !text.contains("InvalidRequest"),
        "not the caller's fault: {text}"
    );
    assert!(
        !text.contains("wrong-password") && !worker.log().contains("wrong-password"),
        "the password is never shown"
    );
    assert_eq!(
        h.sims.servicenow.change_requests().len(),
        0,
        "no ticket was opened"
    );
    assert_eq!(
        changes::progress(&h.client, &id).await.unwrap().step,
        ChangeStep::Failed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_deployment_is_replaced_without_deploying_twice() {
    let h = Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(8),
        ..Default::default()
    })
    .await;
    let mut first = h.spawn_worker();
    let id = h
        .start_change(ntp_change(&[
            "sj-access-01",
            "sj-access-02",
            "lon-access-01",
        ]))
        .await;
    let p = h
        .wait_for_progress(&id, LONG, |p| {
            p.step == ChangeStep::Deploying && p.task_id.is_some()
        })
        .await;
    assert_eq!(h.sims.stats.deploy_requests(), 1);
    first.kill();

    let _second = h.spawn_worker();
    let result = tokio::time::timeout(LONG, changes::result(&h.client, &id))
        .await
        .unwrap()
        .expect("change completes");
    assert_eq!(result.outcome, ChangeOutcome::Succeeded, "{result:?}");
    assert_eq!(
        h.sims.stats.deploy_requests(),
        1,
        "the simulator saw exactly one deploy request"
    );
    assert_eq!(
        changes::progress(&h.client, &id).await.unwrap().task_id,
        p.task_id,
        "same task polled to the end"
    );
    assert_eq!(
        h.ticket(&result.ticket_number).get("close_code"),
        "successful"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_change_mid_deployment_backs_it_out_and_cancels_the_ticket() {
    let h = Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(8),
        ..Default::default()
    })
    .await;
    let _worker = h.spawn_worker();
    let id = h.start_change(ntp_change(&["sj-core-02"])).await;
    let p = h
        .wait_for_progress(&id, LONG, |p| {
            p.step == ChangeStep::Deploying && p.task_id.is_some()
        })
        .await;
    changes::cancel(&h.client, &id, "operator aborted")
        .await
        .expect("cancel");

    let err = tokio::time::timeout(LONG, changes::result(&h.client, &id))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, WorkflowGetResultError::Cancelled { .. }),
        "{err:?}"
    );
    let ticket = h.ticket(p.ticket_number.as_deref().unwrap());
    assert_eq!(ticket.get("state"), "4", "Canceled");
    let notes = ticket.get("close_notes");
    assert!(
        notes.contains("Canceled by request during deployment")
            && notes.contains("sj-core-02: backed out, checks passed"),
        "{notes}"
    );
    // Catalyst Center cannot stop a deployment: it ran to its end and was undone once.
    assert_eq!(h.sims.catalyst.deployments_of("NTP Servers Removal"), 1);
    let config = h.sims.catalyst.running_config("sj-core-02").unwrap();
    assert!(
        !config.iter().any(|l| l.contains("10.255.0.1")),
        "{config:?}"
    );
    let progress = changes::progress(&h.client, &id).await.unwrap();
    assert_eq!(progress.step, ChangeStep::Canceled);
    assert!(progress.verified.backout.is_some(), "{progress:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_appears_in_workflow_history_or_worker_logs() {
    let h = Harness::start(HarnessOptions::default()).await;
    let worker = h.spawn_worker();
    // A second worker logs ECS JSON lines, as operators run it for the Elastic stack.
    let json_worker = h.spawn_worker_with_env(&[("CHANGEFLOW_LOG_FORMAT", "json")]);
    let id = h.start_change(ntp_change(&["sj-access-01"])).await;
    tokio::time::timeout(LONG, changes::result(&h.client, &id))
        .await
        .unwrap()
        .expect("change completes");

    let handle = h
        .client
        .get_workflow_handle::<changeflow_workflows::TemplateDeployment>(&id);
    let history = handle
        .fetch_history(Default::default())
        .to_json()
        .await
        .expect("history as JSON");
    let history = readable_history(&history);
    assert!(
        history.contains("CHG00"),
        "decoded history holds the ticket number"
    );
    assert!(
        history.contains("sj-access-01"),
        "decoded history holds the request"
    );
    // Device checks ran, and their outputs stayed out of history: only hashes of snapshots
    // kept in the worker's snapshot directory.
    let progress = changes::progress(&h.client, &id).await.unwrap();
    assert_eq!(progress.verified.checks.len(), 2, "{progress:?}");
    for check in &progress.verified.checks {
        assert!(history.contains(&check.snapshot), "{}", check.snapshot);
        let file = h
            .snapshot_dir()
            .join(format!("{}.json", &check.snapshot["sha256:".len()..]));
        let stored = std::fs::read_to_string(&file).expect("snapshot stored");
        assert!(stored.contains("Building configuration"), "{stored}");
    }
    for output in [
        "Building configuration",
        "Current configuration",
        "uplink-core",
        "Cisco IOS XE Software",
        "sys.peer",
    ] {
        assert!(
            !history.contains(output),
            "device output \"{output}\" in history"
        );
    }
    let json_log = json_worker.log();
    let lines: Vec<&str> = json_log.lines().collect();
    assert!(!lines.is_empty(), "the JSON worker logged nothing");
    for line in &lines {
        common::assert_ecs_line(line, "changeflow-worker");
    }
    assert!(
        json_log.contains("\"message\":\"worker started\""),
        "{json_log}"
    );
    let log = format!("{}\n{json_log}", worker.log());
    assert!(log.contains("worker started"), "the worker logged: {log}");
    let c = &h.sims.credentials;
    for secret in [
        &c.servicenow_password,
        &c.servicenow_client_secret,
        &c.catalyst_password,
    ] {
        assert!(
            !history.contains(secret.as_str()),
            "secret leaked into history"
        );
        assert!(
            !log.contains(secret.as_str()),
            "secret leaked into the worker log"
        );
    }
}

/// The history JSON plus every base64 payload in it decoded, so a search sees what Temporal stores.
fn readable_history(json: &[u8]) -> String {
    use base64::Engine;
    fn walk(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::String(s) => {
                out.push_str(s);
                out.push('\n');
                if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s) {
                    out.push_str(&String::from_utf8_lossy(&bytes));
                    out.push('\n');
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let value: serde_json::Value = serde_json::from_slice(json).expect("history JSON");
    let mut out = String::new();
    walk(&value, &mut out);
    out
}

/// Starts an OpenBao dev server on `port` with `token` and writes the simulators' credentials.
async fn seeded_vault(h: &Harness, port: u16, token: &str) -> changeflow_devstack::EmbeddedVault {
    let mut options = changeflow_devstack::EmbeddedVaultOptions::new(h.dir.0.join("vault"));
    options.port = port;
    options.root_token = Some(token.to_string());
    let vault =
        tokio::task::spawn_blocking(move || changeflow_devstack::EmbeddedVault::start(&options))
            .await
            .unwrap()
            .unwrap();
    let c = &h.sims.credentials;
    let write = |path: &'static str, pairs: Vec<(&str, &str)>| {
        let value: std::collections::BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let address = vault.address();
        async move {
            changeflow_credentials::vault::admin::write_secret(
                &address, token, "secret", path, &value,
            )
            .await
            .unwrap()
        }
    };
    write(
        "changeflow/servicenow",
        vec![
            ("username", &c.servicenow_username),
            ("password", &c.servicenow_password),
            ("client_id", &c.servicenow_client_id),
            ("client_secret", &c.servicenow_client_secret),
        ],
    )
    .await;
    write(
        "changeflow/catalyst-center",
        vec![
            ("username", &c.catalyst_username),
            ("password", &c.catalyst_password),
        ],
    )
    .await;
    vault
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_down_is_retried_and_the_change_completes_once_it_is_back() {
    let h = Harness::start(HarnessOptions::default()).await;
    let port = common::free_port();
    let token = format!("test-root-{}", uuid::Uuid::new_v4().simple());
    let mut vault = seeded_vault(&h, port, &token).await;
    let address = vault.address();
    vault.stop();

    // Credentials come only from Vault: the environment's are blanked.
    let worker = h.spawn_worker_with_env(&[
        ("CHANGEFLOW_VAULT_ADDR", address.as_str()),
        ("CHANGEFLOW_VAULT_TOKEN", token.as_str()),
        ("CHANGEFLOW_VAULT_CACHE_SECONDS", "0"),
        ("CHANGEFLOW_SERVICENOW_PASSWORD", ""),
        ("CHANGEFLOW_CATALYST_PASSWORD", ""),
    ]);
    let id = h.start_change(ntp_change(&["sj-access-01"])).await;

    let handle = h
        .client
        .get_workflow_handle::<changeflow_workflows::TemplateDeployment>(&id);
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let description = handle.describe(Default::default()).await.unwrap();
        let pending = description.raw().pending_activities.first().cloned();
        // Restart Vault only while the next attempt is seconds away: an attempt that read the
        // new, not yet seeded Vault would find no secret (a non-retryable error).
        let next_attempt_far =
            |a: &temporalio_common::protos::temporal::api::workflow::v1::PendingActivityInfo| {
                a.next_attempt_schedule_time.as_ref().is_some_and(|t| {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs() as i64;
                    t.seconds >= now + 3
                })
            };
        if let Some(activity) = pending.filter(|a| a.attempt >= 2 && next_attempt_far(a)) {
            let failure = activity
                .last_failure
                .map(|f| format!("{f:?}"))
                .unwrap_or_default();
            assert!(
                failure.contains("credential store unavailable"),
                "{failure}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the activity was never retried"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        h.sims.servicenow.change_requests().len(),
        0,
        "nothing happened while Vault was down"
    );

    let _vault = seeded_vault(&h, port, &token).await;
    let result = tokio::time::timeout(LONG, changes::result(&h.client, &id))
        .await
        .unwrap()
        .expect("change completes");
    assert_eq!(result.outcome, ChangeOutcome::Succeeded);

    let history = handle
        .fetch_history(Default::default())
        .to_json()
        .await
        .unwrap();
    let history = readable_history(&history);
    let c = &h.sims.credentials;
    for secret in [
        token.as_str(),
        &c.servicenow_password,
        &c.servicenow_client_secret,
        &c.catalyst_password,
    ] {
        assert!(!history.contains(secret), "secret leaked into history");
        assert!(
            !worker.log().contains(secret),
            "secret leaked into the worker log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_serves_liveness_and_readiness_that_follow_temporal() {
    let mut h = Harness::start(HarnessOptions::default()).await;
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let _worker = h.spawn_worker_with_env(&[("CHANGEFLOW_WORKER_HEALTH_LISTEN", &listen)]);
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("http://{listen}{path}")).send();
    let deadline = tokio::time::Instant::now() + LONG;
    while get("/healthz").await.map(|r| r.status()).ok() != Some(reqwest::StatusCode::OK) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker's /healthz never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["temporal"], "ok", "{body}");

    // Temporal goes away: the worker is alive but not ready, and says why.
    h.temporal.stop();
    let unready = get("/readyz").await.unwrap();
    assert_eq!(unready.status(), 503);
    let body: serde_json::Value = unready.json().await.unwrap();
    assert_eq!(body["failing"], serde_json::json!(["temporal"]), "{body}");
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stops_cleanly_on_sigterm_and_another_finishes_its_change() {
    let h = Harness::start(HarnessOptions::default()).await;
    let mut first = h.spawn_worker();
    let id = h.start_change(ntp_change(&["sj-access-01"])).await;
    h.wait_for_progress(&id, LONG, |p| p.step == ChangeStep::Deploying)
        .await;

    // SIGTERM, as an orchestrator stops a pod: the worker drains and exits 0.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = first.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not stop within a minute of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status}: {}", first.log());
    assert!(first.log().contains("worker stopped"), "{}", first.log());

    // What it was doing is picked up by the next worker; the change deploys once.
    let _second = h.spawn_worker();
    let result = tokio::time::timeout(LONG, changes::result(&h.client, &id))
        .await
        .unwrap()
        .expect("change completes");
    assert_eq!(result.outcome, ChangeOutcome::Succeeded);
    assert_eq!(h.sims.stats.deploy_requests(), 1, "deployed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_json_follows_a_change_step_by_step_and_exits_when_it_ends() {
    let h = Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(8),
        ..Default::default()
    })
    .await;
    let _worker = h.spawn_worker();
    let address = h.temporal.address();
    // Without a change id: every running change, as it comes and goes.
    let list_file = h.dir.0.join("watch-all.jsonl");
    let mut all = std::process::Command::new(env!("CARGO_BIN_EXE_changeflow"))
        .args(["watch", "--json", "--temporal-address", &address])
        .stdout(std::fs::File::create(&list_file).unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let id = h
        .start_change(ntp_change(&["sj-access-01", "lon-access-01"]))
        .await;
    let (id_for_watch, address_for_watch) = (id.clone(), address.clone());
    let watched = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_changeflow"))
            .args([
                "watch",
                &id_for_watch,
                "--json",
                "--temporal-address",
                &address_for_watch,
            ])
            .output()
            .unwrap()
    });
    let out = tokio::time::timeout(LONG, watched)
        .await
        .expect("watch exits when the change ends")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let steps: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    let order: Vec<&str> = ChangeStep::IN_PROGRESS
        .iter()
        .map(|s| s.as_str())
        .chain(["completed"])
        .collect();
    let positions: Vec<usize> = steps
        .iter()
        .map(|s| order.iter().position(|o| o == s).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "each step once, in order: {steps:?}"
    );
    assert!(
        steps.contains(&"deploying") && steps.last() == Some(&"completed"),
        "{steps:?}"
    );
    for device in ["sj-access-01", "lon-access-01"] {
        assert!(
            events.iter().any(|e| e["event"] == "device"
                && e["device"] == device
                && e["status"] == "SUCCESS"),
            "{stdout}"
        );
        assert!(
            events.iter().any(|e| e["event"] == "check"
                && e["device"] == device
                && e["phase"] == "post_change"
                && e["passed"] == true),
            "{stdout}"
        );
    }
    let end = events.last().unwrap();
    assert_eq!(end["event"], "end", "{stdout}");
    assert_eq!(end["outcome"], "succeeded", "{stdout}");

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let text = std::fs::read_to_string(&list_file).unwrap();
        if text.contains(&format!("{{\"change_id\":\"{id}\",\"event\":\"ended\"}}")) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the list never showed the change end: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = all.kill();
    let _ = all.wait();
    assert!(
        listed
            .lines()
            .any(|l| l.contains("\"event\":\"change\"") && l.contains(&id)),
        "{listed}"
    );
}
