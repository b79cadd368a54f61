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

/// How long the inventory read for policy (each device's role and family) is reused as it
/// is: a burst of change requests shares one `list_devices` workflow instead of running one
/// each. A role changed in Catalyst Center counts from the next read on.
pub const DEVICE_FACTS_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// How old the inventory may grow while a newer read is under way: past `DEVICE_FACTS_TTL`
/// calls are judged with the inventory they have and one read refreshes it behind them (on a
/// busy Temporal that read waits behind the running changes' workflow tasks, seconds that every
/// deployment request would otherwise wait too); past this age they wait for the read.
pub const DEVICE_FACTS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(120);

/// The device inventory policy judges deployments with, read through a workflow: reused for
/// `DEVICE_FACTS_TTL`, then refreshed by one read in the background while calls go on with it,
/// up to `DEVICE_FACTS_MAX_AGE`. The first callers (and any past that age) wait for a read. A
/// failed read is not kept.
#[derive(Default)]
pub struct DeviceInventory {
    state: Arc<tokio::sync::Mutex<Inventory>>,
}

#[derive(Default)]
struct Inventory {
    last: Option<(tokio::time::Instant, Arc<Vec<serde_json::Value>>)>,
    refreshing: bool,
}

impl DeviceInventory {
    /// The inventory: the last read while it is young enough (starting `read` in the
    /// background once it is older than `DEVICE_FACTS_TTL`), or else what `read` returns now.
    pub async fn get_or_read<F>(&self, read: F) -> Option<Arc<Vec<serde_json::Value>>>
    where
        F: std::future::Future<Output = Option<Vec<serde_json::Value>>> + Send + 'static,
    {
        let mut state = self.state.lock().await;
        if let Some((at, devices)) = state.last.clone() {
            let age = at.elapsed();
            if age < DEVICE_FACTS_TTL {
                return Some(devices);
            }
            if age < DEVICE_FACTS_MAX_AGE {
                if !state.refreshing {
                    state.refreshing = true;
                    let shared = self.state.clone();
                    tokio::spawn(async move {
                        let read = read.await;
                        let mut state = shared.lock().await;
                        state.refreshing = false;
                        if let Some(devices) = read {
                            state.last = Some((tokio::time::Instant::now(), Arc::new(devices)));
                        }
                    });
                }
                return Some(devices);
            }
        }
        // Nothing young enough to go on with: this caller reads, and the others wait for it.
        let devices = Arc::new(read.await?);
        state.last = Some((tokio::time::Instant::now(), devices.clone()));
        Some(devices)
    }
}

#[cfg(test)]
mod inventory_tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A read counted in `reads` that answers `devices` once `gate` opens (at once without one).
    fn read(
        reads: &Arc<AtomicUsize>,
        devices: Option<Vec<serde_json::Value>>,
        gate: Option<Arc<tokio::sync::Notify>>,
    ) -> impl std::future::Future<Output = Option<Vec<serde_json::Value>>> + Send + 'static {
        let reads = reads.clone();
        async move {
            reads.fetch_add(1, Ordering::SeqCst);
            if let Some(gate) = gate {
                gate.notified().await;
            }
            devices
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_inventory_is_used_while_one_read_refreshes_it_and_a_too_old_one_is_waited_for()
    {
        let inventory = DeviceInventory::default();
        let reads = Arc::new(AtomicUsize::new(0));
        let (first, second) = (
            vec![json!({"hostname": "a"})],
            vec![json!({"hostname": "b"})],
        );

        // The first caller reads; a failed read is not kept.
        assert_eq!(inventory.get_or_read(read(&reads, None, None)).await, None);
        let got = inventory
            .get_or_read(read(&reads, Some(first.clone()), None))
            .await;
        assert_eq!(got.as_deref(), Some(&first));
        assert_eq!(reads.load(Ordering::SeqCst), 2);

        // Young: reused, nothing read.
        tokio::time::advance(DEVICE_FACTS_TTL / 2).await;
        let got = inventory
            .get_or_read(read(&reads, Some(second.clone()), None))
            .await;
        assert_eq!(got.as_deref(), Some(&first));
        assert_eq!(reads.load(Ordering::SeqCst), 2);

        // Old: answered at once with what it has, while one read (held open) refreshes it.
        tokio::time::advance(DEVICE_FACTS_TTL).await;
        let gate = Arc::new(tokio::sync::Notify::new());
        for _ in 0..3 {
            let got = inventory
                .get_or_read(read(&reads, Some(second.clone()), Some(gate.clone())))
                .await;
            assert_eq!(got.as_deref(), Some(&first), "not held up by the refresh");
        }
        tokio::task::yield_now().await;
        assert_eq!(
            reads.load(Ordering::SeqCst),
            3,
            "one refresh for three callers"
        );
        gate.notify_one();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let got = inventory.get_or_read(read(&reads, None, None)).await;
        assert_eq!(
            got.as_deref(),
            Some(&second),
            "the refresh's answer is used"
        );
        assert_eq!(reads.load(Ordering::SeqCst), 3);

        // A failed refresh keeps the old inventory, until it is too old to go on with.
        tokio::time::advance(DEVICE_FACTS_TTL).await;
        let got = inventory.get_or_read(read(&reads, None, None)).await;
        assert_eq!(got.as_deref(), Some(&second));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(reads.load(Ordering::SeqCst), 4);
        tokio::time::advance(DEVICE_FACTS_MAX_AGE).await;
        let got = inventory
            .get_or_read(read(&reads, Some(first.clone()), None))
            .await;
        assert_eq!(
            got.as_deref(),
            Some(&first),
            "too old: the caller waited for a read"
        );
        assert_eq!(reads.load(Ordering::SeqCst), 5);
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

/// Queries, listings and refusals worked on at once beside the workflow calls. Each request
/// worked on holds rmcp's per-request service and channels until it is answered: with 1000
/// stateless clients, four times the workflow limit (256) held about 14 MB more than this
/// (128) and answered no faster (`bench/results/2026-11-29-turns.md`).
pub const OTHER_REQUESTS_AT_ONCE: usize = 64;

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
    /// call and `OTHER_REQUESTS_AT_ONCE` queries and listings besides; more wait for a turn.
    pub fn requests_at_once(&self) -> usize {
        self.limit.saturating_add(OTHER_REQUESTS_AT_ONCE)
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
