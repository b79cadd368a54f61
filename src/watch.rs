//! `changeflow watch`: a change's steps, device statuses, decisions, check verdicts and
//! back-out, live in a terminal (or as JSON lines), until it ends; without a change, the
//! running changes as a live list. Both long-poll Temporal's history (a request the server
//! holds until a new event arrives), so nothing spins while a change waits for a person.

use changeflow_mcp_frontend::changes;
use changeflow_mcp_frontend::results::ChangeSummary;
use changeflow_workflows::{ChangeProgress, TemplateDeployment};
use futures::{FutureExt, StreamExt};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use temporalio_client::{Client, WorkflowFetchHistoryOptions};

/// Where the change's events go: a progress bar and lines for people, or JSON lines.
pub enum Output {
    Terminal,
    Json,
}

/// What changed between two looks at a change's progress, as events in order.
pub fn events(
    change_id: &str,
    before: Option<&ChangeProgress>,
    now: &ChangeProgress,
) -> Vec<Value> {
    let mut out = Vec::new();
    if before.is_none_or(|b| b.step != now.step) {
        out.push(
            json!({"event": "step", "change_id": change_id, "step": now.step.as_str(),
            "percent": now.percent, "message": now.message,
            "ticket_number": now.ticket_number}),
        );
    }
    let known = |d: &changeflow_workflows::DeviceStatus,
                 list: &[changeflow_workflows::DeviceStatus]| {
        list.iter().any(|k| k == d)
    };
    for device in &now.devices {
        if before.is_none_or(|b| !known(device, &b.devices)) && device.status != "PENDING" {
            out.push(
                json!({"event": "device", "change_id": change_id, "device": device.device,
                "status": device.status, "message": device.message}),
            );
        }
    }
    let seen = before.map_or(0, |b| b.decisions.len());
    for decision in now.decisions.iter().skip(seen) {
        out.push(
            json!({"event": "decision", "change_id": change_id, "approver": decision.approver,
            "verdict": decision.verdict, "comment": decision.comment, "at": decision.at}),
        );
    }
    let seen = before.map_or(0, |b| b.verified.checks.len());
    for check in now.verified.checks.iter().skip(seen) {
        out.push(json!({"event": "check", "change_id": change_id, "device": check.device,
            "phase": check.phase.as_str(), "passed": check.passed,
            "failures": check.failures.iter().map(|f| format!("{} ({})", f.rule, f.detail)).collect::<Vec<_>>()}));
    }
    if let Some(backout) = &now.verified.backout
        && before.is_none_or(|b| b.verified.backout.is_none())
    {
        out.push(
            json!({"event": "backout", "change_id": change_id, "reason": backout.reason,
            "devices": backout.devices.iter().map(|d| d.device.clone()).collect::<Vec<_>>()}),
        );
    }
    if !now.verified.needs_attention.is_empty()
        && before.is_none_or(|b| b.verified.needs_attention.is_empty())
    {
        out.push(json!({"event": "needs_attention", "change_id": change_id,
            "devices": now.verified.needs_attention}));
    }
    out
}

/// One change until it ends. Returns whether it completed successfully.
pub async fn one(
    client: &Client,
    change_id: &str,
    output: Output,
    web_ui: Option<String>,
) -> anyhow::Result<bool> {
    let bar = match output {
        Output::Json => None,
        Output::Terminal => {
            let bar = ProgressBar::new(100).with_style(
                ProgressStyle::with_template("{spinner} [{bar:30}] {pos:>3}% {msg}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar.println(format!("Watching change {change_id}"));
            if let Some(ui) = &web_ui {
                bar.println(format!("Temporal Web UI: {ui}"));
            }
            Some(bar)
        }
    };
    let emit = |event: &Value| match &bar {
        None => println!("{event}"),
        Some(bar) => bar.println(describe(event)),
    };
    let mut last: Option<ChangeProgress> = None;
    let look = async |last: &mut Option<ChangeProgress>| {
        if let Some(now) = changes::progress(client, change_id).await {
            for event in events(change_id, last.as_ref(), &now) {
                emit(&event);
            }
            if let Some(bar) = &bar {
                bar.set_position(u64::from(now.percent));
                bar.set_message(format!("{}: {}", now.step.as_str(), now.message));
            }
            *last = Some(now);
        }
    };
    look(&mut last).await;
    // The history, long-polled: each new event is a reason to look again.
    let handle = client.get_workflow_handle::<TemplateDeployment>(change_id);
    let mut history = handle.fetch_history(
        WorkflowFetchHistoryOptions::builder()
            .wait_new_event(true)
            .build(),
    );
    while let Some(event) = history.next().await {
        event.map_err(|e| anyhow::anyhow!("following {change_id}: {e}"))?;
        look(&mut last).await;
    }
    look(&mut last).await;
    let status = changes::status(client, change_id).await?;
    let outcome = changes::result(client, change_id)
        .await
        .ok()
        .map(|r| r.outcome.as_str());
    let end = json!({"event": "end", "change_id": change_id, "status": status,
        "outcome": outcome, "step": last.as_ref().map(|p| p.step.as_str())});
    match &bar {
        None => println!("{end}"),
        Some(bar) => bar.finish_with_message(describe(&end)),
    }
    Ok(outcome == Some("succeeded"))
}

/// An event as a line for people.
fn describe(event: &Value) -> String {
    let text = |k: &str| event[k].as_str().unwrap_or_default().to_string();
    match event["event"].as_str().unwrap_or_default() {
        "step" => format!("→ {}: {}", text("step"), text("message")),
        "device" => format!(
            "  {} {} {}",
            text("device"),
            text("status"),
            text("message")
        ),
        "decision" => format!(
            "  {} by {}: {}",
            text("verdict"),
            text("approver"),
            text("comment")
        ),
        "check" => format!(
            "  {} check {}: {}{}",
            text("phase"),
            text("device"),
            if event["passed"] == true {
                "passed"
            } else {
                "FAILED "
            },
            event["failures"]
                .as_array()
                .map(|f| f
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default()
        ),
        "backout" => format!("  backing out: {}", text("reason")),
        "needs_attention" => format!("  NEEDS HANDS: {}", event["devices"]),
        "end" => format!(
            "ended {} ({})",
            text("status"),
            event["outcome"].as_str().unwrap_or("no result")
        ),
        _ => event.to_string(),
    }
}

/// The running changes as a live list, until interrupted: refreshed when any of them records a
/// new event (each followed by a long poll) and at least every `rediscover` for new ones.
pub async fn all(client: &Client, output: Output, rediscover: Duration) -> anyhow::Result<()> {
    let multi = MultiProgress::new();
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let mut shown: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut followed = std::collections::BTreeSet::new();
    let mut polls = futures::stream::SelectAll::new();
    loop {
        let running = running_changes(client).await?;
        for change in &running {
            let step = changes::progress(client, &change.change_id)
                .await
                .map(|p| format!("{}: {}", p.step.as_str(), p.message));
            if shown.get(&change.change_id) == Some(&step) {
                continue;
            }
            shown.insert(change.change_id.clone(), step.clone());
            match output {
                Output::Json => println!(
                    "{}",
                    json!({"event": "change", "change_id": change.change_id,
                        "step": step, "ticket_number": change.ticket_number,
                        "requested_by": change.requested_by, "devices": change.devices})
                ),
                Output::Terminal => {
                    let bar = bars.entry(change.change_id.clone()).or_insert_with(|| {
                        multi.add(
                            ProgressBar::new_spinner().with_style(
                                ProgressStyle::with_template("{spinner} {prefix} {msg}")
                                    .expect("template"),
                            ),
                        )
                    });
                    bar.set_prefix(format!(
                        "{} {} {}",
                        change.ticket_number.as_deref().unwrap_or("(no ticket)"),
                        change.requested_by.as_deref().unwrap_or("-"),
                        change.devices.join(",")
                    ));
                    bar.set_message(step.unwrap_or_default());
                    bar.tick();
                }
            }
        }
        // Changes that ended leave the list.
        let ended: Vec<String> = shown
            .keys()
            .filter(|id| !running.iter().any(|c| &c.change_id == *id))
            .cloned()
            .collect();
        for id in ended {
            shown.remove(&id);
            match output {
                Output::Json => println!("{}", json!({"event": "ended", "change_id": id})),
                Output::Terminal => {
                    if let Some(bar) = bars.remove(&id) {
                        bar.finish_and_clear();
                        multi.remove(&bar);
                    }
                }
            }
        }
        // Wait for the next event of any running change (each followed by a long poll that
        // first reads what is there, then waits), or the rediscovery interval for new ones.
        for change in &running {
            if followed.insert(change.change_id.clone()) {
                polls.push(
                    client
                        .get_workflow_handle::<TemplateDeployment>(&change.change_id)
                        .fetch_history(
                            WorkflowFetchHistoryOptions::builder()
                                .wait_new_event(true)
                                .build(),
                        ),
                );
            }
        }
        tokio::select! {
            _ = polls.next(), if !polls.is_empty() => {
                // A burst of events is one refresh.
                while let Some(Some(_)) = polls.next().now_or_never() {}
            }
            _ = tokio::time::sleep(rediscover) => {}
        }
    }
}

async fn running_changes(client: &Client) -> anyhow::Result<Vec<ChangeSummary>> {
    let filter: changes::ChangeFilter =
        serde_json::from_value(json!({"status": "running", "limit": 100}))?;
    changes::list(client, &filter)
        .await
        .map_err(|e| anyhow::anyhow!("listing running changes: {e}"))
}
