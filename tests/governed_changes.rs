//! Governed changes end to end: approvals (through the `decide` update and in ServiceNow
//! itself), rejections, approval timeouts, windows and emergencies, against a real Temporal dev
//! server, the simulators over HTTPS and `changeflow worker` processes.

mod common;

use changeflow::changes::{self, DecideError};
use changeflow_workflows::{
    ApprovalDecision, ChangeOutcome, ChangeProgress, ChangeResult, ChangeStep, DecisionReceipt,
    DecisionSource, DeploymentRequest, Verdict,
};
use common::{Harness, HarnessOptions, governed_change};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LONG: Duration = Duration::from_secs(120);

async fn decide(
    h: &Harness,
    id: &str,
    approver: &str,
    verdict: Verdict,
    comment: &str,
) -> Result<DecisionReceipt, DecideError> {
    let decision = ApprovalDecision {
        approver: approver.into(),
        verdict,
        comment: comment.into(),
        source: DecisionSource::Changeflow,
    };
    changes::decide(&h.client, id, decision).await
}

async fn result(h: &Harness, id: &str) -> ChangeResult {
    tokio::time::timeout(LONG, changes::result(&h.client, id))
        .await
        .expect("the change ends in time")
        .expect("the change has a result")
}

fn rfc3339_in(secs: u64) -> String {
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + secs;
    time::OffsetDateTime::from_unix_timestamp(at as i64)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Starts a change and waits until it reaches `step`: its id and that progress.
async fn start_until(
    h: &Harness,
    request: DeploymentRequest,
    step: ChangeStep,
) -> (String, ChangeProgress) {
    let id = h.start_change(request).await;
    let progress = h.wait_for_progress(&id, LONG, |p| p.step == step).await;
    (id, progress)
}

/// What `approvers` says carol decided, from the simulator's records of this change.
fn approval_records(h: &Harness, number: &str) -> Vec<changeflow_simulators::servicenow::Record> {
    let change = h.ticket(number).get("sys_id").to_string();
    h.sims
        .servicenow
        .approvals()
        .into_iter()
        .filter(|a| a.get("sysapproval") == change)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_change_waits_for_an_approver_and_only_an_approver_decides() {
    let h = Harness::start(HarnessOptions::default()).await;
    let mut worker = h.spawn_worker();
    let (id, waiting) = start_until(
        &h,
        governed_change(&["sj-access-01"], json!({})),
        ChangeStep::AwaitingApproval,
    )
    .await;
    assert_eq!(waiting.approvers, ["carol"]);
    assert!(waiting.waiting_since.is_some());
    assert!(
        waiting.message.contains("awaiting approval by carol"),
        "{}",
        waiting.message
    );
    let number = waiting.ticket_number.clone().unwrap();
    let ticket = h.ticket(&number);
    assert_eq!(ticket.get("state"), "-3", "the ticket waits in Authorize");
    assert_eq!(ticket.get("approval"), "requested");
    assert_eq!(approval_records(&h, &number).len(), 1);

    // The update validator refuses, whatever the policy said: the requester, a non-approver,
    // a rejection without a reason. Nothing of it enters the change.
    let own = decide(&h, &id, "alice", Verdict::Approved, "mine").await;
    assert!(
        matches!(&own, Err(DecideError::Refused(why)) if why.contains("alice requested this change")),
        "{own:?}"
    );
    let bob = decide(&h, &id, "bob", Verdict::Approved, "").await;
    assert!(
        matches!(&bob, Err(DecideError::Refused(why)) if why.contains("bob is not an approver")),
        "{bob:?}"
    );
    let silent = decide(&h, &id, "carol", Verdict::Rejected, " ").await;
    assert!(
        matches!(&silent, Err(DecideError::Refused(why)) if why.contains("comment")),
        "{silent:?}"
    );
    assert_eq!(h.sims.stats.deploy_requests(), 0);

    // The wait is durable: a new worker takes over and the decision still lands.
    worker.kill();
    let _worker = h.spawn_worker();
    let receipt = decide(&h, &id, "carol", Verdict::Approved, "ship it")
        .await
        .expect("carol's approval is accepted");
    assert_eq!(receipt.ticket_number.as_deref(), Some(number.as_str()));

    let result = result(&h, &id).await;
    assert_eq!(result.outcome, ChangeOutcome::Succeeded, "{result:?}");
    let ticket = h.ticket(&number);
    assert_eq!(ticket.get("state"), "3");
    assert_eq!(ticket.get("approval"), "approved");
    let records = approval_records(&h, &number);
    assert_eq!(records[0].get("state"), "approved");
    assert!(
        records[0]
            .journal
            .iter()
            .any(|j| j.value.contains("ship it") && j.value.contains("carol")),
        "carol's comment is on her approval record: {:?}",
        records[0].journal
    );
    let progress = changes::progress(&h.client, &id).await.unwrap();
    assert_eq!(progress.decisions.len(), 1);
    assert_eq!(progress.decisions[0].approver, "carol");
    assert_eq!(progress.decisions[0].source, DecisionSource::Changeflow);
    let late = decide(&h, &id, "carol", Verdict::Approved, "again").await;
    assert!(
        late.is_err(),
        "a finished change takes no decision: {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_cancels_the_ticket_with_the_comment_and_deploys_nothing() {
    let h = Harness::start(HarnessOptions::default()).await;
    let port = common::free_port();
    let listen = format!("127.0.0.1:{port}");
    let sdk_port = common::free_port();
    let sdk = format!("127.0.0.1:{sdk_port}");
    let _worker = h.spawn_worker_with_env(&[
        ("CHANGEFLOW_WORKER_HEALTH_LISTEN", &listen),
        ("CHANGEFLOW_WORKER_SDK_METRICS_LISTEN", &sdk),
    ]);
    let (id, _) = start_until(
        &h,
        governed_change(&["sj-access-01"], json!({})),
        ChangeStep::AwaitingApproval,
    )
    .await;
    decide(
        &h,
        &id,
        "carol",
        Verdict::Rejected,
        "no changes before the audit",
    )
    .await
    .expect("the rejection is accepted");

    let result = result(&h, &id).await;
    assert_eq!(result.outcome, ChangeOutcome::Rejected, "{result:?}");
    let reason = result.failure_reason.clone().unwrap();
    assert!(
        reason.contains("carol") && reason.contains("no changes before the audit"),
        "{reason}"
    );
    let ticket = h.ticket(&result.ticket_number);
    assert_eq!(ticket.get("state"), "4", "canceled");
    assert!(
        ticket
            .get("close_notes")
            .contains("no changes before the audit")
    );
    assert_eq!(ticket.get("approval"), "rejected");
    assert_eq!(h.sims.stats.deploy_requests(), 0, "nothing deployed");
    let progress = changes::progress(&h.client, &id).await.unwrap();
    assert_eq!(progress.step, ChangeStep::Rejected);

    // The worker counts the change by type and outcome, with its duration.
    let metrics = reqwest::get(format!("http://{listen}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"changeflow_changes_total{type="normal",outcome="rejected"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"changeflow_change_duration_seconds_count{type="normal"} 1"#),
        "{metrics}"
    );
    // And the Temporal SDK's own worker metrics are served on their address.
    let sdk_metrics = reqwest::get(format!("http://{sdk}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sdk_metrics.contains("temporal_activity_schedule_to_start_latency_seconds_bucket"),
        "{sdk_metrics}"
    );
}

/// Acts in ServiceNow as an approver would: pysnc, logged in as that person.
fn approve_in_servicenow(h: &Harness, number: &str, user: &str) {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    assert!(python.is_file(), "run `make tools` first");
    let script = r#"
import os
from pysnc import ServiceNowClient
client = ServiceNowClient(os.environ["URL"], (os.environ["USER_NAME"], os.environ["PASSWORD"]), verify=os.environ["CA"])
change = client.GlideRecord("change_request")
change.add_query("number", os.environ["NUMBER"])
change.query()
assert change.next(), "change found"
approval = client.GlideRecord("sysapproval_approver")
approval.add_query("sysapproval", change.get_value("sys_id"))
approval.add_query("state", "requested")
approval.query()
assert approval.next(), "an approval record awaits"
approval.state = "approved"
approval.comments = "approved in the ServiceNow UI"
approval.update()
print("approved")
"#;
    let output = Command::new(python)
        .args(["-c", script])
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .env("URL", &h.sims.servicenow_url)
        .env("USER_NAME", user)
        .env("PASSWORD", &h.sims.credentials.servicenow_people_password)
        .env("CA", h.sims.ca_file.as_ref().unwrap())
        .env("NUMBER", number)
        .output()
        .expect("run pysnc");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_made_in_servicenow_moves_the_change_on() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let (id, waiting) = start_until(
        &h,
        governed_change(&["sj-access-02"], json!({})),
        ChangeStep::AwaitingApproval,
    )
    .await;
    let number = waiting.ticket_number.unwrap();
    let (hn, n) = (&h, number.clone());
    tokio::task::block_in_place(|| approve_in_servicenow(hn, &n, "carol"));

    let result = result(&h, &id).await;
    assert_eq!(result.outcome, ChangeOutcome::Succeeded, "{result:?}");
    let progress = changes::progress(&h.client, &id).await.unwrap();
    assert_eq!(progress.decisions.len(), 1, "{:?}", progress.decisions);
    assert_eq!(progress.decisions[0].approver, "carol");
    assert_eq!(progress.decisions[0].source, DecisionSource::ServiceNow);
    assert_eq!(h.ticket(&number).get("state"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_decision_in_time_cancels_the_change() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let id = h
        .start_change(governed_change(
            &["sj-access-01"],
            json!({"approval_timeout": "3s"}),
        ))
        .await;
    let result = result(&h, &id).await;
    assert_eq!(result.outcome, ChangeOutcome::Canceled, "{result:?}");
    assert!(
        result
            .failure_reason
            .as_deref()
            .unwrap()
            .contains("no approval decision within 3s"),
        "{result:?}"
    );
    let ticket = h.ticket(&result.ticket_number);
    assert_eq!(ticket.get("state"), "4");
    assert_eq!(h.sims.stats.deploy_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_waits_for_its_window_and_one_that_misses_it_is_canceled() {
    let h = Harness::start(HarnessOptions::default()).await;
    let mut worker = h.spawn_worker();
    let start = rfc3339_in(8);
    let request = governed_change(
        &["sj-access-01"],
        json!({"change_type": "standard", "window_start": start, "window_end": rfc3339_in(600)}),
    );
    let (scheduled, waiting) = start_until(&h, request, ChangeStep::Scheduled).await;
    assert!(
        waiting.message.contains(&start),
        "says until when: {}",
        waiting.message
    );
    assert_eq!(waiting.window_start.as_deref(), Some(start.as_str()));
    let ticket = h.ticket(waiting.ticket_number.as_deref().unwrap());
    assert_eq!(ticket.get("state"), "-2", "Scheduled");
    assert!(
        !ticket.get("start_date").is_empty(),
        "the window is on the ticket"
    );
    assert_eq!(
        h.sims.stats.deploy_requests(),
        0,
        "nothing before the window"
    );

    // A worker restart while the timer runs loses nothing.
    worker.kill();
    let _worker = h.spawn_worker();
    let done = result(&h, &scheduled).await;
    assert_eq!(done.outcome, ChangeOutcome::Succeeded, "{done:?}");
    assert_eq!(h.sims.stats.deploy_requests(), 1);
    let opened =
        time::OffsetDateTime::parse(&start, &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert!(
        time::OffsetDateTime::now_utc() >= opened,
        "deployed in the window"
    );

    // Approved only after its window ended: canceled, nothing deployed.
    let (missed, _) = start_until(
        &h,
        governed_change(
            &["sj-access-02"],
            json!({"window_start": rfc3339_in(1), "window_end": rfc3339_in(4)}),
        ),
        ChangeStep::AwaitingApproval,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    decide(&h, &missed, "carol", Verdict::Approved, "late")
        .await
        .expect("accepted");
    let late = result(&h, &missed).await;
    assert_eq!(late.outcome, ChangeOutcome::Canceled, "{late:?}");
    assert!(
        late.failure_reason
            .as_deref()
            .unwrap()
            .contains("missed its window"),
        "{late:?}"
    );
    assert_eq!(h.ticket(&late.ticket_number).get("state"), "4");
    assert_eq!(
        h.sims.stats.deploy_requests(),
        1,
        "the late change deployed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_needs_one_emergency_approver_and_no_window() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let (id, waiting) = start_until(
        &h,
        governed_change(
            &["sj-core-01"],
            json!({
                "change_type": "emergency",
                "justification": "core link flapping, NTP drift breaks authentication",
                "window_start": rfc3339_in(3600),
                "window_end": rfc3339_in(7200),
            }),
        ),
        ChangeStep::AwaitingApproval,
    )
    .await;
    let mut approvers = waiting.approvers.clone();
    approvers.sort();
    assert_eq!(approvers, ["admin", "carol"], "the emergency approvers");
    let number = waiting.ticket_number.unwrap();
    let ticket = h.ticket(&number);
    assert_eq!(ticket.get("type"), "emergency");
    assert!(ticket.get("justification").contains("NTP drift"));
    decide(&h, &id, "admin", Verdict::Approved, "go")
        .await
        .expect("one emergency approver suffices");
    let done = result(&h, &id).await;
    assert_eq!(
        done.outcome,
        ChangeOutcome::Succeeded,
        "no window wait: {done:?}"
    );
    assert_eq!(h.ticket(&number).get("state"), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_waits_for_a_device_another_change_holds() {
    let h = Harness::start(HarnessOptions {
        deploy_duration: Duration::from_secs(6),
        ..Default::default()
    })
    .await;
    let mut worker = h.spawn_worker();
    let standard = || json!({"change_type": "standard"});
    let (first, deploying) = start_until(
        &h,
        governed_change(&["sj-access-01", "sj-access-02"], standard()),
        ChangeStep::Deploying,
    )
    .await;
    // The same devices in the other order: taken in name order, so no deadlock.
    let second = h
        .start_change(governed_change(
            &["sj-access-02", "sj-access-01"],
            standard(),
        ))
        .await;
    let waiting = h
        .wait_for_progress(&second, LONG, |p| {
            p.step == ChangeStep::WaitingForDevice && p.held_by.is_some()
        })
        .await;
    let holder = waiting.held_by.clone().unwrap();
    assert_eq!(holder.change_id, first);
    assert_eq!(holder.ticket_number, deploying.ticket_number);
    assert!(
        waiting.message.contains(&first)
            && waiting
                .message
                .contains(deploying.ticket_number.as_deref().unwrap()),
        "names the other change and its ticket: {}",
        waiting.message
    );
    assert_eq!(h.sims.stats.deploy_requests(), 1, "the second waits");

    // A worker restart while one change waits loses nothing.
    worker.kill();
    let _worker = h.spawn_worker();
    let (a, b) = tokio::join!(result(&h, &first), result(&h, &second));
    assert_eq!(a.outcome, ChangeOutcome::Succeeded, "{a:?}");
    assert_eq!(b.outcome, ChangeOutcome::Succeeded, "{b:?}");
    assert_eq!(h.sims.stats.deploy_requests(), 2);
    let timeline = changes::history(&h.client, &second).await.unwrap();
    let second_submitted = timeline
        .iter()
        .find(|e| e.event == "step completed" && e.step.as_deref() == Some("submit_deployment"))
        .map(|e| e.at.clone())
        .unwrap();
    let first_done = changes::history(&h.client, &first)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event == "step completed" && e.step.as_deref() == Some("await_deployment"))
        .map(|e| e.at)
        .next_back()
        .unwrap();
    assert!(
        second_submitted > first_done,
        "the second deployed only after the first finished ({second_submitted} > {first_done})"
    );
}
