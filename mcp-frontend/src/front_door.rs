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
