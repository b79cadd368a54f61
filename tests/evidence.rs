//! Evidence bundles end to end, as an auditor gets them: a normal change approved by carol on
//! a running `changeflow dev` (OpenBao signs with its Transit key), exported with
//! `changeflow evidence`, checked with `changeflow evidence verify` (and the signature with
//! OpenSSL, which knows nothing of changeflow), then tampered with three ways.

mod common;

use serde_json::{Value, json};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn changeflow(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_changeflow"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Rewrites the manifest's entry for `path` to the file's current hash and size (a tamperer
/// covering their tracks; the signature still gives them away).
fn rehash(bundle: &Path, path: &str) {
    let manifest_path = bundle.join("manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let bytes = std::fs::read(bundle.join(path)).unwrap();
    for file in manifest["files"].as_array_mut().unwrap() {
        if file["path"] == path {
            file["sha256"] = json!(sha256(&bytes));
            file["bytes"] = json!(bytes.len());
        }
    }
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_change_exports_a_signed_bundle_that_verifies_and_tampering_is_named() {
    let dir = common::TempDir::new("changeflow-evidence");
    let data = dir.0.join("changeflow");
    let dev = common::DevProcess::start(data.clone(), &[], &dir.0.join("dev.log")).await;
    let mut alice = dev.client("alice").await;
    let change = common::request_ntp_change(&mut alice, "NTP for the evidence test").await;
    let mut carol = dev.client("carol").await;
    let approved = carol
        .call_tool(
            "approve_change",
            json!({"change_id": change, "comment": "checked the NTP servers, go"}),
            |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(
        approved["structuredContent"]["accepted"], true,
        "{approved}"
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = alice
            .call_tool("get_change_status", json!({"change_id": change}), |_, _| {})
            .await
            .unwrap();
        if status["structuredContent"]["status"] != "running" {
            assert_eq!(
                status["structuredContent"]["status"], "completed",
                "{status}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change never ended: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The archiver runs every 2 s in dev: wait for the archive, so the bundle ties the history
    // to its archive record.
    let audit = changeflow_engine::audit::AuditStore::open_in(&data)
        .await
        .unwrap();
    while audit.archived(&change).await.unwrap().is_none() {
        assert!(Instant::now() < deadline, "never archived");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(audit);

    // Export as a directory and as an archive; export the public key.
    let bundle = dir.0.join("bundle");
    let out = changeflow(
        &data,
        &["evidence", &change, "--output", bundle.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", common::said(&out));
    assert!(
        common::said(&out).contains("signed by changeflow-evidence version 1"),
        "{}",
        common::said(&out)
    );
    let again = changeflow(
        &data,
        &["evidence", &change, "--output", bundle.to_str().unwrap()],
    );
    assert!(!again.status.success(), "{}", common::said(&again));
    assert!(
        common::said(&again).contains("already exists"),
        "{}",
        common::said(&again)
    );
    let archive = dir.0.join("bundle.tar.gz");
    let out = changeflow(
        &data,
        &["evidence", &change, "--output", archive.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", common::said(&out));
    let key = dir.0.join("evidence.pem");
    let out = changeflow(
        &data,
        &["evidence", "public-key", "--output", key.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", common::said(&out));
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );

    // What an auditor reads.
    let summary = std::fs::read_to_string(bundle.join("summary.md")).unwrap();
    for expected in [
        "| Requested by | `alice` |",
        "| Type | normal |",
        "**succeeded**",
        "`carol` approved (through changeflow)",
        "checked the NTP servers, go",
        "`sj-access-01`: SUCCESS",
        "post_change `sj-access-01`: passed",
    ] {
        assert!(summary.contains(expected), "{expected} in\n{summary}");
    }
    let ticket: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("servicenow/ticket.json")).unwrap())
            .unwrap();
    let approval = &ticket["approvals"][0];
    assert_eq!(approval["approver"], "carol", "{ticket}");
    assert_eq!(approval["state"], "approved", "{ticket}");
    assert!(
        approval["comments"][0]["text"]
            .as_str()
            .unwrap()
            .contains("checked the NTP servers, go"),
        "{ticket}"
    );
    assert!(
        ticket["journal"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "work_notes"),
        "the ticket's work notes: {ticket}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["history_source"], "archive", "{manifest}");
    assert!(
        manifest["omissions"].as_array().is_none(),
        "nothing left out: {manifest}"
    );
    let records = std::fs::read_to_string(bundle.join("audit/records.jsonl")).unwrap();
    for tool in [
        "deploy_template",
        "approve_change",
        "archive_history",
        "get_change_evidence",
    ] {
        assert!(
            records.contains(&format!("\"tool\":\"{tool}\"")),
            "{tool} in\n{records}"
        );
    }
    let snapshots = std::fs::read_dir(bundle.join("snapshots")).unwrap().count();
    assert!(
        snapshots >= 2,
        "pre- and post-change snapshots: {snapshots}"
    );

    // Both forms verify, with the signature.
    for form in [&bundle, &archive] {
        let out = changeflow(
            &data,
            &[
                "evidence",
                "verify",
                form.to_str().unwrap(),
                "--public-key",
                key.to_str().unwrap(),
            ],
        );
        let said = common::said(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("verified"), "{said}");
        assert!(
            said.contains("signature valid: changeflow-evidence version 1"),
            "{said}"
        );
        assert!(said.contains("deterministic"), "{said}");
        assert!(said.contains("the history matches its archive"), "{said}");
    }

    // OpenSSL agrees: Ed25519 over the manifest's SHA-256.
    let signature: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("signature.json")).unwrap()).unwrap();
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature["signature"].as_str().unwrap())
        .unwrap();
    std::fs::write(dir.0.join("signature.bin"), raw).unwrap();
    let manifest_bytes = std::fs::read(bundle.join("manifest.json")).unwrap();
    std::fs::write(
        dir.0.join("digest.bin"),
        hex::decode(sha256(&manifest_bytes)).unwrap(),
    )
    .unwrap();
    let openssl = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(&key)
        .args(["-rawin", "-in"])
        .arg(dir.0.join("digest.bin"))
        .arg("-sigfile")
        .arg(dir.0.join("signature.bin"))
        .output()
        .unwrap();
    assert!(openssl.status.success(), "{}", common::said(&openssl));

    let verify = |bundle: &Path, key: Option<&Path>| {
        let mut args = vec!["evidence", "verify", bundle.to_str().unwrap()];
        if let Some(key) = key {
            args.extend(["--public-key", key.to_str().unwrap()]);
        }
        let out = changeflow(&data, &args);
        (out.status.code(), common::said(&out))
    };

    // One byte changed in any file is named.
    for file in ["servicenow/ticket.json", "history/history.pb", "summary.md"] {
        let tampered = dir.0.join(format!("tampered-{}", file.replace('/', "-")));
        copy_dir(&bundle, &tampered);
        let mut bytes = std::fs::read(tampered.join(file)).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(tampered.join(file), bytes).unwrap();
        let (code, said) = verify(&tampered, Some(&key));
        assert_eq!(code, Some(1), "{said}");
        assert!(
            said.contains(&format!("file {file}: its SHA-256")),
            "{said}"
        );
    }

    // A record removed from the audit files, the manifest rehashed to cover it: the chain
    // names the gap, and the signature no longer holds.
    let removed = dir.0.join("tampered-audit");
    copy_dir(&bundle, &removed);
    let segment = std::fs::read_to_string(removed.join("audit/chain-segment.jsonl")).unwrap();
    let lines: Vec<&str> = segment.lines().collect();
    assert!(lines.len() >= 3, "{segment}");
    let gone: Value = serde_json::from_str(lines[1]).unwrap();
    let kept: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| *l)
        .collect();
    std::fs::write(
        removed.join("audit/chain-segment.jsonl"),
        kept.join("\n") + "\n",
    )
    .unwrap();
    let records: Vec<String> = std::fs::read_to_string(removed.join("audit/records.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| *l != lines[1])
        .map(str::to_string)
        .collect();
    std::fs::write(
        removed.join("audit/records.jsonl"),
        records.join("\n") + "\n",
    )
    .unwrap();
    rehash(&removed, "audit/chain-segment.jsonl");
    rehash(&removed, "audit/records.jsonl");
    let (code, said) = verify(&removed, None);
    assert_eq!(code, Some(1), "{said}");
    let next = gone["seq"].as_i64().unwrap() + 1;
    assert!(
        said.contains(&format!("audit chain: record {next}: expected record")),
        "{said}"
    );
    let (code, said) = verify(&removed, Some(&key));
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("signature: does not verify"), "{said}");

    // Another key: the genuine bundle does not verify with it.
    let other = Command::new("sh")
        .arg("-c")
        .arg("openssl genpkey -algorithm ed25519 | openssl pkey -pubout")
        .output()
        .unwrap();
    assert!(other.status.success(), "{}", common::said(&other));
    let other_key = dir.0.join("other.pem");
    std::fs::write(&other_key, &other.stdout).unwrap();
    let (code, said) = verify(&bundle, Some(&other_key));
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("signature: does not verify with the given public key"),
        "{said}"
    );

    // An unknown change: a clear error, nothing written.
    let nothing = dir.0.join("nothing");
    let out = changeflow(
        &data,
        &[
            "evidence",
            "change-that-never-was",
            "--output",
            nothing.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        common::said(&out).contains("no change 'change-that-never-was'"),
        "{}",
        common::said(&out)
    );
    assert!(!nothing.exists());
}
