//! Device verification and automatic back-out, end to end: a real Temporal dev server, the
//! simulators over HTTPS (Command Runner and device state), and `changeflow worker` processes.

mod common;

use changeflow::changes;
use changeflow_simulators::FaultConfig;
use changeflow_workflows::{ChangeOutcome, ChangeResult, ChangeStep, CheckPhase};
use common::{Harness, HarnessOptions, WorkerProcess, ntp_change};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(180);
const NTP_LINES: [&str; 3] = [
    "ntp server 10.255.0.1 prefer",
    "ntp server 10.255.0.2",
    "clock timezone UTC 0",
];

async fn harness(faults: FaultConfig) -> Harness {
    Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(2),
        faults,
    })
    .await
}

/// A harness with these faults and a worker, and the NTP change to `devices` run to its end:
/// the harness, the worker, the change id and its result.
async fn change(
    faults: FaultConfig,
    devices: &[&str],
) -> (Harness, WorkerProcess, String, ChangeResult) {
    let h = harness(faults).await;
    let worker = h.spawn_worker();
    let id = h.start_change(ntp_change(devices)).await;
    let result = finished(&h, &id).await;
    (h, worker, id, result)
}

async fn finished(h: &Harness, id: &str) -> ChangeResult {
    tokio::time::timeout(LONG, changes::result(&h.client, id))
        .await
        .expect("the change ends in time")
        .expect("the change completes")
}

fn config(h: &Harness, device: &str) -> Vec<String> {
    h.sims.catalyst.running_config(device).expect("a device")
}

fn carries_change(h: &Harness, device: &str) -> bool {
    let config = config(h, device);
    NTP_LINES.iter().any(|l| config.iter().any(|c| c == l))
}

fn checks_of(result: &ChangeResult, phase: CheckPhase) -> Vec<(String, bool)> {
    result
        .verified
        .checks
        .iter()
        .filter(|c| c.phase == phase)
        .map(|c| (c.device.clone(), c.passed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_change_proves_its_lines_reached_the_running_config() {
    let h = harness(FaultConfig::default()).await;
    let _worker = h.spawn_worker();
    let id = h
        .start_change(ntp_change(&["sj-access-01", "lon-access-01"]))
        .await;
    let result = finished(&h, &id).await;
    assert_eq!(result.outcome, ChangeOutcome::Succeeded, "{result:?}");
    let both = vec![
        ("lon-access-01".to_string(), true),
        ("sj-access-01".to_string(), true),
    ];
    let sorted = |mut v: Vec<(String, bool)>| {
        v.sort();
        v
    };
    assert_eq!(sorted(checks_of(&result, CheckPhase::PreChange)), both);
    assert_eq!(sorted(checks_of(&result, CheckPhase::PostChange)), both);
    for device in ["sj-access-01", "lon-access-01"] {
        let config = config(&h, device);
        for line in NTP_LINES {
            assert!(config.iter().any(|c| c == line), "{line} in {config:?}");
        }
    }
    // The pre- and post-change snapshots are different evidence, each stored once.
    let pre = &result.verified.checks[0].snapshot;
    let post = result
        .verified
        .checks
        .iter()
        .find(|c| c.phase == CheckPhase::PostChange && c.device == result.verified.checks[0].device)
        .unwrap();
    assert_ne!(pre, &post.snapshot);
    let stored = std::fs::read_dir(h.snapshot_dir()).unwrap().count();
    assert_eq!(stored, 4, "one snapshot per device and phase");
    assert!(result.verified.backout.is_none());
    assert_eq!(h.sims.stats.deploy_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_device_backs_the_change_out_and_the_ticket_says_so() {
    let (h, _worker, id, result) = change(
        FaultConfig {
            unhealthy_device: Some("sj-access-02".into()),
            ..Default::default()
        },
        &["sj-access-01", "sj-access-02"],
    )
    .await;
    assert_eq!(result.outcome, ChangeOutcome::Failed, "{result:?}");
    let reason = result.failure_reason.clone().unwrap();
    assert!(
        reason
            .starts_with("backed out: post-change check failed: sj-access-02: interfaces_not_down"),
        "{reason}"
    );
    let post = result
        .verified
        .checks
        .iter()
        .find(|c| c.phase == CheckPhase::PostChange && c.device == "sj-access-02")
        .unwrap();
    assert!(!post.passed);
    assert_eq!(post.failures[0].rule, "interfaces_not_down");
    assert!(
        post.failures[0].lines[0].starts_with("Gi1/0/2")
            && post.failures[0].lines[0].contains("notconnect"),
        "the failing interface's line: {:?}",
        post.failures[0].lines
    );
    // Both devices carried the change, so both were backed out and checked again.
    let backout = result.verified.backout.clone().expect("a back-out");
    let mut undone: Vec<&str> = backout.devices.iter().map(|d| d.device.as_str()).collect();
    undone.sort();
    assert_eq!(undone, ["sj-access-01", "sj-access-02"]);
    assert!(backout.devices.iter().all(|d| d.succeeded()), "{backout:?}");
    let mut again = checks_of(&result, CheckPhase::PostBackout);
    again.sort();
    assert_eq!(
        again,
        [
            ("sj-access-01".to_string(), true),
            ("sj-access-02".to_string(), true)
        ]
    );
    for device in ["sj-access-01", "sj-access-02"] {
        assert!(!carries_change(&h, device), "{:?}", config(&h, device));
    }
    let ticket = h.ticket(&result.ticket_number);
    assert_eq!(ticket.get("close_code"), "unsuccessful");
    let notes = ticket.get("close_notes");
    assert!(
        notes.starts_with("Backed out: post-change check failed"),
        "{notes}"
    );
    assert!(
        notes.contains("sj-access-02: backed out, checks passed"),
        "{notes}"
    );
    let progress = changes::progress(&h.client, &id).await.unwrap();
    assert_eq!(progress.step, ChangeStep::Failed);

    // get_change_history shows the checks with their verdicts and the back-out as steps.
    let timeline = changes::history(&h.client, &id).await.unwrap();
    let details: Vec<String> = timeline
        .iter()
        .filter_map(|e| {
            e.detail
                .as_ref()
                .map(|d| format!("{} {}: {d}", e.event, e.step.as_deref().unwrap_or("")))
        })
        .collect();
    let has = |wanted: &str| details.iter().any(|d| d.contains(wanted));
    assert!(
        has("step scheduled check_devices: pre_change check"),
        "{details:#?}"
    );
    assert!(
        has("step completed check_devices: post_change: ")
            && has("sj-access-02 failed interfaces_not_down"),
        "{details:#?}"
    );
    assert!(
        has("step scheduled submit_deployment: submit back-out"),
        "{details:#?}"
    );
    assert!(
        has("step completed check_devices: post_backout: "),
        "{details:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_deployment_failure_backs_out_only_the_devices_that_changed() {
    let (h, _worker, _, result) = change(
        FaultConfig {
            failing_device: Some("sj-access-02".into()),
            ..Default::default()
        },
        &["sj-access-01", "sj-access-02", "lon-access-01"],
    )
    .await;
    assert_eq!(result.outcome, ChangeOutcome::Failed, "{result:?}");
    let backout = result.verified.backout.clone().expect("a back-out");
    let mut undone: Vec<&str> = backout.devices.iter().map(|d| d.device.as_str()).collect();
    undone.sort();
    assert_eq!(
        undone,
        ["lon-access-01", "sj-access-01"],
        "never the failed device"
    );
    assert_eq!(h.sims.catalyst.deployments_of("NTP Servers Removal"), 1);
    for device in ["sj-access-01", "sj-access-02", "lon-access-01"] {
        assert!(!carries_change(&h, device), "{:?}", config(&h, device));
    }
    assert!(
        checks_of(&result, CheckPhase::PostChange).is_empty(),
        "a failed deployment is not post-checked; its back-out is"
    );
    let ticket = h.ticket(&result.ticket_number);
    let notes = ticket.get("close_notes");
    assert!(
        notes.contains("sj-access-02: not changed, left alone"),
        "{notes}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_back_out_ends_backout_failed_and_names_the_devices() {
    let (h, _worker, id, result) = change(
        FaultConfig {
            unreachable_after_change: Some("sj-access-01".into()),
            ..Default::default()
        },
        &["sj-access-01", "lon-access-01"],
    )
    .await;
    assert_eq!(result.outcome, ChangeOutcome::BackoutFailed, "{result:?}");
    assert_eq!(result.verified.needs_attention, ["sj-access-01"]);
    assert!(
        result
            .failure_reason
            .as_deref()
            .unwrap()
            .starts_with("back-out failed on sj-access-01 (needs manual intervention)"),
        "{:?}",
        result.failure_reason
    );
    // The other device was restored; the unreachable one still carries the change.
    assert!(!carries_change(&h, "lon-access-01"));
    assert!(carries_change(&h, "sj-access-01"));
    let ticket = h.ticket(&result.ticket_number);
    assert_eq!(ticket.get("close_code"), "unsuccessful");
    let notes = ticket.get("close_notes");
    assert!(
        notes.starts_with("BACK-OUT FAILED - MANUAL INTERVENTION REQUIRED on sj-access-01."),
        "{notes}"
    );
    assert!(
        notes.contains("lon-access-01: backed out, checks passed"),
        "{notes}"
    );
    let progress = changes::progress(&h.client, &id).await.unwrap();
    assert_eq!(progress.step, ChangeStep::BackoutFailed);
    assert_eq!(progress.verified.needs_attention, ["sj-access-01"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_during_back_out_does_not_back_out_twice() {
    let h = Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(6),
        faults: FaultConfig {
            unhealthy_device: Some("sj-access-01".into()),
            ..Default::default()
        },
    })
    .await;
    let mut first = h.spawn_worker();
    let id = h.start_change(ntp_change(&["sj-access-01"])).await;
    h.wait_for_progress(&id, LONG, |p| {
        p.step == ChangeStep::BackingOut
            && p.verified
                .backout
                .as_ref()
                .is_some_and(|b| b.task_id.is_some())
    })
    .await;
    first.kill();
    let _second = h.spawn_worker();
    let result = finished(&h, &id).await;
    assert_eq!(result.outcome, ChangeOutcome::Failed, "{result:?}");
    assert_eq!(
        h.sims.catalyst.deployments_of("NTP Servers Removal"),
        1,
        "one back-out deployment, not two"
    );
    assert_eq!(h.sims.stats.deploy_requests(), 2);
    assert!(!carries_change(&h, "sj-access-01"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_failing_its_pre_check_stops_the_change_before_anything_is_deployed() {
    let (h, _worker, _, result) = change(
        FaultConfig {
            unreachable_device: Some("lon-access-01".into()),
            ..Default::default()
        },
        &["sj-access-01", "lon-access-01"],
    )
    .await;
    assert_eq!(result.outcome, ChangeOutcome::Failed, "{result:?}");
    let reason = result.failure_reason.clone().unwrap();
    assert!(
        reason
            .starts_with("pre-change check failed, nothing was deployed: lon-access-01: reachable"),
        "{reason}"
    );
    let pre = result
        .verified
        .checks
        .iter()
        .find(|c| c.device == "lon-access-01")
        .unwrap();
    assert!(
        pre.failures[0].lines[0].ends_with("Device is not reachable"),
        "{pre:?}"
    );
    assert_eq!(h.sims.stats.deploy_requests(), 0);
    assert!(!carries_change(&h, "sj-access-01"));
    let ticket = h.ticket(&result.ticket_number);
    assert_eq!(ticket.get("close_code"), "unsuccessful");
    assert!(ticket.get("close_notes").contains("nothing was deployed"));
}
