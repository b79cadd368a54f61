//! The production commands: `serve`, `worker`, `audit` and `policy`.

use crate::cli::*;
use anyhow::Context;
use changeflow_activities::DownstreamConfig;
use changeflow_credentials::vault::{VaultAuth, VaultCredentials, VaultSettings};
use changeflow_credentials::{
    CatalystCredentials, CredentialProvider, Secret, ServiceNowCredentials, StaticCredentials,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
pub(crate) async fn stop_requested() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Vault when an address is configured; otherwise credentials from the environment.
pub(crate) fn credential_provider(
    args: &VaultArgs,
    secrets: SecretArgs,
) -> anyhow::Result<Arc<dyn CredentialProvider>> {
    let var = |value: Option<String>| value.filter(|v| !v.is_empty());
    if let Some(address) = &args.vault_address {
        let auth = match (
            var(secrets.vault_token),
            var(secrets.vault_role_id),
            var(secrets.vault_secret_id),
        ) {
            (Some(token), _, _) => VaultAuth::Token(Secret::new(token)),
            (None, Some(role_id), Some(secret_id)) => VaultAuth::AppRole {
                mount: "approle".into(),
                role_id,
                secret_id: Secret::new(secret_id),
            },
            _ => anyhow::bail!(
                "Vault login missing: set CHANGEFLOW_VAULT_TOKEN, or CHANGEFLOW_VAULT_ROLE_ID and CHANGEFLOW_VAULT_SECRET_ID"
            ),
        };
        let mut settings = VaultSettings::new(address.clone(), auth);
        settings.mount = args.vault_mount.clone();
        settings.servicenow_path = args.vault_servicenow_path.clone();
        settings.catalyst_path = args.vault_catalyst_path.clone();
        settings.github_path = args.vault_github_path.clone();
        settings.transit_mount = args.vault_transit_mount.clone();
        settings.evidence_key = args.evidence_key.clone();
        settings.cache_ttl = Duration::from_secs(args.vault_cache_seconds);
        return Ok(Arc::new(VaultCredentials::new(settings)?));
    }
    let servicenow = match (
        var(secrets.servicenow_username),
        var(secrets.servicenow_password),
        var(secrets.servicenow_client_id),
        var(secrets.servicenow_client_secret),
    ) {
        (Some(username), Some(password), Some(client_id), Some(client_secret)) => {
            Some(ServiceNowCredentials {
                username,
                password: Secret::new(password),
                client_id,
                client_secret: Secret::new(client_secret),
            })
        }
        _ => anyhow::bail!(
            "ServiceNow credentials missing: set CHANGEFLOW_SERVICENOW_USERNAME, _PASSWORD, _CLIENT_ID and _CLIENT_SECRET, or use --vault-address"
        ),
    };
    let catalyst = match (
        var(secrets.catalyst_username),
        var(secrets.catalyst_password),
    ) {
        (Some(username), Some(password)) => Some(CatalystCredentials {
            username,
            password: Secret::new(password),
        }),
        _ => anyhow::bail!(
            "Catalyst Center credentials missing: set CHANGEFLOW_CATALYST_USERNAME and CHANGEFLOW_CATALYST_PASSWORD, or use --vault-address"
        ),
    };
    Ok(Arc::new(StaticCredentials {
        servicenow,
        catalyst,
    }))
}

/// The downstream systems a worker reaches, from its options.
fn downstream_config(
    args: &DownstreamArgs,
    snapshot_dir: PathBuf,
) -> anyhow::Result<DownstreamConfig> {
    let url = |value: &Option<String>, flag: &str| {
        value
            .clone()
            .with_context(|| format!("a worker needs --{flag}"))
    };
    Ok(DownstreamConfig {
        servicenow_url: url(&args.servicenow_url, "servicenow-url")?,
        catalyst_url: url(&args.catalyst_url, "catalyst-url")?,
        github_url: args.github_url.clone(),
        ca_file: args.ca_file.clone(),
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(50)),
        snapshot_dir,
    })
}

pub(crate) async fn worker(g: &GlobalArgs, args: Box<WorkerArgs>) -> anyhow::Result<()> {
    let WorkerArgs {
        downstream: worker,
        snapshot_dir,
        health_listen,
    } = *args;
    let downstream = downstream_config(
        &worker,
        snapshot_dir.unwrap_or_else(|| g.data_dir.join("snapshots")),
    )?;
    let credentials = credential_provider(&worker.vault, worker.secrets)?;
    #[cfg(not(feature = "dev"))]
    let address = g.temporal_address.clone().context(
        "worker needs --temporal-address (CHANGEFLOW_TEMPORAL_ADDRESS): this build has no embedded Temporal",
    )?;
    #[cfg(feature = "dev")]
    let (_temporal, address) = match &g.temporal_address {
        Some(address) => (None, address.clone()),
        None => {
            let server = changeflow_devstack::EmbeddedTemporal::start(
                &changeflow::embedded_temporal_options(&g.data_dir),
            )?;
            eprintln!(
                "Started embedded Temporal at {} (UI {})",
                server.address(),
                server.ui_url()
            );
            let address = server.address();
            (Some(server), address)
        }
    };
    let client =
        changeflow_engine::temporal::connect(&address, &g.namespace, "changeflow-worker").await?;
    let health = match &health_listen {
        Some(listen) => {
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen} for health checks"))?;
            let serve = changeflow_mcp_frontend::health::serve_worker(
                listener,
                client.clone(),
                std::future::pending(),
            );
            Some(tokio::spawn(serve))
        }
        None => None,
    };
    let worked = changeflow::worker::run_worker(
        client,
        &g.task_queue,
        &downstream,
        credentials,
        worker.sdk_metrics_listen,
        stop_requested(),
    )
    .await;
    if let Some(health) = health {
        health.abort();
    }
    worked
}

pub(crate) async fn audit(
    g: &GlobalArgs,
    args: AuditArgs,
) -> anyhow::Result<std::process::ExitCode> {
    use changeflow_engine::audit::AuditFilter;
    let store = open_audit(g, args.database_url.as_deref()).await?;
    match args.command {
        AuditCommand::Verify => {
            let report = store.verify().await?;
            match report.first_broken {
                None => {
                    eprintln!("audit chain intact: {} record(s) verified", report.records);
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Some(broken) => {
                    eprintln!(
                        "audit chain BROKEN at record {} of {}: {}",
                        broken.seq, report.records, broken.problem
                    );
                    Ok(std::process::ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::List(args) => {
            let filter = AuditFilter::from(args);
            for record in store.list(&filter).await? {
                println!("{}", serde_json::to_string(&record)?);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

pub(crate) async fn replay(
    g: &GlobalArgs,
    args: ReplayArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let history = match (&args.file, &args.change_id) {
        (Some(file), _) => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            changeflow::replay::decode(&bytes)
                .with_context(|| format!("reading a history from {}", file.display()))?
        }
        (None, Some(id)) => match from_temporal(g, id).await {
            Ok(history) => history,
            Err(unavailable) => {
                let audit = open_audit(g, args.audit_database_url.as_deref()).await?;
                let archived = audit.archived(id).await?.with_context(|| {
                    format!("{unavailable:#}; and the audit store has no archived history of {id}")
                })?;
                eprintln!(
                    "Temporal has no history of {id} ({unavailable:#}); replaying the archived copy (run {}, sha256 {})",
                    archived.run_id, archived.sha256
                );
                changeflow::replay::decode(&archived.history)?
            }
        },
        (None, None) => anyhow::bail!("name a change or --file"),
    };
    if let Some(export) = &args.export {
        std::fs::write(export, changeflow::replay::to_proto_json(&history)?)
            .with_context(|| format!("writing {}", export.display()))?;
    }
    let verdict = changeflow::replay::replay(history).await?;
    println!("{verdict}");
    Ok(match verdict {
        changeflow::replay::Verdict::Deterministic { .. } => std::process::ExitCode::SUCCESS,
        changeflow::replay::Verdict::Nondeterministic { .. } => std::process::ExitCode::FAILURE,
    })
}

pub(crate) async fn watch(
    g: &GlobalArgs,
    args: WatchArgs,
) -> anyhow::Result<std::process::ExitCode> {
    let address = temporal_address_of(g)?;
    let client =
        changeflow_engine::temporal::connect(&address, &g.namespace, "changeflow-watch").await?;
    let output = if args.json {
        changeflow::watch::Output::Json
    } else {
        changeflow::watch::Output::Terminal
    };
    let Some(id) = args.change_id else {
        changeflow::watch::all(&client, output, std::time::Duration::from_secs(2)).await?;
        return Ok(std::process::ExitCode::SUCCESS);
    };
    let web_ui = web_ui_of(g).map(|ui| format!("{ui}/namespaces/{}/workflows/{id}", g.namespace));
    Ok(
        if changeflow::watch::one(&client, &id, output, web_ui).await? {
            std::process::ExitCode::SUCCESS
        } else {
            std::process::ExitCode::FAILURE
        },
    )
}

/// The development stack's Temporal Web UI, when one is running.
fn web_ui_of(g: &GlobalArgs) -> Option<String> {
    let (_, endpoints) = running_stack(g).ok()?;
    endpoints["temporal_ui"].as_str().map(str::to_string)
}

/// The running development stack's `endpoints.json` in the data directory: its path and
/// contents.
pub(crate) fn running_stack(
    g: &GlobalArgs,
) -> anyhow::Result<(std::path::PathBuf, serde_json::Value)> {
    let path = g.data_dir.join("endpoints.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no development stack is running with data dir {}: start `changeflow dev` first",
            g.data_dir.display()
        )
    })?;
    let endpoints =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    Ok((path, endpoints))
}

/// The audit store named on the command line, or the data directory's.
pub(crate) async fn open_audit(
    g: &GlobalArgs,
    url: Option<&str>,
) -> anyhow::Result<changeflow_engine::audit::AuditStore> {
    Ok(match url {
        Some(url) => changeflow_engine::audit::AuditStore::open(url).await?,
        None => changeflow_engine::audit::AuditStore::open_in(&g.data_dir).await?,
    })
}

/// A change's history from Temporal.
async fn from_temporal(
    g: &GlobalArgs,
    id: &str,
) -> anyhow::Result<temporalio_common::protos::temporal::api::history::v1::History> {
    let address = temporal_address_of(g)?;
    let client =
        changeflow_engine::temporal::connect(&address, &g.namespace, "changeflow-replay").await?;
    Ok(changeflow_mcp_frontend::changes::fetch_history(&client, id).await?)
}

/// Temporal's address: --temporal-address, else the running development stack's.
pub(crate) fn temporal_address_of(g: &GlobalArgs) -> anyhow::Result<String> {
    if let Some(address) = &g.temporal_address {
        return Ok(address.clone());
    }
    let (path, endpoints) = running_stack(g).context("no --temporal-address")?;
    endpoints["temporal"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("{} names no temporal address", path.display()))
}

pub(crate) fn policy(args: PolicyArgs) -> anyhow::Result<std::process::ExitCode> {
    let PolicyCommand::Test = args.command;
    let engine = changeflow_engine::policy::PolicyEngine::load(&args.dir)?;
    let results = engine.run_rego_tests();
    for (rule, passed, detail) in &results {
        if *passed {
            println!("ok    {rule}");
        } else {
            println!("FAIL  {rule}: {detail}");
        }
    }
    let failed = results.iter().filter(|(_, passed, _)| !passed).count();
    eprintln!(
        "policy revision {}: {} test(s), {failed} failing",
        engine.revision(),
        results.len()
    );
    Ok(if failed == 0 && !results.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}

pub(crate) async fn serve(g: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let address = g
        .temporal_address
        .clone()
        .context("serve needs --temporal-address (CHANGEFLOW_TEMPORAL_ADDRESS); `changeflow dev` runs everything locally")?;
    let snapshot_dir = args
        .snapshot_dir
        .clone()
        .unwrap_or_else(|| g.data_dir.join("snapshots"));
    let worker = if args.in_process_worker {
        let worker = args.worker;
        Some((
            downstream_config(&worker, snapshot_dir.clone()).context("--in-process-worker")?,
            credential_provider(&worker.vault, worker.secrets)?,
            worker.sdk_metrics_listen,
        ))
    } else {
        None
    };
    let client =
        changeflow_engine::temporal::connect(&address, &g.namespace, "changeflow-frontend").await?;
    let public_url = args
        .public_url
        .clone()
        .map(|u| u.trim_end_matches('/').to_string());
    let audience = args.oidc_audience.clone().unwrap_or_else(|| {
        format!(
            "{}/mcp",
            public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", args.listen))
        )
    });
    let options = changeflow::front_door::FrontDoorOptions {
        data_dir: g.data_dir.clone(),
        oidc_issuer: args.oidc_issuer,
        oidc_audience: audience,
        policy_dir: args.policy_dir,
        audit_database_url: args.audit_database_url,
        allowed_hosts: args.allowed_hosts,
        allowed_origins: args.allowed_origins,
        task_queue: g.task_queue.clone(),
        idempotency_window: std::time::Duration::from_secs(args.idempotency_window_secs),
        approval_poll_secs: args.approval_poll_secs,
        archive_every: std::time::Duration::from_secs(args.archive_interval_secs),
        archive_reads: args.archive_reads,
        snapshot_dir,
        max_in_flight: args.max_in_flight,
        web: args
            .ui_client_id
            .map(|client_id| changeflow::front_door::WebOptions {
                client_id,
                client_secret: args.ui_client_secret.filter(|s| !s.is_empty()),
                scopes: args.ui_scopes,
                links: changeflow_mcp_frontend::ui::Links {
                    temporal_ui: args.temporal_ui_url,
                    temporal_namespace: g.namespace.clone(),
                    servicenow: args.servicenow_ui_url,
                },
            }),
    };
    // The worker shares the front door's client, so that the SDK hands it the first workflow
    // task of each start made through that client (eager start).
    let mut worker = worker.map(|(downstream, credentials, sdk_metrics)| {
        changeflow::worker::LocalWorker::spawn(
            client.clone(),
            g.task_queue.clone(),
            downstream,
            credentials,
            sdk_metrics,
        )
    });
    let door = changeflow::front_door::start(options, &args.listen, public_url, client).await?;
    eprintln!(
        "MCP front door at {} (metadata at {}/.well-known/oauth-protected-resource){}",
        door.mcp_url(),
        door.url,
        if worker.is_some() {
            format!(", with a worker in process on task queue {}", g.task_queue)
        } else {
            String::new()
        }
    );
    let stopped_by_worker = tokio::select! {
        _ = stop_requested() => None,
        e = async {
            match worker.as_mut() {
                Some(running) => running.failed().await,
                None => std::future::pending().await,
            }
        } => Some(e),
    };
    if let Some(e) = stopped_by_worker {
        door.shutdown(std::time::Duration::ZERO).await;
        return Err(e.context("in-process worker"));
    }
    let grace = std::time::Duration::from_secs(args.shutdown_grace_secs);
    tracing::info!(
        grace_secs = args.shutdown_grace_secs,
        "stopping: no new connections; finishing requests in flight"
    );
    if door.shutdown(grace).await {
        tracing::info!("front door stopped");
    } else {
        tracing::warn!(
            grace_secs = args.shutdown_grace_secs,
            "front door stopped with requests still in flight after the grace period (their changes go on in Temporal)"
        );
    }
    if let Some(mut running) = worker {
        running.request_stop();
        running.stopped().await?;
    }
    Ok(())
}
