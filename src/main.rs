//! The `changeflow` command line: parses arguments, sets up logging and runs one subcommand.
//! Data (results, endpoints) goes to stdout; progress and logs go to stderr.

use anyhow::Context;
use changeflow::stack::{Stack, StackOptions};
use changeflow_activities::DownstreamConfig;
use changeflow_engine::vault::{VaultAuth, VaultCredentials, VaultSettings};
use changeflow_engine::{
    CatalystCredentials, CredentialProvider, Secret, ServiceNowCredentials, StaticCredentials,
};
use changeflow_simulators::{FaultConfig, SimulatorOptions, seed};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "changeflow",
    version,
    about = "Network changes as durable Temporal workflows, behind an MCP front door.",
    long_about = "changeflow turns network-change requests into durable Temporal workflows: validate, open a \
ServiceNow change request, deploy a Catalyst Center template, verify, and close the ticket.\n\n\
Quick start: `changeflow demo` runs one sample change on an embedded stack; `changeflow dev` keeps the stack running."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct GlobalArgs {
    /// Directory for local state: Temporal history, the simulators' CA, endpoints.json.
    #[arg(
        long,
        global = true,
        env = "CHANGEFLOW_DATA_DIR",
        default_value = ".changeflow"
    )]
    data_dir: PathBuf,
    /// Temporal frontend (host:port). When absent, an embedded dev server is started.
    #[arg(long, global = true, env = "CHANGEFLOW_TEMPORAL_ADDRESS")]
    temporal_address: Option<String>,
    /// Temporal namespace.
    #[arg(
        long,
        global = true,
        env = "CHANGEFLOW_NAMESPACE",
        default_value = "default"
    )]
    namespace: String,
    /// Task queue the worker polls and changes are submitted to.
    #[arg(long, global = true, env = "CHANGEFLOW_TASK_QUEUE", default_value = changeflow_workflows::DEFAULT_TASK_QUEUE)]
    task_queue: String,
    /// Log format on stderr: text for people, json for the Elastic stack.
    #[arg(long, global = true, env = "CHANGEFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start the embedded stack, run one sample change with live progress, print its result.
    Demo(DemoArgs),
    /// Start the embedded stack (Temporal, simulators, worker) and keep it running.
    Dev(DevArgs),
    /// Serve the MCP front door against a configured Temporal and OpenID provider.
    #[command(
        long_about = "Serve the MCP front door: Streamable HTTP at /mcp (all servers) and /mcp/{server}, \
RFC 9728 metadata at /.well-known/oauth-protected-resource. Every request needs a bearer token from the \
configured OpenID provider; every tool call is authorized by the policy and written to the audit store."
    )]
    Serve(ServeArgs),
    /// Test only: serve the MCP conformance suite's fixture tools without authentication (loopback only).
    #[command(
        hide = true,
        long_about = "Test only. Serve the fixture tools the MCP conformance suite \
(@modelcontextprotocol/conformance) expects (greet, slow_compute, failing_job, confirm_delete, \
test_tool_with_task and the rest), each run as a workflow, at /mcp. The suite sends no token, so every request acts as a fixed test identity; for that reason \
this refuses to listen on anything but a loopback address. Needs --temporal-address and a running \
`changeflow worker` on the same task queue."
    )]
    ConformanceServer(ConformanceServerArgs),
    /// Run a worker against configured ServiceNow and Catalyst Center.
    #[command(
        long_about = "Run a worker that executes changeflow's workflows and activities.\n\n\
Credentials are read from the environment, never from flags: CHANGEFLOW_SERVICENOW_USERNAME, \
CHANGEFLOW_SERVICENOW_PASSWORD, CHANGEFLOW_SERVICENOW_CLIENT_ID, CHANGEFLOW_SERVICENOW_CLIENT_SECRET, \
CHANGEFLOW_CATALYST_USERNAME, CHANGEFLOW_CATALYST_PASSWORD."
    )]
    Worker(WorkerArgs),
    /// Run only the ServiceNow and Catalyst Center simulators.
    Simulate(SimulateArgs),
    /// Inspect the audit store: list records, verify the hash chain.
    Audit(AuditArgs),
    /// Check an authorization policy: load it and run its Rego unit tests.
    Policy(PolicyArgs),
    /// Print an access token for a demo user from the running `changeflow dev` stack.
    #[command(
        long_about = "Print an access token (JWT) for a demo user, issued by the development OpenID provider \
of the `changeflow dev` stack running with the same --data-dir. Demo users: alice (network-engineers, MFA), \
bob (service-desk), carol (change-approvers), dave (developers), admin (admin, MFA)."
    )]
    Token(TokenArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CHANGEFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
    /// Public base URL clients use (default: http://<listen>); the resource is <public-url>/mcp.
    #[arg(long, env = "CHANGEFLOW_PUBLIC_URL")]
    public_url: Option<String>,
    /// OpenID provider issuer URL (discovery at <issuer>/.well-known/openid-configuration).
    #[arg(long, env = "CHANGEFLOW_OIDC_ISSUER")]
    oidc_issuer: String,
    /// Audience tokens must carry (default: <public-url>/mcp, the RFC 8707 resource).
    #[arg(long, env = "CHANGEFLOW_OIDC_AUDIENCE")]
    oidc_audience: Option<String>,
    /// Directory of the Rego policy (watched; a bad edit keeps the last good policy).
    #[arg(long, env = "CHANGEFLOW_POLICY_DIR", default_value = "policy")]
    policy_dir: PathBuf,
    /// Audit database: sqlite://PATH or postgres://... (default: audit.db in the data directory).
    #[arg(long, env = "CHANGEFLOW_AUDIT_DATABASE_URL")]
    audit_database_url: Option<String>,
    /// Accepted Host header values (DNS-rebinding protection); repeat or comma-separate.
    #[arg(long = "allowed-host", env = "CHANGEFLOW_ALLOWED_HOSTS", value_delimiter = ',', default_values = ["127.0.0.1", "localhost"])]
    allowed_hosts: Vec<String>,
    /// Accepted browser Origin values for MCP, with scheme (port `*` for any); repeat or comma-separate.
    #[arg(long = "allowed-origin", env = "CHANGEFLOW_ALLOWED_ORIGINS", value_delimiter = ',', default_values = ["http://localhost:*", "http://127.0.0.1:*"])]
    allowed_origins: Vec<String>,
    /// Seconds within which the same caller, tool and arguments reuse one workflow instead of
    /// starting another (an explicit idempotency_key always does).
    #[arg(long, env = "CHANGEFLOW_IDEMPOTENCY_WINDOW_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    idempotency_window_secs: u64,
}

#[derive(Args)]
struct ConformanceServerArgs {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
}

#[derive(Args)]
struct PolicyArgs {
    /// Directory of .rego files (the policy and its *_test packages).
    #[arg(long, env = "CHANGEFLOW_POLICY_DIR", default_value = "policy")]
    dir: PathBuf,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Run every `test_*` rule of every `*_test` package; exits 1 if any fails or the policy does not load.
    Test,
}

#[derive(Args)]
struct TokenArgs {
    /// Demo user: alice, bob, carol, dave or admin.
    #[arg(long)]
    user: String,
    /// Audience (resource) the token is for; default: the stack's.
    #[arg(long)]
    audience: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Issue the token without the `mfa` authentication method.
    #[arg(long)]
    no_mfa: bool,
}

#[derive(Args)]
struct AuditArgs {
    /// Audit database: sqlite://PATH or postgres://... (default: audit.db in the data directory).
    #[arg(long, global = true, env = "CHANGEFLOW_AUDIT_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole hash chain; exits 1 and names the first broken record if it is broken.
    Verify,
    /// Print matching records as JSON lines on stdout, oldest first.
    List {
        /// Only records of this subject (caller).
        #[arg(long)]
        subject: Option<String>,
        /// Only records of this tool.
        #[arg(long)]
        tool: Option<String>,
        /// Only records of this workflow.
        #[arg(long)]
        workflow_id: Option<String>,
        /// Only records at or after this time (RFC 3339, e.g. 2026-11-26T08:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only records at or before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// At most this many records.
        #[arg(long)]
        limit: Option<i64>,
    },
}

#[derive(Args)]
struct SimulatorArgs {
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    plain_http: bool,
    /// Port of the ServiceNow simulator (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    servicenow_port: u16,
    /// Port of the Catalyst Center simulator (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    catalyst_port: u16,
    /// Seconds a template deployment takes, from submission to the last device.
    #[arg(long, default_value_t = 6.0)]
    deploy_seconds: f64,
    /// Hostname of a device whose deployment fails.
    #[arg(long)]
    failing_device: Option<String>,
}

impl SimulatorArgs {
    fn options(
        &self,
        data_dir: &std::path::Path,
        faults: FaultConfig,
    ) -> anyhow::Result<SimulatorOptions> {
        anyhow::ensure!(
            self.deploy_seconds.is_finite() && self.deploy_seconds >= 0.0,
            "--deploy-seconds must be a non-negative number"
        );
        let mut options = SimulatorOptions::new(data_dir);
        options.tls = !self.plain_http;
        options.servicenow_addr = SocketAddr::from(([127, 0, 0, 1], self.servicenow_port));
        options.catalyst_addr = SocketAddr::from(([127, 0, 0, 1], self.catalyst_port));
        options.deploy_duration = Duration::from_secs_f64(self.deploy_seconds);
        options.faults = FaultConfig {
            failing_device: self.failing_device.clone(),
            ..faults
        };
        Ok(options)
    }
}

#[derive(Args)]
struct DemoArgs {
    #[command(flatten)]
    simulators: SimulatorArgs,
    /// Demo user who calls the tool (alice may deploy; bob, say, is refused by policy).
    #[arg(long, default_value = "alice")]
    user: String,
}

#[derive(Args)]
struct DevArgs {
    #[command(flatten)]
    simulators: SimulatorArgs,
}

#[derive(Args)]
struct WorkerArgs {
    /// ServiceNow instance URL.
    #[arg(long, env = "CHANGEFLOW_SERVICENOW_URL")]
    servicenow_url: String,
    /// Catalyst Center URL.
    #[arg(long, env = "CHANGEFLOW_CATALYST_URL")]
    catalyst_url: String,
    /// Extra CA certificates (PEM) to trust for both systems.
    #[arg(long, env = "CHANGEFLOW_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// Milliseconds between deployment task polls.
    #[arg(long, default_value_t = 1000)]
    poll_interval_ms: u64,
    #[command(flatten)]
    vault: VaultArgs,
}

#[derive(Args)]
struct VaultArgs {
    /// Vault/OpenBao address; credentials are then read from Vault (KV v2) at the moment of use.
    /// Login: CHANGEFLOW_VAULT_TOKEN, or CHANGEFLOW_VAULT_ROLE_ID and CHANGEFLOW_VAULT_SECRET_ID (AppRole).
    #[arg(long, env = "CHANGEFLOW_VAULT_ADDR")]
    vault_address: Option<String>,
    /// KV v2 mount holding the secrets.
    #[arg(long, env = "CHANGEFLOW_VAULT_MOUNT", default_value = "secret")]
    vault_mount: String,
    /// Path of the ServiceNow secret (fields username, password, client_id, client_secret).
    #[arg(
        long,
        env = "CHANGEFLOW_VAULT_SERVICENOW_PATH",
        default_value = "changeflow/servicenow"
    )]
    vault_servicenow_path: String,
    /// Path of the Catalyst Center secret (fields username, password).
    #[arg(
        long,
        env = "CHANGEFLOW_VAULT_CATALYST_PATH",
        default_value = "changeflow/catalyst-center"
    )]
    vault_catalyst_path: String,
    /// Seconds a secret read from Vault is reused before it is read again.
    #[arg(long, env = "CHANGEFLOW_VAULT_CACHE_SECONDS", default_value_t = 30)]
    vault_cache_seconds: u64,
}

#[derive(Args)]
struct SimulateArgs {
    #[command(flatten)]
    simulators: SimulatorArgs,
    /// Milliseconds added to every API response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of API requests (0–1) answered with HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share of API requests (0–1) answered with HTTP 429.
    #[arg(long, default_value_t = 0.0)]
    rate_limit_rate: f64,
    /// Retry-After seconds sent with 429 answers.
    #[arg(long, default_value_t = 2)]
    retry_after: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    changeflow_engine::telemetry::init_logging(
        matches!(cli.global.log_format, LogFormat::Json),
        "warn,changeflow=info",
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The Temporal worker is not Send: everything runs on a LocalSet.
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let g = cli.global;
    let success = |result: anyhow::Result<()>| result.map(|_| std::process::ExitCode::SUCCESS);
    match cli.command {
        Command::Demo(args) => demo(&g, args).await,
        Command::Dev(args) => success(dev(&g, args).await),
        Command::Worker(args) => success(worker(&g, args).await),
        Command::Simulate(args) => success(simulate(&g, args).await),
        Command::Audit(args) => audit(&g, args).await,
        Command::Policy(args) => policy(args),
        Command::Serve(args) => success(serve(&g, args).await),
        Command::ConformanceServer(args) => success(conformance_server(&g, args).await),
        Command::Token(args) => success(token(&g, args).await),
    }
}

async fn start_stack(g: &GlobalArgs, simulators: SimulatorOptions) -> anyhow::Result<Stack> {
    Stack::start(StackOptions {
        data_dir: g.data_dir.clone(),
        temporal_address: g.temporal_address.clone(),
        namespace: g.namespace.clone(),
        task_queue: g.task_queue.clone(),
        simulators,
        poll_interval: Duration::from_millis(500),
        policy_dir: std::env::var_os("CHANGEFLOW_POLICY_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("policy")),
    })
    .await
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
async fn stop_requested() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// The embedded stack plus an in-process worker, stopped by sending on the returned channel.
async fn start_stack_with_worker(
    g: &GlobalArgs,
    simulators: &SimulatorArgs,
) -> anyhow::Result<(
    Stack,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
)> {
    let stack = start_stack(g, simulators.options(&g.data_dir, FaultConfig::default())?).await?;
    let (stop_worker, stopped) = tokio::sync::oneshot::channel();
    let client = stack.client.clone();
    let task_queue = stack.task_queue.clone();
    let downstream = stack.downstream();
    let credentials = stack.credentials()?;
    let worker = tokio::task::spawn_local(async move {
        changeflow::worker::run_worker(client, &task_queue, &downstream, credentials, async {
            let _ = stopped.await;
        })
        .await
    });
    Ok((stack, stop_worker, worker))
}

async fn demo(g: &GlobalArgs, args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    eprintln!(
        "Starting the embedded stack in {} ...",
        g.data_dir.display()
    );
    let (stack, stop_worker, worker) = start_stack_with_worker(g, &args.simulators).await?;

    // Drive the change through the MCP front door, as an assistant would, with a dev token.
    let token = stack
        .dev_issuer
        .issuer
        .mint(&changeflow_engine::dev_issuer::DevTokenRequest {
            user: args.user.clone(),
            audience: changeflow_engine::dev_issuer::DEV_AUDIENCE.to_string(),
            ttl: Duration::from_secs(3600),
            mfa: None,
        })?;
    let (mut mcp, _) =
        changeflow::mcp_client::McpClient::connect(&stack.front_door.mcp_url(), &token).await?;
    let devices = ["sj-access-01", "sj-access-02", "lon-access-01"];
    eprintln!(
        "Calling deploy_template at {} as {}: template \"NTP Servers\" to {}",
        stack.front_door.mcp_url(),
        args.user,
        devices.join(", ")
    );
    let arguments = serde_json::json!({
        "template_id": seed::id("template", "NTP Servers"),
        "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"},
        "devices": devices,
        "idempotency_key": format!("demo-{}", uuid::Uuid::new_v4().simple()),
    });
    let mut last = String::new();
    let mut announced = false;
    let outcome = mcp
        .call_tool("deploy_template", arguments, |percent, message| {
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
        })
        .await;

    let _ = stop_worker.send(());
    if let Ok(Err(e)) = worker.await {
        tracing::warn!(error = %e, "worker stopped with an error");
    }
    let result = outcome?;
    let content = result["structuredContent"].clone();
    let change_id = content["change_id"].as_str().unwrap_or("").to_string();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("unknown reason").to_string();
    let code = if content["outcome"] == "succeeded" {
        println!("{}", serde_json::to_string_pretty(&content)?);
        eprintln!(
            "Change {change_id} succeeded: ticket {} closed successful.",
            text(&content["ticket_number"])
        );
        std::process::ExitCode::SUCCESS
    } else if content["outcome"] == "failed" {
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

async fn dev(g: &GlobalArgs, args: DevArgs) -> anyhow::Result<()> {
    let (stack, stop_worker, worker) = start_stack_with_worker(g, &args.simulators).await?;
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
    if let Some(ca) = &e.ca_file {
        eprintln!("  CA certificate  {}", ca.display());
    }
    eprintln!("  Worker          task queue {}", e.task_queue);
    eprintln!(
        "  MCP             {}  (token: changeflow token --user alice)",
        e.mcp
    );
    eprintln!("  OpenID provider {}", e.oidc_issuer);
    eprintln!("  OpenBao         {}", e.vault);
    eprintln!("Endpoints and development credentials: {}", path.display());
    eprintln!("Press Ctrl-C to stop.");
    tokio::select! {
        _ = stop_requested() => {}
        result = worker => {
            return Err(match result { Ok(Err(e)) => e, Ok(Ok(())) => anyhow::anyhow!("worker stopped"), Err(e) => e.into() });
        }
    }
    let _ = stop_worker.send(());
    let _ = std::fs::remove_file(&path);
    eprintln!("Stopped.");
    Ok(())
}

/// Vault when an address is configured; otherwise credentials from the environment.
fn credential_provider(args: &VaultArgs) -> anyhow::Result<Arc<dyn CredentialProvider>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    if let Some(address) = &args.vault_address {
        let auth = match (
            var("CHANGEFLOW_VAULT_TOKEN"),
            var("CHANGEFLOW_VAULT_ROLE_ID"),
            var("CHANGEFLOW_VAULT_SECRET_ID"),
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
        settings.cache_ttl = Duration::from_secs(args.vault_cache_seconds);
        return Ok(Arc::new(VaultCredentials::new(settings)?));
    }
    let servicenow = match (
        var("CHANGEFLOW_SERVICENOW_USERNAME"),
        var("CHANGEFLOW_SERVICENOW_PASSWORD"),
        var("CHANGEFLOW_SERVICENOW_CLIENT_ID"),
        var("CHANGEFLOW_SERVICENOW_CLIENT_SECRET"),
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
        var("CHANGEFLOW_CATALYST_USERNAME"),
        var("CHANGEFLOW_CATALYST_PASSWORD"),
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

async fn worker(g: &GlobalArgs, args: WorkerArgs) -> anyhow::Result<()> {
    let credentials = credential_provider(&args.vault)?;
    let downstream = DownstreamConfig {
        servicenow_url: args.servicenow_url,
        catalyst_url: args.catalyst_url,
        ca_file: args.ca_file,
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(50)),
    };
    let (_temporal, address) = match &g.temporal_address {
        Some(address) => (None, address.clone()),
        None => {
            let server = changeflow_engine::EmbeddedTemporal::start(
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
    changeflow::worker::run_worker(
        client,
        &g.task_queue,
        &downstream,
        credentials,
        stop_requested(),
    )
    .await
}

async fn simulate(g: &GlobalArgs, args: SimulateArgs) -> anyhow::Result<()> {
    let faults = FaultConfig {
        latency_ms: args.latency_ms,
        error_rate: args.error_rate,
        rate_limit_rate: args.rate_limit_rate,
        retry_after_secs: args.retry_after,
        failing_device: None,
    };
    let options = args.simulators.options(&g.data_dir, faults)?;
    let sims = changeflow_simulators::start(options)
        .await
        .context("starting the simulators")?;
    let endpoints = serde_json::json!({
        "servicenow": sims.servicenow_url,
        "catalyst_center": sims.catalyst_url,
        "ca_file": sims.ca_file,
        "credentials": sims.credentials,
    });
    println!("{}", serde_json::to_string_pretty(&endpoints)?);
    eprintln!(
        "Simulators running (ServiceNow {}, Catalyst Center {}). Press Ctrl-C to stop.",
        sims.servicenow_url, sims.catalyst_url
    );
    stop_requested().await;
    sims.shutdown();
    Ok(())
}

async fn audit(g: &GlobalArgs, args: AuditArgs) -> anyhow::Result<std::process::ExitCode> {
    use changeflow_engine::audit::{AuditFilter, AuditStore};
    let store = match &args.database_url {
        Some(url) => AuditStore::open(url).await?,
        None => AuditStore::open_in(&g.data_dir).await?,
    };
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
        AuditCommand::List {
            subject,
            tool,
            workflow_id,
            since,
            until,
            limit,
        } => {
            let filter = AuditFilter {
                subject,
                tool,
                workflow_id,
                since,
                until,
                limit,
            };
            for record in store.list(&filter).await? {
                println!("{}", serde_json::to_string(&record)?);
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

async fn token(g: &GlobalArgs, args: TokenArgs) -> anyhow::Result<()> {
    let path = g.data_dir.join("endpoints.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no development stack is running with data dir {}: start `changeflow dev` first",
            g.data_dir.display()
        )
    })?;
    let endpoints: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
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

fn policy(args: PolicyArgs) -> anyhow::Result<std::process::ExitCode> {
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

async fn conformance_server(g: &GlobalArgs, args: ConformanceServerArgs) -> anyhow::Result<()> {
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

async fn serve(g: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let address = g
        .temporal_address
        .clone()
        .context("serve needs --temporal-address (CHANGEFLOW_TEMPORAL_ADDRESS); `changeflow dev` runs everything locally")?;
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
    };
    let door = changeflow::front_door::start(options, &args.listen, public_url, client).await?;
    eprintln!(
        "MCP front door at {} (metadata at {}/.well-known/oauth-protected-resource)",
        door.mcp_url(),
        door.url
    );
    stop_requested().await;
    Ok(())
}
