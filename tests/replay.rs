//! Replay: the committed histories in `tests/replay/` (every workflow type and the change's main
//! paths) replay cleanly against the current workflow code, so a change that running executions
//! could not survive fails CI; an altered history is reported as nondeterministic; histories
//! exported by the Temporal CLI are read.
//!
//! `make replay-fixtures` records the fixtures again, on purpose (never as a side effect): it
//! runs `record_replay_fixtures`, which is ignored otherwise.

mod common;

use changeflow::changes;
use changeflow::replay::{self, Verdict};
use changeflow_simulators::FaultConfig;
use changeflow_workflows::{
    ApprovalDecision, ChangeStep, DecisionSource, OperationRequest, Verdict as Decision,
};
use common::{Harness, HarnessOptions, governed_change, ntp_change};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(120);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replay")
}

/// Replays on a `LocalSet` (the replay worker is not `Send`).
async fn replayed(
    history: temporalio_common::protos::temporal::api::history::v1::History,
) -> Verdict {
    tokio::task::LocalSet::new()
        .run_until(replay::replay(history))
        .await
        .expect("replay runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_recorded_history_replays_against_the_current_workflows() {
    let mut names: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/replay exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "fixtures missing: {names:?}");
    for path in names {
        let history = replay::decode(&std::fs::read(&path).unwrap()).unwrap();
        let verdict = replayed(history).await;
        assert!(
            matches!(verdict, Verdict::Deterministic { .. }),
            "{}: {verdict}",
            path.display()
        );
    }
}

/// Temporal's tools also show enum values in short form (`WorkflowExecutionStarted` for
/// `EVENT_TYPE_WORKFLOW_EXECUTION_STARTED`, `Normal` for `TASK_QUEUE_KIND_NORMAL`): the same
/// history either way.
#[test]
fn enum_values_in_short_form_read_as_the_same_history() {
    let path = fixtures().join("change-normal-approved.json");
    let canonical = std::fs::read_to_string(&path).unwrap();
    let short = canonical
        .replace(
            "\"EVENT_TYPE_WORKFLOW_EXECUTION_STARTED\"",
            "\"WorkflowExecutionStarted\"",
        )
        .replace(
            "\"EVENT_TYPE_ACTIVITY_TASK_SCHEDULED\"",
            "\"ActivityTaskScheduled\"",
        )
        .replace("\"TASK_QUEUE_KIND_NORMAL\"", "\"Normal\"");
    assert_ne!(short, canonical);
    assert_eq!(
        replay::decode(short.as_bytes()).unwrap(),
        replay::decode(canonical.as_bytes()).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_altered_history_is_reported_nondeterministic_with_its_event() {
    use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
    let bytes = std::fs::read(fixtures().join("change-standard-succeeded.json")).unwrap();
    let mut history = replay::decode(&bytes).unwrap();
    let mut altered = None;
    for event in &mut history.events {
        if let Some(Attributes::ActivityTaskScheduledEventAttributes(a)) = &mut event.attributes
            && let Some(kind) = a.activity_type.as_mut()
            && kind.name == "open_change_ticket"
        {
            kind.name = "open_change_ticket_renamed".into();
            altered = Some(event.event_id);
            break;
        }
    }
    let event = altered.expect("the fixture schedules open_change_ticket");
    // The command line says so too, and exits 1.
    let dir = common::TempDir::new("changeflow-replay");
    let file = dir.0.join("altered.json");
    std::fs::write(&file, replay::to_proto_json(&history).unwrap()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_changeflow"))
        .args(["replay", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "NONDETERMINISTIC at event {event} (EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)"
        )),
        "{stdout}"
    );
    let verdict = replayed(history).await;
    let Verdict::Nondeterministic { message, at, .. } = &verdict else {
        panic!("an altered history replayed cleanly: {verdict}");
    };
    assert!(message.contains("open_change_ticket"), "{message}");
    assert_eq!(
        at,
        &Some((event, "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED".to_string())),
        "{verdict}"
    );
    assert!(
        verdict
            .to_string()
            .contains(&format!("NONDETERMINISTIC at event {event} ")),
        "{verdict}"
    );
}

/// A history the SDK cannot read (a workflow task's completion turned into another start, as
/// one flipped byte in an evidence bundle's `history.pb` did) is refused as damaged before it
/// is replayed, on the command line and in the API: the SDK's replay worker panicked on it and
/// the replay waited forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_history_is_refused_instead_of_replayed_forever() {
    use temporalio_common::protos::temporal::api::enums::v1::EventType;
    let bytes = std::fs::read(fixtures().join("change-standard-succeeded.json")).unwrap();
    let mut history = replay::decode(&bytes).unwrap();
    let completed = history
        .events
        .iter_mut()
        .filter(|e| e.event_type == EventType::WorkflowTaskCompleted as i32)
        .nth(1)
        .expect("the fixture completes workflow tasks");
    completed.event_type = EventType::WorkflowTaskStarted as i32;
    let dir = common::TempDir::new("changeflow-replay");
    let file = dir.0.join("damaged.pb");
    std::fs::write(&file, prost::Message::encode_to_vec(&history)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_changeflow"))
        .args(["replay", "--file"])
        .arg(&file)
        .output()
        .unwrap();
    let said = common::said(&out);
    assert_ne!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains("the history is damaged: Invalid history!"),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    let refused = tokio::task::LocalSet::new()
        .run_until(replay::replay(history))
        .await
        .expect_err("a damaged history is refused");
    assert!(
        refused.to_string().starts_with("the history is damaged"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_replays_a_live_change_and_a_temporal_cli_export() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let id = h.start_change(ntp_change(&["sj-access-01"])).await;
    tokio::time::timeout(LONG, changes::result(&h.client, &id))
        .await
        .unwrap()
        .expect("change completes");

    let changeflow = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_changeflow"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let address = h.temporal.address();
    let exported = h.dir.0.join("exported.json");
    let (code, stdout, stderr) = changeflow(&[
        "replay",
        &id,
        "--temporal-address",
        &address,
        "--export",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("events, deterministic"), "{stdout}");

    // The Temporal CLI's own export (proto-JSON), and ours, replay from the file.
    let temporal = changeflow_devstack::binaries::locate("temporal", "CHANGEFLOW_TEMPORAL_BIN");
    let out = Command::new(temporal)
        .args([
            "workflow",
            "show",
            "--output",
            "json",
            "--address",
            &address,
        ])
        .args(["--workflow-id", &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli_export = h.dir.0.join("temporal-cli.json");
    std::fs::write(&cli_export, &out.stdout).unwrap();

    // The Web UI's download: `{"events": [...]}` of what the UI's own API returns, as is
    // ("encoded") or with every payload decoded (metadata as text, data as JSON), and the
    // UI API's answer itself.
    let ui_api = reqwest::get(format!(
        "{}/api/v1/namespaces/default/workflows/{id}/history",
        h.temporal.ui_url()
    ))
    .await
    .unwrap()
    .json::<serde_json::Value>()
    .await
    .unwrap();
    let events = ui_api["history"]["events"].clone();
    assert!(events.as_array().is_some_and(|e| e.len() > 10), "{ui_api}");
    let mut decoded = events.clone();
    decode_payloads(&mut decoded);
    assert!(
        decoded.to_string().contains("\"encoding\":\"json/plain\""),
        "the decoded download has readable payloads"
    );
    let mut web_ui = Vec::new();
    for (name, content) in [
        (
            "web-ui-encoded.json",
            serde_json::json!({ "events": events }),
        ),
        (
            "web-ui-decoded.json",
            serde_json::json!({ "events": decoded }),
        ),
        ("web-ui-api.json", ui_api.clone()),
        ("web-ui-bare.json", events.clone()),
    ] {
        let path = h.dir.0.join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(&content).unwrap()).unwrap();
        web_ui.push(path);
    }
    for file in web_ui.iter().chain([&cli_export, &exported]) {
        let (code, stdout, stderr) = changeflow(&["replay", "--file", file.to_str().unwrap()]);
        assert_eq!(code, Some(0), "{}: {stdout}{stderr}", file.display());
        assert!(stdout.contains("deterministic"), "{stdout}");
    }

    // A quick operation is one workflow task and a local activity marker, no scheduled
    // activity and no patch (its input is `lean`), and replays.
    let operation = serde_json::from_value(serde_json::json!({
        "operation": "list_devices", "arguments": {"hostname": "sj-access-01"}
    }))
    .unwrap();
    let read = format!("read-lean-{}", uuid::Uuid::new_v4().simple());
    changes::run_operation(
        &h.client,
        &h.task_queue,
        &read,
        OperationRequest::new(operation, "alice"),
    )
    .await
    .unwrap();
    let history = changes::fetch_history(&h.client, &read).await.unwrap();
    use temporalio_common::protos::temporal::api::enums::v1::EventType;
    let count = |kind: EventType| {
        history
            .events
            .iter()
            .filter(|e| e.event_type == kind as i32)
            .count()
    };
    assert_eq!(count(EventType::ActivityTaskScheduled), 0, "{history:?}");
    assert_eq!(count(EventType::WorkflowTaskCompleted), 1, "{history:?}");
    assert_eq!(count(EventType::MarkerRecorded), 1, "the result alone");
    assert_eq!(
        count(EventType::UpsertWorkflowSearchAttributes),
        0,
        "no TemporalChangeVersion written for a read"
    );
    // Started, one workflow task (3), the result marker, completed: 6, against 8 with the
    // patch marker and its search attribute and 11 with an activity.
    assert_eq!(history.events.len(), 6, "{history:?}");
    let verdict = replayed(history).await;
    assert!(
        matches!(verdict, Verdict::Deterministic { .. }),
        "{verdict}"
    );

    // Not a history: a clear error, not a verdict.
    let junk = h.dir.0.join("junk.json");
    std::fs::write(&junk, b"{\"events\": 3}").unwrap();
    let (code, _, stderr) = changeflow(&["replay", "--file", junk.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("reading a history from"), "{stderr}");
}

/// What the Web UI's "decoded" download does to each payload: metadata values from base64 to
/// text, data from base64 to the JSON it holds.
fn decode_payloads(value: &mut serde_json::Value) {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    match value {
        serde_json::Value::Object(fields)
            if fields.contains_key("metadata") && fields.contains_key("data") =>
        {
            if let Some(metadata) = fields["metadata"].as_object_mut() {
                for v in metadata.values_mut() {
                    let bytes = base64.decode(v.as_str().unwrap()).unwrap();
                    *v = serde_json::Value::String(String::from_utf8(bytes).unwrap());
                }
            }
            let data = base64.decode(fields["data"].as_str().unwrap()).unwrap();
            fields.insert("data".into(), serde_json::from_slice(&data).unwrap());
        }
        serde_json::Value::Object(fields) => fields.values_mut().for_each(decode_payloads),
        serde_json::Value::Array(items) => items.iter_mut().for_each(decode_payloads),
        _ => {}
    }
}

/// Records the fixtures: `make replay-fixtures`. Each scenario runs against a real Temporal
/// server, the simulators and a worker, and its history is written as proto-JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "records tests/replay/*.json on purpose: make replay-fixtures"]
async fn record_replay_fixtures() {
    let write = |name: &str, history| {
        let path = fixtures().join(format!("{name}.json"));
        std::fs::write(&path, replay::to_proto_json(&history).unwrap()).unwrap();
        eprintln!("wrote {}", path.display());
    };
    std::fs::create_dir_all(fixtures()).unwrap();

    // A standard change that succeeds; its device lock; a read.
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let id = h.start_change(ntp_change(&["sj-access-01"])).await;
    changes::result(&h.client, &id).await.unwrap();
    write(
        "change-standard-succeeded",
        changes::fetch_history(&h.client, &id).await.unwrap(),
    );
    write(
        "device-lock",
        changes::fetch_history(&h.client, "device-lock-sj-access-01")
            .await
            .unwrap(),
    );
    let read = "read-replay-fixture";
    let operation = serde_json::from_value(serde_json::json!({
        "operation": "list_devices", "arguments": {"hostname": "sj-access-01"}
    }))
    .unwrap();
    changes::run_operation(
        &h.client,
        &h.task_queue,
        read,
        OperationRequest::new(operation, "alice"),
    )
    .await
    .unwrap();
    // `operation-list-devices.json` was recorded before quick operations became local
    // activities (patch `local-operation`), `...-local.json` before they became `lean`; both
    // are kept, so that such histories keep replaying.
    write(
        "operation-list-devices-lean",
        changes::fetch_history(&h.client, read).await.unwrap(),
    );

    // A normal change approved through the update, and one rejected.
    for (name, verdict) in [
        ("change-normal-approved", Decision::Approved),
        ("change-normal-rejected", Decision::Rejected),
    ] {
        let id = h
            .start_change(governed_change(
                &["sj-access-02"],
                serde_json::json!({"change_type": "normal"}),
            ))
            .await;
        h.wait_for_progress(&id, LONG, |p| {
            p.step == ChangeStep::AwaitingApproval && !p.approvers.is_empty()
        })
        .await;
        changes::decide(
            &h.client,
            &id,
            ApprovalDecision {
                approver: "carol".into(),
                verdict,
                comment: "recorded for replay".into(),
                source: DecisionSource::Changeflow,
            },
        )
        .await
        .unwrap();
        changes::result(&h.client, &id).await.unwrap();
        write(name, changes::fetch_history(&h.client, &id).await.unwrap());
    }

    // Canceled during its deployment (and backed out).
    let slow = Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(6),
        ..Default::default()
    })
    .await;
    let _slow_worker = slow.spawn_worker();
    let id = slow.start_change(ntp_change(&["sj-core-02"])).await;
    slow.wait_for_progress(&id, LONG, |p| {
        p.step == ChangeStep::Deploying && p.task_id.is_some()
    })
    .await;
    changes::cancel(&slow.client, &id, "recorded for replay")
        .await
        .unwrap();
    let _ = changes::result(&slow.client, &id).await;
    write(
        "change-canceled-backed-out",
        changes::fetch_history(&slow.client, &id).await.unwrap(),
    );

    // Failed and backed out; failed and its back-out failed.
    for (name, faults) in [
        (
            "change-unhealthy-backed-out",
            FaultConfig {
                unhealthy_device: Some("sj-access-01".into()),
                ..Default::default()
            },
        ),
        (
            "change-backout-failed",
            FaultConfig {
                unreachable_after_change: Some("sj-access-01".into()),
                ..Default::default()
            },
        ),
    ] {
        let h = Harness::start(HarnessOptions {
            faults,
            ..Default::default()
        })
        .await;
        let _worker = h.spawn_worker();
        let id = h
            .start_change(ntp_change(&["sj-access-01", "lon-access-01"]))
            .await;
        changes::result(&h.client, &id).await.unwrap();
        write(name, changes::fetch_history(&h.client, &id).await.unwrap());
    }
}

/// Every closed change and write is archived into the audit store (reads are not, by default),
/// each with an audit record; after Temporal loses its data, `changeflow replay` replays the
/// change from the archive and the audit chain still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_outlives_temporal_data_loss() {
    let dir = common::TempDir::new("changeflow-archive");
    let data = dir.0.join("changeflow");
    let mut dev = common::DevProcess::start(data.clone(), &[], &dir.0.join("dev.log")).await;
    let mut client = dev.client("alice").await;
    let deployed = client
        .call_tool(
            "deploy_template",
            serde_json::json!({
                "template_id": changeflow_simulators::seed::id("template", "NTP Servers"),
                "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"},
                "devices": ["sj-access-01"],
                "change_type": "standard",
            }),
            |_, _| {},
        )
        .await
        .unwrap();
    let change = deployed["structuredContent"]["change_id"]
        .as_str()
        .unwrap()
        .to_string();
    client
        .call_tool(
            "list_devices",
            serde_json::json!({"hostname": "sj-access-01"}),
            |_, _| {},
        )
        .await
        .unwrap();

    let audit = changeflow_engine::audit::AuditStore::open_in(&data)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let archived = loop {
        if let Some(archived) = audit.archived(&change).await.unwrap() {
            break archived;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the change was never archived"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(archived.workflow_type, "TemplateDeployment");
    assert_eq!(archived.status, "completed");
    let records = audit
        .list(&changeflow_engine::audit::AuditFilter {
            tool: Some("archive_history".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let record = records
        .iter()
        .find(|r| r.entry.workflow_id == change)
        .expect("an audit record of the archive");
    assert_eq!(record.entry.arguments_hash, archived.sha256);
    assert!(
        records
            .iter()
            .all(|r| !r.entry.workflow_id.starts_with("read-")),
        "reads are not archived by default: {records:?}"
    );
    drop(audit);
    // The server takes the archiver's visibility query, which lists the change and leaves the
    // read out (a pass would otherwise list every read ever made, again and again).
    let temporal = changeflow_engine::temporal::connect(
        dev.endpoints["temporal"].as_str().unwrap(),
        "default",
        "changeflow-test",
    )
    .await
    .unwrap();
    let ids = |query: String| {
        use futures::StreamExt;
        temporal
            .list_workflows(query, Default::default())
            .map(|w| w.unwrap().id().to_string())
            .collect::<Vec<String>>()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ids("ExecutionStatus != 'Running'".into())
        .await
        .iter()
        .any(|id| id.starts_with("read-"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the read never showed as closed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let policy = changeflow_mcp_frontend::archive::ArchivePolicy { reads: false };
    let listed = ids(changeflow_mcp_frontend::archive::listing_query(policy, None).unwrap()).await;
    assert!(listed.contains(&change), "{listed:?}");
    assert!(
        listed.iter().all(|id| !id.starts_with("read-")),
        "{listed:?}"
    );
    drop(temporal);

    // Temporal loses everything: the replay comes from the archive.
    dev.stop();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("temporal.db"))
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_changeflow"))
        .args(["replay", &change, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("deterministic"), "{stdout}");
    assert!(stderr.contains("replaying the archived copy"), "{stderr}");
    let verify = Command::new(env!("CARGO_BIN_EXE_changeflow"))
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );

    // A fresh stack on the same data directory (a new, empty Temporal; fresh simulators):
    // the change's evidence still comes out of the archive, signed, and verifies.
    let _ = std::fs::remove_file(data.join("endpoints.json"));
    let _dev = common::DevProcess::start(data.clone(), &[], &dir.0.join("dev-again.log")).await;
    let changeflow = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_changeflow"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap();
        let said = common::said(&out);
        assert!(out.status.success(), "{args:?}: {said}");
        said
    };
    let bundle = dir.0.join("after-loss.tar.gz");
    let key = dir.0.join("key.pem");
    let exported = changeflow(&["evidence", &change, "--output", bundle.to_str().unwrap()]);
    assert!(
        exported.contains("not included: ServiceNow ticket"),
        "the simulators forgot the ticket, and the bundle says so: {exported}"
    );
    changeflow(&["evidence", "public-key", "--output", key.to_str().unwrap()]);
    let verified = changeflow(&[
        "evidence",
        "verify",
        bundle.to_str().unwrap(),
        "--public-key",
        key.to_str().unwrap(),
    ]);
    assert!(
        verified.contains("the history matches its archive") && verified.contains("deterministic"),
        "{verified}"
    );
}
