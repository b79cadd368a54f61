//! The development commands (`dev` feature): `demo`, `dev`, `simulate`, `token` and the
//! conformance suite's `conformance-server`, all on the embedded stack and the simulators.

use crate::cli::*;
use crate::commands::stop_requested;
use anyhow::Context;
use changeflow::stack::{Stack, StackOptions};
use changeflow_simulators::{FaultConfig, seed};
use std::time::Duration;

/// The embedded stack plus an in-process worker.
pub(crate) async fn start_stack_with_worker(
    g: &GlobalArgs,
    args: &StackArgs,
) -> anyhow::Result<(Stack, changeflow::worker::LocalWorker)> {
    let stack = Stack::start(StackOptions {
        data_dir: g.data_dir.clone(),
        temporal_address: g.temporal_address.clone(),
        namespace: g.namespace.clone(),
        task_queue: g.task_queue.clone(),
        simulators: args
            .simulators
            .options(&g.data_dir, FaultConfig::default())?,
        poll_interval: Duration::from_millis(500),
        policy_dir: args.policy_dir.clone(),
    })
    .await?;
    let worker = changeflow::worker::LocalWorker::spawn(
        stack.client.clone(),
        stack.task_queue.clone(),
        stack.downstream(),
        stack.credentials()?,
        None,
    );
    Ok((stack, worker))
}

pub(crate) async fn demo(g: &GlobalArgs, args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    eprintln!(
        "Starting the embedded stack in {} ...",
        g.data_dir.display()
    );
    let (stack, mut worker) = start_stack_with_worker(g, &args.stack).await?;

    // Drive the change through the MCP front door, as an assistant would, with a dev token.
    let token =
        stack
            .dev_issuer
            .issuer
            .mint(&changeflow_devstack::dev_issuer::DevTokenRequest {
                user: args.user.clone(),
                audience: changeflow_devstack::dev_issuer::DEV_AUDIENCE.to_string(),
                ttl: Duration::from_secs(3600),
                mfa: None,
            })?;
    let (mut mcp, _) =
        changeflow::mcp_client::McpClient::connect(&stack.front_door.mcp_url(), &token).await?;
    let devices = ["sj-access-01", "sj-access-02", "lon-access-01"];
    let change_type = args.change_type.as_str();
    eprintln!(
        "Calling deploy_template at {} as {}: template \"NTP Servers\" to {} as a {change_type} change",
        stack.front_door.mcp_url(),
        args.user,
        devices.join(", ")
    );
    let mut arguments = serde_json::json!({
        "template_id": seed::id("template", "NTP Servers"),
        "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"},
        "devices": devices,
        "change_type": change_type,
        "idempotency_key": format!("demo-{}", uuid::Uuid::new_v4().simple()),
    });
    if args.change_type == DemoChangeType::Emergency {
        arguments["justification"] = "demo: an emergency change needs a reason".into();
    }
    let mut last = String::new();
    let mut announced = false;
    let mut show = |percent: f64, message: &str| {
        // Progress messages start with the change id; show it once.
        let (change, text) = message
            .split_once(": ")
            .filter(|(id, _)| id.starts_with("change-"))
            .unwrap_or(("", message));
        if !change.is_empty() && !announced {
            eprintln!("Change {change} started; progress:");
            announced = true;
        }
        let line = format!("[{percent:>3.0}%] {text}");
        if line != last {
            eprintln!("{line}");
            last = line;
        }
    };
    let mut outcome = mcp.call_tool("deploy_template", arguments, &mut show).await;
    if let Ok(result) = &outcome
        && result["structuredContent"]["status"] == "awaiting_approval"
    {
        outcome = approve_as_carol(&stack, &mut mcp, &result["structuredContent"]).await;
    }

    worker.request_stop();
    if let Err(e) = worker.stopped().await {
        tracing::warn!(error = %e, "worker stopped with an error");
    }
    let result = outcome?;
    let content = result["structuredContent"].clone();
    let change_id = content["change_id"].as_str().unwrap_or("").to_string();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("unknown reason").to_string();
    let code = if content["outcome"] == "succeeded" || content["step"] == "completed" {
        println!("{}", serde_json::to_string_pretty(&content)?);
        eprintln!(
            "Change {change_id} succeeded: ticket {} closed successful.",
            text(&content["ticket_number"])
        );
        std::process::ExitCode::SUCCESS
    } else if content["outcome"] == "failed" || content["step"] == "failed" {
        println!("{}", serde_json::to_string_pretty(&content)?);
        eprintln!(
            "Change {change_id} failed: ticket {} closed unsuccessful: {}",
            text(&content["ticket_number"]),
            text(&content["failure_reason"])
        );
        std::process::ExitCode::FAILURE
    } else if content.is_object() {
        eprintln!("The call was refused: {}", text(&content["reason"]));
        std::process::ExitCode::FAILURE
    } else {
        eprintln!(
            "Change did not complete: {}",
            text(&result["content"][0]["text"])
        );
        std::process::ExitCode::FAILURE
    };
    if let Some(ui) = stack
        .workflow_url(&change_id)
        .filter(|_| !change_id.is_empty())
    {
        eprintln!(
            "Workflow history: {ui}  (the Web UI runs only while changeflow does; `changeflow dev` keeps it up)"
        );
    }
    eprintln!(
        "Every call is in the audit store; check it with `changeflow audit verify --data-dir {}`.",
        g.data_dir.display()
    );
    Ok(code)
}

/// The approval step of a normal or emergency demo change: carol (an approver, with MFA)
/// approves it on the approvals server, then the change is followed to its end. Returns the
/// final `get_change_status` answer.
async fn approve_as_carol(
    stack: &Stack,
    mcp: &mut changeflow::mcp_client::McpClient,
    waiting: &serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let change_id = waiting["change_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    eprintln!(
        "Change {change_id} (ticket {}) {} since {}.",
        waiting["ticket_number"].as_str().unwrap_or("?"),
        waiting["message"].as_str().unwrap_or("awaits approval"),
        waiting["waiting_since"].as_str().unwrap_or("now")
    );
    let token =
        stack
            .dev_issuer
            .issuer
            .mint(&changeflow_devstack::dev_issuer::DevTokenRequest {
                user: "carol".into(),
                audience: changeflow_devstack::dev_issuer::DEV_AUDIENCE.to_string(),
                ttl: Duration::from_secs(600),
                mfa: Some(true),
            })?;
    let approvals = format!("{}/approvals", stack.front_door.mcp_url());
    let (mut carol, _) = changeflow::mcp_client::McpClient::connect(&approvals, &token).await?;
    eprintln!("Calling approve_change at {approvals} as carol (change-approvers, MFA) ...");
    let decided = carol
        .call_tool(
            "approve_change",
            serde_json::json!({"change_id": change_id, "comment": "approved in the changeflow demo"}),
            |_, _| {},
        )
        .await?;
    if decided["structuredContent"]["accepted"] != true {
        anyhow::bail!("carol's approval was not accepted: {decided}");
    }
    eprintln!("Approved by carol; the change proceeds:");
    let mut last = String::new();
    loop {
        let status = mcp
            .call_tool(
                "get_change_status",
                serde_json::json!({"change_id": change_id}),
                |_, _| {},
            )
            .await?;
        let content = &status["structuredContent"];
        let line = format!(
            "[{:>3}%] {}: {}",
            content["percent"],
            content["step"].as_str().unwrap_or("?"),
            content["message"].as_str().unwrap_or("")
        );
        if line != last {
            eprintln!("{line}");
            last = line;
        }
        if content["status"] != "running" {
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

pub(crate) async fn dev(g: &GlobalArgs, args: DevArgs) -> anyhow::Result<()> {
    let (stack, mut worker) = start_stack_with_worker(g, &args.stack).await?;
    let path = stack.write_endpoints(&g.data_dir)?;
    let e = stack.endpoints();
    eprintln!("changeflow dev stack is running:");
    eprintln!("  Temporal        {}", e.temporal);
    if let Some(ui) = &e.temporal_ui {
        eprintln!("  Temporal UI     {ui}");
    }
    eprintln!(
        "  ServiceNow      {}  (user {})",
        e.servicenow, e.credentials.servicenow_username
    );
    eprintln!(
        "  Catalyst Center {}  (user {})",
        e.catalyst_center, e.credentials.catalyst_username
    );
    eprintln!(
        "  GitHub          {}/api/v3  (tokens per user in endpoints.json)",
        e.github
    );
    if let Some(ca) = &e.ca_file {
        eprintln!("  CA certificate  {}", ca.display());
    }
    eprintln!("  Worker          task queue {}", e.task_queue);
    eprintln!(
        "  MCP             {}  (token: changeflow token --user alice)",
        e.mcp
    );
    eprintln!("  Web view        {}  (sign in as any demo user)", e.ui);
    eprintln!("  OpenID provider {}", e.oidc_issuer);
    eprintln!("  OpenBao         {}", e.vault);
    eprintln!("Endpoints and development credentials: {}", path.display());
    eprintln!("Press Ctrl-C to stop.");
    tokio::select! {
        _ = stop_requested() => {}
        e = worker.failed() => return Err(e),
    }
    worker.request_stop();
    let _ = std::fs::remove_file(&path);
    eprintln!("Stopped.");
    Ok(())
}

pub(crate) async fn simulate(g: &GlobalArgs, args: SimulateArgs) -> anyhow::Result<()> {
    let faults = FaultConfig {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        rate_limit_rate: args.rate_limit_rate,
        retry_after_secs: args.retry_after,
        ..FaultConfig::default()
    };
    let options = args.simulators.options(&g.data_dir, faults)?;
    let sims = changeflow_simulators::start(options)
        .await
        .context("starting the simulators")?;
    let endpoints = serde_json::json!({
        "servicenow": sims.servicenow_url,
        "catalyst_center": sims.catalyst_url,
        "github": sims.github_url,
        "github_tokens": sims.github.tokens(),
        "ca_file": sims.ca_file,
        "credentials": sims.credentials,
    });
    println!("{}", serde_json::to_string_pretty(&endpoints)?);
    eprintln!(
        "Simulators running (ServiceNow {}, Catalyst Center {}, GitHub {}). Press Ctrl-C to stop.",
        sims.servicenow_url, sims.catalyst_url, sims.github_url
    );
    stop_requested().await;
    sims.shutdown();
    Ok(())
}

pub(crate) async fn token(g: &GlobalArgs, args: TokenArgs) -> anyhow::Result<()> {
    let (path, endpoints) = crate::commands::running_stack(g)?;
    let field = |name: &str| {
        endpoints[name]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("{} lacks '{name}'", path.display()))
    };
    let mut form = vec![
        ("grant_type", "password".to_string()),
        ("client_id", field("dev_client_id")?),
        ("client_secret", field("dev_client_secret")?),
        ("username", args.user.clone()),
        (
            "audience",
            args.audience
                .map(Ok)
                .unwrap_or_else(|| field("oidc_audience"))?,
        ),
        ("ttl", args.ttl.to_string()),
    ];
    if args.no_mfa {
        form.push(("mfa", "false".into()));
    }
    let response = reqwest::Client::new()
        .post(format!("{}/token", field("oidc_issuer")?))
        .form(&form)
        .send()
        .await
        .context(
            "the development OpenID provider did not answer: is `changeflow dev` still running?",
        )?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("token response")?;
    match body["access_token"].as_str() {
        Some(token) if status.is_success() => {
            println!("{token}");
            Ok(())
        }
        _ => anyhow::bail!(
            "no token: {}",
            body["error_description"]
                .as_str()
                .unwrap_or("the provider refused")
        ),
    }
}

pub(crate) async fn conformance_server(
    g: &GlobalArgs,
    args: ConformanceServerArgs,
) -> anyhow::Result<()> {
    let address = g
        .temporal_address
        .clone()
        .context("conformance-server needs --temporal-address (CHANGEFLOW_TEMPORAL_ADDRESS)")?;
    let client =
        changeflow_engine::temporal::connect(&address, &g.namespace, "changeflow-conformance")
            .await?;
    std::fs::create_dir_all(&g.data_dir)?;
    let door = changeflow::front_door::start_conformance_profile(
        &args.listen,
        &g.data_dir,
        client,
        &g.task_queue,
    )
    .await?;
    eprintln!(
        "conformance fixtures at {} (test only, no authentication)",
        door.mcp_url()
    );
    stop_requested().await;
    Ok(())
}
