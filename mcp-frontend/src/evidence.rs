//! Evidence bundles: everything an auditor needs to judge one change without access to our
//! systems, as files with a manifest of their SHA-256s, signed by a key Vault keeps.
//!
//! A bundle holds the change's workflow history (protobuf and proto-JSON) and its replay
//! verdict, every audit record naming the change with the chain segment from the first of them
//! to the head at export time, the text of each policy revision that decided a call on it, the
//! ServiceNow ticket as it stands (fields, journal, approval records), the device check
//! snapshots and verdicts, `summary.md` for people and `manifest.json` for `verify`. The
//! manifest's SHA-256 is signed by the worker through Vault's Transit engine (`sign_evidence`,
//! a `DownstreamOperation` like every call), so the private key never leaves Vault.
//!
//! `collect` builds a bundle (the front door's `get_change_evidence` and REST download, and
//! `changeflow evidence`); `verify` checks one offline (`changeflow evidence verify`).

use crate::changes::ChangeError;
use crate::temporal::Workflows;
use async_trait::async_trait;
use base64::Engine as _;
use changeflow_engine::audit::{AuditFilter, AuditRecord, AuditStore, check_segment};
use changeflow_workflows::operations::{
    GetChangeRequest, GetEvidenceKey, Operation, OperationRequest, SignEvidence,
};
use changeflow_workflows::results::{ChangeRequest, EvidenceKey, EvidenceSignature};
use changeflow_workflows::verification::DeviceCheck;
use changeflow_workflows::{ChangeResult, DeploymentRequest, RecordDecision};
use prost::Message as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use temporalio_common::protos::temporal::api::history::v1::{History, history_event::Attributes};

/// The bundle format this code writes and reads.
pub const FORMAT: &str = "changeflow-evidence/1";
pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "signature.json";
pub const SUMMARY: &str = "summary.md";
const HISTORY_PB: &str = "history/history.pb";
const HISTORY_JSON: &str = "history/history.json";
const RECORDS: &str = "audit/records.jsonl";
const SEGMENT: &str = "audit/chain-segment.jsonl";
const HEAD: &str = "audit/head.json";
const TICKET: &str = "servicenow/ticket.json";
const CHECKS: &str = "checks/verdicts.json";

/// What only the binary can do with a history (it holds the workflow code and the Temporal API
/// descriptors): write it as proto-JSON, read any history format, replay it.
#[async_trait]
pub trait Histories: Send + Sync {
    /// Protobuf `History` bytes as proto-JSON.
    fn to_proto_json(&self, history: &[u8]) -> Result<Vec<u8>, String>;
    /// Any history file (protobuf, proto-JSON) as protobuf bytes.
    fn to_protobuf(&self, bytes: &[u8]) -> Result<Vec<u8>, String>;
    /// Replays a history against this binary's workflows.
    async fn replay(&self, history: Vec<u8>) -> Result<ReplayVerdict, String>;
}

/// What replaying the history showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplayVerdict {
    pub deterministic: bool,
    pub events: usize,
    /// "replayed N events, deterministic", or where it diverged.
    pub verdict: String,
}

/// What a front door (or the CLI) builds bundles from, besides Temporal and the audit store.
#[derive(Clone, Default)]
pub struct EvidenceSources {
    /// History tools; without them a bundle has no proto-JSON and no replay verdict (noted).
    pub histories: Option<Arc<dyn Histories>>,
    /// The workers' snapshot directory; without it snapshots are left out (noted).
    pub snapshot_dir: Option<PathBuf>,
}

/// Errors building a bundle.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("no change '{0}' in Temporal or in the archive")]
    NotFound(String),
    #[error("{0}")]
    Failed(String),
}

/// One file in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// Where the bundle's audit records sit in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditSegment {
    /// Records naming the change.
    pub records: usize,
    /// The segment: from the first record naming the change to the head at export time.
    pub first_seq: i64,
    pub last_seq: i64,
    /// The chain's head at export time (compare with a copy kept elsewhere).
    pub head_hash: String,
}

/// `manifest.json`: what the bundle holds and each file's SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    pub format: String,
    pub change_id: String,
    pub workflow_type: String,
    pub run_id: String,
    /// RFC 3339.
    pub exported_at: String,
    pub exported_by: String,
    /// `archive` (the copy the audit chain covers, once the workflow closed and was
    /// archived) or `temporal`.
    pub history_source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayVerdict>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSegment>,
    pub policy_revisions: Vec<String>,
    /// The Transit key that signs the manifest (`signature.json`), when it is signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// What could not be included, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub omissions: Vec<String>,
    pub files: Vec<FileEntry>,
}

/// `signature.json`: an Ed25519 signature over the 32-byte SHA-256 of `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Signature {
    pub algorithm: String,
    /// What was signed: `sha256(manifest.json)`, the raw 32 bytes.
    pub signed: String,
    pub manifest_sha256: String,
    pub key: String,
    pub key_version: u64,
    /// The 64-byte signature, base64.
    pub signature: String,
}

/// What `get_change_evidence` answers: the bundle's summary and manifest, and where to get it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EvidenceOverview {
    pub change_id: String,
    /// Signed by the evidence key in Vault.
    pub signed: bool,
    /// `summary.md`.
    pub summary: String,
    pub manifest: Manifest,
    /// The bundle (tar.gz) over REST, with the same bearer token.
    pub download: String,
    /// How to check it offline.
    pub verify: String,
}

/// A bundle: files by their path inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    pub change_id: String,
    pub files: BTreeMap<String, Vec<u8>>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The manifest's list of files: each path with its SHA-256 and size.
fn file_entries(files: &BTreeMap<String, Vec<u8>>) -> Vec<FileEntry> {
    files
        .iter()
        .map(|(path, bytes)| FileEntry {
            path: path.clone(),
            sha256: sha256_hex(bytes),
            bytes: bytes.len() as u64,
        })
        .collect()
}

fn pretty(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

fn json_lines(records: &[AuditRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        out.extend(serde_json::to_vec(record).unwrap_or_default());
        out.push(b'\n');
    }
    out
}

/// The path a REST client downloads a change's bundle from.
pub fn download_path(change_id: &str) -> String {
    format!("/api/v1/changes/{change_id}/evidence")
}

impl Bundle {
    /// The manifest, parsed.
    pub fn manifest(&self) -> Result<Manifest, String> {
        let bytes = self
            .files
            .get(MANIFEST)
            .ok_or_else(|| format!("{MANIFEST} is missing"))?;
        serde_json::from_slice(bytes).map_err(|e| format!("{MANIFEST}: {e}"))
    }

    /// The summary and manifest, for `get_change_evidence`.
    pub fn overview(&self) -> Result<EvidenceOverview, String> {
        Ok(EvidenceOverview {
            change_id: self.change_id.clone(),
            signed: self.files.contains_key(SIGNATURE),
            summary: String::from_utf8_lossy(self.files.get(SUMMARY).map_or(&[][..], |s| s))
                .into_owned(),
            manifest: self.manifest()?,
            download: download_path(&self.change_id),
            verify: "changeflow evidence verify <bundle> --public-key <key.pem> (the key from \
                     `changeflow evidence public-key`)"
                .into(),
        })
    }

    /// The overview as JSON (the tool result both protocols give).
    pub fn overview_value(&self) -> Result<Value, String> {
        serde_json::to_value(self.overview()?).map_err(|e| e.to_string())
    }

    /// The name of the bundle's top directory (and, with `.tar.gz`, of its archive).
    pub fn name(&self) -> String {
        format!("evidence-{}", self.change_id)
    }

    /// The bundle as a gzip-compressed tar archive, every file under `evidence-<id>/`.
    pub fn tar_gz(&self) -> Result<Vec<u8>, String> {
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut archive = tar::Builder::new(encoder);
        let mtime = self
            .manifest()
            .ok()
            .and_then(|m| {
                time::OffsetDateTime::parse(
                    &m.exported_at,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
            })
            .map_or(0, |t| t.unix_timestamp().max(0) as u64);
        for (path, bytes) in &self.files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(mtime);
            header.set_cksum();
            archive
                .append_data(
                    &mut header,
                    format!("{}/{path}", self.name()),
                    bytes.as_slice(),
                )
                .map_err(|e| format!("archiving {path}: {e}"))?;
        }
        archive
            .into_inner()
            .and_then(|gz| gz.finish())
            .map_err(|e| format!("finishing the archive: {e}"))
    }

    /// Writes the bundle: a `.tar.gz` archive when `output` ends so, else a directory.
    pub fn write(&self, output: &Path) -> Result<(), String> {
        if is_archive(output) {
            let bytes = self.tar_gz()?;
            return std::fs::write(output, bytes)
                .map_err(|e| format!("writing {}: {e}", output.display()));
        }
        for (path, bytes) in &self.files {
            let target = output.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("creating {}: {e}", parent.display()))?;
            }
            std::fs::write(&target, bytes)
                .map_err(|e| format!("writing {}: {e}", target.display()))?;
        }
        Ok(())
    }

    /// Reads a bundle from a directory or a `.tar.gz` archive.
    pub fn read(input: &Path) -> Result<Bundle, String> {
        let mut files = BTreeMap::new();
        if input.is_dir() {
            read_dir(input, input, &mut files)?;
        } else {
            let bytes =
                std::fs::read(input).map_err(|e| format!("reading {}: {e}", input.display()))?;
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
            let entries = archive
                .entries()
                .map_err(|e| format!("{} is not a tar.gz bundle: {e}", input.display()))?;
            for entry in entries {
                let mut entry = entry
                    .map_err(|e| format!("{} is not a tar.gz bundle: {e}", input.display()))?;
                if !entry.header().entry_type().is_file() {
                    continue;
                }
                let path = entry
                    .path()
                    .map_err(|e| format!("an entry of {}: {e}", input.display()))?
                    .to_string_lossy()
                    .into_owned();
                // Everything sits under the bundle's top directory.
                let inner = path.split_once('/').map_or(path.as_str(), |(_, rest)| rest);
                if inner.split('/').any(|part| part == ".." || part.is_empty()) {
                    return Err(format!("{}: unsafe entry path {path}", input.display()));
                }
                let mut content = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut content)
                    .map_err(|e| format!("reading {path}: {e}"))?;
                files.insert(inner.to_string(), content);
            }
        }
        let change_id = files
            .get(MANIFEST)
            .and_then(|m| serde_json::from_slice::<Value>(m).ok())
            .and_then(|m| m["change_id"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok(Bundle { change_id, files })
    }
}

/// Whether a path names a `.tar.gz` (or `.tgz`) archive rather than a directory.
pub fn is_archive(path: &Path) -> bool {
    let name = path.to_string_lossy();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn read_dir(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|e| format!("reading {}: {e}", dir.display()))?
            .path();
        if path.is_dir() {
            read_dir(root, &path, files)?;
        } else {
            let relative = path
                .strip_prefix(root)
                .map_err(|e| e.to_string())?
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            let bytes =
                std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            files.insert(relative, bytes);
        }
    }
    Ok(())
}

/// A workflow's history, and where it came from.
pub struct LoadedHistory {
    /// Protobuf `History` bytes.
    pub bytes: Vec<u8>,
    /// `archive` or `temporal`.
    pub source: &'static str,
}

/// A workflow's history: the archived copy once there is one (the very bytes its audit record
/// hashes: protobuf maps encode in no fixed order, so a fresh copy from Temporal would hash
/// differently), else Temporal's.
pub async fn load_history(
    workflows: &dyn Workflows,
    audit: &AuditStore,
    id: &str,
) -> Result<LoadedHistory, EvidenceError> {
    let archived = audit.archived(id).await;
    if let Ok(Some(archived)) = archived {
        return Ok(LoadedHistory {
            bytes: archived.history,
            source: "archive",
        });
    }
    match workflows.fetch_history(id).await {
        Ok(bytes) if !bytes.is_empty() => Ok(LoadedHistory {
            bytes,
            source: "temporal",
        }),
        Ok(_) => Err(EvidenceError::NotFound(id.to_string())),
        Err(ChangeError::Temporal(e) | ChangeError::Invalid(e)) => match archived {
            Err(archive) => Err(EvidenceError::Failed(format!(
                "{e}; and the archive could not be read: {archive}"
            ))),
            Ok(_) => Err(EvidenceError::NotFound(id.to_string())),
        },
    }
}

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
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = changeflow_engine::audit::canonical_hash(&json!([
        change_id,
        exported_by,
        nanos.to_string(),
        n
    ]));
    let workflow_id = format!("{prefix}-{}", &digest[..32]);
    workflows
        .run_operation(
            &workflow_id,
            OperationRequest {
                operation,
                requested_by: exported_by.to_string(),
            },
        )
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
        let _ = writeln!(out, "| Template | `{}` |", change.template_id);
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

/// The result of checking a bundle: problems make it fail; notes are for information.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verification {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

/// Checks a bundle offline: every file against the manifest, the audit chain segment, the
/// policy texts against their revisions, the snapshots against their hashes, the history
/// (replayed, when `histories` is given) and, with `public_key`, the signature.
pub async fn verify(
    bundle: &Bundle,
    public_key: Option<&[u8; 32]>,
    histories: Option<&dyn Histories>,
) -> Verification {
    let mut v = Verification::default();
    let manifest = match bundle.manifest() {
        Ok(m) => m,
        Err(e) => {
            v.problems.push(e);
            return v;
        }
    };
    if manifest.format != FORMAT {
        v.problems.push(format!(
            "{MANIFEST}: format {} is not {FORMAT}",
            manifest.format
        ));
    }
    // Files against the manifest.
    let listed: BTreeSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    for entry in &manifest.files {
        match bundle.files.get(&entry.path) {
            None => v.problems.push(format!(
                "file {}: listed in the manifest but missing",
                entry.path
            )),
            Some(bytes) if sha256_hex(bytes) != entry.sha256 => v.problems.push(format!(
                "file {}: its SHA-256 is {}, the manifest says {}",
                entry.path,
                sha256_hex(bytes),
                entry.sha256
            )),
            Some(_) => {}
        }
    }
    for path in bundle.files.keys() {
        if !listed.contains(path.as_str()) && path != MANIFEST && path != SIGNATURE {
            v.problems
                .push(format!("file {path}: not listed in the manifest"));
        }
    }
    verify_audit(bundle, &manifest, &mut v);
    verify_policy(bundle, &mut v);
    for (path, bytes) in &bundle.files {
        if let Some(hex) = path
            .strip_prefix("snapshots/")
            .and_then(|p| p.strip_suffix(".json"))
            && sha256_hex(bytes) != hex
        {
            v.problems
                .push(format!("file {path}: the snapshot does not match its hash"));
        }
    }
    verify_history(bundle, &manifest, histories, &mut v).await;
    verify_signature(bundle, &manifest, public_key, &mut v);
    v
}

fn parse_lines(bundle: &Bundle, path: &str, v: &mut Verification) -> Option<Vec<AuditRecord>> {
    let bytes = bundle.files.get(path)?;
    let mut records = Vec::new();
    for (index, line) in String::from_utf8_lossy(bytes).lines().enumerate() {
        match serde_json::from_str::<AuditRecord>(line) {
            Ok(record) => records.push(record),
            Err(e) => {
                v.problems.push(format!(
                    "file {path}: line {} is not an audit record: {e}",
                    index + 1
                ));
                return None;
            }
        }
    }
    Some(records)
}

fn verify_audit(bundle: &Bundle, manifest: &Manifest, v: &mut Verification) {
    let Some(expected) = &manifest.audit else {
        return;
    };
    let (Some(segment), Some(mentions)) = (
        parse_lines(bundle, SEGMENT, v),
        parse_lines(bundle, RECORDS, v),
    ) else {
        v.problems.push(format!(
            "the audit records ({RECORDS}, {SEGMENT}) are missing or unreadable"
        ));
        return;
    };
    let Some(first) = segment.first() else {
        v.problems.push(format!("file {SEGMENT}: empty"));
        return;
    };
    let report = check_segment(&segment, expected.first_seq, &first.prev_hash);
    if let Some(broken) = report.first_broken {
        v.problems.push(format!(
            "audit chain: record {}: {}",
            broken.seq, broken.problem
        ));
    }
    let last = segment.last().expect("non-empty");
    if last.seq != expected.last_seq || last.hash != expected.head_hash {
        v.problems.push(format!(
            "audit chain: the segment ends at record {} ({}), the manifest's head is record {} ({})",
            last.seq, last.hash, expected.last_seq, expected.head_hash
        ));
    }
    if mentions.len() != expected.records {
        v.problems.push(format!(
            "file {RECORDS}: {} records, the manifest says {}",
            mentions.len(),
            expected.records
        ));
    }
    let by_seq: BTreeMap<i64, &AuditRecord> = segment.iter().map(|r| (r.seq, r)).collect();
    for record in &mentions {
        if record.entry.workflow_id != manifest.change_id {
            v.problems.push(format!(
                "audit record {}: names {}, not this change",
                record.seq, record.entry.workflow_id
            ));
        }
        if by_seq.get(&record.seq) != Some(&record) {
            v.problems.push(format!(
                "audit record {}: differs from the chain segment's record {}",
                record.seq, record.seq
            ));
        }
    }
    // The segment's records naming the change must all be listed.
    let listed: BTreeSet<i64> = mentions.iter().map(|r| r.seq).collect();
    for record in &segment {
        if record.entry.workflow_id == manifest.change_id && !listed.contains(&record.seq) {
            v.problems.push(format!(
                "audit record {}: names this change but is missing from {RECORDS}",
                record.seq
            ));
        }
    }
    // An archived history is tied to the chain by its record's hash.
    if let Some(history) = bundle.files.get(HISTORY_PB) {
        let digest = sha256_hex(history);
        let archives: Vec<&AuditRecord> = mentions
            .iter()
            .filter(|r| {
                r.entry.tool == "archive_history"
                    && r.entry.note.contains(&format!("run {}", manifest.run_id))
            })
            .collect();
        for archive in &archives {
            if archive.entry.arguments_hash == digest {
                v.notes.push(format!(
                    "the history matches its archive, audit record {}",
                    archive.seq
                ));
            } else {
                v.problems.push(format!(
                    "file {HISTORY_PB}: its SHA-256 {digest} is not the archived history's {} (audit record {})",
                    archive.entry.arguments_hash, archive.seq
                ));
            }
        }
    }
}

fn verify_policy(bundle: &Bundle, v: &mut Verification) {
    let mut revisions: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (path, bytes) in &bundle.files {
        if let Some((revision, name)) = path.strip_prefix("policy/").and_then(|p| p.split_once('/'))
        {
            revisions.entry(revision).or_default().push((
                name.to_string(),
                String::from_utf8_lossy(bytes).into_owned(),
            ));
        }
    }
    for (revision, mut files) in revisions {
        files.sort();
        let computed = changeflow_engine::policy::revision_of(&files);
        if computed != revision {
            v.problems.push(format!(
                "policy {revision}: its files hash to revision {computed}"
            ));
        }
    }
}

async fn verify_history(
    bundle: &Bundle,
    manifest: &Manifest,
    histories: Option<&dyn Histories>,
    v: &mut Verification,
) {
    let Some(bytes) = bundle.files.get(HISTORY_PB) else {
        v.problems.push(format!("file {HISTORY_PB}: missing"));
        return;
    };
    let Ok(history) = History::decode(bytes.as_slice()) else {
        v.problems
            .push(format!("file {HISTORY_PB}: not a protobuf History"));
        return;
    };
    let Some(histories) = histories else {
        v.notes.push("history not replayed".into());
        return;
    };
    if let Some(json) = bundle.files.get(HISTORY_JSON) {
        let same = histories
            .to_protobuf(json)
            .ok()
            .and_then(|pb| History::decode(pb.as_slice()).ok())
            .is_some_and(|decoded| decoded == history);
        if !same {
            v.problems.push(format!(
                "file {HISTORY_JSON}: not the same history as {HISTORY_PB}"
            ));
        }
    }
    match histories.replay(bytes.clone()).await {
        Ok(verdict) if verdict.deterministic => {
            v.notes.push(verdict.verdict.clone());
            if manifest.replay.as_ref().is_some_and(|r| !r.deterministic) {
                v.notes
                    .push("the manifest recorded a nondeterministic replay at export".into());
            }
        }
        Ok(verdict) => v
            .problems
            .push(format!("history replay: {}", verdict.verdict)),
        Err(e) => v.problems.push(format!("history replay failed: {e}")),
    }
}

fn verify_signature(
    bundle: &Bundle,
    manifest: &Manifest,
    public_key: Option<&[u8; 32]>,
    v: &mut Verification,
) {
    let signature = bundle
        .files
        .get(SIGNATURE)
        .map(|bytes| serde_json::from_slice::<Signature>(bytes));
    let signature = match (signature, &manifest.signing_key, public_key) {
        (None, None, None) => {
            v.notes.push("the bundle is not signed".into());
            return;
        }
        (None, _, _) => {
            v.problems.push(format!("file {SIGNATURE}: missing"));
            return;
        }
        (Some(Err(e)), _, _) => {
            v.problems.push(format!("file {SIGNATURE}: {e}"));
            return;
        }
        (Some(Ok(signature)), _, _) => signature,
    };
    let Some(key) = public_key else {
        v.notes.push(format!(
            "signed by {} version {}; signature not checked (no public key given)",
            signature.key, signature.key_version
        ));
        return;
    };
    let Some(manifest_bytes) = bundle.files.get(MANIFEST) else {
        return;
    };
    let digest = Sha256::digest(manifest_bytes);
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(&signature.signature) else {
        v.problems
            .push(format!("file {SIGNATURE}: the signature is not base64"));
        return;
    };
    let checked = aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, key)
        .verify(&digest, &raw);
    if checked.is_ok() {
        v.notes.push(format!(
            "signature valid: {} version {}",
            signature.key, signature.key_version
        ));
    } else {
        v.problems.push(format!(
            "signature: does not verify with the given public key ({} version {} signed it)",
            signature.key, signature.key_version
        ));
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A raw Ed25519 public key as PEM (`-----BEGIN PUBLIC KEY-----`, RFC 8410), which OpenSSL
/// reads too.
pub fn public_key_pem(raw: &[u8]) -> String {
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(raw);
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{encoded}\n-----END PUBLIC KEY-----\n")
}

/// Reads an Ed25519 public key: PEM (as `public_key_pem` writes it) or the raw 32 bytes in
/// base64 (as Vault's Transit shows them).
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| format!("not a PEM or base64 public key: {e}"))?;
    let raw = match bytes.len() {
        32 => bytes.as_slice(),
        44 if bytes[..12] == ED25519_SPKI_PREFIX => &bytes[12..],
        _ => return Err("not an Ed25519 public key".into()),
    };
    raw.try_into()
        .map_err(|_| "not an Ed25519 public key".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_round_trip_through_pem_and_raw_base64() {
        let raw = [7u8; 32];
        assert_eq!(parse_public_key(&public_key_pem(&raw)).unwrap(), raw);
        let plain = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(parse_public_key(&plain).unwrap(), raw);
        assert!(
            parse_public_key("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").is_err()
        );
    }

    fn bundle() -> Bundle {
        let mut files = BTreeMap::new();
        files.insert("a.txt".to_string(), b"alpha".to_vec());
        files.insert("dir/b.txt".to_string(), b"beta".to_vec());
        let manifest = Manifest {
            format: FORMAT.into(),
            change_id: "change-1".into(),
            workflow_type: "TemplateDeployment".into(),
            run_id: "run".into(),
            exported_at: "2026-11-27T09:00:00Z".into(),
            exported_by: "erin".into(),
            history_source: "temporal".into(),
            replay: None,
            audit: None,
            policy_revisions: vec![],
            signing_key: None,
            omissions: vec![],
            files: file_entries(&files),
        };
        files.insert(MANIFEST.into(), pretty(&manifest));
        Bundle {
            change_id: "change-1".into(),
            files,
        }
    }

    #[test]
    fn bundles_round_trip_through_directories_and_archives() {
        let original = bundle();
        let dir = std::env::temp_dir().join(format!("evidence-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        original.write(&dir).unwrap();
        assert_eq!(Bundle::read(&dir).unwrap(), original);
        let archive = dir.with_extension("tar.gz");
        original.write(&archive).unwrap();
        assert_eq!(Bundle::read(&archive).unwrap(), original);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&archive);
    }

    #[tokio::test]
    async fn verify_names_a_changed_an_unlisted_and_a_missing_file() {
        let original = bundle();
        assert!(
            verify(&original, None, None).await.problems.len() == 1,
            "only the missing history"
        );
        let mut changed = original.clone();
        changed.files.insert("a.txt".into(), b"alphA".to_vec());
        changed.files.insert("extra".into(), b"x".to_vec());
        changed.files.remove("dir/b.txt");
        let problems = verify(&changed, None, None).await.problems.join("\n");
        assert!(problems.contains("file a.txt: its SHA-256"), "{problems}");
        assert!(problems.contains("file extra: not listed"), "{problems}");
        assert!(
            problems.contains("file dir/b.txt: listed in the manifest but missing"),
            "{problems}"
        );
    }
}
