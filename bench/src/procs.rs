//! The processes a benchmark run drives: the embedded stack (`changeflow dev`), a front door of
//! its own (`changeflow serve`, so its memory is the front door's alone), the seed-style peer,
//! and the load generators (wrk, the MCP Inspector's `--load`).

use anyhow::{Context, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// A child process; `stop` ends it, and dropping it sends SIGTERM (so that `changeflow dev`
/// stops the Temporal server it started, which a kill would leave behind).
pub struct Process {
    pub name: &'static str,
    pub child: Child,
}

impl Process {
    pub fn spawn(name: &'static str, command: &mut Command, log: &Path) -> anyhow::Result<Self> {
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log)?)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Process { name, child })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its resident memory now and its peak (VmRSS, VmHWM), in MiB.
    pub fn memory_mib(&self) -> Option<(f64, f64)> {
        Some((self.status_mib("VmRSS:")?, self.status_mib("VmHWM:")?))
    }

    /// Its resident pages mapped from files now (RssFile: above all its own executable), in MiB.
    pub fn file_pages_mib(&self) -> Option<f64> {
        self.status_mib("RssFile:")
    }

    /// One of its `/proc/<pid>/status` sizes, in MiB.
    fn status_mib(&self, name: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    }

    fn terminate(&self) {
        if let Some(pid) = self.pid() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// SIGTERM, then a kill after `grace`.
    pub async fn stop(mut self, grace: Duration) {
        self.terminate();
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Fails if it has exited (naming its log).
    pub fn ensure_running(&mut self, log: &Path) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            bail!("{} exited ({status}); see {}", self.name, log.display());
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// Waits until `ready` says yes, or fails after `within`.
pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut ready: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !ready().await {
        if Instant::now() > deadline {
            bail!("{what} not ready after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// What one load run measured: answers sorted into ok, shed (clean, retryable overload
/// refusals) and errors, with latency percentiles over all answers.
#[derive(Debug, Clone, Default)]
pub struct Load {
    pub requests: u64,
    pub secs: f64,
    pub ok: u64,
    pub shed: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub first_error: String,
}

impl Load {
    /// Successful calls per second.
    pub fn rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.ok as f64 / self.secs
        } else {
            0.0
        }
    }

    /// Rate and latency in one cell: `42/s (p50 635 ms, p99 4429 ms)`.
    pub fn brief(&self) -> String {
        format!(
            "{:.0}/s (p50 {:.0} ms, p99 {:.0} ms)",
            self.rate(),
            self.p50_ms,
            self.p99_ms
        )
    }
}

/// One wrk run (`bench/wrk/call.lua` sorts the answers), configured through the environment.
pub struct Wrk<'a> {
    pub script: &'a Path,
    pub url: &'a str,
    pub connections: u32,
    pub secs: u64,
    pub env: Vec<(&'static str, String)>,
}

impl Wrk<'_> {
    pub async fn run(&self) -> anyhow::Result<Load> {
        let threads = self.connections.clamp(1, 2);
        let output = Command::new("wrk")
            .args(["-t", &threads.to_string()])
            .args(["-c", &self.connections.to_string()])
            .args(["-d", &format!("{}s", self.secs)])
            .args(["--timeout", "30s", "-s"])
            .arg(self.script)
            .arg(self.url)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run wrk (install it: apt-get install wrk, or `make bench` does)")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .with_context(|| {
                format!(
                    "wrk printed no summary: {stdout}{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })?;
        let v: Value = serde_json::from_str(line).with_context(|| format!("wrk summary {line}"))?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok(Load {
            requests: n("requests"),
            secs: n("duration_us") as f64 / 1e6,
            ok: n("ok"),
            shed: n("shed"),
            errors: n("errors") + n("socket_errors"),
            p50_ms: n("p50_us") as f64 / 1e3,
            p99_ms: n("p99_us") as f64 / 1e3,
            first_error: v["first_error"].as_str().unwrap_or("").to_string(),
        })
    }
}

/// The MCP Inspector CLI (`.tools/node`), loading one tool: one client, `concurrency` calls in
/// flight for `secs` seconds.
pub struct Inspector {
    pub bin: PathBuf,
    pub home: PathBuf,
}

impl Inspector {
    pub fn new(tools: &Path, home: PathBuf) -> anyhow::Result<Self> {
        let bin = tools.join("node/node_modules/.bin");
        anyhow::ensure!(
            bin.join("mcp-inspector").exists(),
            "no MCP Inspector in {}: run `make tools`",
            bin.display()
        );
        std::fs::create_dir_all(&home)?;
        Ok(Inspector { bin, home })
    }

    pub async fn load(
        &self,
        url: &str,
        token: Option<&str>,
        tool: &str,
        arguments: &[(&str, &str)],
        concurrency: u32,
        secs: u64,
    ) -> anyhow::Result<Load> {
        let mut command = Command::new(self.bin.join("mcp-inspector"));
        command
            .args(["--cli", url, "--format", "json", "--quiet"])
            .args(["--method", "tools/call", "--tool-name", tool, "--load"])
            .args(["--load-concurrency", &concurrency.to_string()])
            .args(["--load-duration", &secs.to_string()]);
        if let Some(token) = token {
            command.args(["--header", &format!("Authorization: Bearer {token}")]);
        }
        for (name, value) in arguments {
            command.args(["--tool-arg", &format!("{name}={value}")]);
        }
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let output = command
            .env("PATH", path)
            .env("HOME", &self.home)
            .kill_on_drop(true)
            .output()
            .await
            .context("cannot run the MCP Inspector")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let v: Value = serde_json::from_str(stdout.trim()).with_context(|| {
            format!(
                "the Inspector's load summary: {stdout}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })?;
        let summary = if v.get("requests").is_some() {
            &v
        } else {
            &v["result"]
        };
        let n = |k: &str| summary[k].as_u64().unwrap_or(0);
        let first_error = summary["errorMessages"]
            .as_array()
            .and_then(|a| a.first())
            .map(|e| e.to_string())
            .unwrap_or_default();
        Ok(Load {
            requests: n("requests"),
            secs: summary["elapsedMs"].as_f64().unwrap_or(0.0) / 1e3,
            ok: n("ok"),
            shed: 0,
            errors: n("toolErrors") + n("errors"),
            p50_ms: summary["latencyMs"]["p50"].as_f64().unwrap_or(0.0),
            p99_ms: summary["latencyMs"]["p99"].as_f64().unwrap_or(0.0),
            first_error,
        })
    }
}
