//! Shared fixtures for the end-to-end tests: a real embedded Temporal dev server, the simulators
//! over HTTPS, and `changeflow worker` as a child process that a test can kill.
#![allow(dead_code)]

use changeflow_devstack::EmbeddedTemporal;
use changeflow_simulators::{FaultConfig, RunningSimulators, SimulatorOptions};
use changeflow_workflows::{ChangeProgress, DeploymentRequest};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use temporalio_client::Client;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port nobody listens on now, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Everything one test needs, torn down in reverse order on drop.
pub struct Harness {
    pub client: Client,
    pub sims: RunningSimulators,
    pub task_queue: String,
    pub temporal: EmbeddedTemporal,
    pub dir: TempDir,
}

pub struct HarnessOptions {
    pub faults: FaultConfig,
    pub deploy_duration: Duration,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        Self {
            faults: FaultConfig::default(),
            deploy_duration: Duration::from_secs(2),
        }
    }
}

impl Harness {
    pub async fn start(options: HarnessOptions) -> Self {
        let dir = TempDir::new("changeflow-test");
        let temporal_options = changeflow::embedded_temporal_options(&dir.0.join("temporal"));
        let temporal =
            tokio::task::spawn_blocking(move || EmbeddedTemporal::start(&temporal_options))
                .await
                .unwrap()
                .expect("embedded Temporal starts");
        let client =
            changeflow_engine::temporal::connect(&temporal.address(), "default", "changeflow-test")
                .await
                .expect("connect to Temporal");
        let mut sim_options = SimulatorOptions::new(dir.0.join("sim"));
        sim_options.faults = options.faults;
        sim_options.deploy_duration = options.deploy_duration;
        let sims = changeflow_simulators::start(sim_options)
            .await
            .expect("simulators start");
        Self {
            client,
            sims,
            task_queue: format!("test-{}", uuid::Uuid::new_v4().simple()),
            temporal,
            dir,
        }
    }

    /// Where this harness's workers keep device check snapshots (all of them share it).
    pub fn snapshot_dir(&self) -> PathBuf {
        self.dir.0.join("snapshots")
    }

    /// The simulators' credentials as a worker takes them without Vault (environment only).
    pub fn credential_env(&self) -> [(&'static str, String); 6] {
        let creds = &self.sims.credentials;
        [
            (
                "CHANGEFLOW_SERVICENOW_USERNAME",
                creds.servicenow_username.clone(),
            ),
            (
                "CHANGEFLOW_SERVICENOW_PASSWORD",
                creds.servicenow_password.clone(),
            ),
            (
                "CHANGEFLOW_SERVICENOW_CLIENT_ID",
                creds.servicenow_client_id.clone(),
            ),
            (
                "CHANGEFLOW_SERVICENOW_CLIENT_SECRET",
                creds.servicenow_client_secret.clone(),
            ),
            (
                "CHANGEFLOW_CATALYST_USERNAME",
                creds.catalyst_username.clone(),
            ),
            (
                "CHANGEFLOW_CATALYST_PASSWORD",
                creds.catalyst_password.clone(),
            ),
        ]
    }

    /// Starts `changeflow worker` for this harness; its stderr goes to `<dir>/worker-N.log`.
    pub fn spawn_worker(&self) -> WorkerProcess {
        self.spawn_worker_with_env(&[])
    }

    /// As `spawn_worker`, with some environment variables overridden.
    pub fn spawn_worker_with_env(&self, overrides: &[(&str, &str)]) -> WorkerProcess {
        let log_path = self
            .dir
            .0
            .join(format!("worker-{}.log", uuid::Uuid::new_v4().simple()));
        let log = std::fs::File::create(&log_path).expect("worker log");
        let child = Command::new(env!("CARGO_BIN_EXE_changeflow"))
            .arg("worker")
            .args(["--temporal-address", &self.temporal.address()])
            .args(["--task-queue", &self.task_queue])
            .args(["--servicenow-url", &self.sims.servicenow_url])
            .args(["--catalyst-url", &self.sims.catalyst_url])
            .arg("--ca-file")
            .arg(self.sims.ca_file.as_ref().expect("simulators serve TLS"))
            .args(["--poll-interval-ms", "200"])
            .arg("--snapshot-dir")
            .arg(self.snapshot_dir())
            .envs(self.credential_env())
            .env("CHANGEFLOW_LOG", "info")
            .envs(overrides.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn changeflow worker");
        WorkerProcess { child, log_path }
    }

    /// An embedded OpenBao holding this harness's ServiceNow and Catalyst Center credentials
    /// and the GitHub tokens of `github_users`, and the environment a worker needs to read
    /// them from it and to reach the GitHub simulator (for `spawn_worker_with_env`).
    pub async fn vault(
        &self,
        github_users: &[&str],
    ) -> (changeflow_devstack::EmbeddedVault, Vec<(String, String)>) {
        use changeflow_credentials::vault::admin;
        use std::collections::BTreeMap;
        let options = changeflow_devstack::EmbeddedVaultOptions::new(self.dir.0.join("vault"));
        let vault = tokio::task::spawn_blocking(move || {
            changeflow_devstack::EmbeddedVault::start(&options)
        })
        .await
        .unwrap()
        .expect("embedded OpenBao starts");
        let (address, root) = (vault.address(), vault.root_token().expose().to_string());
        let creds = &self.sims.credentials;
        let mut secrets = vec![
            (
                "changeflow/servicenow".to_string(),
                BTreeMap::from([
                    ("username".to_string(), creds.servicenow_username.clone()),
                    ("password".to_string(), creds.servicenow_password.clone()),
                    ("client_id".to_string(), creds.servicenow_client_id.clone()),
                    (
                        "client_secret".to_string(),
                        creds.servicenow_client_secret.clone(),
                    ),
                ]),
            ),
            (
                "changeflow/catalyst-center".to_string(),
                BTreeMap::from([
                    ("username".to_string(), creds.catalyst_username.clone()),
                    ("password".to_string(), creds.catalyst_password.clone()),
                ]),
            ),
        ];
        for user in github_users {
            secrets.push((
                format!("changeflow/github/users/{user}"),
                BTreeMap::from([(
                    "token".to_string(),
                    self.sims.github.token(user).expect("a seeded GitHub user"),
                )]),
            ));
        }
        for (path, secret) in &secrets {
            admin::write_secret(&address, &root, "secret", path, secret)
                .await
                .unwrap();
        }
        let env = vec![
            ("CHANGEFLOW_VAULT_ADDR".to_string(), address),
            ("CHANGEFLOW_VAULT_TOKEN".to_string(), root),
            (
                "CHANGEFLOW_GITHUB_URL".to_string(),
                self.sims.github_url.clone(),
            ),
        ];
        (vault, env)
    }

    /// Starts a change on this harness's task queue and returns its workflow id.
    pub async fn start_change(&self, request: DeploymentRequest) -> String {
        let id = format!("change-test-{}", uuid::Uuid::new_v4().simple());
        changeflow::changes::start(&self.client, &self.task_queue, &id, request)
            .await
            .expect("start change");
        id
    }

    /// Polls the progress query until `predicate` holds (or panics after `timeout`).
    pub async fn wait_for_progress(
        &self,
        id: &str,
        timeout: Duration,
        predicate: impl Fn(&ChangeProgress) -> bool,
    ) -> ChangeProgress {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = changeflow::changes::progress(&self.client, id).await
                && predicate(&p)
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "progress condition not reached within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The simulator's change request with this number.
    pub fn ticket(&self, number: &str) -> changeflow_simulators::servicenow::Record {
        self.sims
            .servicenow
            .change_requests()
            .into_iter()
            .find(|r| r.get("number") == number)
            .unwrap_or_else(|| panic!("ticket {number} exists in the simulator"))
    }
}

/// A `changeflow worker` child process, killed when dropped.
pub struct WorkerProcess {
    pub child: Child,
    pub log_path: PathBuf,
}

impl WorkerProcess {
    /// SIGKILL: the worker gets no chance to clean up, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The seeded "NTP Servers" template to the given devices, requested by alice, as a standard
/// (pre-approved) change: it runs without waiting for anybody.
pub fn ntp_change(devices: &[&str]) -> DeploymentRequest {
    governed_change(devices, json!({"change_type": "standard"}))
}

/// The "NTP Servers" change to the given devices, requested by alice, with more arguments
/// (`change_type`, `window_start`, ...), approvals looked for in ServiceNow every second, and
/// the checks and back-out the verification catalog gives it.
pub fn governed_change(devices: &[&str], more: serde_json::Value) -> DeploymentRequest {
    let mut arguments = json!({
        "template_id": changeflow_simulators::seed::id("template", "NTP Servers"),
        "parameters": {"ntp_primary": "10.255.0.1", "ntp_secondary": "10.255.0.2"},
        "devices": devices,
    });
    for (k, v) in more.as_object().cloned().unwrap_or_default() {
        arguments[k] = v;
    }
    let mut request =
        DeploymentRequest::new(serde_json::from_value(arguments).unwrap(), "alice".into());
    request.approval_poll_secs = 1;
    with_catalog(request)
}

/// The request with its checks and back-out resolved from the shipped verification catalog,
/// as the front door resolves them.
pub fn with_catalog(mut request: DeploymentRequest) -> DeploymentRequest {
    let catalog = changeflow::front_door::verification_catalog(std::path::Path::new("policy"))
        .expect("the shipped verification catalog");
    request.verification = catalog.plan(
        &request.change.template_key(),
        request.change.backout.as_ref(),
    );
    request
}

/// Checks one log line against the ECS field rules changeflow relies on, so Filebeat's default
/// ECS mapping ingests it unchanged: a JSON object; `@timestamp` an RFC 3339 UTC time;
/// `log.level` one of the levels; `message`, `ecs.version`, `service.name`,
/// `service.version`, `event.dataset` and `log.logger` strings; `event.outcome` success, failure
/// or unknown; `event.duration` a whole number of nanoseconds; every other field an ECS field we
/// use or under `changeflow.`.
pub fn assert_ecs_line(line: &str, service: &str) {
    let value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    let fields = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {line}"));
    let timestamp = fields["@timestamp"].as_str().expect("@timestamp");
    assert!(
        timestamp.ends_with('Z')
            && time::OffsetDateTime::parse(
                timestamp,
                &time::format_description::well_known::Rfc3339
            )
            .is_ok(),
        "@timestamp: {line}"
    );
    assert!(
        ["trace", "debug", "info", "warn", "error"]
            .contains(&fields["log.level"].as_str().unwrap_or("")),
        "log.level: {line}"
    );
    for key in [
        "message",
        "ecs.version",
        "service.version",
        "event.dataset",
        "log.logger",
    ] {
        assert!(fields[key].is_string(), "{key}: {line}");
    }
    assert_eq!(fields["service.name"], service, "{line}");
    const ECS: [&str; 15] = [
        "@timestamp",
        "log.level",
        "message",
        "ecs.version",
        "service.name",
        "service.version",
        "event.dataset",
        "log.logger",
        "user.name",
        "client.address",
        "event.outcome",
        "event.duration",
        "error.message",
        "trace.id",
        "span.id",
    ];
    for (key, value) in fields {
        assert!(
            ECS.contains(&key.as_str()) || key.starts_with("changeflow."),
            "{key} is neither an ECS field we use nor changeflow's: {line}"
        );
        match key.as_str() {
            "event.outcome" => assert!(
                ["success", "failure", "unknown"].contains(&value.as_str().unwrap_or("")),
                "{line}"
            ),
            "event.duration" => assert!(value.is_u64(), "{line}"),
            "user.name" | "client.address" | "error.message" => {
                assert!(value.is_string(), "{line}")
            }
            _ => {}
        }
    }
}

/// A `changeflow dev` child process (stderr to `log`), stopped with SIGTERM when dropped, and
/// what a client needs to reach it.
pub struct DevProcess {
    child: Child,
    pub data: PathBuf,
    pub mcp: String,
    /// Its `endpoints.json`.
    pub endpoints: serde_json::Value,
}

impl DevProcess {
    /// Starts `changeflow dev` in `data` with extra environment variables and waits until its
    /// `endpoints.json` says where it is.
    pub async fn start(data: PathBuf, envs: &[(&str, &str)], log: &std::path::Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_changeflow"))
            .args(["dev", "--data-dir"])
            .arg(&data)
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let endpoints_file = data.join("endpoints.json");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !endpoints_file.exists() {
            assert!(
                Instant::now() < deadline,
                "endpoints.json never appeared; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let endpoints: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&endpoints_file).unwrap()).unwrap();
        let mcp = endpoints["mcp"].as_str().unwrap().to_string();
        DevProcess {
            child,
            data,
            mcp,
            endpoints,
        }
    }

    /// A development access token for `user`.
    pub fn token(&self, user: &str) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_changeflow"))
            .args(["token", "--user", user, "--data-dir"])
            .arg(&self.data)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// An MCP client of the whole front door as `user`.
    pub async fn client(&self, user: &str) -> changeflow::mcp_client::McpClient {
        changeflow::mcp_client::McpClient::connect(&self.mcp, &self.token(user))
            .await
            .unwrap()
            .0
    }

    /// SIGTERM, then SIGKILL if it has not stopped after 20 s.
    pub fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A normal NTP change on sj-access-01 requested through MCP (as alice, in the tests); its
/// change id, once it waits for approval.
pub async fn request_ntp_change(
    client: &mut changeflow::mcp_client::McpClient,
    what: &str,
) -> String {
    let requested = client
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

impl Drop for DevProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a finished command said: its standard output, then its standard error.
pub fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
