//! The official MCP conformance suite (`@modelcontextprotocol/conformance`, on the Node.js 22
//! that `make tools` installs into `.tools/node`) against changeflow's loopback-only conformance
//! profile: its fixture tools are workflows on a real Temporal, served by the real front door.
//! Known, justified failures are listed in `tests/conformance/expected-failures.yml`; anything
//! else failing, or a listed scenario passing, fails this test.

mod common;

use common::{Harness, HarnessOptions};
use std::path::{Path, PathBuf};

fn node_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node/node_modules/.bin");
    assert!(
        bin.join("conformance").exists(),
        "run `make tools` to install the conformance suite"
    );
    bin
}

/// Runs the suite with `extra` arguments; returns its output, asserting it exited 0.
async fn conformance(url: &str, out: &Path, extra: &[&str]) -> String {
    let bin = node_bin();
    let baseline =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/expected-failures.yml");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let output = tokio::process::Command::new(bin.join("conformance"))
        .args(["server", "--url", url, "--suite", "all"])
        .arg("--expected-failures")
        .arg(&baseline)
        .arg("--output-dir")
        .arg(out)
        .args(extra)
        .env("PATH", path)
        .current_dir(out)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = text
        .find("=== SUMMARY ===")
        .map_or(text.as_str(), |i| &text[i..]);
    assert!(
        output.status.success(),
        "conformance {extra:?} failed beyond the expected failures:\n{summary}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_conformance_suite_passes_but_for_justified_exceptions() {
    let h = Harness::start(HarnessOptions::default()).await;
    let _worker = h.spawn_worker();
    let data = h.dir.0.join("conformance");
    std::fs::create_dir_all(&data).unwrap();

    // Serving without authentication is only ever allowed on loopback.
    let refused = changeflow::front_door::start_conformance_profile(
        "0.0.0.0:0",
        &data,
        h.client.clone(),
        &h.task_queue,
    )
    .await
    .err()
    .expect("a non-loopback address is refused");
    assert!(refused.to_string().contains("loopback"), "{refused}");

    let door = changeflow::front_door::start_conformance_profile(
        "127.0.0.1:0",
        &data,
        h.client.clone(),
        &h.task_queue,
    )
    .await
    .unwrap();
    let url = door.mcp_url();

    let every_revision = conformance(&url, &data, &[]).await;
    for scenario in [
        "server-initialize",
        "tools-list",
        "tasks-lifecycle",
        "tasks-capability-negotiation",
        "tasks-mrtr-input",
        "tasks-mrtr-composition",
        "tools-call-with-progress",
        "tasks-dispatch-and-envelope",
        "tasks-required-task-error",
        "dns-rebinding-protection",
    ] {
        assert!(
            every_revision.contains(&format!("✓ {scenario}:")),
            "{scenario} ran and passed:\n{every_revision}"
        );
    }
    let stateless = conformance(&url, &data, &["--spec-version", "2026-07-28"]).await;
    assert!(
        stateless.contains("✓ http-header-validation:"),
        "{stateless}"
    );
}
