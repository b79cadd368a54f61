//! The auditors' tools (server `audit`): searching the audit store and checking its hash
//! chain. They read the front door's own audit store, like `list_changes` reads visibility;
//! they start no workflow and reach no downstream system.

use changeflow_engine::audit::{AuditFilter, AuditRecord, AuditStore, ChainReport};
use changeflow_workflows::Arguments;
use changeflow_workflows::limits::{self, ID_PATTERN};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Arguments of `search_audit`: every filter optional, newest records last, paged.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchAudit {
    /// Who made the calls (the verified subject)
    #[serde(default)]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub subject: Option<String>,
    /// Which tool (deploy_template, approve_change, archive_history, ...)
    #[serde(default)]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub tool: Option<String>,
    /// The policy's decision
    #[serde(default)]
    pub decision: Option<AuditDecision>,
    /// The change (workflow id) the records name
    #[serde(default)]
    #[schemars(regex(pattern = ID_PATTERN))]
    pub change_id: Option<String>,
    /// RFC 3339; records at or after
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub since: Option<String>,
    /// RFC 3339; records at or before
    #[serde(default)]
    #[schemars(extend("format" = "date-time"))]
    pub until: Option<String>,
    /// Records per page
    #[serde(default = "crate::changes::default_limit")]
    #[schemars(range(min = 1, max = limits::MAX_LIST_LIMIT))]
    pub limit: u32,
    /// Records to skip: the previous page's `next_offset`
    #[serde(default)]
    #[schemars(range(max = MAX_OFFSET))]
    pub offset: u32,
}

/// A policy decision as records carry it.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditDecision {
    Allow,
    Deny,
    /// Records no policy decided (argument errors, archives)
    None,
}

/// The largest `offset` a page may start at.
pub const MAX_OFFSET: u32 = 1_000_000_000;

impl Arguments for SearchAudit {
    fn validate(&self) -> Result<(), String> {
        limits::optional_id("subject", self.subject.as_deref())?;
        limits::optional_id("tool", self.tool.as_deref())?;
        limits::optional_id("change_id", self.change_id.as_deref())?;
        limits::list_limit(Some(self.limit))?;
        if self.offset > MAX_OFFSET {
            return Err(format!("offset must be at most {MAX_OFFSET}"));
        }
        for (field, bound) in [("since", &self.since), ("until", &self.until)] {
            if let Some(text) = bound {
                crate::changes::rfc3339_bound(field, text)?;
            }
        }
        Ok(())
    }
}

/// Arguments of `verify_audit_chain`: none.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyAuditChain {}

impl Arguments for VerifyAuditChain {
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Result of `search_audit`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// The `offset` of the next page, when there may be one
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u32>,
}

/// Result of `verify_audit_chain`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChainVerdict {
    /// Every record links to the one before it
    pub intact: bool,
    pub records: u64,
    /// The last record's hash (the chain's head), to keep elsewhere
    pub head: String,
    /// Where the chain first breaks, and why
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_broken_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl From<ChainReport> for ChainVerdict {
    fn from(report: ChainReport) -> Self {
        ChainVerdict {
            intact: report.first_broken.is_none(),
            records: report.records,
            head: report.head,
            first_broken_seq: report.first_broken.as_ref().map(|b| b.seq),
            problem: report.first_broken.map(|b| b.problem),
        }
    }
}

/// Runs `search_audit`.
pub async fn search(audit: &AuditStore, args: &SearchAudit) -> Result<AuditPage, String> {
    let filter = AuditFilter {
        subject: args.subject.clone(),
        tool: args.tool.clone(),
        workflow_id: args.change_id.clone(),
        since: args.since.clone(),
        until: args.until.clone(),
        decision: args.decision.map(|d| {
            serde_json::to_value(d)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        }),
        limit: Some(i64::from(args.limit)),
        offset: Some(i64::from(args.offset)),
    };
    let records = audit.list(&filter).await.map_err(|e| e.to_string())?;
    let full = records.len() == args.limit as usize;
    Ok(AuditPage {
        next_offset: full.then(|| args.offset + args.limit),
        records,
    })
}
