//! Building a bundle: the history's facts, the audit records, the policy texts, the ticket,
//! the snapshots, the summary, the manifest and its signature.

use super::*;
use changeflow_workflows::github::{ResolvedSource, SyncedTemplate};

/// What the history says about the change.
#[derive(Default)]
struct Facts {
    workflow_type: String,
    run_id: String,
    started_at: String,
    closed_at: String,
    /// completed, failed, canceled, terminated, timed_out, continued_as_new, or running.
    status: String,
    input: Value,
    result: Value,
    failure: Option<String>,
    checks: Vec<DeviceCheck>,
    decisions: Vec<(String, RecordDecision)>,
}

fn first_json(
    payloads: Option<temporalio_common::protos::temporal::api::common::v1::Payloads>,
) -> Value {
    payloads
        .and_then(|p| p.payloads.into_iter().next())
        .and_then(|p| serde_json::from_slice(&p.data).ok())
        .unwrap_or(Value::Null)
}

fn facts_of(history: &History) -> Facts {
    let mut facts = Facts {
        status: "running".into(),
        ..Default::default()
    };
    let mut scheduled: BTreeMap<i64, String> = BTreeMap::new();
    for event in &history.events {
        let at = event
            .event_time
            .as_ref()
            .map(|t| crate::changes::rfc3339(t.seconds, t.nanos))
            .unwrap_or_default();
        let closed = |facts: &mut Facts, status: &str| {
            facts.status = status.to_string();
            facts.closed_at = at.clone();
        };
        match &event.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                facts.workflow_type = a
                    .workflow_type
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                facts.run_id = a.original_execution_run_id.clone();
                facts.started_at = at.clone();
                facts.input = first_json(a.input.clone());
            }
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                let name = a
                    .activity_type
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                if name == "record_decision"
                    && let Ok(decision) = serde_json::from_value(first_json(a.input.clone()))
                {
                    facts.decisions.push((at.clone(), decision));
                }
                scheduled.insert(event.event_id, name);
            }
            Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
                if scheduled.get(&a.scheduled_event_id).map(String::as_str) == Some("check_devices")
                    && let Ok(checks) =
                        serde_json::from_value::<Vec<DeviceCheck>>(first_json(a.result.clone()))
                {
                    facts.checks.extend(checks);
                }
            }
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(a)) => {
                facts.result = first_json(a.result.clone());
                closed(&mut facts, "completed");
            }
            Some(Attributes::WorkflowExecutionFailedEventAttributes(a)) => {
                facts.failure = a.failure.as_ref().map(|f| f.message.clone());
                closed(&mut facts, "failed");
            }
            Some(Attributes::WorkflowExecutionCanceledEventAttributes(_)) => {
                closed(&mut facts, "canceled")
            }
            Some(Attributes::WorkflowExecutionTerminatedEventAttributes(a)) => {
                facts.failure = Some(a.reason.clone());
                closed(&mut facts, "terminated");
            }
            Some(Attributes::WorkflowExecutionTimedOutEventAttributes(_)) => {
                closed(&mut facts, "timed_out")
            }
            Some(Attributes::WorkflowExecutionContinuedAsNewEventAttributes(_)) => {
                closed(&mut facts, "continued_as_new")
            }
            _ => {}
        }
    }
    facts
}

/// Builds the evidence bundle of a change. Audit the export *before* calling this: the bundle
/// then holds the record of its own export.
pub async fn collect(
    workflows: &dyn Workflows,
    audit: &AuditStore,
    sources: &EvidenceSources,
    id: &str,
    exported_by: &str,
) -> Result<Bundle, EvidenceError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| EvidenceError::Failed(format!("{what}: {e}"));
    let loaded = load_history(workflows, audit, id).await?;
    let history = History::decode(loaded.bytes.as_slice())
        .map_err(|e| failed("the history does not decode", &e))?;
    let facts = facts_of(&history);
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut omissions = Vec::new();

    // The history, as protobuf and proto-JSON, and its replay.
    files.insert(HISTORY_PB.into(), loaded.bytes.clone());
    let mut replay = None;
    match &sources.histories {
        Some(histories) => {
            match histories.to_proto_json(&loaded.bytes) {
                Ok(json) => {
                    files.insert(HISTORY_JSON.into(), json);
                }
                Err(e) => omissions.push(format!("history as proto-JSON: {e}")),
            }
            match histories.replay(loaded.bytes.clone()).await {
                Ok(verdict) => replay = Some(verdict),
                Err(e) => omissions.push(format!("replay verdict: {e}")),
            }
        }
        None => omissions
            .push("history as proto-JSON and replay verdict: this process cannot replay".into()),
    }
    files.insert("workflow/input.json".into(), pretty(&facts.input));
    let outcome = json!({
        "status": facts.status,
        "started_at": facts.started_at,
        "closed_at": facts.closed_at,
        "result": facts.result,
        "failure": facts.failure,
    });
    files.insert("workflow/outcome.json".into(), pretty(&outcome));

    // The audit records naming the change, and the chain from the first of them to the head.
    let mentions = audit
        .list(&AuditFilter {
            workflow_id: Some(id.to_string()),
            ..Default::default()
        })
        .await
        .map_err(|e| failed("reading the audit store", &e))?;
    let mut segment_info = None;
    let mut revisions = BTreeSet::new();
    if let Some(first) = mentions.first() {
        let segment = audit
            .segment(first.seq)
            .await
            .map_err(|e| failed("reading the audit chain", &e))?;
        let last = segment.last().cloned().unwrap_or_else(|| first.clone());
        files.insert(RECORDS.into(), json_lines(&mentions));
        files.insert(SEGMENT.into(), json_lines(&segment));
        files.insert(
            HEAD.into(),
            pretty(&json!({"seq": last.seq, "hash": last.hash, "recorded_at": last.recorded_at})),
        );
        segment_info = Some(AuditSegment {
            records: mentions.len(),
            first_seq: first.seq,
            last_seq: last.seq,
            head_hash: last.hash,
        });
        revisions.extend(
            mentions
                .iter()
                .map(|r| r.entry.policy_revision.clone())
                .filter(|r| !r.is_empty()),
        );
    } else {
        omissions.push("audit records: none names this change".into());
    }
    for revision in &revisions {
        match audit.policy_revision(revision).await {
            Ok(Some(sources)) => {
                for (name, text) in sources {
                    files.insert(format!("policy/{revision}/{name}"), text.into_bytes());
                }
            }
            Ok(None) => {
                omissions.push(format!("policy revision {revision}: its text was not kept"))
            }
            Err(e) => omissions.push(format!("policy revision {revision}: {e}")),
        }
    }

    // The ServiceNow ticket as it stands.
    let request: Option<DeploymentRequest> = serde_json::from_value(facts.input.clone()).ok();
    let result: Option<ChangeResult> = serde_json::from_value(facts.result.clone()).ok();
    let ticket_number = match &result {
        Some(r) if !r.ticket_number.is_empty() => Some(r.ticket_number.clone()),
        _ if request.is_some() && facts.status == "running" => {
            workflows.progress(id).await.and_then(|p| p.ticket_number)
        }
        _ => None,
    };
    // A template from Git: the commit, pull request and approvers the change resolved.
    let git = match request.as_ref().and_then(|r| r.change.source.as_ref()) {
        Some(_) => match workflows.progress(id).await {
            Some(progress) => progress.source.zip(progress.template_version),
            None => {
                omissions.push(
                    "the Git source's pull request and approvers: the change's progress could not be read"
                        .into(),
                );
                None
            }
        },
        None => None,
    };
    let mut ticket: Option<ChangeRequest> = None;
    match &ticket_number {
        Some(number) => {
            let operation = Operation::GetChangeRequest(GetChangeRequest {
                number: number.clone(),
                details: true,
            });
            match run(workflows, operation, exported_by, "read-evidence", id).await {
                Ok(value) => {
                    files.insert(TICKET.into(), pretty(&value));
                    ticket = serde_json::from_value(value).ok();
                }
                Err(e) => omissions.push(format!("ServiceNow ticket {number}: {e}")),
            }
        }
        None if request.is_some() => {
            omissions.push("ServiceNow ticket: the change never opened one".into())
        }
        None => {}
    }

    // Device checks: verdicts from history, snapshots from the snapshot store.
    if !facts.checks.is_empty() {
        files.insert(CHECKS.into(), pretty(&facts.checks));
    }
    let references: BTreeSet<&str> = facts.checks.iter().map(|c| c.snapshot.as_str()).collect();
    for reference in references {
        let Some(hex) = reference.strip_prefix("sha256:") else {
            continue;
        };
        let Some(dir) = &sources.snapshot_dir else {
            omissions.push(format!(
                "snapshot {reference}: this process has no snapshot directory (--snapshot-dir)"
            ));
            continue;
        };
        match std::fs::read(dir.join(format!("{hex}.json"))) {
            Ok(bytes) if sha256_hex(&bytes) == hex => {
                files.insert(format!("snapshots/{hex}.json"), bytes);
            }
            Ok(_) => omissions.push(format!(
                "snapshot {reference}: the stored file no longer matches its hash"
            )),
            Err(e) => omissions.push(format!(
                "snapshot {reference}: not in {} ({e})",
                dir.display()
            )),
        }
    }

    // Whether the manifest can be signed: the key must be readable first.
    let key = run(
        workflows,
        Operation::GetEvidenceKey(GetEvidenceKey { version: None }),
        exported_by,
        "read-evidence",
        id,
    )
    .await
    .and_then(|v| serde_json::from_value::<EvidenceKey>(v).map_err(|e| e.to_string()));
    let signing_key = match key {
        Ok(key) => Some(key.key),
        Err(e) => {
            omissions.push(format!("signature: {e}"));
            None
        }
    };

    let exported_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let summary = summary(&SummaryInput {
        id,
        facts: &facts,
        request: request.as_ref(),
        result: result.as_ref(),
        ticket: ticket.as_ref(),
        mentions: &mentions,
        replay: replay.as_ref(),
        omissions: &omissions,
        exported_at: &exported_at,
        exported_by,
        source: loaded.source,
        git: git.as_ref(),
    });
    files.insert(SUMMARY.into(), summary.into_bytes());

    let manifest = Manifest {
        format: FORMAT.into(),
        change_id: id.to_string(),
        workflow_type: facts.workflow_type.clone(),
        run_id: facts.run_id.clone(),
        exported_at,
        exported_by: exported_by.to_string(),
        history_source: loaded.source.into(),
        replay,
        audit: segment_info,
        policy_revisions: revisions.into_iter().collect(),
        signing_key: signing_key.clone(),
        omissions,
        files: file_entries(&files),
    };
    let manifest_bytes = pretty(&manifest);
    let manifest_sha256 = sha256_hex(&manifest_bytes);
    files.insert(MANIFEST.into(), manifest_bytes);
    if signing_key.is_some() {
        let signed = run(
            workflows,
            Operation::SignEvidence(SignEvidence {
                manifest_sha256: manifest_sha256.clone(),
            }),
            exported_by,
            "read-evidence",
            id,
        )
        .await
        .and_then(|v| serde_json::from_value::<EvidenceSignature>(v).map_err(|e| e.to_string()))
        .map_err(|e| EvidenceError::Failed(format!("signing the manifest: {e}")))?;
        let signature = Signature {
            algorithm: "ed25519".into(),
            signed: "sha256(manifest.json)".into(),
            manifest_sha256,
            key: signed.key,
            key_version: signed.key_version,
            signature: signed.signature,
        };
        files.insert(SIGNATURE.into(), pretty(&signature));
    }
    Ok(Bundle {
        change_id: id.to_string(),
        files,
    })
}

/// Runs an operation for the export (a workflow, like every call), as the exporter.
async fn run(
    workflows: &dyn Workflows,
    operation: Operation,
    exported_by: &str,
    prefix: &str,
    change_id: &str,
) -> Result<Value, String> {
    let workflow_id = crate::changes::fresh_id(prefix, &json!([change_id, exported_by]));
    workflows
        .run_operation(&workflow_id, OperationRequest::new(operation, exported_by))
        .await
        .map_err(|failure| match failure {
            crate::changes::OperationFailure::NotFound(m)
            | crate::changes::OperationFailure::Invalid(m)
            | crate::changes::OperationFailure::Conflict(m)
            | crate::changes::OperationFailure::Failed(m) => m,
        })
}

struct SummaryInput<'a> {
    id: &'a str,
    facts: &'a Facts,
    request: Option<&'a DeploymentRequest>,
    result: Option<&'a ChangeResult>,
    ticket: Option<&'a ChangeRequest>,
    mentions: &'a [AuditRecord],
    replay: Option<&'a ReplayVerdict>,
    omissions: &'a [String],
    exported_at: &'a str,
    exported_by: &'a str,
    source: &'a str,
    git: Option<&'a (ResolvedSource, SyncedTemplate)>,
}

/// A value's name as it is serialized (`approved`, `post_change`).
fn name_of(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        other => format!("{other:?}"),
    }
}

/// `summary.md`: who asked, who approved, what changed on which device, the outcome, times.
fn summary(s: &SummaryInput) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let f = s.facts;
    let _ = writeln!(out, "# Evidence for change `{}`\n", s.id);
    let _ = writeln!(out, "Exported {} by `{}`.\n", s.exported_at, s.exported_by);
    let _ = writeln!(out, "| | |\n|---|---|");
    let _ = writeln!(
        out,
        "| Workflow | {} (run `{}`) |",
        f.workflow_type, f.run_id
    );
    let _ = writeln!(out, "| Started | {} |", f.started_at);
    let _ = writeln!(
        out,
        "| Ended | {} |",
        if f.closed_at.is_empty() {
            "still running".to_string()
        } else {
            format!("{} ({})", f.closed_at, f.status)
        }
    );
    if let Some(request) = s.request {
        let change = &request.change;
        let _ = writeln!(out, "| Requested by | `{}` |", request.requested_by);
        let _ = writeln!(out, "| Type | {} |", change.change_type.as_str());
        let _ = writeln!(out, "| Template | `{}` |", change.template_key());
        if let Some((git, synced)) = s.git {
            let _ = writeln!(out, "| Template source | {} |", git.describe());
            let _ = writeln!(
                out,
                "| Catalyst Center version | {} of template `{}` (version id `{}`, comment \"{}\") |",
                synced.version, synced.template_id, synced.version_id, synced.comment
            );
        }
        let parameters: Vec<String> = change
            .parameters
            .iter()
            .map(|(k, v)| format!("`{k}` = `{v}`"))
            .collect();
        let _ = writeln!(out, "| Parameters | {} |", parameters.join(", "));
        let _ = writeln!(out, "| Devices | {} |", change.devices.join(", "));
        if let Some(justification) = &change.justification {
            let _ = writeln!(out, "| Justification | {justification} |");
        }
    }
    if let Some(result) = s.result {
        let _ = writeln!(out, "| Outcome | **{}** |", result.outcome.as_str());
        let _ = writeln!(out, "| Ticket | {} |", result.ticket_number);
        if let Some(reason) = &result.failure_reason {
            let _ = writeln!(out, "| Reason | {reason} |");
        }
    } else if let Some(failure) = &f.failure {
        let _ = writeln!(out, "| Outcome | **{}**: {failure} |", f.status);
    }
    if let Some(replay) = s.replay {
        let _ = writeln!(out, "| Replay | {} |", replay.verdict);
    }
    let _ = writeln!(out, "| History from | {} |", s.source);

    let _ = writeln!(out, "\n## Approvals\n");
    let mut any = false;
    for (at, recorded) in &f.decisions {
        any = true;
        let d = &recorded.decision;
        let _ = writeln!(
            out,
            "- {at}: `{}` {} (through {}): {}",
            d.approver,
            name_of(&d.verdict),
            name_of(&d.source),
            d.comment
        );
    }
    if let Some(ticket) = s.ticket {
        for approval in &ticket.approvals {
            any = true;
            let comments: Vec<&str> = approval.comments.iter().map(|c| c.text.as_str()).collect();
            let _ = writeln!(
                out,
                "- ServiceNow approval record: `{}` {} (updated {}){}",
                approval.approver,
                approval.state,
                approval.updated_at,
                if comments.is_empty() {
                    String::new()
                } else {
                    format!(": {}", comments.join(" / "))
                }
            );
        }
    }
    if !any {
        let _ = writeln!(out, "None recorded.");
    }

    if let Some(result) = s.result {
        let _ = writeln!(out, "\n## Devices\n");
        for device in &result.devices {
            let _ = writeln!(
                out,
                "- `{}`: {} {}",
                device.device, device.status, device.message
            );
        }
        if let Some(backout) = &result.verified.backout {
            let _ = writeln!(
                out,
                "\nBacked out with template `{}` ({}):",
                backout.template_id, backout.reason
            );
            for device in &backout.devices {
                let _ = writeln!(out, "- `{}`: {}", device.device, device.status);
            }
        }
        if !result.verified.needs_attention.is_empty() {
            let _ = writeln!(
                out,
                "\n**Needs manual attention:** {}",
                result.verified.needs_attention.join(", ")
            );
        }
    }
    if !f.checks.is_empty() {
        let _ = writeln!(out, "\n## Device checks\n");
        for check in &f.checks {
            let verdict = if check.passed {
                "passed".to_string()
            } else {
                format!("FAILED: {}", check.summary())
            };
            let _ = writeln!(
                out,
                "- {} `{}`: {verdict} (snapshot `{}`)",
                name_of(&check.phase),
                check.device,
                check.snapshot
            );
        }
    }

    let _ = writeln!(out, "\n## Audit records\n");
    for record in s.mentions {
        let _ = writeln!(
            out,
            "- #{} {} `{}` {} → {} ({}{})",
            record.seq,
            record.recorded_at,
            record.entry.subject,
            record.entry.tool,
            record.entry.outcome,
            record.entry.decision,
            if record.entry.policy_revision.is_empty() {
                String::new()
            } else {
                format!(", policy {}", record.entry.policy_revision)
            }
        );
    }
    if !s.omissions.is_empty() {
        let _ = writeln!(out, "\n## Not included\n");
        for omission in s.omissions {
            let _ = writeln!(out, "- {omission}");
        }
    }
    let _ = writeln!(
        out,
        "\n## Checking this bundle\n\n`changeflow evidence verify <bundle> --public-key key.pem` checks every \
         file against `manifest.json`, the audit records' hash links up to the head, the policy texts \
         against their revisions, the snapshots against their hashes, the history by replaying it, and \
         the signature: Ed25519 over the 32-byte SHA-256 of `manifest.json` (`signature.json`), made by \
         Vault's Transit key, whose public half `changeflow evidence public-key` exports."
    );
    out
}
