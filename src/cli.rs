//! The command line's arguments (clap): every option, its environment variable and default.

#[cfg(feature = "dev")]
use changeflow_simulators::{FaultConfig, SimulatorOptions};
use clap::{Args, Parser, Subcommand, ValueEnum};
#[cfg(feature = "dev")]
use std::net::SocketAddr;
use std::path::PathBuf;
#[cfg(feature = "dev")]
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
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Args)]
pub(crate) struct GlobalArgs {
    /// Directory for local state: Temporal history, the simulators' CA, endpoints.json.
    #[arg(
        long,
        global = true,
        env = "CHANGEFLOW_DATA_DIR",
        default_value = ".changeflow"
    )]
    pub(crate) data_dir: PathBuf,
    /// Temporal frontend (host:port). When absent, `worker`, `demo` and `dev` start an embedded
    /// dev server (development builds only).
    #[arg(long, global = true, env = "CHANGEFLOW_TEMPORAL_ADDRESS")]
    pub(crate) temporal_address: Option<String>,
    /// Temporal namespace.
    #[arg(
        long,
        global = true,
        env = "CHANGEFLOW_NAMESPACE",
        default_value = "default"
    )]
    pub(crate) namespace: String,
    /// Task queue the worker polls and changes are submitted to.
    #[arg(long, global = true, env = "CHANGEFLOW_TASK_QUEUE", default_value = changeflow_workflows::DEFAULT_TASK_QUEUE)]
    pub(crate) task_queue: String,
    /// Log format on stderr: text for people, json for the Elastic stack.
    #[arg(long, global = true, env = "CHANGEFLOW_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Export OpenTelemetry traces over OTLP/HTTP to this collector (e.g. http://collector:4318;
    /// spans go to <endpoint>/v1/traces). A tool call is one trace: the front door's span, the
    /// workflow, each activity and its HTTP calls (which carry `traceparent`). Off by default.
    #[arg(long, global = true, env = "CHANGEFLOW_OTLP_ENDPOINT")]
    pub(crate) otlp_endpoint: Option<String>,
    /// Configuration file (TOML): every option by its long name, global ones at the top and
    /// each subcommand's in its table ([serve], [worker], ...); flags and environment variables
    /// win over it. Secrets are refused in it. See changeflow.example.toml.
    #[arg(long, global = true, env = "CHANGEFLOW_CONFIG")]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    #[cfg(feature = "dev")]
    /// Start the embedded stack, run one sample change with live progress, print its result.
    Demo(DemoArgs),
    #[cfg(feature = "dev")]
    /// Start the embedded stack (Temporal, simulators, worker) and keep it running.
    Dev(DevArgs),
    /// Serve the MCP front door against a configured Temporal and OpenID provider.
    #[command(
        long_about = "Serve the MCP front door: Streamable HTTP at /mcp (all servers) and /mcp/{server}, \
RFC 9728 metadata at /.well-known/oauth-protected-resource. Every request needs a bearer token from the \
configured OpenID provider; every tool call is authorized by the policy and written to the audit store."
    )]
    Serve(Box<ServeArgs>),
    #[cfg(feature = "dev")]
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
    Worker(Box<WorkerArgs>),
    #[cfg(feature = "dev")]
    /// Run only the ServiceNow and Catalyst Center simulators.
    Simulate(SimulateArgs),
    /// Inspect the audit store: list records, verify the hash chain.
    Audit(AuditArgs),
    /// Show the effective configuration: every option's value and where it comes from.
    Config(ConfigArgs),
    /// Check an authorization policy: load it and run its Rego unit tests.
    Policy(PolicyArgs),
    /// Watch a change live until it ends (steps, devices, approvals, check verdicts, back-out;
    /// exit 0 if it succeeded), or without a change id the running changes as a live list.
    Watch(WatchArgs),
    /// Replay a change's history against this binary's workflow code: prints "replayed N
    /// events, deterministic", or the nondeterminism and the event it diverged at (exit 1).
    Replay(ReplayArgs),
    /// Export a change's evidence bundle, check one offline (`verify`), or export the public
    /// key that signs them (`public-key`).
    #[command(
        long_about = "Export everything an auditor needs to judge one change, without access to our systems: `changeflow evidence <change-id> --output DIR|FILE.tar.gz` writes the workflow history (protobuf and proto-JSON) and its replay verdict, every audit record naming the change with the hash-chain segment up to the head, the policy texts of each decision, the ServiceNow ticket (fields, journal, approval records), the device check snapshots and verdicts, summary.md and manifest.json (every file's SHA-256), signed with the ed25519 evidence key in Vault's Transit engine (by a worker; the key never leaves Vault).

`changeflow evidence verify BUNDLE --public-key key.pem` checks a bundle offline and exits 1 naming the file or record that does not match. `changeflow evidence public-key` prints the key (PEM).

Reads Temporal (--temporal-address, or the running `changeflow dev` of --data-dir) and the audit store directly, like `replay`; the export is recorded in the audit store as `cli:<user>`."
    )]
    Evidence(EvidenceArgs),
    #[cfg(feature = "dev")]
    /// Print an access token for a demo user from the running `changeflow dev` stack.
    #[command(
        long_about = "Print an access token (JWT) for a demo user, issued by the development OpenID provider \
of the `changeflow dev` stack running with the same --data-dir. Demo users: alice (network-engineers, MFA), \
bob (service-desk), carol (change-approvers), dave (developers), admin (admin, MFA)."
    )]
    Token(TokenArgs),
}

impl Command {
    /// The service name this command logs as (ECS `service.name`).
    pub(crate) fn service_name(&self) -> &'static str {
        match self {
            Command::Serve(_) => "changeflow-frontdoor",
            Command::Worker(_) => "changeflow-worker",
            #[cfg(feature = "dev")]
            Command::Demo(_) | Command::Dev(_) | Command::ConformanceServer(_) => "changeflow-dev",
            #[cfg(feature = "dev")]
            Command::Simulate(_) => "changeflow-simulators",
            _ => "changeflow-cli",
        }
    }
}

#[derive(Args)]
#[command(
    mut_arg("servicenow_url", |a| a.required_if_eq("in_process_worker", "true")),
    mut_arg("catalyst_url", |a| a.required_if_eq("in_process_worker", "true"))
)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CHANGEFLOW_LISTEN", default_value = "127.0.0.1:8080")]
    pub(crate) listen: String,
    /// Public base URL clients use (default: http://<listen>); the resource is <public-url>/mcp.
    #[arg(long, env = "CHANGEFLOW_PUBLIC_URL")]
    pub(crate) public_url: Option<String>,
    /// OpenID provider issuer URL (discovery at <issuer>/.well-known/openid-configuration).
    #[arg(long, env = "CHANGEFLOW_OIDC_ISSUER")]
    pub(crate) oidc_issuer: String,
    /// Audience tokens must carry (default: <public-url>/mcp, the RFC 8707 resource).
    #[arg(long, env = "CHANGEFLOW_OIDC_AUDIENCE")]
    pub(crate) oidc_audience: Option<String>,
    /// Directory of the Rego policy (watched; a bad edit keeps the last good policy).
    #[arg(long, env = "CHANGEFLOW_POLICY_DIR", default_value = "policy")]
    pub(crate) policy_dir: PathBuf,
    /// Audit database: sqlite://PATH or postgres://... (default: audit.db in the data directory).
    #[arg(long, env = "CHANGEFLOW_AUDIT_DATABASE_URL")]
    pub(crate) audit_database_url: Option<String>,
    /// Accepted Host header values (DNS-rebinding protection); repeat or comma-separate.
    #[arg(long = "allowed-host", env = "CHANGEFLOW_ALLOWED_HOSTS", value_delimiter = ',', default_values = changeflow::front_door::LOOPBACK_HOSTS)]
    pub(crate) allowed_hosts: Vec<String>,
    /// Accepted browser Origin values for MCP, with scheme (port `*` for any); repeat or comma-separate.
    #[arg(long = "allowed-origin", env = "CHANGEFLOW_ALLOWED_ORIGINS", value_delimiter = ',', default_values = changeflow::front_door::LOOPBACK_ORIGINS)]
    pub(crate) allowed_origins: Vec<String>,
    /// Seconds within which the same caller, tool and arguments reuse one workflow instead of
    /// starting another (an explicit idempotency_key always does).
    #[arg(long, env = "CHANGEFLOW_IDEMPOTENCY_WINDOW_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) idempotency_window_secs: u64,
    /// Seconds between a waiting change's looks in ServiceNow for a decision an approver made
    /// there (decisions through approve_change/reject_change arrive at once).
    #[arg(long, env = "CHANGEFLOW_APPROVAL_POLL_SECS", default_value_t = changeflow_workflows::DEFAULT_APPROVAL_POLL_SECS, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) approval_poll_secs: u64,
    /// Seconds between passes of the archiver, which copies the history of every closed change
    /// and write into the audit store (with an audit record), so replay outlives Temporal's
    /// retention. A pass looks at what closed lately; every five minutes one looks back ten
    /// minutes, for workflows Temporal's visibility listed late.
    #[arg(long, env = "CHANGEFLOW_ARCHIVE_INTERVAL_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) archive_interval_secs: u64,
    /// Archive the histories of reads too (by default only changes and writes are archived).
    #[arg(long, env = "CHANGEFLOW_ARCHIVE_READS")]
    pub(crate) archive_reads: bool,
    /// The workers' device-check snapshot directory (shared storage), read for evidence
    /// bundles; default <data dir>/snapshots. A snapshot it cannot read is listed as left out.
    #[arg(long, env = "CHANGEFLOW_SNAPSHOT_DIR")]
    pub(crate) snapshot_dir: Option<PathBuf>,
    /// Workflow calls (change starts, quick operations, decisions, evidence exports) this front
    /// door runs at once; past it a call is refused at once, retryable (REST 503 with
    /// Retry-After, an MCP tool error saying so) instead of waiting in line. Status queries,
    /// listings and tools/list keep answering.
    #[arg(long, env = "CHANGEFLOW_MAX_IN_FLIGHT", default_value_t = changeflow_mcp_frontend::front_door::DEFAULT_MAX_IN_FLIGHT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    pub(crate) max_in_flight: usize,
    /// The web view's OpenID client id: set it to serve the web view under /ui/ (sign-in with
    /// the authorization code flow and PKCE at --oidc-issuer, redirect URI
    /// <public-url>/ui/callback). A confidential client's secret comes from
    /// CHANGEFLOW_UI_CLIENT_SECRET; without one the client is public.
    #[arg(long, env = "CHANGEFLOW_UI_CLIENT_ID")]
    pub(crate) ui_client_id: Option<String>,
    /// (secret: environment only)
    #[arg(
        long,
        env = "CHANGEFLOW_UI_CLIENT_SECRET",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) ui_client_secret: Option<String>,
    /// Scopes the web view asks for besides openid; repeat or comma-separate.
    #[arg(long = "ui-scope", env = "CHANGEFLOW_UI_SCOPES", value_delimiter = ',', default_values = ["profile", "email"])]
    pub(crate) ui_scopes: Vec<String>,
    /// Temporal's Web UI base URL, for the web view's link to a change's run.
    #[arg(long, env = "CHANGEFLOW_TEMPORAL_UI_URL")]
    pub(crate) temporal_ui_url: Option<String>,
    /// ServiceNow's base URL, for the web view's link to a change's ticket.
    #[arg(long, env = "CHANGEFLOW_SERVICENOW_UI_URL")]
    pub(crate) servicenow_ui_url: Option<String>,
    /// On SIGTERM or Ctrl-C: seconds to let requests in flight finish before the process exits
    /// (no new connections are accepted meanwhile).
    #[arg(long, env = "CHANGEFLOW_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub(crate) shutdown_grace_secs: u64,
    /// Also run a worker in this process, on the same Temporal connection and task queue, with
    /// `changeflow worker`'s options (--servicenow-url and --catalyst-url at least). Workflow
    /// calls then start eagerly: the worker gets the first workflow task in the start's answer
    /// instead of polling for it, which makes quick reads cheaper for Temporal. Separate
    /// `changeflow worker` processes may poll the same queue beside it.
    #[arg(long, env = "CHANGEFLOW_IN_PROCESS_WORKER")]
    pub(crate) in_process_worker: bool,
    #[command(
        flatten,
        next_help_heading = "In-process worker (with --in-process-worker)"
    )]
    pub(crate) worker: DownstreamArgs,
}

#[cfg(feature = "dev")]
#[derive(Args)]
pub(crate) struct ConformanceServerArgs {
    /// Loopback address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub(crate) listen: String,
}

#[derive(Args)]
pub(crate) struct WatchArgs {
    /// The change (its workflow id) to follow; without it, every running change.
    pub(crate) change_id: Option<String>,
    /// Print events as JSON lines (step, device, decision, check, backout, end) instead of a
    /// progress bar.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["change_id", "file"])))]
pub(crate) struct ReplayArgs {
    /// The change (its workflow id) whose history to fetch from Temporal (--temporal-address,
    /// or the running `changeflow dev` of --data-dir), or else from the audit store's archive.
    pub(crate) change_id: Option<String>,
    /// Replay a history file instead: protobuf (History), proto-JSON as `temporal workflow
    /// show --output json` writes it, or the Rust SDK's history JSON.
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Also write the history, as proto-JSON, to this file.
    #[arg(long)]
    pub(crate) export: Option<PathBuf>,
    /// The audit store holding archived histories, used when Temporal no longer has the
    /// change (default: audit.db in the data directory).
    #[arg(long, env = "CHANGEFLOW_AUDIT_DATABASE_URL", hide_env_values = true)]
    pub(crate) audit_database_url: Option<String>,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct EvidenceArgs {
    #[command(subcommand)]
    pub(crate) command: Option<EvidenceCommand>,
    /// The change (its workflow id) to export.
    #[arg(required = true)]
    pub(crate) change_id: Option<String>,
    /// Where to write the bundle: a directory, or an archive when it ends in .tar.gz.
    #[arg(long, short, required = true)]
    pub(crate) output: Option<PathBuf>,
    /// The audit store (default: audit.db in the data directory).
    #[arg(long, env = "CHANGEFLOW_AUDIT_DATABASE_URL", hide_env_values = true)]
    pub(crate) audit_database_url: Option<String>,
    /// The workers' snapshot directory (default: <data dir>/snapshots).
    #[arg(long, env = "CHANGEFLOW_SNAPSHOT_DIR")]
    pub(crate) snapshot_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum EvidenceCommand {
    /// Check a bundle offline: every file against the manifest, the audit records' hash links,
    /// the policy texts, the snapshots, the history (replayed against this binary) and, with
    /// --public-key, the signature. Exits 1 naming what does not match.
    Verify(EvidenceVerifyArgs),
    /// Print the public half of the evidence signing key (PEM), read from Vault's Transit
    /// through a worker.
    PublicKey(EvidenceKeyArgs),
}

#[derive(Args)]
pub(crate) struct EvidenceVerifyArgs {
    /// The bundle: a directory or a .tar.gz archive.
    pub(crate) bundle: PathBuf,
    /// The evidence key's public half (PEM from `changeflow evidence public-key`, or Transit's
    /// base64); without it the signature is not checked.
    #[arg(long)]
    pub(crate) public_key: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct EvidenceKeyArgs {
    /// A key version (default: the latest).
    #[arg(long)]
    pub(crate) version: Option<u64>,
    /// Write the PEM to this file instead of standard output.
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Args)]
pub(crate) struct PolicyArgs {
    /// Directory of .rego files (the policy and its *_test packages).
    #[arg(long, env = "CHANGEFLOW_POLICY_DIR", default_value = "policy")]
    pub(crate) dir: PathBuf,
    #[command(subcommand)]
    pub(crate) command: PolicyCommand,
}

#[derive(Subcommand)]
pub(crate) enum PolicyCommand {
    /// Run every `test_*` rule of every `*_test` package; exits 1 if any fails or the policy does not load.
    Test,
}

#[cfg(feature = "dev")]
#[derive(Args)]
pub(crate) struct TokenArgs {
    /// Demo user: alice, bob, carol, dave or admin.
    #[arg(long)]
    pub(crate) user: String,
    /// Audience (resource) the token is for; default: the stack's.
    #[arg(long)]
    pub(crate) audience: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub(crate) ttl: u64,
    /// Issue the token without the `mfa` authentication method.
    #[arg(long)]
    pub(crate) no_mfa: bool,
}

#[derive(Args)]
pub(crate) struct AuditArgs {
    /// Audit database: sqlite://PATH or postgres://... (default: audit.db in the data directory).
    #[arg(long, global = true, env = "CHANGEFLOW_AUDIT_DATABASE_URL")]
    pub(crate) database_url: Option<String>,
    #[command(subcommand)]
    pub(crate) command: AuditCommand,
}

#[derive(Subcommand)]
pub(crate) enum AuditCommand {
    /// Check the whole hash chain; exits 1 and names the first broken record if it is broken.
    Verify,
    /// Print matching records as JSON lines on stdout, oldest first.
    List(AuditListArgs),
}

#[derive(Args)]
pub(crate) struct AuditListArgs {
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
}

impl From<AuditListArgs> for changeflow_engine::audit::AuditFilter {
    fn from(args: AuditListArgs) -> Self {
        Self {
            subject: args.subject,
            tool: args.tool,
            workflow_id: args.workflow_id,
            since: args.since,
            until: args.until,
            limit: args.limit,
            ..Default::default()
        }
    }
}

#[cfg(feature = "dev")]
#[derive(Args)]
pub(crate) struct SimulatorArgs {
    /// Serve plain HTTP instead of HTTPS.
    #[arg(long)]
    pub(crate) plain_http: bool,
    /// Port of the ServiceNow simulator (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    pub(crate) servicenow_port: u16,
    /// Port of the Catalyst Center simulator (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    pub(crate) catalyst_port: u16,
    /// Seconds a template deployment takes, from submission to the last device.
    #[arg(long, default_value_t = 6.0)]
    pub(crate) deploy_seconds: f64,
    /// Hostname of a device whose deployment fails.
    #[arg(long)]
    pub(crate) failing_device: Option<String>,
    /// Hostname of a device a deployment leaves unhealthy (its port Gi1/0/2 goes down while
    /// it carries deployed configuration), so post-change checks fail and the change backs out.
    #[arg(long)]
    pub(crate) unhealthy_device: Option<String>,
    /// Hostname of a device whose CLI does not answer (pre-change checks fail).
    #[arg(long)]
    pub(crate) unreachable_device: Option<String>,
    /// Hostname of a device that stops answering once a deployment changed it (its back-out
    /// fails).
    #[arg(long)]
    pub(crate) unreachable_after_change: Option<String>,
}

#[cfg(feature = "dev")]
impl SimulatorArgs {
    pub(crate) fn options(
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
            unhealthy_device: self.unhealthy_device.clone(),
            unreachable_device: self.unreachable_device.clone(),
            unreachable_after_change: self.unreachable_after_change.clone(),
            ..faults
        };
        Ok(options)
    }
}

#[cfg(feature = "dev")]
#[derive(Args)]
/// What the embedded stack of `demo` and `dev` runs with.
pub(crate) struct StackArgs {
    #[command(flatten)]
    pub(crate) simulators: SimulatorArgs,
    /// Directory of the Rego policy the stack's front door loads.
    #[arg(long, env = "CHANGEFLOW_POLICY_DIR", default_value = "policy")]
    pub(crate) policy_dir: PathBuf,
}

#[cfg(feature = "dev")]
#[derive(Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    pub(crate) stack: StackArgs,
    /// Demo user who calls the tool (alice may deploy; bob, say, is refused by policy).
    #[arg(long, default_value = "alice")]
    pub(crate) user: String,
    /// The change's type: standard runs the pre-approved NTP template without approval (so the
    /// demo finishes alone); normal and emergency show the approval step, approved as carol.
    #[arg(long, value_enum, default_value_t = DemoChangeType::Standard)]
    pub(crate) change_type: DemoChangeType,
}

/// `demo --change-type`.
#[cfg(feature = "dev")]
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum DemoChangeType {
    Standard,
    Normal,
    Emergency,
}

#[cfg(feature = "dev")]
impl DemoChangeType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DemoChangeType::Standard => "standard",
            DemoChangeType::Normal => "normal",
            DemoChangeType::Emergency => "emergency",
        }
    }
}

#[cfg(feature = "dev")]
#[derive(Args)]
pub(crate) struct DevArgs {
    #[command(flatten)]
    pub(crate) stack: StackArgs,
}

#[derive(Args)]
#[command(
    mut_arg("servicenow_url", |a| a.required(true)),
    mut_arg("catalyst_url", |a| a.required(true))
)]
pub(crate) struct WorkerArgs {
    #[command(flatten)]
    pub(crate) downstream: DownstreamArgs,
    /// Where device check snapshots (the outputs of pre- and post-change commands) are kept,
    /// outside workflow history, as evidence; default <data dir>/snapshots. Workers of one
    /// task queue must share it.
    #[arg(long, env = "CHANGEFLOW_SNAPSHOT_DIR")]
    pub(crate) snapshot_dir: Option<PathBuf>,
    /// Serve `/healthz` and `/readyz` (Temporal reachable) on this address, e.g. 127.0.0.1:9090.
    #[arg(long, env = "CHANGEFLOW_WORKER_HEALTH_LISTEN")]
    pub(crate) health_listen: Option<String>,
}

/// What a worker needs to reach the downstream systems: `changeflow worker`'s options, and
/// `changeflow serve --in-process-worker`'s. The two URLs are required by the command that
/// flattens this (always for `worker`; with `--in-process-worker` for `serve`).
#[derive(Args)]
pub(crate) struct DownstreamArgs {
    /// ServiceNow instance URL.
    #[arg(long, env = "CHANGEFLOW_SERVICENOW_URL")]
    pub(crate) servicenow_url: Option<String>,
    /// Catalyst Center URL.
    #[arg(long, env = "CHANGEFLOW_CATALYST_URL")]
    pub(crate) catalyst_url: Option<String>,
    /// GitHub's API: https://api.github.com, or GitHub Enterprise's https://HOST/api/v3. Needed
    /// by the GitHub tools and by changes that deploy a template from Git; calls are made as
    /// the person who asked, with their token from Vault (--vault-github-path).
    #[arg(long, env = "CHANGEFLOW_GITHUB_URL")]
    pub(crate) github_url: Option<String>,
    /// Extra CA certificates (PEM) to trust for the downstream systems.
    #[arg(long, env = "CHANGEFLOW_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Milliseconds between deployment task polls.
    #[arg(long, default_value_t = 1000)]
    pub(crate) poll_interval_ms: u64,
    /// Serve the Temporal SDK's own worker metrics (poll latencies, task slots,
    /// schedule-to-start latency; names start with `temporal_`) in Prometheus format on this
    /// address, e.g. 127.0.0.1:9091. Changeflow's own metrics are on the worker's
    /// --health-listen, or on serve's /metrics.
    #[arg(long, env = "CHANGEFLOW_WORKER_SDK_METRICS_LISTEN")]
    pub(crate) sdk_metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub(crate) vault: VaultArgs,
    #[command(flatten)]
    pub(crate) secrets: SecretArgs,
}

/// Secrets, read by clap from the environment only: a value given as a flag is refused
/// (`secrets_only_from_environment`), so none ends up in a shell history or a process list.
#[derive(Args)]
pub(crate) struct SecretArgs {
    #[arg(
        long,
        env = "CHANGEFLOW_VAULT_TOKEN",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) vault_token: Option<String>,
    #[arg(
        long,
        env = "CHANGEFLOW_VAULT_ROLE_ID",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) vault_role_id: Option<String>,
    #[arg(
        long,
        env = "CHANGEFLOW_VAULT_SECRET_ID",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) vault_secret_id: Option<String>,
    #[arg(
        long,
        env = "CHANGEFLOW_SERVICENOW_USERNAME",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) servicenow_username: Option<String>,
    #[arg(
        long,
        env = "CHANGEFLOW_SERVICENOW_PASSWORD",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) servicenow_password: Option<String>,
    #[arg(
        long,
        env = "CHANGEFLOW_SERVICENOW_CLIENT_ID",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) servicenow_client_id: Option<String>,
    #[arg(
        long,
        env = "CHANGEFLOW_SERVICENOW_CLIENT_SECRET",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) servicenow_client_secret: Option<String>,
    #[arg(
        long,
        env = "CHANGEFLOW_CATALYST_USERNAME",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) catalyst_username: Option<String>,
    #[arg(
        long,
        env = "CHANGEFLOW_CATALYST_PASSWORD",
        hide = true,
        hide_env_values = true
    )]
    pub(crate) catalyst_password: Option<String>,
}

/// Whether an argument (by id) is a secret: taken from the environment only.
pub(crate) fn is_secret(id: &str) -> bool {
    SECRET_ARGS.contains(&id)
}

/// The ids of `SecretArgs`' arguments, and the web view's client secret.
const SECRET_ARGS: [&str; 10] = [
    "vault_token",
    "vault_role_id",
    "vault_secret_id",
    "servicenow_username",
    "servicenow_password",
    "servicenow_client_id",
    "servicenow_client_secret",
    "catalyst_username",
    "catalyst_password",
    "ui_client_secret",
];

/// Refuses secrets given as flags: they are taken from the environment only.
pub(crate) fn secrets_only_from_environment(matches: &clap::ArgMatches) -> Result<(), String> {
    let mut current = Some(matches);
    while let Some(m) = current {
        for id in SECRET_ARGS {
            if let Ok(Some(clap::parser::ValueSource::CommandLine)) =
                m.try_get_raw(id).map(|_| m.value_source(id))
            {
                let variable = format!("CHANGEFLOW_{}", id.to_uppercase());
                return Err(format!(
                    "--{} is not accepted on the command line: set {variable} in the environment",
                    id.replace('_', "-")
                ));
            }
        }
        current = m.subcommand().map(|(_, sub)| sub);
    }
    Ok(())
}

#[derive(Args)]
pub(crate) struct VaultArgs {
    /// Vault/OpenBao address; credentials are then read from Vault (KV v2) at the moment of use.
    /// Login: CHANGEFLOW_VAULT_TOKEN, or CHANGEFLOW_VAULT_ROLE_ID and CHANGEFLOW_VAULT_SECRET_ID (AppRole).
    #[arg(long, env = "CHANGEFLOW_VAULT_ADDR")]
    pub(crate) vault_address: Option<String>,
    /// KV v2 mount holding the secrets.
    #[arg(long, env = "CHANGEFLOW_VAULT_MOUNT", default_value = "secret")]
    pub(crate) vault_mount: String,
    /// Path of the ServiceNow secret (fields username, password, client_id, client_secret).
    #[arg(
        long,
        env = "CHANGEFLOW_VAULT_SERVICENOW_PATH",
        default_value = "changeflow/servicenow"
    )]
    pub(crate) vault_servicenow_path: String,
    /// Path of the Catalyst Center secret (fields username, password).
    #[arg(
        long,
        env = "CHANGEFLOW_VAULT_CATALYST_PATH",
        default_value = "changeflow/catalyst-center"
    )]
    pub(crate) vault_catalyst_path: String,
    /// Where each person's GitHub token is: <path>/<user> (field token). GitHub calls are made
    /// as the person who asked, never with a shared token.
    #[arg(
        long,
        env = "CHANGEFLOW_VAULT_GITHUB_PATH",
        default_value = changeflow_credentials::vault::DEFAULT_GITHUB_PATH
    )]
    pub(crate) vault_github_path: String,
    /// Seconds a secret read from Vault is reused before it is read again.
    #[arg(long, env = "CHANGEFLOW_VAULT_CACHE_SECONDS", default_value_t = 30)]
    pub(crate) vault_cache_seconds: u64,
    /// Mount of Vault's Transit engine holding the evidence signing key.
    #[arg(long, env = "CHANGEFLOW_VAULT_TRANSIT_MOUNT", default_value = changeflow_credentials::vault::DEFAULT_TRANSIT_MOUNT)]
    pub(crate) vault_transit_mount: String,
    /// The ed25519 Transit key that signs evidence bundles (`changeflow evidence`); the
    /// worker's Vault identity needs `update` on <mount>/sign/<key> and `read` on
    /// <mount>/keys/<key>. The private key never leaves Vault.
    #[arg(long, env = "CHANGEFLOW_EVIDENCE_KEY", default_value = changeflow_credentials::vault::DEFAULT_EVIDENCE_KEY)]
    pub(crate) evidence_key: String,
}

#[cfg(feature = "dev")]
#[derive(Args)]
pub(crate) struct SimulateArgs {
    #[command(flatten)]
    pub(crate) simulators: SimulatorArgs,
    /// Milliseconds added to every API response.
    #[arg(long, default_value_t = 0)]
    pub(crate) latency_ms: u64,
    /// Share of API requests (0–1) answered with HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) error_rate: f64,
    /// Share of API requests (0–1) answered with HTTP 429.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) rate_limit_rate: f64,
    /// Retry-After seconds sent with 429 answers.
    #[arg(long, default_value_t = 2)]
    pub(crate) retry_after: u64,
}

#[derive(Args)]
pub(crate) struct ConfigArgs {
    #[command(subcommand)]
    pub(crate) command: ConfigCommand,
}

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print every option with its effective value and source (flag, environment, file,
    /// default); secrets only say whether they are set.
    Show,
}
