//! GitHub through MCP and templates deployed from reviewed commits, on a running
//! `changeflow dev` (real Temporal, OpenBao holding each person's GitHub token, the
//! simulators over HTTPS): dave branches, commits and opens a pull request; alice reviews and
//! approves it; dave merges; alice deploys the template from `main` by path. The change pins
//! the merge commit, Catalyst Center gets a version named after it, the device gets the new
//! text and the ticket names commit, pull request and approver. Unreviewed text is refused by
//! policy, naming the rule; bob cannot use GitHub and dave cannot deploy.

mod common;

use changeflow::mcp_client::McpClient;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const REPO: [(&str, &str); 2] = [("owner", "netops"), ("repo", "templates")];

fn args(more: Value) -> Value {
    let mut map = serde_json::Map::new();
    for (k, v) in REPO {
        map.insert(k.into(), json!(v));
    }
    map.extend(more.as_object().unwrap().clone());
    Value::Object(map)
}

async fn call(client: &mut McpClient, tool: &str, arguments: Value) -> Value {
    client.call_tool(tool, arguments, |_, _| {}).await.unwrap()
}

/// A successful call's structured result.
async fn ok(client: &mut McpClient, tool: &str, arguments: Value) -> Value {
    let answer = call(client, tool, arguments).await;
    assert_ne!(answer["isError"], true, "{tool}: {answer}");
    answer["structuredContent"].clone()
}

/// A refused call's text.
async fn refused(client: &mut McpClient, tool: &str, arguments: Value) -> String {
    let answer = call(client, tool, arguments).await;
    assert_eq!(
        answer["isError"], true,
        "{tool} should be refused: {answer}"
    );
    answer["content"][0]["text"].as_str().unwrap().to_string()
}

async fn wait_until_done(client: &mut McpClient, change: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let status = ok(client, "get_change_status", json!({"change_id": change})).await;
        if status["status"] != "running" {
            return status;
        }
        assert!(Instant::now() < deadline, "never ended: {status}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

const NEW_TEXT: &str = "ntp server $ntp_primary prefer\nntp server $ntp_secondary\nntp update-calendar\nclock timezone $timezone 0\n";

fn deploy(reference: Option<&str>, change_type: &str, device: &str) -> Value {
    let mut source = json!({"repository": "netops/templates", "path": "ntp/ntp-servers.vtl"});
    if let Some(r) = reference {
        source["ref"] = json!(r);
    }
    json!({
        "source": source,
        "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2", "timezone": "UTC"},
        "devices": [device],
        "change_type": change_type,
        "short_description": format!("NTP from Git ({change_type})"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reviewed_templates_go_from_a_pull_request_to_the_devices() {
    let dir = common::TempDir::new("changeflow-github");
    let data = dir.0.join("changeflow");
    let dev = common::DevProcess::start(data.clone(), &[], &dir.0.join("dev.log")).await;
    let mut dave = dev.client("dave").await;
    let mut alice = dev.client("alice").await;
    let mut carol = dev.client("carol").await;
    let mut bob = dev.client("bob").await;

    // The tools are listed under /mcp with the official server's names.
    let listed = dave.request("tools/list", json!({}), |_| {}).await.unwrap();
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    for tool in [
        "get_file_contents",
        "list_branches",
        "create_branch",
        "list_commits",
        "get_commit",
        "create_or_update_file",
        "create_pull_request",
        "list_pull_requests",
        "pull_request_read",
        "pull_request_review_write",
        "merge_pull_request",
    ] {
        assert!(names.contains(&tool), "{tool} missing from {names:?}");
    }

    // ... and alone on /mcp/github, the server's eleven.
    let (mut alone, _) = McpClient::connect(&format!("{}/github", dev.mcp), &dev.token("dave"))
        .await
        .unwrap();
    let own = alone
        .request("tools/list", json!({}), |_| {})
        .await
        .unwrap();
    assert_eq!(own["tools"].as_array().unwrap().len(), 11, "{own}");

    // dave: a branch, a commit, a pull request.
    let file = ok(
        &mut dave,
        "get_file_contents",
        args(json!({"path": "ntp/ntp-servers.vtl"})),
    )
    .await;
    assert!(
        file["content"]
            .as_str()
            .unwrap()
            .starts_with("ntp server $ntp_primary"),
        "{file}"
    );
    let branch = ok(
        &mut dave,
        "create_branch",
        args(json!({"branch": "ntp-update-calendar"})),
    )
    .await;
    assert_eq!(branch["ref"], "refs/heads/ntp-update-calendar", "{branch}");
    let write = args(json!({
        "path": "ntp/ntp-servers.vtl", "content": NEW_TEXT, "message": "NTP: keep the calendar in step",
        "branch": "ntp-update-calendar", "sha": file["sha"],
    }));
    let committed = ok(&mut dave, "create_or_update_file", write.clone()).await;
    assert_eq!(committed["committed"], true, "{committed}");
    // Writing the same content again (another key, so another workflow) commits nothing.
    let mut again = write.clone();
    again["message"] = json!("NTP: keep the calendar in step (retried)");
    let repeated = ok(&mut dave, "create_or_update_file", again).await;
    assert_eq!(repeated["committed"], false, "{repeated}");
    assert_eq!(repeated["commit_sha"], committed["commit_sha"]);
    // A stale blob sha is a conflict, named.
    let mut stale = write.clone();
    stale["content"] = json!("ntp server 10.0.0.1\n");
    let conflict = refused(&mut dave, "create_or_update_file", stale).await;
    assert!(conflict.contains("does not match"), "{conflict}");
    let commits = ok(
        &mut dave,
        "list_commits",
        args(json!({"sha": "ntp-update-calendar", "path": "ntp/ntp-servers.vtl", "perPage": 1})),
    )
    .await;
    assert_eq!(commits["commits"][0]["sha"], committed["commit_sha"]);
    let commit = ok(
        &mut dave,
        "get_commit",
        args(json!({"sha": committed["commit_sha"], "detail": "stats"})),
    )
    .await;
    assert_eq!(
        commit["files"][0]["filename"], "ntp/ntp-servers.vtl",
        "{commit}"
    );
    assert_eq!(commit["stats"]["additions"], 1, "{commit}");
    let open = args(json!({
        "title": "NTP: update the calendar", "head": "ntp-update-calendar", "base": "main",
        "body": "Adds ntp update-calendar.",
    }));
    let pr = ok(&mut dave, "create_pull_request", open.clone()).await;
    let number = pr["number"].as_u64().unwrap();
    // Opening it again (a retry with other text) finds the same pull request.
    let mut reopen = open.clone();
    reopen["title"] = json!("NTP: update the calendar (retried)");
    assert_eq!(
        ok(&mut dave, "create_pull_request", reopen).await["number"],
        number
    );

    // Unreviewed: merging is refused by policy, and deploying the branch too.
    let unreviewed = refused(
        &mut dave,
        "merge_pull_request",
        args(json!({"pullNumber": number})),
    )
    .await;
    assert!(unreviewed.contains("rule reviewed_merges"), "{unreviewed}");
    let branch_deploy = refused(
        &mut alice,
        "deploy_template",
        deploy(Some("ntp-update-calendar"), "normal", "sj-access-01"),
    )
    .await;
    assert!(
        branch_deploy.contains("rule reviewed_templates")
            && branch_deploy.contains("not the default branch"),
        "{branch_deploy}"
    );
    // dave cannot approve his own pull request (GitHub says so), nor deploy.
    let own = refused(
        &mut dave,
        "pull_request_review_write",
        args(json!({"method": "create", "pullNumber": number, "event": "APPROVE"})),
    )
    .await;
    assert!(
        own.contains("Can not approve your own pull request"),
        "{own}"
    );
    let no_deploy = refused(
        &mut dave,
        "deploy_template",
        deploy(None, "normal", "sj-access-01"),
    )
    .await;
    assert!(
        no_deploy.contains("execute on catalyst-center"),
        "{no_deploy}"
    );

    // alice reviews and approves; dave merges.
    let files = ok(
        &mut alice,
        "pull_request_read",
        args(json!({"method": "get_files", "pullNumber": number})),
    )
    .await;
    assert!(
        files["files"][0]["patch"]
            .as_str()
            .unwrap()
            .contains("+ntp update-calendar"),
        "{files}"
    );
    let approve = args(json!({
        "method": "create", "pullNumber": number, "event": "APPROVE", "body": "Looks right.",
    }));
    let review = ok(&mut alice, "pull_request_review_write", approve.clone()).await;
    assert_eq!(review["state"], "APPROVED", "{review}");
    // alice may not merge; bob may not even read.
    let alice_merge = refused(
        &mut alice,
        "merge_pull_request",
        args(json!({"pullNumber": number})),
    )
    .await;
    assert!(alice_merge.contains("write on github"), "{alice_merge}");
    let bob_read = refused(&mut bob, "list_branches", args(json!({}))).await;
    assert!(bob_read.contains("read on github"), "{bob_read}");
    let merged = ok(
        &mut dave,
        "merge_pull_request",
        args(json!({"pullNumber": number})),
    )
    .await;
    assert_eq!(merged["merged"], true, "{merged}");
    let merge_sha = merged["sha"].as_str().unwrap().to_string();
    let reviews = ok(
        &mut dave,
        "pull_request_read",
        args(json!({"method": "get_reviews", "pullNumber": number})),
    )
    .await;
    assert_eq!(reviews["reviews"][0]["user"], "alice", "{reviews}");

    // alice deploys from main by path: a normal change carol approves.
    let requested = ok(
        &mut alice,
        "deploy_template",
        deploy(None, "normal", "sj-access-01"),
    )
    .await;
    assert_eq!(requested["status"], "awaiting_approval", "{requested}");
    let change = requested["change_id"].as_str().unwrap().to_string();
    let status = ok(
        &mut alice,
        "get_change_status",
        json!({"change_id": change}),
    )
    .await;
    assert_eq!(status["source"]["commit_sha"], merge_sha, "{status}");
    assert_eq!(status["source"]["requested_ref"], "main", "{status}");
    assert_eq!(status["source"]["pull_request"]["number"], number);
    assert_eq!(
        status["source"]["pull_request"]["approvers"],
        json!(["alice"])
    );
    let version = status["template_version"].clone();
    assert!(
        version["comment"].as_str().unwrap().contains(&merge_sha),
        "{status}"
    );
    let approved = ok(
        &mut carol,
        "approve_change",
        json!({"change_id": change, "comment": "reviewed text, go"}),
    )
    .await;
    assert_eq!(approved["accepted"], true, "{approved}");
    let done = wait_until_done(&mut alice, &change).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["step"], "completed", "{done}");

    // Catalyst Center: the template named after the path has the version naming the commit,
    // holding the new text.
    let templates = ok(
        &mut alice,
        "list_templates",
        json!({"project_name": "netops/templates"}),
    )
    .await;
    let synced = templates["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ntp/ntp-servers.vtl")
        .unwrap_or_else(|| panic!("no synced template: {templates}"))
        .clone();
    assert_eq!(synced["template_id"], version["template_id"]);
    let template = ok(
        &mut alice,
        "get_template",
        json!({"template_id": version["version_id"]}),
    )
    .await;
    assert!(
        template["content"]
            .as_str()
            .unwrap()
            .contains("ntp update-calendar"),
        "{template}"
    );
    // The device has the new text.
    let shown = ok(
        &mut alice,
        "run_show_commands",
        json!({"devices": ["sj-access-01"], "commands": ["show running-config | include ntp"]}),
    )
    .await;
    assert!(
        shown["devices"][0]["results"][0]["output"]
            .as_str()
            .unwrap()
            .contains("ntp update-calendar"),
        "{shown}"
    );
    // The ticket names commit, pull request and approver.
    let ticket = ok(
        &mut carol,
        "get_change_request",
        json!({"number": done["ticket_number"], "details": true}),
    )
    .await;
    let notes: Vec<&str> = ticket["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains(&merge_sha)
            && n.contains(&format!("pull request #{number}"))
            && n.contains("approved by alice")
            && n.contains("netops/templates ntp/ntp-servers.vtl")),
        "{notes:?}"
    );
    // So does the audit record of the deployment.
    let audit = changeflow_engine::audit::AuditStore::open_in(&data)
        .await
        .unwrap();
    let records = audit
        .list(&changeflow_engine::audit::AuditFilter {
            workflow_id: Some(change.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        records
            .iter()
            .any(|r| r.entry.tool == "deploy_template" && r.entry.note.contains(&merge_sha)),
        "{records:?}"
    );
    drop(audit);
    // And the evidence bundle's summary, for the auditor.
    let mut erin = dev.client("erin").await;
    let evidence = ok(
        &mut erin,
        "get_change_evidence",
        json!({"change_id": change}),
    )
    .await;
    let summary = evidence["summary"].as_str().unwrap();
    assert!(
        summary.contains(&merge_sha)
            && summary.contains(&format!("pull request #{number} approved by alice"))
            && summary.contains(version["version_id"].as_str().unwrap()),
        "{summary}"
    );

    // A standard change from the same reviewed commit runs without approval, and reuses the
    // version the first sync made.
    let standard = ok(
        &mut alice,
        "deploy_template",
        deploy(Some(&merge_sha), "standard", "sj-access-01"),
    )
    .await;
    let standard_id = standard["change_id"].as_str().unwrap().to_string();
    let finished = wait_until_done(&mut alice, &standard_id).await;
    assert_eq!(finished["status"], "completed", "{finished}");
    assert_eq!(finished["template_version"]["reused"], true, "{finished}");
    assert_eq!(
        finished["template_version"]["version_id"],
        version["version_id"]
    );
}

/// A worker killed after committing the Catalyst Center version but before the sync returned:
/// the next worker's sync finds the version naming the commit and commits no second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_sync_leaves_one_version() {
    use changeflow_simulators::faults::FaultConfig;
    let h = common::Harness::start(common::HarnessOptions::default()).await;
    let (_vault, env) = h.vault(&["alice"]).await;
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut first = h.spawn_worker_with_env(&env);
    // Every answer slow, so the worker is still waiting for the commit's task or the versions
    // listing when it dies (the next worker takes over once the attempt times out, in 60 s).
    h.sims.faults.set(FaultConfig {
        latency_ms: 1000,
        ..FaultConfig::default()
    });
    let change: changeflow_workflows::arguments::DeployTemplate =
        serde_json::from_value(deploy(None, "standard", "sj-access-01")).unwrap();
    let id = h
        .start_change(changeflow_workflows::DeploymentRequest::new(
            change,
            "alice".into(),
        ))
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while h
        .sims
        .catalyst
        .versions_of("ntp/ntp-servers.vtl")
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "never committed; worker log:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();
    h.sims.faults.set(FaultConfig::default());
    let _second = h.spawn_worker_with_env(&env);
    let done = h
        .wait_for_progress(&id, Duration::from_secs(120), |p| {
            p.step == changeflow_workflows::ChangeStep::Completed
        })
        .await;
    let versions = h.sims.catalyst.versions_of("ntp/ntp-servers.vtl");
    assert_eq!(versions.len(), 1, "{versions:?}");
    let synced = done.template_version.expect("synced");
    assert!(
        synced.reused,
        "the second worker found the version: {synced:?}"
    );
    assert!(versions[0].1.contains(&done.source.unwrap().commit_sha));
}
