//! Faithful ServiceNow, Catalyst Center and GitHub simulators, served over real HTTP(S) for changeflow's
//! demo and tests. They honour the contracts in `../shared/contracts/` closely enough that the
//! vendors' own Python clients (`pysnc`, `dnacentersdk`, PyGithub) work against them unchanged.

#![recursion_limit = "256"]
// Handlers answer with axum `Response`s, errors included; boxing them would only add noise to
// code that is not on any hot path.
#![allow(clippy::result_large_err)]

pub mod catalyst;
pub mod credentials;
pub mod device_cli;
pub mod faults;
pub mod github;
pub mod seed;
pub mod servicenow;
pub mod templates;
pub mod tls;

pub use credentials::DevCredentials;
pub use faults::{FaultConfig, Faults};

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Serialize;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How to run the simulators.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Where the development CA lives (created on first use).
    pub data_dir: PathBuf,
    /// Serve HTTPS (the default, like the real products) or plain HTTP.
    pub tls: bool,
    /// Listen addresses; port 0 picks a free port.
    pub servicenow_addr: SocketAddr,
    pub catalyst_addr: SocketAddr,
    pub github_addr: SocketAddr,
    /// How long a template deployment takes from submission to the last device.
    pub deploy_duration: Duration,
    /// Lifetime of Catalyst Center tokens (one hour on the real product).
    pub catalyst_token_ttl: Duration,
    pub credentials: DevCredentials,
    pub faults: FaultConfig,
}

impl SimulatorOptions {
    /// Loopback on free ports, TLS on, 6-second deployments, no faults.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            tls: true,
            servicenow_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            catalyst_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            github_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            deploy_duration: Duration::from_secs(6),
            catalyst_token_ttl: Duration::from_secs(3600),
            credentials: DevCredentials::default(),
            faults: FaultConfig::default(),
        }
    }
}

/// Counters tests use to prove what the simulators saw.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub servicenow_requests: AtomicU64,
    pub catalyst_requests: AtomicU64,
    pub github_requests: AtomicU64,
    pub change_requests_created: AtomicU64,
    pub deploy_requests: AtomicU64,
    pub faults_injected: AtomicU64,
}

impl Stats {
    pub fn deploy_requests(&self) -> u64 {
        self.deploy_requests.load(Ordering::Relaxed)
    }
    pub fn faults_injected(&self) -> u64 {
        self.faults_injected.load(Ordering::Relaxed)
    }
}

/// Whether a server speaks TLS, for building absolute links.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tls(pub bool);

/// Errors starting the simulators.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulatorError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The TLS identity could not be prepared.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The fault configuration is invalid.
    #[error("invalid fault configuration: {0}")]
    Faults(String),
    /// The TLS server configuration could not be built.
    #[error("TLS configuration: {0}")]
    TlsConfig(std::io::Error),
}

/// Running simulators: their addresses, state and a way to stop them.
pub struct RunningSimulators {
    pub servicenow_url: String,
    pub catalyst_url: String,
    /// GitHub's REST API (also under `/api/v3`).
    pub github_url: String,
    /// The CA certificate clients must trust, when serving TLS.
    pub ca_file: Option<PathBuf>,
    pub credentials: DevCredentials,
    pub stats: Arc<Stats>,
    pub faults: Faults,
    pub servicenow: Arc<servicenow::ServiceNow>,
    pub catalyst: Arc<catalyst::CatalystCenter>,
    pub github: Arc<github::GitHub>,
    handles: Vec<axum_server::Handle<SocketAddr>>,
}

impl RunningSimulators {
    /// Stops both servers, letting in-flight requests finish.
    pub fn shutdown(&self) {
        for handle in &self.handles {
            handle.graceful_shutdown(Some(Duration::from_secs(2)));
        }
    }
}

impl Drop for RunningSimulators {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Starts both simulators on the current tokio runtime.
pub async fn start(options: SimulatorOptions) -> Result<RunningSimulators, SimulatorError> {
    // Both rustls back ends are linked in; pick one explicitly (ignored if already chosen).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    options.faults.validate().map_err(SimulatorError::Faults)?;
    let stats = Arc::new(Stats::default());
    let faults = Faults::new(options.faults.clone());
    let sn =
        servicenow::ServiceNow::new(options.credentials.clone(), faults.clone(), stats.clone());
    let cc = catalyst::CatalystCenter::new(
        options.credentials.clone(),
        faults.clone(),
        stats.clone(),
        options.catalyst_token_ttl,
        options.deploy_duration,
    );
    let gh = github::GitHub::new(seed::GITHUB_USERS, faults.clone(), stats.clone());
    let admin = admin_router(stats.clone(), faults.clone());
    let identity = if options.tls {
        Some(tls::server_identity(&options.data_dir)?)
    } else {
        None
    };
    let tls_flag = Tls(options.tls);
    let sn_app = servicenow::router(sn.clone())
        .merge(admin.clone())
        .layer(Extension(tls_flag));
    let cc_app = catalyst::router(cc.clone())
        .merge(admin.clone())
        .layer(Extension(tls_flag));
    let gh_app = github::router(gh.clone())
        .merge(admin)
        .layer(Extension(tls_flag));

    let mut handles = Vec::new();
    let servicenow_url = serve(
        sn_app,
        options.servicenow_addr,
        identity.as_ref(),
        &mut handles,
    )
    .await?;
    let catalyst_url = serve(
        cc_app,
        options.catalyst_addr,
        identity.as_ref(),
        &mut handles,
    )
    .await?;
    let github_url = serve(gh_app, options.github_addr, identity.as_ref(), &mut handles).await?;
    Ok(RunningSimulators {
        servicenow_url,
        catalyst_url,
        github_url,
        ca_file: identity.map(|i| i.ca_file),
        credentials: options.credentials,
        stats,
        faults,
        servicenow: sn,
        catalyst: cc,
        github: gh,
        handles,
    })
}

/// Test and demo hooks: `GET /_simulator/stats`, `GET|PUT /_simulator/faults`.
fn admin_router(stats: Arc<Stats>, faults: Faults) -> Router {
    Router::new()
        .route(
            "/_simulator/stats",
            get(
                |State((stats, _)): State<(Arc<Stats>, Faults)>| async move {
                    Json(serde_json::to_value(&*stats).unwrap_or_default())
                },
            ),
        )
        .route(
            "/_simulator/faults",
            get(
                |State((_, faults)): State<(Arc<Stats>, Faults)>| async move { Json(faults.get()) },
            )
            .put(
                |State((_, faults)): State<(Arc<Stats>, Faults)>,
                 Json(config): Json<FaultConfig>| async move {
                    match config.validate() {
                        Ok(()) => {
                            faults.set(config.clone());
                            Ok(Json(config))
                        }
                        Err(e) => Err((axum::http::StatusCode::BAD_REQUEST, e)),
                    }
                },
            ),
        )
        .with_state((stats, faults))
}

async fn serve(
    app: Router,
    addr: SocketAddr,
    identity: Option<&tls::ServerIdentity>,
    handles: &mut Vec<axum_server::Handle<SocketAddr>>,
) -> Result<String, SimulatorError> {
    let bind_error = |source| SimulatorError::Bind { addr, source };
    let listener = TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let handle = axum_server::Handle::new();
    let service = app.into_make_service();
    let url = match identity {
        Some(identity) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_pem(
                identity.cert_pem.clone().into_bytes(),
                identity.key_pem.clone().into_bytes(),
            )
            .await
            .map_err(SimulatorError::TlsConfig)?;
            let server = axum_server::from_tcp_rustls(listener, config)
                .map_err(bind_error)?
                .handle(handle.clone());
            tokio::spawn(async move {
                if let Err(e) = server.serve(service).await {
                    tracing::error!(error = %e, "simulator server stopped");
                }
            });
            format!("https://127.0.0.1:{}", local.port())
        }
        None => {
            let server = axum_server::from_tcp(listener)
                .map_err(bind_error)?
                .handle(handle.clone());
            tokio::spawn(async move {
                if let Err(e) = server.serve(service).await {
                    tracing::error!(error = %e, "simulator server stopped");
                }
            });
            format!("http://127.0.0.1:{}", local.port())
        }
    };
    handles.push(handle);
    Ok(url)
}
