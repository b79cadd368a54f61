//! Assembling the MCP front door from configuration: token verifier (discovery), policy
//! (watched for changes), audit store, and the listener.

use anyhow::Context;
use changeflow_engine::audit::AuditStore;
#[cfg(feature = "dev")]
use changeflow_engine::identity::VerifiedIdentity;
use changeflow_engine::identity::{TokenVerifier, VerifierConfig};
use changeflow_engine::policy::PolicyEngine;
use changeflow_mcp_frontend::temporal::TemporalWorkflows;
use changeflow_mcp_frontend::{Authentication, Catalog, FrontDoor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use temporalio_client::Client;

/// The shipped policy, used when no policy directory exists (an installed binary).
const SHIPPED_POLICY: &[(&str, &str)] = &[
    ("authz.rego", include_str!("../policy/authz.rego")),
    ("authz_test.rego", include_str!("../policy/authz_test.rego")),
    ("governance.rego", include_str!("../policy/governance.rego")),
    (
        "verification.toml",
        include_str!("../policy/verification.toml"),
    ),
];

/// The verification catalog in the policy directory, `verification.toml`: the defaults (and
/// no inverses) when the directory has none; an invalid one stops the start.
pub fn verification_catalog(
    policy_dir: &Path,
) -> anyhow::Result<changeflow_workflows::verification::Catalog> {
    let path = policy_dir.join("verification.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => changeflow_workflows::verification::Catalog::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), "no verification catalog: changes get the default checks and no template declares an inverse");
            Ok(Default::default())
        }
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

pub struct FrontDoorOptions {
    pub data_dir: PathBuf,
    pub oidc_issuer: String,
    pub oidc_audience: String,
    pub policy_dir: PathBuf,
    pub audit_database_url: Option<String>,
    pub allowed_hosts: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub task_queue: String,
    /// Same caller, tool and arguments within this window: the same workflow.
    pub idempotency_window: Duration,
    /// How often a change looks in ServiceNow for a decision made there.
    pub approval_poll_secs: u64,
    /// How often closed workflows' histories are archived into the audit store, and whether
    /// reads are archived too (writes and changes always are).
    pub archive_every: Duration,
    pub archive_reads: bool,
    /// The workers' snapshot directory, for evidence bundles.
    pub snapshot_dir: PathBuf,
    /// Workflow calls running at once before calls are refused (retryable).
    pub max_in_flight: usize,
    /// The web view under `/ui/`, when its OpenID client is configured.
    pub web: Option<WebOptions>,
}

/// The web view's OpenID client and where it links to.
pub struct WebOptions {
    pub client_id: String,
    /// A confidential client's secret; none for a public client (PKCE alone).
    pub client_secret: Option<String>,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    pub links: changeflow_mcp_frontend::ui::Links,
}

/// The web view for a front door served at `url`, signing people in at `issuer`.
fn web_view(options: WebOptions, issuer: &str, url: &str) -> changeflow_mcp_frontend::ui::WebView {
    let login = changeflow_engine::login::OidcLogin::new(
        changeflow_engine::login::LoginConfig {
            issuer: issuer.to_string(),
            client_id: options.client_id,
            client_secret: options.client_secret,
            redirect_uri: format!("{url}/ui/callback"),
            scopes: options.scopes,
        },
        reqwest::Client::new(),
    );
    changeflow_mcp_frontend::ui::WebView::new(login, options.links, url.starts_with("https://"))
}

/// Browser origins accepted by default: loopback on any port.
pub fn loopback_origins() -> Vec<String> {
    LOOPBACK_ORIGINS.iter().map(|o| o.to_string()).collect()
}

/// Host names accepted by default: loopback only (DNS-rebinding protection).
pub const LOOPBACK_HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];
/// Browser origins accepted by default: loopback on any port.
pub const LOOPBACK_ORIGINS: [&str; 2] = ["http://localhost:*", "http://127.0.0.1:*"];

/// `LOOPBACK_HOSTS` as the front door takes them.
pub fn loopback_hosts() -> Vec<String> {
    LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect()
}

/// A running front door; stops when dropped (see `shutdown` for a bounded drain).
pub struct RunningFrontDoor {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    _background: Background,
}

/// The front door's background tasks (policy watch, archiver), stopped with it.
struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl RunningFrontDoor {
    /// The MCP endpoint (all servers).
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.url)
    }

    /// Stops accepting connections and lets requests in flight finish, for at most `grace`;
    /// whatever is still open then is cut (a change it followed goes on in Temporal). Returns
    /// whether everything finished in time.
    pub async fn shutdown(mut self, grace: Duration) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let Some(server) = self.server.take() else {
            return true;
        };
        let abort = server.abort_handle();
        match tokio::time::timeout(grace, server).await {
            Ok(_) => true,
            Err(_) => {
                abort.abort();
                false
            }
        }
    }
}

/// The policy directory to load: the configured one, or the shipped policy written into the
/// data directory when it does not exist.
fn policy_dir(configured: &Path, data_dir: &Path) -> anyhow::Result<PathBuf> {
    if configured.is_dir() {
        return Ok(configured.to_path_buf());
    }
    let fallback = data_dir.join("policy");
    std::fs::create_dir_all(&fallback)?;
    for (name, text) in SHIPPED_POLICY {
        let path = fallback.join(name);
        if !path.exists() {
            std::fs::write(&path, text)?;
        }
    }
    tracing::warn!(configured = %configured.display(), using = %fallback.display(), "policy directory not found; using the shipped policy");
    Ok(fallback)
}

/// Binds `listen`, builds the front door and serves it in the background.
pub async fn start(
    options: FrontDoorOptions,
    listen: &str,
    public_url: Option<String>,
    temporal: Client,
) -> anyhow::Result<RunningFrontDoor> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let url = public_url.unwrap_or_else(|| {
        format!(
            "http://{}",
            listener
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        )
    });
    let verifier = TokenVerifier::discover(
        VerifierConfig::new(&options.oidc_issuer, &options.oidc_audience),
        reqwest::Client::new(),
    )
    .await
    .context("discovering the OpenID provider")?;
    let policy_dir = policy_dir(&options.policy_dir, &options.data_dir)?;
    let verification = Arc::new(verification_catalog(&policy_dir)?);
    let policy = Arc::new(PolicyEngine::load(policy_dir).context("loading the policy")?);
    let policy_watch = policy.watch(Duration::from_secs(2));
    let audit = Arc::new(match &options.audit_database_url {
        Some(url) => AuditStore::open(url).await?,
        None => AuditStore::open_in(&options.data_dir).await?,
    });
    let archiver = tokio::spawn(changeflow_mcp_frontend::archive::run(
        temporal.clone(),
        audit.clone(),
        changeflow_mcp_frontend::archive::ArchivePolicy {
            reads: options.archive_reads,
        },
        options.archive_every,
    ));
    let front = Arc::new(FrontDoor {
        authentication: Authentication::Bearer(Arc::new(verifier)),
        catalog: Catalog::Production,
        policy,
        audit,
        temporal: Arc::new(TemporalWorkflows::new(temporal, options.task_queue)),
        resource: format!("{url}/mcp"),
        allowed_hosts: options.allowed_hosts,
        allowed_origins: options.allowed_origins,
        idempotency_window: options.idempotency_window,
        approval_poll_secs: options.approval_poll_secs,
        verification,
        evidence: changeflow_mcp_frontend::evidence::EvidenceSources {
            histories: Some(Arc::new(crate::replay::BinaryHistories)),
            snapshot_dir: Some(options.snapshot_dir),
        },
        in_flight: changeflow_mcp_frontend::front_door::InFlight::new(options.max_in_flight),
        devices: Default::default(),
        web: options
            .web
            .map(|web| Arc::new(web_view(web, &options.oidc_issuer, &url))),
    });
    Ok(serve(
        listener,
        front,
        url,
        Background(vec![policy_watch, archiver]),
    ))
}

/// Serves `front` on `listener` in the background until the returned handle is dropped.
fn serve(
    listener: tokio::net::TcpListener,
    front: Arc<FrontDoor>,
    url: String,
    background: Background,
) -> RunningFrontDoor {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        if let Err(e) = changeflow_mcp_frontend::run(listener, front, async {
            let _ = stopped.await;
        })
        .await
        {
            tracing::error!(error = %e, "front door stopped");
        }
    });
    RunningFrontDoor {
        url,
        stop: Some(stop),
        server: Some(server),
        _background: background,
    }
}

/// The identity every request has in the conformance profile.
pub const CONFORMANCE_SUBJECT: &str = "conformance-suite";

#[cfg(feature = "dev")]
/// The test-only profile the MCP conformance suite runs against: its fixture tools (each a
/// workflow), and every request acting as a fixed test identity because the suite sends no
/// token. Refuses any address but loopback, so it cannot be exposed by mistake.
pub async fn start_conformance_profile(
    listen: &str,
    data_dir: &Path,
    temporal: Client,
    task_queue: &str,
) -> anyhow::Result<RunningFrontDoor> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    anyhow::ensure!(
        address.ip().is_loopback(),
        "the conformance profile serves without authentication and binds only loopback addresses, not {address}"
    );
    let policy = Arc::new(
        PolicyEngine::load(policy_dir(Path::new("policy"), data_dir)?)
            .context("loading the policy")?,
    );
    let policy_watch = policy.watch(Duration::from_secs(2));
    let url = format!("http://{address}");
    let front = Arc::new(FrontDoor {
        authentication: Authentication::FixedTestIdentity(VerifiedIdentity {
            subject: CONFORMANCE_SUBJECT.into(),
            name: Some("MCP conformance suite".into()),
            email: None,
            groups: vec!["admin".into()],
            amr: vec!["test".into()],
            client_id: Some("conformance".into()),
            expires_at: u64::MAX,
        }),
        catalog: Catalog::ConformanceFixtures,
        policy,
        audit: Arc::new(AuditStore::open_in(data_dir).await?),
        temporal: Arc::new(TemporalWorkflows::new(temporal, task_queue)),
        resource: format!("{url}/mcp"),
        allowed_hosts: loopback_hosts(),
        allowed_origins: loopback_origins(),
        idempotency_window: changeflow_mcp_frontend::invoke::DEFAULT_IDEMPOTENCY_WINDOW,
        approval_poll_secs: changeflow_workflows::DEFAULT_APPROVAL_POLL_SECS,
        verification: Default::default(),
        evidence: Default::default(),
        in_flight: Default::default(),
        devices: Default::default(),
        web: None,
    });
    Ok(serve(listener, front, url, Background(vec![policy_watch])))
}
