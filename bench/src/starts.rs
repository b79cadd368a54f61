//! Starting changes (through the front door and with the raw SDK), draining them between runs,
//! and the many-clients runs.

use crate::procs::{Load, Wrk};
use crate::{Bench, rpc};
use anyhow::Context;
use changeflow_workflows::{DeploymentRequest, TemplateDeployment};
use futures::StreamExt;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use temporalio_client::{WorkflowListOptions, WorkflowTerminateOptions};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

/// Who starts the changes of a run.
#[derive(Clone, Copy)]
pub enum Kind {
    Raw,
    Rest,
    Mcp,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Raw => "raw SDK",
            Kind::Rest => "REST",
            Kind::Mcp => "MCP task",
        }
    }
}

/// Starts one change through REST and returns its id and the input the front door gave its
/// workflow, which the raw starts reuse.
pub async fn first_change(bench: &Bench) -> anyhow::Result<(String, DeploymentRequest)> {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/mcp/catalyst-center/tools/deploy_template",
            bench.base
        ))
        .bearer_auth(&bench.token)
        .json(&json!({"arguments": bench.deploy_arguments("bench-first")}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    anyhow::ensure!(status == 202, "the first start answered {status}: {body}");
    let id = body["change_id"]
        .as_str()
        .with_context(|| format!("no change_id in {body}"))?
        .to_string();
    let history = changeflow::changes::fetch_history(&bench.client, &id)
        .await
        .map_err(|e| anyhow::anyhow!("history of {id}: {e}"))?;
    let input = history
        .events
        .iter()
        .find_map(|e| match &e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => a.input.clone(),
            _ => None,
        })
        .and_then(|p| p.payloads.into_iter().next())
        .context("the first change's history has no input")?;
    let request: DeploymentRequest =
        serde_json::from_slice(&input.data).context("the first change's input")?;
    Ok((id, request))
}

/// One run of starts, 50 in flight for `secs` seconds.
pub async fn run(
    bench: &Bench,
    kind: Kind,
    input: &DeploymentRequest,
    run: u32,
    secs: u64,
) -> anyhow::Result<Load> {
    const IN_FLIGHT: u32 = 50;
    let key = format!("bench-{}-{run}-{{n}}", kind.label().replace(' ', "-"));
    match kind {
        Kind::Raw => raw(bench, input, &key, IN_FLIGHT, secs).await,
        Kind::Rest => {
            Wrk {
                script: &bench.script,
                url: &format!(
                    "{}/api/v1/mcp/catalyst-center/tools/deploy_template",
                    bench.base
                ),
                connections: IN_FLIGHT,
                secs,
                env: vec![
                    (
                        "BENCH_BODY",
                        {
                            // The key goes in the Idempotency-Key header instead.
                            let mut arguments = bench.deploy_arguments("");
                            arguments.as_object_mut().map(|a| a.remove("idempotency_key"));
                            json!({ "arguments": arguments }).to_string()
                        },
                    ),
                    (
                        "BENCH_HEADERS",
                        format!(
                            "Authorization: Bearer {}\nContent-Type: application/json\nIdempotency-Key: {key}",
                            bench.token
                        ),
                    ),
                    ("BENCH_OK", "202".into()),
                ],
            }
            .run()
            .await
        }
        Kind::Mcp => {
            // A client declaring the tasks extension gets the task at once, on start.
            let params =
                json!({"name": "deploy_template", "arguments": bench.deploy_arguments(&key)});
            let tasks = json!({"extensions": {"io.modelcontextprotocol/tasks": {}}});
            bench
                .stateless_wrk("tools/call", params, tasks, IN_FLIGHT, secs)
                .run()
                .await
        }
    }
}

/// The raw SDK client: `in_flight` tasks each starting the same workflow under fresh ids.
async fn raw(
    bench: &Bench,
    input: &DeploymentRequest,
    key: &str,
    in_flight: u32,
    secs: u64,
) -> anyhow::Result<Load> {
    let began = Instant::now();
    let deadline = began + Duration::from_secs(secs);
    let tasks = (0..in_flight).map(|task| {
        let client = bench.client.clone();
        let task_queue = bench.task_queue.clone();
        let input = input.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, String::new());
            let mut n = 0;
            while Instant::now() < deadline {
                n += 1;
                let id = key.replace("{n}", &format!("{task}-{n}"));
                let t = Instant::now();
                match changeflow::changes::start(&client, &task_queue, &id, input.clone()).await {
                    Ok(changeflow::changes::Started::New) => latencies.push(t.elapsed()),
                    // Every id is new: an existing one would be a start not made.
                    Ok(changeflow::changes::Started::Existing) => {
                        errors += 1;
                        if first_error.is_empty() {
                            first_error = format!("{id} was already used");
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if first_error.is_empty() {
                            first_error = e.to_string();
                        }
                    }
                }
            }
            (latencies, errors, first_error)
        })
    });
    let mut latencies = Vec::new();
    let mut load = Load::default();
    for done in futures::future::join_all(tasks).await {
        let (l, errors, first_error) = done?;
        latencies.extend(l);
        load.errors += errors;
        if load.first_error.is_empty() {
            load.first_error = first_error;
        }
    }
    load.secs = began.elapsed().as_secs_f64();
    latencies.sort();
    load.ok = latencies.len() as u64;
    load.requests = load.ok + load.errors;
    let at = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    load.p50_ms = at(0.50);
    load.p99_ms = at(0.99);
    Ok(load)
}

/// Terminates every running change and waits until Temporal has none left, so the next run
/// starts on an idle server.
pub async fn drain(bench: &Bench) -> anyhow::Result<()> {
    let query = "WorkflowType = 'TemplateDeployment' AND ExecutionStatus = 'Running'";
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let ids: Vec<String> = bench
            .client
            .list_workflows(query, WorkflowListOptions::builder().build())
            .filter_map(|e| async move { e.ok().map(|e| e.id().to_string()) })
            .collect()
            .await;
        if ids.is_empty() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} changes still running after three minutes of draining",
            ids.len()
        );
        futures::stream::iter(ids)
            .for_each_concurrent(50, |id| async move {
                let handle = bench.client.get_workflow_handle::<TemplateDeployment>(id);
                let _ = handle
                    .terminate(
                        WorkflowTerminateOptions::builder()
                            .reason("changeflow-bench: between runs".to_string())
                            .build(),
                    )
                    .await;
            })
            .await;
        // Visibility lags a little behind.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The dev stack's archiver then copies every closed history into the audit store: wait
    // until the machine is quiet again, so that no run pays for the one before.
    wait_quiet(Duration::from_secs(120)).await;
    Ok(())
}

/// Waits until the machine's CPUs are mostly idle (under 15 % busy over a second), or `within`.
pub async fn wait_quiet(within: Duration) {
    fn sample() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let idle = fields.get(3)? + fields.get(4).unwrap_or(&0);
        Some((fields.iter().sum(), idle))
    }
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let Some((total, idle)) = sample() else {
            return;
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some((total2, idle2)) = sample() else {
            return;
        };
        let busy = 1.0 - (idle2 - idle) as f64 / (total2 - total).max(1) as f64;
        if busy < 0.15 {
            return;
        }
    }
    eprintln!("bench: the machine stayed busy for {within:?} after draining; going on");
}

/// A Catalyst Center token for the direct calls on the simulator.
pub async fn simulator_token(endpoints: &Value) -> anyhow::Result<String> {
    let mut http = reqwest::Client::builder();
    if let Some(ca) = endpoints["ca_file"].as_str() {
        http = http.add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca)?)?);
    }
    let credentials = &endpoints["credentials"];
    let response = http
        .build()?
        .post(format!(
            "{}/dna/system/api/v1/auth/token",
            endpoints["catalyst_center"]
                .as_str()
                .unwrap_or_default()
                .trim_end_matches('/')
        ))
        .basic_auth(
            credentials["catalyst_username"]
                .as_str()
                .unwrap_or_default(),
            credentials["catalyst_password"].as_str(),
        )
        .send()
        .await?
        .error_for_status()?;
    let body: Value = response.json().await?;
    body["Token"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("no Token in {body}"))
}

/// MCP sessions opened for the many-clients run.
pub struct Sessions {
    pub ids: Vec<String>,
    pub failed: usize,
    pub first_error: String,
}

/// Ends the sessions (`DELETE` with `Mcp-Session-Id`), 50 at a time, so that what follows is
/// measured without them; how many the front door did not end.
pub async fn close_sessions(bench: &Bench, sessions: &Sessions) -> usize {
    let http = reqwest::Client::new();
    futures::stream::iter(&sessions.ids)
        .map(|id| {
            let request = http
                .delete(&bench.mcp)
                .bearer_auth(&bench.token)
                .header("Mcp-Session-Id", id)
                .send();
            async move { request.await.is_ok_and(|r| r.status().is_success()) }
        })
        .buffer_unordered(50)
        .filter(|ended| std::future::ready(!ended))
        .count()
        .await
}

/// Opens `count` 2025-11-25 sessions (initialize, then initialized), 50 at a time.
pub async fn open_sessions(bench: &Bench, count: u32) -> anyhow::Result<Sessions> {
    let opened: Vec<Result<String, String>> = futures::stream::iter(0..count)
        .map(|_| async {
            let (client, _) = changeflow::mcp_client::McpClient::connect(&bench.mcp, &bench.token)
                .await
                .map_err(|e| e.to_string())?;
            client
                .session_id()
                .map(str::to_string)
                .ok_or_else(|| "no session id".to_string())
        })
        .buffer_unordered(50)
        .collect()
        .await;
    let mut sessions = Sessions {
        ids: Vec::new(),
        failed: 0,
        first_error: String::new(),
    };
    for o in opened {
        match o {
            Ok(id) => sessions.ids.push(id),
            Err(e) => {
                sessions.failed += 1;
                if sessions.first_error.is_empty() {
                    sessions.first_error = e;
                }
            }
        }
    }
    if sessions.failed > 0 {
        eprintln!(
            "bench: {} sessions failed to open: {}",
            sessions.failed, sessions.first_error
        );
    }
    Ok(sessions)
}

/// `clients` connections making `call` (a `tools/call`'s params) for `secs` seconds: over the
/// given sessions in turn (2025-11-25), or stateless (2026-07-28) without.
pub async fn many_clients(
    bench: &Bench,
    call: Value,
    sessions: Option<&Sessions>,
    clients: u32,
    secs: u64,
) -> anyhow::Result<Load> {
    let Some(sessions) = sessions else {
        return bench
            .stateless_wrk("tools/call", call, json!({}), clients, secs)
            .run()
            .await;
    };
    over_sessions(
        bench,
        rpc("tools/call", call),
        sessions,
        clients,
        secs,
        None,
    )
    .await
}

/// wrk sending `body` over `connections`, each request in the next of `sessions` (2025-11-25).
pub async fn over_sessions(
    bench: &Bench,
    body: Value,
    sessions: &Sessions,
    connections: u32,
    secs: u64,
    answer_bytes: Option<u64>,
) -> anyhow::Result<Load> {
    let file = bench
        .dir
        .join(format!("sessions-{}.txt", sessions.ids.len()));
    std::fs::write(&file, sessions.ids.join("\n"))?;
    let mut env = vec![
        ("BENCH_SESSIONS", file.display().to_string()),
        ("BENCH_BODY", body.to_string()),
        ("BENCH_HEADERS", session_headers(bench, &[])),
    ];
    if let Some(bytes) = answer_bytes {
        env.push(("BENCH_ANSWER_BYTES", bytes.to_string()));
    }
    Wrk {
        script: &bench.script,
        url: &bench.mcp,
        connections,
        secs,
        env,
    }
    .run()
    .await
}

/// The headers of a request in a 2025-11-25 session (the session id aside, which wrk's script
/// sets per request), with `more`.
pub fn session_headers(bench: &Bench, more: &[String]) -> String {
    let mut extra = vec![format!(
        "MCP-Protocol-Version: {}",
        changeflow::mcp_client::PROTOCOL_VERSION
    )];
    extra.extend_from_slice(more);
    bench.headers(&extra)
}

/// The size of one whole answer to a request with `body` and `headers` (as wrk's script gets
/// them, `{n}` filled in) as it crosses the wire: status line, headers and the body, chunked (a
/// 2025-11-25 stream) or of a stated length (a 2026-07-28 JSON answer). It is what wrk's script
/// checks answers it does not hand to Lua one by one against (`BENCH_ANSWER_BYTES`). The answer
/// must be a 200.
pub async fn answer_bytes(bench: &Bench, body: &str, headers: &str) -> anyhow::Result<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = reqwest::Url::parse(&bench.mcp)?;
    let host = url.host_str().context("the MCP endpoint has no host")?;
    let port = url
        .port_or_known_default()
        .context("the MCP endpoint has no port")?;
    let body = body.replace("{n}", "1-1");
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {host}:{port}\r\n{}\r\nContent-Length: {}\r\n\r\n{body}",
        url.path(),
        headers.replace("{n}", "1-1").replace('\n', "\r\n"),
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut answer = Vec::new();
    let mut chunk = [0u8; 16384];
    let read = async {
        while !whole_answer(&answer) {
            let n = stream.read(&mut chunk).await?;
            anyhow::ensure!(n > 0, "the front door closed the connection mid-answer");
            answer.extend_from_slice(&chunk[..n]);
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .context("no whole answer within 30 s")??;
    anyhow::ensure!(
        answer.starts_with(b"HTTP/1.1 200 "),
        "the answer is not a 200: {}",
        String::from_utf8_lossy(&answer[..answer.len().min(300)])
    );
    Ok(answer.len() as u64)
}

/// Whether `answer` holds a whole HTTP/1.1 answer: its headers, then as many bytes as its
/// `content-length` says or, without one, a chunked body up to its last chunk.
fn whole_answer(answer: &[u8]) -> bool {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    let length = head.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .and_then(|n| n.trim().parse::<usize>().ok())
    });
    match length {
        Some(length) => answer.len() >= end + 4 + length,
        None => answer.ends_with(b"\r\n0\r\n\r\n"),
    }
}
