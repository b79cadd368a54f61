//! Contract tests: the vendors' own Python clients (`dnacentersdk`, `pysnc`, PyGithub) run their normal
//! calls against the simulators over HTTPS with the generated CA. Needs `make tools`.

mod common;

use changeflow_simulators::{RunningSimulators, SimulatorOptions};
use common::TempDir;
use std::path::PathBuf;
use std::process::Command;

fn python() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python");
    assert!(
        path.is_file(),
        "{} missing: run `make tools` first",
        path.display()
    );
    path
}

async fn simulators(dir: &TempDir) -> RunningSimulators {
    let mut options = SimulatorOptions::new(&dir.0);
    options.deploy_duration = std::time::Duration::from_millis(500);
    changeflow_simulators::start(options)
        .await
        .expect("simulators start")
}

/// Runs a contract script; its output is shown on failure and checked for every `ok:` line.
fn run_script(script: &str, env: &[(&str, &str)], expected_checks: usize) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/contract")
        .join(script);
    // `requests` lets these variables override a client's own `verify=` (pysnc's included); the
    // contract is that the client trusts the CA it is given, so the scripts run without them.
    let output = Command::new(python())
        .arg(&path)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .envs(env.iter().copied())
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        expected_checks,
        "{stdout}"
    );
}

/// Runs a `dnacentersdk` script against a fresh Catalyst Center simulator; returns the
/// simulators for checks of what the script did.
async fn catalyst_script(script: &'static str, expected_checks: usize) -> RunningSimulators {
    let dir = TempDir::new("changeflow-contract");
    let sims = simulators(&dir).await;
    let ca = sims.ca_file.clone().unwrap();
    let url = sims.catalyst_url.clone();
    let creds = sims.credentials.clone();
    tokio::task::spawn_blocking(move || {
        run_script(
            script,
            &[
                ("CATALYST_URL", &url),
                ("CATALYST_USER", &creds.catalyst_username),
                ("CATALYST_PASSWORD", &creds.catalyst_password),
                ("CA_FILE", ca.to_str().unwrap()),
            ],
            expected_checks,
        )
    })
    .await
    .unwrap();
    sims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnacentersdk_works_against_the_catalyst_center_simulator() {
    let sims = catalyst_script("catalyst_center_sdk.py", 6).await;
    assert_eq!(sims.stats.deploy_requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnacentersdk_runs_command_runner_against_the_simulator() {
    let sims = catalyst_script("catalyst_command_runner.py", 4).await;
    assert_eq!(sims.stats.deploy_requests(), 0, "reads change nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dnacentersdk_syncs_a_template_as_a_new_committed_version() {
    let sims = catalyst_script("catalyst_template_authoring.py", 8).await;
    assert_eq!(sims.stats.deploy_requests(), 0, "authoring deploys nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pysnc_works_against_the_servicenow_simulator_over_tls() {
    let dir = TempDir::new("changeflow-contract");
    let sims = simulators(&dir).await;
    let ca = sims.ca_file.clone().unwrap();
    let url = sims.servicenow_url.clone();
    let creds = sims.credentials.clone();
    tokio::task::spawn_blocking(move || {
        run_script(
            "servicenow_pysnc.py",
            &[
                ("SERVICENOW_URL", &url),
                ("SN_USER", &creds.servicenow_username),
                ("SN_PASSWORD", &creds.servicenow_password),
                ("SN_CLIENT_ID", &creds.servicenow_client_id),
                ("SN_CLIENT_SECRET", &creds.servicenow_client_secret),
                ("CA_FILE", ca.to_str().unwrap()),
            ],
            6,
        )
    })
    .await
    .unwrap();
    assert!(
        sims.servicenow.change_requests().is_empty(),
        "the script cleaned up after itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approvals_follow_the_contract_through_pysnc() {
    let dir = TempDir::new("changeflow-contract");
    let sims = simulators(&dir).await;
    let ca = sims.ca_file.clone().unwrap();
    let url = sims.servicenow_url.clone();
    let creds = sims.credentials.clone();
    tokio::task::spawn_blocking(move || {
        run_script(
            "servicenow_approvals.py",
            &[
                ("SERVICENOW_URL", &url),
                ("SN_USER", &creds.servicenow_username),
                ("SN_PASSWORD", &creds.servicenow_password),
                ("PEOPLE_PASSWORD", &creds.servicenow_people_password),
                ("CA_FILE", ca.to_str().unwrap()),
            ],
            9,
        )
    })
    .await
    .unwrap();
    let approvals = sims.servicenow.approvals();
    let commented = approvals
        .iter()
        .find(|a| a.journal.iter().any(|j| j.value == "looks good"))
        .expect("carol's comment is in her record's journal");
    assert_eq!(commented.get("state"), "approved");
    assert_eq!(commented.journal[0].author, "carol");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pygithub_works_against_the_github_simulator() {
    let dir = TempDir::new("changeflow-contract-github");
    let sims = simulators(&dir).await;
    let ca = sims.ca_file.clone().unwrap();
    let url = sims.github_url.clone();
    let (dave, alice) = (
        sims.github.token("dave").unwrap(),
        sims.github.token("alice").unwrap(),
    );
    tokio::task::spawn_blocking(move || {
        run_script(
            "github_pygithub.py",
            &[
                ("GITHUB_URL", &url),
                ("CA_FILE", ca.to_str().unwrap()),
                ("DAVE_TOKEN", &dave),
                ("ALICE_TOKEN", &alice),
            ],
            10,
        )
    })
    .await
    .unwrap();
    let requests = sims
        .stats
        .github_requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(requests > 60, "the simulator counted {requests} requests");
}
