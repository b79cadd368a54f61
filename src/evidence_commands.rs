//! `changeflow evidence`: export a change's evidence bundle, check one offline, export the
//! public key that signs them. The bundle's format lives in `changeflow_mcp_frontend::evidence`
//! (the front door builds the same bundles for `get_change_evidence` and the REST download).

use crate::cli::*;
use crate::commands::{open_audit, temporal_address_of};
use anyhow::Context;
use changeflow::replay::BinaryHistories;
use changeflow_engine::audit::{AuditEntry, canonical_hash};
use changeflow_mcp_frontend::evidence::{self, Bundle, EvidenceSources};
use changeflow_mcp_frontend::temporal::{TemporalWorkflows, Workflows};
use changeflow_workflows::operations::{GetEvidenceKey, Operation, OperationRequest};
use changeflow_workflows::results::EvidenceKey;
use std::process::ExitCode;
use std::sync::Arc;

pub(crate) async fn evidence(g: &GlobalArgs, args: EvidenceArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(EvidenceCommand::Verify(verify)) => verify_bundle(verify).await,
        Some(EvidenceCommand::PublicKey(key)) => public_key(g, key).await,
        None => export(g, args).await,
    }
}

/// Who the CLI acts as in audit records and operations: the local user.
fn cli_subject() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "operator".into());
    format!("cli:{user}")
}

async fn workflows(g: &GlobalArgs) -> anyhow::Result<TemporalWorkflows> {
    let address = temporal_address_of(g)?;
    let client =
        changeflow_engine::temporal::connect(&address, &g.namespace, "changeflow-evidence").await?;
    Ok(TemporalWorkflows::new(client, g.task_queue.clone()))
}

async fn export(g: &GlobalArgs, args: EvidenceArgs) -> anyhow::Result<ExitCode> {
    let (Some(id), Some(output)) = (args.change_id, args.output) else {
        anyhow::bail!("name a change and --output");
    };
    changeflow_workflows::limits::id("change id", &id).map_err(anyhow::Error::msg)?;
    // Never mix a bundle into another one, nor overwrite one.
    let occupied = match std::fs::read_dir(&output) {
        Ok(mut entries) => entries.next().is_some(),
        Err(_) => output.exists(),
    };
    anyhow::ensure!(
        !occupied,
        "{} already exists: name a new directory or .tar.gz file",
        output.display()
    );
    let audit = open_audit(g, args.audit_database_url.as_deref()).await?;
    let workflows = workflows(g).await?;
    let subject = cli_subject();
    // Audited first, like the front door's export: the bundle holds the record of its export.
    audit
        .append(AuditEntry {
            subject: subject.clone(),
            client: "cli".into(),
            server: "audit".into(),
            tool: "get_change_evidence".into(),
            arguments_hash: canonical_hash(&serde_json::json!({"change_id": id})),
            decision: "none".into(),
            reason: "changeflow evidence (direct access to Temporal and the audit store)".into(),
            policy_revision: String::new(),
            workflow_id: id.clone(),
            outcome: "exported".into(),
            note: String::new(),
        })
        .await
        .context("recording the export in the audit store")?;
    let sources = EvidenceSources {
        histories: Some(Arc::new(BinaryHistories)),
        snapshot_dir: Some(
            args.snapshot_dir
                .unwrap_or_else(|| g.data_dir.join("snapshots")),
        ),
    };
    eprintln!("collecting the evidence of {id}...");
    let bundle = evidence::collect(&workflows, &audit, &sources, &id, &subject)
        .await
        .map_err(anyhow::Error::msg)?;
    bundle.write(&output).map_err(anyhow::Error::msg)?;
    let manifest = bundle.manifest().map_err(anyhow::Error::msg)?;
    println!(
        "wrote the evidence of {id} to {} ({} files)",
        output.display(),
        bundle.files.len()
    );
    if let Some(replay) = &manifest.replay {
        println!("  replay: {}", replay.verdict);
    }
    if let Some(audit) = &manifest.audit {
        println!(
            "  audit: {} records naming it; chain segment {}..{}, head {}",
            audit.records, audit.first_seq, audit.last_seq, audit.head_hash
        );
    }
    match bundle
        .files
        .get(evidence::SIGNATURE)
        .and_then(|s| serde_json::from_slice::<evidence::Signature>(s).ok())
    {
        Some(signature) => println!(
            "  signed by {} version {}",
            signature.key, signature.key_version
        ),
        None => println!("  NOT SIGNED"),
    }
    for omission in &manifest.omissions {
        println!("  not included: {omission}");
    }
    Ok(ExitCode::SUCCESS)
}

async fn verify_bundle(args: EvidenceVerifyArgs) -> anyhow::Result<ExitCode> {
    let bundle = Bundle::read(&args.bundle).map_err(anyhow::Error::msg)?;
    let key = match &args.public_key {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            Some(
                evidence::parse_public_key(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let report = evidence::verify(&bundle, key.as_ref(), Some(&BinaryHistories)).await;
    for note in &report.notes {
        println!("  {note}");
    }
    if report.problems.is_empty() {
        println!(
            "evidence of {} verified: {} files",
            bundle.change_id,
            bundle.files.len()
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "evidence of {} FAILED verification:",
            if bundle.change_id.is_empty() {
                args.bundle.display().to_string()
            } else {
                bundle.change_id.clone()
            }
        );
        for problem in &report.problems {
            println!("  {problem}");
        }
        Ok(ExitCode::FAILURE)
    }
}

async fn public_key(g: &GlobalArgs, args: EvidenceKeyArgs) -> anyhow::Result<ExitCode> {
    let workflows = workflows(g).await?;
    let id = changeflow_mcp_frontend::changes::fresh_id(
        "read-evidence-key",
        &serde_json::json!([cli_subject()]),
    );
    let value = workflows
        .run_operation(
            &id,
            OperationRequest::new(
                Operation::GetEvidenceKey(GetEvidenceKey {
                    version: args.version,
                }),
                cli_subject(),
            ),
        )
        .await
        .map_err(|failure| anyhow::anyhow!("reading the evidence key: {failure}"))?;
    let key: EvidenceKey = serde_json::from_value(value)?;
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&key.public_key)
        .context("Transit's public key is not base64")?;
    let pem = evidence::public_key_pem(&raw);
    match &args.output {
        Some(path) => {
            std::fs::write(path, &pem).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{pem}"),
    }
    eprintln!("evidence key {} version {}", key.key, key.key_version);
    Ok(ExitCode::SUCCESS)
}
