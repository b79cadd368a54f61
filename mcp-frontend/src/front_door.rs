//! Everything the front door needs, shared by all requests.

use crate::tools;
use changeflow_engine::audit::AuditStore;
use changeflow_engine::identity::{TokenVerifier, VerifiedIdentity};
use changeflow_engine::policy::PolicyEngine;
use std::sync::Arc;
use temporalio_client::Client;

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
    pub catalog: tools::Catalog,
    pub policy: Arc<PolicyEngine>,
    pub audit: Arc<AuditStore>,
    pub temporal: Client,
    pub task_queue: String,
    /// This server's resource identifier (its `/mcp` URL), for RFC 9728 metadata.
    pub resource: String,
    /// Accepted `Host` values (loopback by default).
    pub allowed_hosts: Vec<String>,
    /// Accepted browser `Origin` values for MCP (e.g. `http://localhost:*`); requests without
    /// an Origin (non-browser clients) are unaffected.
    pub allowed_origins: Vec<String>,
    /// Calls with the same caller, tool and arguments within this window reuse one workflow.
    pub idempotency_window: std::time::Duration,
}
