//! The embedded development stack: Temporal (embedded unless an address is given), an OpenBao
//! dev server holding the simulators' credentials, a development OpenID provider, the MCP
//! front door, the
//! ServiceNow and Catalyst Center
//! simulators, and what a worker needs to reach them (it logs in to OpenBao by AppRole, as in
//! production).

use anyhow::Context;
use changeflow_activities::DownstreamConfig;
use changeflow_credentials::vault::{VaultAuth, VaultCredentials, VaultSettings, admin};
use changeflow_credentials::{CredentialProvider, Secret};
use changeflow_devstack::{EmbeddedTemporal, EmbeddedVault, EmbeddedVaultOptions};
use changeflow_simulators::{DevCredentials, RunningSimulators, SimulatorOptions};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use temporalio_client::Client;

/// What to start.
pub struct StackOptions {
    pub data_dir: PathBuf,
    /// Use this Temporal server instead of starting the embedded one.
    pub temporal_address: Option<String>,
    pub namespace: String,
    pub task_queue: String,
    pub simulators: SimulatorOptions,
    pub poll_interval: Duration,
    /// Authorization policy; the shipped one when this directory does not exist.
    pub policy_dir: PathBuf,
}

/// A running stack; everything it started stops when it is dropped.
pub struct Stack {
    pub client: Client,
    pub temporal_address: String,
    pub namespace: String,
    pub task_queue: String,
    pub simulators: RunningSimulators,
    pub vault: EmbeddedVault,
    vault_role: (String, Secret),
    pub dev_issuer: changeflow_devstack::dev_issuer::RunningDevIssuer,
    pub front_door: crate::front_door::RunningFrontDoor,
    poll_interval: Duration,
    snapshot_dir: PathBuf,
    // Last, so the server outlives the client and simulators during drop.
    embedded_temporal: Option<EmbeddedTemporal>,
}

/// Addresses and development credentials of a running stack (`<data dir>/endpoints.json`).
#[derive(Debug, Serialize)]
pub struct Endpoints {
    pub temporal: String,
    pub temporal_ui: Option<String>,
    pub namespace: String,
    pub task_queue: String,
    pub servicenow: String,
    pub catalyst_center: String,
    /// The GitHub simulator (REST v3, also under `/api/v3`) and each user's development token.
    pub github: String,
    pub github_tokens: std::collections::BTreeMap<String, String>,
    pub ca_file: Option<PathBuf>,
    pub credentials: DevCredentials,
    /// The OpenBao dev server holding those credentials, and its root token (development only).
    pub vault: String,
    pub vault_token: String,
    /// The MCP endpoint (all servers; `/mcp/{server}` for one).
    pub mcp: String,
    /// The REST proxy's base URL (`/api/v1`; OpenAPI at `<rest>/openapi.json`).
    pub rest: String,
    /// The web view (sign in with a demo user at the development OpenID provider).
    pub ui: String,
    /// The development OpenID provider and what `changeflow token` needs to use it.
    pub oidc_issuer: String,
    pub oidc_audience: String,
    pub dev_client_id: String,
    pub dev_client_secret: String,
}

impl Stack {
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&options.data_dir)
            .with_context(|| format!("creating data directory {}", options.data_dir.display()))?;
        let (embedded_temporal, temporal_address) = match options.temporal_address {
            Some(address) => (None, address),
            None => {
                let temporal_options = crate::embedded_temporal_options(&options.data_dir);
                let server =
                    tokio::task::spawn_blocking(move || EmbeddedTemporal::start(&temporal_options))
                        .await
                        .context("starting the embedded Temporal server")??;
                let address = server.address();
                (Some(server), address)
            }
        };
        let client = changeflow_engine::temporal::connect(
            &temporal_address,
            &options.namespace,
            "changeflow",
        )
        .await
        .context("connecting to Temporal")?;
        let simulators = changeflow_simulators::start(options.simulators)
            .await
            .context("starting the simulators")?;
        let vault_options = EmbeddedVaultOptions::new(&options.data_dir);
        let vault = tokio::task::spawn_blocking(move || EmbeddedVault::start(&vault_options))
            .await
            .context("starting the embedded OpenBao server")??;
        let vault_role = seed_vault(&vault, &simulators.credentials, simulators.github.tokens())
            .await
            .context("seeding OpenBao")?;
        let dev_issuer = changeflow_devstack::dev_issuer::start(&options.data_dir, 0)
            .await
            .context("starting the development OpenID provider")?;
        let front_door = crate::front_door::start(
            crate::front_door::FrontDoorOptions {
                data_dir: options.data_dir.clone(),
                oidc_issuer: dev_issuer.url().to_string(),
                oidc_audience: changeflow_devstack::dev_issuer::DEV_AUDIENCE.to_string(),
                policy_dir: options.policy_dir.clone(),
                audit_database_url: None,
                allowed_hosts: crate::front_door::loopback_hosts(),
                allowed_origins: crate::front_door::loopback_origins(),
                task_queue: options.task_queue.clone(),
                idempotency_window: changeflow_mcp_frontend::invoke::DEFAULT_IDEMPOTENCY_WINDOW,
                // Quick enough to watch an approval made in the ServiceNow simulator land.
                approval_poll_secs: 5,
                archive_every: Duration::from_secs(2),
                archive_reads: false,
                snapshot_dir: options.data_dir.join("snapshots"),
                max_in_flight: changeflow_mcp_frontend::front_door::DEFAULT_MAX_IN_FLIGHT,
                web: Some(crate::front_door::WebOptions {
                    client_id: changeflow_devstack::dev_issuer::DEV_UI_CLIENT_ID.to_string(),
                    client_secret: None,
                    scopes: vec!["profile".into(), "email".into()],
                    links: changeflow_mcp_frontend::ui::Links {
                        temporal_ui: embedded_temporal.as_ref().map(|t| t.ui_url()),
                        temporal_namespace: options.namespace.clone(),
                        servicenow: Some(simulators.servicenow_url.clone()),
                    },
                }),
            },
            "127.0.0.1:0",
            None,
            client.clone(),
        )
        .await
        .context("starting the MCP front door")?;
        Ok(Self {
            front_door,
            dev_issuer,
            vault,
            vault_role,
            client,
            temporal_address,
            namespace: options.namespace,
            task_queue: options.task_queue,
            simulators,
            poll_interval: options.poll_interval,
            snapshot_dir: options.data_dir.join("snapshots"),
            embedded_temporal,
        })
    }

    /// How a worker reaches the simulators.
    pub fn downstream(&self) -> DownstreamConfig {
        DownstreamConfig {
            servicenow_url: self.simulators.servicenow_url.clone(),
            catalyst_url: self.simulators.catalyst_url.clone(),
            github_url: Some(self.simulators.github_url.clone()),
            ca_file: self.simulators.ca_file.clone(),
            poll_interval: self.poll_interval,
            snapshot_dir: self.snapshot_dir.clone(),
        }
    }

    /// The worker's credential provider: OpenBao, by AppRole.
    pub fn credentials(&self) -> anyhow::Result<Arc<dyn CredentialProvider>> {
        let (role_id, secret_id) = self.vault_role.clone();
        let auth = VaultAuth::AppRole {
            mount: "approle".into(),
            role_id,
            secret_id,
        };
        Ok(Arc::new(VaultCredentials::new(VaultSettings::new(
            self.vault.address(),
            auth,
        ))?))
    }

    /// Web UI address of the embedded server, if this stack started one.
    pub fn temporal_ui(&self) -> Option<String> {
        self.embedded_temporal
            .as_ref()
            .map(EmbeddedTemporal::ui_url)
    }

    /// Web UI page of one workflow, if this stack started the server.
    pub fn workflow_url(&self, workflow_id: &str) -> Option<String> {
        self.temporal_ui()
            .map(|ui| format!("{ui}/namespaces/{}/workflows/{workflow_id}", self.namespace))
    }

    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            temporal: self.temporal_address.clone(),
            temporal_ui: self.temporal_ui(),
            namespace: self.namespace.clone(),
            task_queue: self.task_queue.clone(),
            servicenow: self.simulators.servicenow_url.clone(),
            catalyst_center: self.simulators.catalyst_url.clone(),
            github: self.simulators.github_url.clone(),
            github_tokens: self.simulators.github.tokens(),
            ca_file: self.simulators.ca_file.clone(),
            credentials: self.simulators.credentials.clone(),
            vault: self.vault.address(),
            vault_token: self.vault.root_token().expose().to_string(),
            mcp: self.front_door.mcp_url(),
            rest: format!("{}/api/v1", self.front_door.url),
            ui: format!("{}/ui/", self.front_door.url),
            oidc_issuer: self.dev_issuer.url().to_string(),
            oidc_audience: changeflow_devstack::dev_issuer::DEV_AUDIENCE.to_string(),
            dev_client_id: changeflow_devstack::dev_issuer::DEV_CLIENT_ID.to_string(),
            dev_client_secret: self.dev_issuer.issuer.client_secret().to_string(),
        }
    }

    /// Writes `endpoints.json` into `data_dir` (atomically, so readers never see half a file).
    pub fn write_endpoints(&self, data_dir: &Path) -> anyhow::Result<PathBuf> {
        let path = data_dir.join("endpoints.json");
        let tmp = data_dir.join("endpoints.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.endpoints())?)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }
}

/// Writes the simulators' credentials where the worker reads them, creates the evidence
/// signing key in Transit, and returns an AppRole (role id, secret id) allowed to read the
/// credentials and sign with the key.
async fn seed_vault(
    vault: &EmbeddedVault,
    dev: &DevCredentials,
    github_tokens: BTreeMap<String, String>,
) -> anyhow::Result<(String, Secret)> {
    let (address, root) = (vault.address(), vault.root_token().expose().to_string());
    let servicenow = BTreeMap::from([
        ("username".to_string(), dev.servicenow_username.clone()),
        ("password".to_string(), dev.servicenow_password.clone()),
        ("client_id".to_string(), dev.servicenow_client_id.clone()),
        (
            "client_secret".to_string(),
            dev.servicenow_client_secret.clone(),
        ),
    ]);
    let catalyst = BTreeMap::from([
        ("username".to_string(), dev.catalyst_username.clone()),
        ("password".to_string(), dev.catalyst_password.clone()),
    ]);
    admin::write_secret(
        &address,
        &root,
        "secret",
        "changeflow/servicenow",
        &servicenow,
    )
    .await?;
    admin::write_secret(
        &address,
        &root,
        "secret",
        "changeflow/catalyst-center",
        &catalyst,
    )
    .await?;
    // Each person's GitHub token, as an administrator would store it.
    for (user, token) in github_tokens {
        admin::write_secret(
            &address,
            &root,
            "secret",
            &format!(
                "{}/{user}",
                changeflow_credentials::vault::DEFAULT_GITHUB_PATH
            ),
            &BTreeMap::from([("token".to_string(), token)]),
        )
        .await?;
    }
    use changeflow_credentials::vault::{DEFAULT_EVIDENCE_KEY, DEFAULT_TRANSIT_MOUNT};
    admin::create_evidence_key(&address, &root, DEFAULT_TRANSIT_MOUNT, DEFAULT_EVIDENCE_KEY)
        .await?;
    Ok(admin::provision_approle(
        &address,
        &root,
        "changeflow-worker",
        "changeflow/",
        Some((DEFAULT_TRANSIT_MOUNT, DEFAULT_EVIDENCE_KEY)),
        "1h",
    )
    .await?)
}
