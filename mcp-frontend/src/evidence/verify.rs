//! Checking a bundle offline, and the public key's formats.

use super::*;

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
