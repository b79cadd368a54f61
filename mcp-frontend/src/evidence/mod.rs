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

mod collect;
mod verify;
pub use collect::collect;
pub use verify::{Verification, parse_public_key, public_key_pem, verify};

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
