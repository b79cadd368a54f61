//! The shipped policy (`policy/`) and the engine around it: Rego unit tests, the seed's RBAC
//! matrix, the MFA and self-approval rules, fail-closed behaviour, and hot reload.

use changeflow_engine::policy::{PolicyEngine, PolicyIdentity, PolicyInput, PolicyTool};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn shipped_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policy")
}

fn identity(subject: &str, group: &str, mfa: bool) -> PolicyIdentity {
    PolicyIdentity {
        subject: subject.into(),
        groups: vec![group.into()],
        amr: if mfa {
            vec!["pwd".into(), "mfa".into()]
        } else {
            vec!["pwd".into()]
        },
        client_id: "test".into(),
    }
}

fn input(
    who: PolicyIdentity,
    resource: &str,
    action: &str,
    tool: &str,
    arguments: serde_json::Value,
) -> PolicyInput {
    PolicyInput {
        identity: who,
        resource: resource.into(),
        action: action.into(),
        tool: PolicyTool {
            name: tool.into(),
            arguments,
        },
        context: json!({"time": 1795600800, "client": "test"}),
        change: None,
        devices: None,
        source: None,
        pull_request: None,
    }
}

/// A copy of a policy directory that a test may edit.
struct PolicyDir(PathBuf);

impl PolicyDir {
    fn with(files: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "cf-policy-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ rand_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        Self(dir)
    }
    fn shipped() -> Self {
        let authz = std::fs::read_to_string(shipped_policy().join("authz.rego")).unwrap();
        Self::with(&[("authz.rego", &authz)])
    }
}

fn rand_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

impl Drop for PolicyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_rego_unit_tests_pass() {
    let engine = PolicyEngine::load(shipped_policy()).unwrap();
    let results = engine.run_rego_tests();
    assert!(results.len() >= 6, "found {} Rego tests", results.len());
    let failed: Vec<_> = results.iter().filter(|(_, passed, _)| !passed).collect();
    assert!(failed.is_empty(), "failing Rego tests: {failed:?}");
}

#[test]
fn each_seed_group_gets_exactly_its_grants() {
    let engine = PolicyEngine::load(shipped_policy()).unwrap();
    let resources = [
        "catalyst-center",
        "servicenow",
        "changes",
        "github",
        "rest-api-proxy",
    ];
    let actions = ["read", "write", "execute"];
    // (group, resource, actions allowed); anything not listed is denied.
    let grants: &[(&str, &str, &[&str])] = &[
        (
            "network-engineers",
            "catalyst-center",
            &["read", "write", "execute"],
        ),
        (
            "network-engineers",
            "changes",
            &["read", "write", "execute"],
        ),
        // And, for templates, opening and reviewing pull requests (authz_test.rego).
        ("network-engineers", "github", &["read"]),
        ("service-desk", "servicenow", &["read", "write", "execute"]),
        ("service-desk", "catalyst-center", &["read"]),
        ("service-desk", "changes", &["read"]),
        ("change-approvers", "servicenow", &["read", "write"]),
        ("change-approvers", "changes", &["read", "write"]),
        ("developers", "github", &["read", "write", "execute"]),
        (
            "developers",
            "rest-api-proxy",
            &["read", "write", "execute"],
        ),
    ];
    for group in [
        "admin",
        "network-engineers",
        "service-desk",
        "change-approvers",
        "developers",
        "contractors",
    ] {
        for resource in resources {
            for action in actions {
                let expected = group == "admin"
                    || grants
                        .iter()
                        .any(|(g, r, a)| *g == group && *r == resource && a.contains(&action));
                let decision = engine.decide(&input(
                    identity("u", group, true),
                    resource,
                    action,
                    "some_tool",
                    json!({}),
                ));
                assert_eq!(
                    decision.allow, expected,
                    "{group} {action} on {resource}: {}",
                    decision.reason
                );
                assert!(!decision.reason.is_empty());
                assert_eq!(decision.revision, engine.revision());
                if !expected {
                    assert_eq!(
                        decision.reason,
                        format!("no group of u grants {action} on {resource}")
                    );
                }
            }
        }
    }
}

#[test]
fn write_and_execute_on_production_devices_require_mfa() {
    let engine = PolicyEngine::load(shipped_policy()).unwrap();
    let deploy = |mfa: bool, devices: serde_json::Value, action: &str| {
        engine.decide(&input(
            identity("alice", "network-engineers", mfa),
            "catalyst-center",
            action,
            "deploy_template",
            json!({"devices": devices}),
        ))
    };
    assert!(deploy(true, json!(["sj-access-01"]), "execute").allow);
    let denied = deploy(false, json!(["sj-access-01", "lab-sw-1"]), "execute");
    assert!(!denied.allow);
    assert!(denied.reason.contains("require MFA"), "{}", denied.reason);
    assert!(!deploy(false, json!(["sj-access-01"]), "write").allow);
    assert!(
        deploy(false, json!(["lab-sw-1"]), "execute").allow,
        "lab devices need no MFA"
    );
    assert!(
        deploy(false, json!(["sj-access-01"]), "read").allow,
        "reading needs no MFA"
    );
    let admin = engine.decide(&input(
        identity("root", "admin", false),
        "catalyst-center",
        "execute",
        "deploy_template",
        json!({"devices": ["sj-core-01"]}),
    ));
    assert!(!admin.allow, "admins need MFA for production changes too");
}

#[test]
fn nobody_approves_a_change_they_requested() {
    let engine = PolicyEngine::load(shipped_policy()).unwrap();
    let decide = |subject: &str, group: &str, tool: &str, requested_by: &str| {
        let mut request = input(
            identity(subject, group, true),
            "approvals",
            "write",
            tool,
            json!({"change_id": "change-1", "comment": "ok"}),
        );
        request.change = Some(json!({"requested_by": requested_by}));
        engine.decide(&request)
    };
    let own = decide("carol", "change-approvers", "approve_change", "carol");
    assert!(!own.allow);
    assert_eq!(
        own.reason,
        "carol requested this change and cannot approve or reject it"
    );
    assert!(!decide("carol", "change-approvers", "reject_change", "carol").allow);
    assert!(decide("carol", "change-approvers", "approve_change", "alice").allow);
    assert!(
        !decide("root", "admin", "approve_change", "root").allow,
        "not even an admin"
    );
    assert!(decide("root", "admin", "approve_change", "alice").allow);
}

#[test]
fn anything_but_a_well_formed_allow_is_a_deny() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "undefined decision",
            "package changeflow.authz\ndecision := {\"allow\": true, \"reason\": \"r\"} if input.identity.subject == \"nobody\"\n",
            "no decision",
        ),
        (
            "malformed decision",
            "package changeflow.authz\ndecision := {\"allow\": \"yes\", \"reason\": \"sure\"}\n",
            "no decision",
        ),
        (
            "evaluation error",
            "package changeflow.authz\ndecision := {\"allow\": true, \"reason\": x} if { x := to_number(input.identity.subject) }\n",
            // A builtin's error leaves the decision undefined (as OPA does, not strict).
            "evaluation failed|no decision",
        ),
        (
            "execution limit",
            "package changeflow.authz\ndecision := {\"allow\": true, \"reason\": sprintf(\"%d\", [count(s)])} if { input.identity.subject != \"\"; s := {z | x := numbers.range(1, 3000)[_]; y := numbers.range(1, 3000)[_]; z := x * y} }\n",
            "exceeded time limit",
        ),
    ];
    for (name, policy, expected) in cases {
        let dir = PolicyDir::with(&[("authz.rego", policy)]);
        let engine = PolicyEngine::load_with_limit(&dir.0, Duration::from_millis(50))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let started = Instant::now();
        let decision = engine.decide(&input(
            identity("alice", "admin", true),
            "servicenow",
            "read",
            "t",
            json!({}),
        ));
        assert!(!decision.allow, "{name} must deny");
        assert!(
            expected.split('|').any(|e| decision.reason.contains(e)),
            "{name}: {}",
            decision.reason
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{name}: the limit stopped the evaluation"
        );
    }
}

#[test]
fn invalid_policies_are_refused_at_start() {
    let dir = PolicyDir::with(&[("authz.rego", "package changeflow.authz\nallow if {\n")]);
    let err = PolicyEngine::load(&dir.0)
        .err()
        .expect("a syntax error is refused");
    assert!(err.to_string().contains("authz.rego"), "{err}");
    let empty = PolicyDir::with(&[]);
    assert!(PolicyEngine::load(&empty.0).is_err());
    let no_decision =
        PolicyDir::with(&[("authz.rego", "package changeflow.authz\nallow := true\n")]);
    assert!(
        PolicyEngine::load(&no_decision.0).is_err(),
        "a policy without a decision rule is refused"
    );
}

#[test]
fn edits_reload_and_a_bad_edit_keeps_the_last_good_policy() {
    let dir = PolicyDir::shipped();
    let engine = PolicyEngine::load(&dir.0).unwrap();
    let first = engine.revision();
    let dave_github = || {
        engine.decide(&input(
            identity("dave", "contractors", true),
            "github",
            "read",
            "list_repos",
            json!({}),
        ))
    };
    assert!(!dave_github().allow);
    assert_eq!(
        engine.reload().unwrap(),
        None,
        "unchanged files do not reload"
    );

    let original = std::fs::read_to_string(dir.0.join("authz.rego")).unwrap();
    let edited = original.replace(
        "\"developers\": {",
        "\"contractors\": {\"github\": {\"read\"}},\n\t\"developers\": {",
    );
    std::fs::write(dir.0.join("authz.rego"), &edited).unwrap();
    let second = engine.reload().unwrap().expect("a changed file reloads");
    assert_ne!(first, second);
    assert!(dave_github().allow);
    assert_eq!(dave_github().revision, second);

    std::fs::write(
        dir.0.join("authz.rego"),
        "package changeflow.authz\ndecision := {\n",
    )
    .unwrap();
    assert!(engine.reload().is_err());
    assert_eq!(engine.revision(), second, "the last good policy stays");
    assert!(dave_github().allow);
}

#[tokio::test]
async fn the_watcher_picks_up_changes_by_itself() {
    let dir = PolicyDir::shipped();
    let engine = Arc::new(PolicyEngine::load(&dir.0).unwrap());
    let first = engine.revision();
    let _watch = engine.watch(Duration::from_millis(50));
    let original = std::fs::read_to_string(dir.0.join("authz.rego")).unwrap();
    std::fs::write(
        dir.0.join("authz.rego"),
        original.replace("\"lab-\"", "\"lab-\", \"test-\""),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.revision() == first {
        assert!(Instant::now() < deadline, "the watcher never reloaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
