//! `make bench`: starts the embedded stack from the release build, a front door of its own
//! (`changeflow serve`) and a seed-style peer, measures them against their baselines in the same
//! run, prints one table and writes it to `bench/results/<date>.md`.

mod procs;
mod starts;

use anyhow::Context;
use clap::Parser;
use procs::{Inspector, Load, Process, Wrk, free_port, wait_for};
use serde_json::{Value, json};
use starts::Kind;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::Command;

/// Measures changeflow's front door on this machine against its baselines, in one run: starts
/// (MCP task, REST 202) against a plain Temporal SDK client; reads through their workflow against
/// the raw start rate, the simulator called directly and a seed-style Python MCP server;
/// `tools/list` and `get_change_status`; 1000 concurrent clients in both MCP eras with the front
/// door's peak memory; and authn+authz per call (from the criterion benchmark's report).
#[derive(Parser)]
struct Args {
    /// The release binary to measure.
    #[arg(long, default_value = "target/release/changeflow")]
    changeflow: PathBuf,
    /// Where to write the results (default: bench/results/<date>.md).
    #[arg(long)]
    out: Option<PathBuf>,
    /// An external Temporal (host:port) instead of the embedded dev server.
    #[arg(long)]
    temporal_address: Option<String>,
    /// Seconds of each start run (MCP, REST, raw, alternated).
    #[arg(long, default_value_t = 5)]
    start_secs: u64,
    /// Rounds of start runs: in each, one REST and one MCP run (taking turns going first), each
    /// followed by a raw SDK run, after a first raw run; each front-door run is compared with
    /// the mean of the raw runs on either side of it, and the median ratio is reported.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Seconds of each read, listing and status run.
    #[arg(long, default_value_t = 6)]
    read_secs: u64,
    /// Seconds of each 1000-client run.
    #[arg(long, default_value_t = 10)]
    clients_secs: u64,
    /// Concurrent clients of the last part.
    #[arg(long, default_value_t = 1000)]
    clients: u32,
    /// The front door's --max-in-flight (default: its own default).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// The authn+authz benchmark's output (`cargo bench --bench authn_authz`), to include.
    #[arg(long)]
    authn_report: Option<PathBuf>,
    /// Policy directory.
    #[arg(long, default_value = "policy")]
    policy_dir: PathBuf,
    /// The project's tools (.tools: the Python venv and the Node tools).
    #[arg(long, default_value = ".tools")]
    tools: PathBuf,
    /// Run only these parts (repeat or comma-separate; default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Part>,
}

/// The front doors whose workflow starts are eager (a worker shares their Temporal client).
#[derive(Clone, Copy)]
enum Eager {
    Dev,
    Serve,
}

/// The parts of a run.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    Starts,
    Reads,
    Queries,
    Clients,
}

impl Args {
    fn wants(&self, part: Part) -> bool {
        self.only.is_empty() || self.only.contains(&part)
    }
}

/// Everything running for one benchmark run.
pub struct Bench {
    pub dir: PathBuf,
    pub endpoints: Value,
    pub base: String,
    pub mcp: String,
    pub token: String,
    pub client: temporalio_client::Client,
    pub task_queue: String,
    pub template_id: String,
    pub script: PathBuf,
}

impl Bench {
    /// The `deploy_template` arguments every start uses; `key` is its idempotency key.
    pub fn deploy_arguments(&self, key: &str) -> Value {
        json!({
            "template_id": self.template_id,
            "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"},
            "devices": ["sj-access-01", "sj-access-02"],
            "change_type": "normal",
            "idempotency_key": key,
        })
    }

    pub fn headers(&self, extra: &[String]) -> String {
        let mut lines = vec![
            format!("Authorization: Bearer {}", self.token),
            "Content-Type: application/json".to_string(),
            "Accept: application/json, text/event-stream".to_string(),
        ];
        lines.extend(extra.iter().cloned());
        lines.join("\n")
    }
}

impl Bench {
    /// wrk against the front door's /mcp with stateless 2026-07-28 requests declaring
    /// `capabilities` (the routing headers mirror the body).
    pub fn stateless_wrk(
        &self,
        method: &str,
        mut params: Value,
        capabilities: Value,
        connections: u32,
        secs: u64,
    ) -> Wrk<'_> {
        use changeflow::mcp_client::STATELESS_PROTOCOL_VERSION;
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": STATELESS_PROTOCOL_VERSION,
            "io.modelcontextprotocol/clientInfo": {"name": "changeflow-bench", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": capabilities,
        });
        let mut headers = vec![
            format!("MCP-Protocol-Version: {STATELESS_PROTOCOL_VERSION}"),
            format!("Mcp-Method: {method}"),
        ];
        if let Some(name) = params["name"].as_str() {
            headers.push(format!("Mcp-Name: {name}"));
        }
        Wrk {
            script: &self.script,
            url: &self.mcp,
            connections,
            secs,
            env: vec![
                ("BENCH_BODY", rpc(method, params).to_string()),
                ("BENCH_HEADERS", self.headers(&headers)),
            ],
        }
    }
}

/// A JSON-RPC request whose id is unique per request ("{n}", filled in by the wrk script):
/// requests in flight on one session must not share an id.
fn rpc(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": "{n}", "method": method, "params": params})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.changeflow.exists(),
        "{} does not exist: build it first (cargo build --release --bin changeflow)",
        args.changeflow.display()
    );
    let dir = std::env::temp_dir().join(format!("changeflow-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let started = std::time::Instant::now();
    let result = run(&args, &dir).await;
    eprintln!(
        "bench: finished in {:.0?}; logs in {}",
        started.elapsed(),
        dir.display()
    );
    let report = result?;
    let out = args.out.clone().unwrap_or_else(|| {
        let today = time::OffsetDateTime::now_utc().date();
        PathBuf::from(format!("bench/results/{today}.md"))
    });
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, &report)?;
    println!("{report}");
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}

async fn run(args: &Args, dir: &Path) -> anyhow::Result<String> {
    let changeflow = std::fs::canonicalize(&args.changeflow)?;
    let tools = std::fs::canonicalize(&args.tools).context("no .tools: run `make tools`")?;

    // The embedded stack (Temporal, simulators, Vault, worker).
    let dev_dir = dir.join("dev");
    let dev_log = dir.join("dev.log");
    let mut command = Command::new(&changeflow);
    command.arg("--data-dir").arg(&dev_dir);
    if let Some(address) = &args.temporal_address {
        command.args(["--temporal-address", address]);
    }
    command
        .arg("dev")
        .arg("--policy-dir")
        .arg(&args.policy_dir)
        .env("CHANGEFLOW_LOG", "warn");
    eprintln!("bench: starting changeflow dev in {}", dev_dir.display());
    let mut dev = Process::spawn("changeflow dev", &mut command, &dev_log)?;
    let endpoints_file = dev_dir.join("endpoints.json");
    let mut dev_failed = None;
    wait_for("changeflow dev", Duration::from_secs(180), || {
        if let Err(e) = dev.ensure_running(&dev_log) {
            dev_failed = Some(e);
            return std::future::ready(true);
        }
        std::future::ready(endpoints_file.exists())
    })
    .await?;
    if let Some(e) = dev_failed {
        return Err(e);
    }
    let endpoints: Value = serde_json::from_str(&std::fs::read_to_string(&endpoints_file)?)?;
    let field = |name: &str| endpoints[name].as_str().unwrap_or_default().to_string();

    // A front door of its own, so that its memory is the front door's alone.
    let (serve, base) = start_serve(&changeflow, args, dir, &endpoints, false).await?;
    let mcp = format!("{base}/mcp");
    let token = alice_token(&changeflow, &dev_dir, Some(&mcp)).await?;
    // A token for the dev stack's own front door (its default audience).
    let dev_token = alice_token(&changeflow, &dev_dir, None).await?;

    // The seed-style peer.
    let peer_port = free_port()?;
    let peer_url = format!("http://127.0.0.1:{peer_port}/mcp");
    let peer_script = std::fs::canonicalize("bench/seed_peer.py")?;
    let mut command = Command::new(tools.join("venv/bin/python"));
    command
        .arg(&peer_script)
        .arg("--endpoints")
        .arg(&endpoints_file)
        .args(["--port", &peer_port.to_string()]);
    let peer = Process::spawn("seed-style peer", &mut command, &dir.join("peer.log"))?;
    wait_for("the seed-style peer", Duration::from_secs(60), || {
        std::future::ready(std::net::TcpStream::connect(("127.0.0.1", peer_port)).is_ok())
    })
    .await?;

    let (mut session, _) = changeflow::mcp_client::McpClient::connect(&mcp, &token).await?;
    let listed = session.request("tools/list", json!({}), |_| {}).await?;
    let templates = session
        .call_tool("list_templates", json!({}), |_, _| {})
        .await?;
    let template_id = find_template(&templates["structuredContent"], "NTP Servers")
        .with_context(|| format!("no NTP Servers template in {templates}"))?;

    let client = changeflow_engine::temporal::connect(
        &field("temporal"),
        &field("namespace"),
        "changeflow-bench",
    )
    .await?;
    let bench = Bench {
        dir: dir.to_path_buf(),
        base,
        mcp: mcp.clone(),
        token: token.clone(),
        client,
        task_queue: field("task_queue"),
        template_id,
        script: std::fs::canonicalize("bench/wrk/call.lua")?,
        endpoints: endpoints.clone(),
    };
    let mut report = Report::new(args, &listed);

    // 1. Starts.
    let (warm, input) = starts::first_change(&bench).await?;
    let mut raw_runs = Vec::new();
    let mut runs = StartRuns::default();
    if args.wants(Part::Starts) {
        // The embedded server slows as its database grows, and its speed drifts on a shared
        // machine: every front-door run has a raw run just before and just after it, and is
        // compared with their mean. REST and MCP take turns going first.
        let mut before = runs
            .next(&bench, &mut report, Kind::Raw, &input, args)
            .await?;
        raw_runs.push(before.clone());
        for round in 0..args.rounds {
            let order = if round % 2 == 0 {
                [Kind::Rest, Kind::Mcp]
            } else {
                [Kind::Mcp, Kind::Rest]
            };
            for kind in order {
                let load = runs.next(&bench, &mut report, kind, &input, args).await?;
                let after = runs
                    .next(&bench, &mut report, Kind::Raw, &input, args)
                    .await?;
                let around = (before.rate() + after.rate()) / 2.0;
                let ratio = (around > 0.0).then(|| load.rate() / around);
                let paired = (load, ratio);
                match kind {
                    Kind::Rest => runs.rest.push(paired),
                    _ => runs.mcp.push(paired),
                }
                raw_runs.push(after.clone());
                before = after;
            }
        }
        report.starts(&raw_runs, &runs.rest, &runs.mcp);
    }

    // 2. Reads through their workflow, the simulator directly, the seed-style peer.
    let inspector = Inspector::new(&tools, dir.join("inspector-home"))?;
    let direct = starts::simulator_token(&endpoints).await?;
    // Each read: the tool, its arguments, and the simulator path it reads.
    let reads = [
        (
            "list_devices",
            vec![],
            "/dna/intent/api/v1/network-device".to_string(),
        ),
        (
            "get_template",
            vec![("template_id", bench.template_id.as_str())],
            format!(
                "/dna/intent/api/v1/template-programmer/template/{}",
                bench.template_id
            ),
        ),
    ];
    let reads = if args.wants(Part::Reads) {
        &reads[..]
    } else {
        &[]
    };
    // A second front door with a worker in its process (`serve --in-process-worker`): its
    // starts are eager too, as in `changeflow dev`.
    let serve_worker = if reads.is_empty() {
        None
    } else {
        let (process, base) = start_serve(&changeflow, args, dir, &endpoints, true).await?;
        let mcp = format!("{base}/mcp");
        let token = alice_token(&changeflow, &dev_dir, Some(&mcp)).await?;
        Some((process, mcp, token))
    };
    for (tool, arguments, path) in reads {
        starts::wait_quiet(Duration::from_secs(120)).await;
        // Like a start run, a tool's reads are compared with the mean of raw start runs made
        // just before and just after them, on the server as it is then.
        let raw_before = runs
            .next(&bench, &mut report, Kind::Raw, &input, args)
            .await?;
        let mut measured = Vec::new();
        for clients in [1, 10, 50] {
            let ours = inspector
                .load(&mcp, Some(&token), tool, arguments, clients, args.read_secs)
                .await?;
            eprintln!("bench: {tool} x{clients} changeflow: {}", line(&ours));
            let theirs = inspector
                .load(&peer_url, None, tool, arguments, clients, args.read_secs)
                .await?;
            eprintln!("bench: {tool} x{clients} seed-style: {}", line(&theirs));
            let simulator = Wrk {
                script: &bench.script,
                url: &format!("{}{path}", field("catalyst_center").trim_end_matches('/')),
                connections: clients,
                secs: args.read_secs,
                env: vec![
                    ("BENCH_METHOD", "GET".into()),
                    ("BENCH_HEADERS", format!("X-Auth-Token: {direct}")),
                ],
            }
            .run()
            .await?;
            eprintln!("bench: {tool} x{clients} simulator: {}", line(&simulator));
            measured.push((clients, ours, theirs, simulator));
        }
        // The dev stack's own front door shares its Temporal client with the worker: the
        // first workflow task comes back with the start (eager start), no poll.
        let embedded = inspector
            .load(
                &field("mcp"),
                Some(&dev_token),
                tool,
                arguments,
                50,
                args.read_secs,
            )
            .await?;
        eprintln!(
            "bench: {tool} x50 changeflow dev (eager): {}",
            line(&embedded)
        );
        let mut in_process = None;
        if let Some((_, mcp, token)) = &serve_worker {
            let load = inspector
                .load(mcp, Some(token), tool, arguments, 50, args.read_secs)
                .await?;
            eprintln!(
                "bench: {tool} x50 serve --in-process-worker (eager): {}",
                line(&load)
            );
            in_process = Some(load);
        }
        let raw_after = runs
            .next(&bench, &mut report, Kind::Raw, &input, args)
            .await?;
        let raw = (raw_before.rate() + raw_after.rate()) / 2.0;
        for (clients, ours, theirs, simulator) in &measured {
            report.reads(tool, *clients, ours, theirs, simulator, raw);
        }
        report.eager_reads(tool, Eager::Dev, &embedded, raw);
        if let Some(load) = &in_process {
            report.eager_reads(tool, Eager::Serve, load, raw);
        }
    }
    if let Some((process, _, _)) = serve_worker {
        process.stop(Duration::from_secs(15)).await;
    }

    // 3. No workflow: tools/list and get_change_status.
    if args.wants(Part::Queries) {
        starts::wait_quiet(Duration::from_secs(120)).await;
        queries(&bench, &warm, args.read_secs, &mut report).await?;
    }

    // 4. Many clients, both eras, and the front door's memory meanwhile.
    if args.wants(Part::Clients) {
        starts::wait_quiet(Duration::from_secs(120)).await;
        clients(&bench, &warm, &serve, args, &mut report).await?;
    }

    // 5. authn+authz, from the criterion benchmark's output.
    report.authn(args.authn_report.as_deref());

    peer.stop(Duration::from_secs(5)).await;
    serve.stop(Duration::from_secs(15)).await;
    dev.stop(Duration::from_secs(30)).await;
    Ok(report.finish())
}

/// Starts a `changeflow serve` against the dev stack and waits until it answers: the front door
/// alone, or with a worker in its process reaching the stack's simulators through its Vault.
/// Returns it and its base URL.
async fn start_serve(
    changeflow: &Path,
    args: &Args,
    dir: &Path,
    endpoints: &Value,
    in_process_worker: bool,
) -> anyhow::Result<(Process, String)> {
    let field = |name: &str| endpoints[name].as_str().unwrap_or_default().to_string();
    let (name, data) = if in_process_worker {
        ("changeflow serve --in-process-worker", "serve-worker")
    } else {
        ("changeflow serve", "serve")
    };
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(changeflow);
    command
        .arg("--data-dir")
        .arg(dir.join(data))
        .args(["--temporal-address", &field("temporal")])
        .args(["--namespace", &field("namespace")])
        .args(["--task-queue", &field("task_queue")])
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--oidc-issuer", &field("oidc_issuer")])
        .arg("--policy-dir")
        .arg(&args.policy_dir)
        // Started changes wait for approval; an hour between their looks in ServiceNow keeps
        // thousands of them from loading the runs that follow.
        .args(["--approval-poll-secs", "3600"])
        .env("CHANGEFLOW_LOG", "warn");
    if let Some(limit) = args.max_in_flight {
        command.args(["--max-in-flight", &limit.to_string()]);
    }
    if in_process_worker {
        command
            .args([
                "--in-process-worker",
                "--servicenow-url",
                &field("servicenow"),
            ])
            .args(["--catalyst-url", &field("catalyst_center")])
            .args(["--vault-address", &field("vault")])
            .env("CHANGEFLOW_VAULT_TOKEN", field("vault_token"));
        if let Some(ca) = endpoints["ca_file"].as_str() {
            command.args(["--ca-file", ca]);
        }
    }
    let log = dir.join(format!("{data}.log"));
    let mut serve = Process::spawn(name, &mut command, &log)?;
    let http = reqwest::Client::new();
    let mut failed = None;
    wait_for(name, Duration::from_secs(60), || {
        if let Err(e) = serve.ensure_running(&log) {
            failed = Some(e);
            return futures::future::Either::Left(std::future::ready(true));
        }
        let probe = http
            .get(format!("{base}/.well-known/oauth-protected-resource"))
            .send();
        futures::future::Either::Right(
            async move { probe.await.is_ok_and(|r| r.status().is_success()) },
        )
    })
    .await?;
    match failed {
        Some(e) => Err(e),
        None => Ok((serve, base)),
    }
}

/// A development token for alice from the dev stack's OpenID provider, for `audience` (default:
/// the dev stack's own front door).
async fn alice_token(
    changeflow: &Path,
    dev_dir: &Path,
    audience: Option<&str>,
) -> anyhow::Result<String> {
    let mut command = Command::new(changeflow);
    command
        .arg("--data-dir")
        .arg(dev_dir)
        .args(["token", "--user", "alice"]);
    if let Some(audience) = audience {
        command.args(["--audience", audience]);
    }
    let out = command.output().await?;
    anyhow::ensure!(
        out.status.success(),
        "changeflow token: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_string())
}

/// `tools/list` and `get_change_status` from 50 clients, each with its own session (one session
/// shared by every connection would measure rmcp's one-task-per-session queue instead), then
/// `tools/list` from 50 stateless 2026-07-28 clients.
async fn queries(bench: &Bench, warm: &str, secs: u64, report: &mut Report) -> anyhow::Result<()> {
    let sessions = starts::open_sessions(bench, 50).await?;
    let list = rpc("tools/list", json!({}));
    let first = sessions.ids.first().context("no session opened")?;
    let headers = starts::session_headers(bench, &[format!("Mcp-Session-Id: {first}")]);
    let answer_bytes = starts::answer_bytes(bench, &list.to_string(), &headers).await?;
    let listing =
        starts::over_sessions(bench, list, &sessions, 50, secs, Some(answer_bytes)).await?;
    eprintln!("bench: tools/list: {}", line(&listing));
    let mut stateless = bench.stateless_wrk("tools/list", json!({}), json!({}), 50, secs);
    let env = |name: &str| {
        stateless
            .env
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    let answer_bytes =
        starts::answer_bytes(bench, &env("BENCH_BODY"), &env("BENCH_HEADERS")).await?;
    stateless
        .env
        .push(("BENCH_ANSWER_BYTES", answer_bytes.to_string()));
    let stateless_listing = stateless.run().await?;
    eprintln!(
        "bench: tools/list (2026-07-28): {}",
        line(&stateless_listing)
    );
    let status = starts::over_sessions(
        bench,
        rpc(
            "tools/call",
            json!({"name": "get_change_status", "arguments": {"change_id": warm}}),
        ),
        &sessions,
        50,
        secs,
        None,
    )
    .await?;
    eprintln!("bench: get_change_status: {}", line(&status));
    report.queries(&listing, &stateless_listing, &status);
    Ok(())
}

/// Many clients at once, each asking for a change's status over and over (the front door's
/// own capacity: a query, no workflow start, so nothing is shed).
async fn clients(
    bench: &Bench,
    warm: &str,
    serve: &Process,
    args: &Args,
    report: &mut Report,
) -> anyhow::Result<()> {
    let call = json!({"name": "get_change_status", "arguments": {"change_id": warm}});
    let before = serve.memory_mib();
    let file_pages = serve.file_pages_mib();
    // Stateless first: resident memory is not given back, so the era run second would also
    // show what the first left in the allocator; sessions cost more than stateless requests.
    let modern = starts::many_clients(bench, call.clone(), None, args.clients, args.clients_secs);
    let (modern, modern_peak) = sample_memory(serve, modern).await;
    let modern = modern?;
    eprintln!("bench: {} stateless: {}", args.clients, line(&modern));
    let sessions = starts::open_sessions(bench, args.clients).await?;
    let legacy = starts::many_clients(
        bench,
        call,
        Some(&sessions),
        args.clients,
        args.clients_secs,
    );
    let (legacy, legacy_peak) = sample_memory(serve, legacy).await;
    let legacy = legacy?;
    eprintln!("bench: {} sessions: {}", args.clients, line(&legacy));
    let left = starts::close_sessions(bench, &sessions).await;
    anyhow::ensure!(left == 0, "{left} sessions could not be ended");
    let hwm = serve.memory_mib().map(|(_, hwm)| hwm).unwrap_or(0.0);
    report.clients(
        args.clients,
        &sessions,
        &legacy,
        legacy_peak,
        &modern,
        modern_peak,
        before.map(|(rss, _)| rss),
        file_pages,
        hwm,
    );
    Ok(())
}

/// Runs `load` while sampling the front door's resident memory; the highest sample in MiB.
async fn sample_memory<F: std::future::Future>(serve: &Process, load: F) -> (F::Output, f64) {
    let mut peak = 0.0f64;
    tokio::pin!(load);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            out = &mut load => return (out, peak),
            _ = tick.tick() => {
                if let Some((rss, _)) = serve.memory_mib() {
                    peak = peak.max(rss);
                }
            }
        }
    }
}

fn find_template(listing: &Value, name: &str) -> Option<String> {
    let list = listing["templates"].as_array()?;
    list.iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["template_id"].as_str().or(t["id"].as_str()))
        .map(str::to_string)
}

fn line(load: &Load) -> String {
    let mut s = format!(
        "{:.1}/s ok, p50 {:.0} ms, p99 {:.0} ms ({} requests, {} ok, {} shed, {} errors)",
        load.rate(),
        load.p50_ms,
        load.p99_ms,
        load.requests,
        load.ok,
        load.shed,
        load.errors
    );
    if !load.first_error.is_empty() {
        let _ = write!(s, "; first error: {}", load.first_error);
    }
    s
}

/// The results, as Markdown.
struct Report {
    summary: String,
    details: String,
    header: String,
}

/// The start runs made so far: how many, and each front-door run with its rate against the
/// mean of the raw runs on either side of it.
#[derive(Default)]
struct StartRuns {
    made: u32,
    rest: Vec<(Load, Option<f64>)>,
    mcp: Vec<(Load, Option<f64>)>,
}

impl StartRuns {
    /// One start run of `kind`, recorded in the report, with the queue drained after it.
    async fn next(
        &mut self,
        bench: &Bench,
        report: &mut Report,
        kind: Kind,
        input: &changeflow_workflows::DeploymentRequest,
        args: &Args,
    ) -> anyhow::Result<Load> {
        let run = self.made;
        self.made += 1;
        let load = starts::run(bench, kind, input, run, args.start_secs).await?;
        eprintln!("bench: starts {} run {run}: {}", kind.label(), line(&load));
        report.detail(&format!("starts, {}, run {}", kind.label(), run + 1), &load);
        starts::drain(bench).await?;
        Ok(load)
    }
}

/// The run of median rate (the lower of the middle two for an even count; empty: none).
fn median_run(runs: &[Load]) -> Load {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .cloned()
        .unwrap_or_default()
}

/// The median of the runs' ratios (the lower of the middle two for an even count), if any.
fn median_ratio(runs: &[(Load, Option<f64>)]) -> Option<f64> {
    let mut ratios: Vec<f64> = runs.iter().filter_map(|(_, ratio)| *ratio).collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len().checked_sub(1)? / 2).copied()
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}×", a / b)
    } else {
        "n/a".into()
    }
}

/// The reads target at 50 clients: half the raw start rate, p99 within a second.
fn read_target(load: &Load, raw_starts: f64) -> String {
    let met = raw_starts > 0.0 && load.rate() / raw_starts >= 0.5 && load.p99_ms <= 1000.0;
    format!(
        "≥ 0.5× raw starts ({}), p99 ≤ 1 s: {}",
        ratio(load.rate(), raw_starts),
        verdict(met)
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

impl Report {
    fn new(args: &Args, listed: &Value) -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            })
            .map_or("?".into(), |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0));
        let temporal = match &args.temporal_address {
            Some(address) => format!("an external Temporal at {address}"),
            None => "the embedded Temporal dev server (SQLite persistence)".into(),
        };
        let now = time::OffsetDateTime::now_utc();
        let header = format!(
            "# changeflow benchmark, {date}\n\n\
             Machine: {cores} cores ({cpu}), {memory}. Release build; `changeflow dev` for \
             Temporal, simulators, Vault and the worker, with {temporal}; the front door measured \
             is a separate `changeflow serve` against it ({tools} tools). Command: `make bench` \
             (`changeflow-bench{extra}`). Every figure below comes from this one run; ratios \
             compare runs made minutes apart on the same machine.\n\n",
            date = now.date(),
            tools = listed["tools"].as_array().map_or(0, Vec::len),
            extra = args
                .temporal_address
                .as_ref()
                .map(|a| format!(" --temporal-address {a}"))
                .unwrap_or_default(),
        );
        Report {
            summary:
                "| measure | changeflow | baseline | ratio | target |\n|---|---|---|---|---|\n"
                    .into(),
            details: "| run | calls/s | p50 ms | p99 ms | requests | ok | shed | errors |\n\
                      |---|---|---|---|---|---|---|---|\n"
                .into(),
            header,
        }
    }

    fn detail(&mut self, label: &str, load: &Load) {
        let _ = writeln!(
            self.details,
            "| {label} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} |",
            load.rate(),
            load.p50_ms,
            load.p99_ms,
            load.requests,
            load.ok,
            load.shed,
            load.errors
        );
    }

    fn row(
        &mut self,
        measure: &str,
        ours: String,
        baseline: String,
        ratio: String,
        target: String,
    ) {
        let _ = writeln!(
            self.summary,
            "| {measure} | {ours} | {baseline} | {ratio} | {target} |"
        );
    }

    /// Each kind's median run, and the median of its ratios to the raw runs around it.
    fn starts(&mut self, raw: &[Load], rest: &[(Load, Option<f64>)], mcp: &[(Load, Option<f64>)]) {
        for (label, runs) in [("REST 202", rest), ("MCP task", mcp)] {
            let paired = median_ratio(runs);
            let loads: Vec<Load> = runs.iter().map(|(load, _)| load.clone()).collect();
            self.row(
                &format!("starts, {label}, 50 in flight"),
                median_run(&loads).brief(),
                format!("raw SDK {}", median_run(raw).brief()),
                paired.map_or("n/a".into(), |r| format!("{r:.2}×")),
                format!("≥ 0.9×: {}", verdict(paired.is_some_and(|r| r >= 0.9))),
            );
        }
    }

    fn reads(&mut self, tool: &str, clients: u32, ours: &Load, peer: &Load, sim: &Load, raw: f64) {
        self.detail(&format!("{tool} ×{clients}, changeflow"), ours);
        self.detail(&format!("{tool} ×{clients}, seed-style peer"), peer);
        self.detail(&format!("{tool} ×{clients}, simulator direct"), sim);
        let target = if clients == 50 {
            read_target(ours, raw)
        } else {
            format!("{} of raw starts", ratio(ours.rate(), raw))
        };
        self.row(
            &format!("{tool}, {clients} client(s), errors {}", ours.errors),
            ours.brief(),
            format!(
                "seed-style peer {}; simulator direct {}",
                peer.brief(),
                sim.brief()
            ),
            format!("{} of peer", ratio(ours.rate(), peer.rate())),
            target,
        );
    }

    fn eager_reads(&mut self, tool: &str, front_door: Eager, load: &Load, raw: f64) {
        let (detail, summary) = match front_door {
            Eager::Dev => (
                "changeflow dev (worker in process, eager start)",
                "`changeflow dev` front door (eager start)",
            ),
            Eager::Serve => (
                "changeflow serve --in-process-worker (eager start)",
                "`serve --in-process-worker` (eager start)",
            ),
        };
        self.detail(&format!("{tool} ×50, {detail}"), load);
        self.row(
            &format!("{tool}, 50 clients, {summary}, errors {}", load.errors),
            load.brief(),
            "—".into(),
            "—".into(),
            read_target(load, raw),
        );
    }

    fn queries(&mut self, listing: &Load, stateless_listing: &Load, status: &Load) {
        self.detail("tools/list ×50, 2025-11-25 sessions", listing);
        self.detail("tools/list ×50, 2026-07-28 stateless", stateless_listing);
        self.detail("get_change_status ×50", status);
        for (era, load) in [
            ("2025-11-25 sessions", listing),
            ("2026-07-28 stateless", stateless_listing),
        ] {
            self.row(
                &format!("tools/list, 50 connections, {era}"),
                format!(
                    "{:.0}/s (p99 {:.1} ms), errors {}",
                    load.rate(),
                    load.p99_ms,
                    load.errors
                ),
                "—".into(),
                "—".into(),
                format!("≥ 5000/s: {}", verdict(load.rate() >= 5000.0)),
            );
        }
        self.row(
            "get_change_status, 50 connections",
            format!(
                "{:.0}/s (p99 {:.1} ms), errors {}",
                status.rate(),
                status.p99_ms,
                status.errors
            ),
            "—".into(),
            "—".into(),
            "—".into(),
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn clients(
        &mut self,
        clients: u32,
        sessions: &starts::Sessions,
        legacy: &Load,
        legacy_peak: f64,
        modern: &Load,
        modern_peak: f64,
        before: Option<f64>,
        file_pages: Option<f64>,
        hwm: f64,
    ) {
        self.detail(
            &format!("get_change_status, {clients} sessions (2025-11-25)"),
            legacy,
        );
        self.detail(
            &format!("get_change_status, {clients} stateless clients (2026-07-28)"),
            modern,
        );
        let mut before = before.map_or("?".into(), |b| format!("{b:.0} MB"));
        if let Some(file) = file_pages {
            let _ = write!(
                before,
                ", {file:.0} MB of it mapped from files, mostly the executable"
            );
        }
        for (era, load, peak, extra) in [
            (
                "2025-11-25 sessions",
                legacy,
                legacy_peak,
                format!(", {} of {} sessions opened", sessions.ids.len(), clients),
            ),
            ("2026-07-28 stateless", modern, modern_peak, String::new()),
        ] {
            let met = load.ok > 0 && load.errors == 0 && sessions.failed == 0 && peak <= 64.0;
            self.row(
                &format!("{clients} clients, {era}, get_change_status"),
                format!(
                    "{} ok, {} shed (retryable), {} errors{extra}; p99 {:.0} ms; front-door RSS peak {peak:.0} MB (idle before: {before})",
                    load.ok, load.shed, load.errors, load.p99_ms
                ),
                "—".into(),
                "—".into(),
                format!("0 errors, RSS ≤ 64 MB: {}", verdict(met)),
            );
        }
        let _ = writeln!(
            self.details,
            "\nFront door VmHWM over the whole run: {hwm:.0} MB."
        );
    }

    fn authn(&mut self, report: Option<&Path>) {
        let text = report.and_then(|p| std::fs::read_to_string(p).ok());
        let found = text.as_deref().and_then(|t| {
            let l = t.lines().find(|l| l.starts_with("authn+authz p50"))?;
            let words: Vec<&str> = l.split_whitespace().collect();
            Some((
                words.get(2)?.parse::<f64>().ok()?,
                words.get(5)?.parse::<f64>().ok()?,
            ))
        });
        match found {
            Some((p50, p99)) => self.row(
                "authn + authz per call (criterion bench, ES256 JWT cached + Rego)",
                format!("p50 {p50:.1} µs, p99 {p99:.1} µs"),
                "—".into(),
                "—".into(),
                format!("p99 ≤ 100 µs: {}", verdict(p99 <= 100.0)),
            ),
            None => self.row(
                "authn + authz per call",
                "not measured in this run (pass --authn-report)".into(),
                "—".into(),
                "—".into(),
                "—".into(),
            ),
        }
    }

    fn finish(self) -> String {
        format!(
            "{}## Summary\n\n{}\n## Every run\n\n{}\n{}",
            self.header, self.summary, self.details, NOTES
        )
    }
}

const NOTES: &str = "\n## Reading these figures\n\n\
- **Raw SDK**: a plain Temporal SDK client in the benchmark's own process starting the same \
`TemplateDeployment` with the input the front door gave the first change (search attributes and \
task queue included), 50 in flight. Every REST or MCP start run has a raw run just before and \
just after it, REST and MCP taking turns going first; between runs every started change is \
terminated and the queue drained. The embedded server slows as its database grows and its speed \
drifts on a shared machine, so each front-door run is compared with the mean of the two raw runs \
around it; the summary gives each kind's median run and median ratio, and the median raw run.\n\
- **Reads** go through their `DownstreamOperation` workflow (a local activity), the MCP \
Inspector's `--load` driving both changeflow and the seed-style peer (`bench/seed_peer.py`, the \
official Python MCP SDK calling the simulator directly, no workflow, audit or policy). A \
tool's reads are compared with the mean of two raw start runs (as above) made just before and \
just after them: the server they ran on, not the smaller one of the first start runs. The \
simulator direct row is wrk on the Catalyst Center simulator's HTTPS API.\n\
- **`tools/list`** answers (77 KB each) are not handed to wrk's Lua one by one: copying each \
into Lua cost wrk more CPU than the front door spent answering, on the same two cores. An \
answer counts as an error when its HTTP status is one, and the run as all errors unless the \
bytes read average one whole answer (measured once beforehand) within 1 %. Both eras are \
measured: a session's answer is an SSE stream (rmcp's session task, a priming event, the \
message framed as an event), a stateless call's one JSON body. \
`get_change_status` answers are read one by one.\n\
- **1000 clients**: wrk with 1000 connections calling `get_change_status` (a query: no \
workflow start); first in the 2026-07-28 era stateless, then in the 2025-11-25 era over 1000 \
sessions opened first (initialize, initialized): resident memory is not given back, so the \
sessions' peak includes what the stateless run left. Workflow calls past the front door's \
`--max-in-flight` would be refused at once as retryable (\"shed\"), which is not an error.\n\
- **The ceiling** is the embedded Temporal dev server: one process persisting to SQLite, on \
the same two cores as everything else. Against an external Temporal \
(`changeflow-bench --temporal-address host:port`, e.g. a cluster on PostgreSQL) the starts \
and reads should follow that server's capacity, the front door's own cost being what remains.\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rate: u64) -> Load {
        Load {
            ok: rate,
            secs: 1.0,
            ..Load::default()
        }
    }

    #[test]
    fn a_start_run_is_judged_against_the_raw_runs_around_it_and_the_median_is_kept() {
        assert_eq!(median_run(&[at(215), at(189), at(188)]).rate(), 189.0);
        assert_eq!(median_run(&[at(3), at(1)]).rate(), 1.0);
        assert_eq!(median_run(&[]).rate(), 0.0);
        let runs = [
            (at(150), Some(0.80)),
            (at(170), Some(0.95)),
            (at(160), Some(0.91)),
            (at(0), None),
        ];
        assert_eq!(median_ratio(&runs), Some(0.91));
        assert_eq!(median_ratio(&runs[..2]), Some(0.80));
        assert_eq!(median_ratio(&[(at(0), None)]), None);
        assert_eq!(median_ratio(&[]), None);
    }
}
