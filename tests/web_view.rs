//! The NOC web view in a real browser: Debian's Chromium driven by playwright-core
//! (`tests/web/browser.mjs`, pinned in tools/node) against a real `changeflow dev`: sign-in
//! through the development OpenID provider, a change followed live to its end, an approval from
//! the browser, refusals (own change, no CSRF token, a service-desk cancel), a confirmed cancel,
//! an auditor's evidence download, sign-out, no resource from elsewhere, and axe-core's
//! accessibility rules.

mod common;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/node")
}

/// Alice requests a normal change through MCP; it waits for approval.
async fn request_change(alice: &mut changeflow::mcp_client::McpClient, what: &str) -> String {
    let requested = alice
        .call_tool(
            "deploy_template",
            json!({
                "template_id": changeflow_simulators::seed::id("template", "NTP Servers"),
                "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"},
                "devices": ["sj-access-01"],
                "change_type": "normal",
                "short_description": what,
            }),
            |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(
        requested["structuredContent"]["status"], "awaiting_approval",
        "{requested}"
    );
    requested["structuredContent"]["change_id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn noc_engineers_approvers_and_auditors_use_the_web_view_in_a_real_browser() {
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: run `make tools` (it installs Debian's chromium)"
    );
    let node = node_dir();
    assert!(
        node.join("node_modules/playwright-core").is_dir()
            && node.join("node_modules/axe-core").is_dir(),
        "{} lacks playwright-core or axe-core: run `make tools`",
        node.display()
    );
    let dir = common::TempDir::new("changeflow-web");
    let data = dir.0.join("changeflow");
    let dev = common::DevProcess::start(data.clone(), &[], &dir.0.join("dev.log")).await;
    let endpoints: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("endpoints.json")).unwrap()).unwrap();
    let mut alice = dev.client("alice").await;
    let approve = request_change(&mut alice, "NTP, approved in the browser").await;
    let cancel = request_change(&mut alice, "NTP, canceled in the browser").await;

    // The script runs next to node_modules so its imports resolve.
    let script = node.join(format!("web-{}.mjs", uuid::Uuid::new_v4().simple()));
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/web/browser.mjs"),
        &script,
    )
    .unwrap();
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("web-view-change.png");
    let run = tokio::process::Command::new(node.join("node_modules/.bin/node"))
        .arg(&script)
        .env("UI", endpoints["ui"].as_str().unwrap())
        .env("ISSUER", endpoints["oidc_issuer"].as_str().unwrap())
        .env("APPROVE", &approve)
        .env("CANCEL", &cancel)
        .env("SCREENSHOT", &screenshot)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(480), run).await;
    let _ = std::fs::remove_file(&script);
    let output = output.expect("the browser run ends in time").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser run failed:\n{stdout}\n{stderr}\n--- dev log ---\n{}",
        std::fs::read_to_string(dir.0.join("dev.log"))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(stdout.contains("none outside changeflow"), "{stdout}");
    assert!(screenshot.exists(), "the change page's screenshot");
}
