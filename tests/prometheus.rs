//! A real Prometheus server (Debian's package, installed by `make tools`) scrapes a running
//! `changeflow dev` stack; its HTTP API shows the target up and the tool-call counter moving
//! after a call. The sample alert rules are checked and unit-tested with promtool.

mod common;

use common::TempDir;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tool(name: &str) -> PathBuf {
    let path = PathBuf::from("/usr/bin").join(name);
    assert!(
        path.is_file(),
        "{} missing: run `make tools` (Debian's prometheus package)",
        path.display()
    );
    path
}

#[test]
fn the_sample_alert_rules_load_and_pass_their_unit_tests() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yml"],
        vec!["test", "rules", "alerts_test.yml"],
    ] {
        let out = Command::new(tool("promtool"))
            .args(&args)
            .current_dir(&rules)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_dev_stack_and_sees_tool_calls() {
    let dir = TempDir::new("changeflow-prometheus");
    let dev =
        common::DevProcess::start(dir.0.join("changeflow"), &[], &dir.0.join("dev.log")).await;
    let mcp = dev.mcp.clone();
    let target = mcp
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();

    let port = common::free_port();
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: changeflow\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Killed(
        Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let http = reqwest::Client::new();
    let query = |q: &str| {
        let request = http
            .get(format!("{api}/query"))
            .query(&[("query", q)])
            .send();
        async move {
            let body: Value = request.await.ok()?.json().await.ok()?;
            body["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
        }
    };
    let wait_for = |what: &'static str, q: String, done: fn(f64) -> bool| {
        let query = &query;
        let dir = &dir;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if query(&q).await.is_some_and(done) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{what} never showed in Prometheus; its log:\n{}",
                    std::fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    wait_for("the target up", "up{job=\"changeflow\"}".into(), |v| {
        v == 1.0
    })
    .await;

    let mut client = dev.client("alice").await;
    let listed = client
        .call_tool("list_templates", serde_json::json!({}), |_, _| {})
        .await
        .unwrap();
    assert!(
        listed["structuredContent"]["templates"].is_array(),
        "{listed}"
    );

    wait_for(
        "the list_templates call",
        "changeflow_tool_calls_total{tool=\"list_templates\",outcome=\"completed\"}".into(),
        |v| v >= 1.0,
    )
    .await;
    wait_for(
        "the process's memory",
        "process_resident_memory_bytes{job=\"changeflow\"}".into(),
        |v| v > 0.0,
    )
    .await;
}
