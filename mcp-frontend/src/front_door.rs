//! Everything the front door needs, shared by all requests.

use crate::tools;
use changeflow_engine::audit::AuditStore;
use changeflow_engine::identity::{TokenVerifier, VerifiedIdentity};
use changeflow_engine::policy::PolicyEngine;
use std::sync::Arc;

/// How requests are authenticated.
pub enum Authentication {
    /// OpenID Connect bearer tokens: every production deployment.
    Bearer(Arc<TokenVerifier>),
    /// Every request acts as this identity, without a token: only the loopback-only
    /// conformance test profile (`changeflow conformance-server`) uses this.
    FixedTestIdentity(VerifiedIdentity),
}

/// Everything the front door needs; shared by all requests.
pub struct FrontDoor {
    pub authentication: Authentication,
    /// The tools served.
    pub catalog: Catalog,
    pub policy: Arc<PolicyEngine>,
    pub audit: Arc<AuditStore>,
    /// The workflows behind the tools (a Temporal `Client`, or an in-memory stand-in in tests).
    pub temporal: Arc<dyn crate::temporal::Workflows>,
    /// This server's resource identifier (its `/mcp` URL), for RFC 9728 metadata.
    pub resource: String,
    /// Accepted `Host` values (loopback by default).
    pub allowed_hosts: Vec<String>,
    /// Accepted browser `Origin` values for MCP (e.g. `http://localhost:*`); requests without
    /// an Origin (non-browser clients) are unaffected.
    pub allowed_origins: Vec<String>,
    /// Calls with the same caller, tool and arguments within this window reuse one workflow.
    pub idempotency_window: std::time::Duration,
    /// How often a change looks in ServiceNow for a decision an approver made there (seconds;
    /// `changeflow_workflows::DEFAULT_APPROVAL_POLL_SECS` by default).
    pub approval_poll_secs: u64,
    /// The verification catalog (`verification.toml` in the policy directory): what each
    /// change checks and how it is backed out, resolved into its workflow input.
    pub verification: Arc<changeflow_workflows::verification::Catalog>,
    /// What evidence bundles are built from besides Temporal and the audit store (history
    /// replay, the workers' snapshot directory).
    pub evidence: crate::evidence::EvidenceSources,
    /// How many workflow calls may run at once; past it calls are refused, retryable.
    pub in_flight: InFlight,
    /// The device inventory deployments are judged with, read at most once per
    /// `DEVICE_FACTS_TTL`.
    pub devices: DeviceInventory,
    /// The web view under `/ui/`, when configured (it needs OpenID Connect sign-in).
    pub web: Option<Arc<crate::ui::WebView>>,
}

/// How long the inventory read for policy (each device's role and family) is reused: a burst
/// of change requests shares one `list_devices` workflow instead of running one each. A role
/// changed in Catalyst Center counts from the next read on.
pub const DEVICE_FACTS_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// The device inventory policy judges deployments with, read through a workflow at most once
/// per `DEVICE_FACTS_TTL`; callers arriving during a read wait for it. A failed read is not
/// kept.
#[derive(Default)]
pub struct DeviceInventory {
    last: tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<serde_json::Value>>)>>,
}

impl DeviceInventory {
    /// The inventory read within the last `DEVICE_FACTS_TTL`, or else what `read` returns now.
    pub async fn get_or_read<F>(&self, read: F) -> Option<Arc<Vec<serde_json::Value>>>
    where
        F: std::future::Future<Output = Option<Vec<serde_json::Value>>>,
    {
        let mut last = self.last.lock().await;
        if let Some((at, devices)) = last.as_ref()
            && at.elapsed() < DEVICE_FACTS_TTL
        {
            return Some(devices.clone());
        }
        let devices = Arc::new(read.await?);
        *last = Some((std::time::Instant::now(), devices.clone()));
        Some(devices)
    }
}

/// The bound on workflow calls in flight (starts, quick operations, decisions, evidence):
/// past it a call is refused at once rather than queued behind the others. Queries,
/// listings and `tools/list` do not count and keep answering.
#[derive(Debug, Clone)]
pub struct InFlight {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

/// Workflow calls one front door runs at once by default. The embedded Temporal dev server
/// answers about 150-250 starts a second on two cores, and 50 concurrent reads already took
/// seconds each there: calls past this many would only wait in line.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;

/// A slot for one workflow call, given back when dropped.
pub struct Slot(#[allow(dead_code)] tokio::sync::OwnedSemaphorePermit);

impl Drop for Slot {
    fn drop(&mut self) {
        metrics::gauge!(changeflow_engine::metrics::WORKFLOW_CALLS_IN_FLIGHT).decrement(1.0);
    }
}

impl InFlight {
    pub fn new(limit: usize) -> Self {
        InFlight {
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// MCP and REST requests worked on at once (`app::take_turns`): room for every workflow
    /// call and three times as many queries and listings; more wait for a turn.
    pub fn requests_at_once(&self) -> usize {
        self.limit.saturating_mul(4)
    }

    /// A slot, or `None` when every one is taken.
    pub fn try_slot(&self) -> Option<Slot> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        metrics::gauge!(changeflow_engine::metrics::WORKFLOW_CALLS_IN_FLIGHT).increment(1.0);
        Some(Slot(permit))
    }
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight::new(DEFAULT_MAX_IN_FLIGHT)
    }
}

/// Which set of tools a front door serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catalog {
    /// `TOOLS`: every deployment.
    Production,
    /// The loopback-only conformance test profile's fixtures.
    #[cfg(feature = "fixtures")]
    ConformanceFixtures,
}

impl Catalog {
    pub fn tools(self) -> &'static [tools::ToolSpec] {
        match self {
            Catalog::Production => tools::TOOLS,
            #[cfg(feature = "fixtures")]
            Catalog::ConformanceFixtures => crate::fixtures::FIXTURE_TOOLS,
        }
    }
}
