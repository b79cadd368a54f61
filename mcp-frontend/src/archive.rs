//! The archiver: copies the history of every closed workflow into the audit store
//! (`AuditStore::archive`, an audit record in the same transaction), so that replay and
//! evidence outlive Temporal's retention. It runs beside the front door, looks in Temporal
//! visibility for workflows closed since the last one archived, and is idempotent (a run is
//! archived once, whoever gets there first), so a restart or a second front door loses nothing
//! and duplicates nothing. Chosen over an activity at the end of each workflow, which could
//! not archive the events recording how the workflow itself ended, nor a workflow that was
//! terminated.

use crate::changes::READ_PREFIX;
use changeflow_engine::audit::{ArchivedHistory, AuditStore, format_time};
use futures_util::StreamExt;
use prost::Message;
use std::time::Duration;
use temporalio_client::{Client, NamespacedClient, WorkflowExecutionInfo, WorkflowListOptions};
use temporalio_common::protos::temporal::api::history::v1::History;

/// Which closed workflows are archived.
#[derive(Debug, Clone, Copy)]
pub struct ArchivePolicy {
    /// Reads (`DownstreamOperation` workflows with `read-` ids) too; writes always are.
    pub reads: bool,
}

impl ArchivePolicy {
    fn wants(&self, workflow_type: &str, workflow_id: &str) -> bool {
        match workflow_type {
            "DownstreamOperation" => {
                self.reads
                    || !workflow_id
                        .strip_prefix(READ_PREFIX)
                        .is_some_and(|rest| rest.starts_with('-'))
            }
            _ => true,
        }
    }
}

/// How far before the last archived close time a pass looks again (visibility is eventually
/// consistent).
const OVERLAP: Duration = Duration::from_secs(600);

/// Archives until the task is dropped, a pass every `every`.
pub async fn run(
    client: Client,
    audit: std::sync::Arc<AuditStore>,
    policy: ArchivePolicy,
    every: Duration,
) {
    loop {
        match pass(&client, &audit, policy).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(archived = n, "archived closed workflow histories"),
            Err(e) => tracing::warn!(error = %e, "archiving histories failed; retrying"),
        }
        tokio::time::sleep(every).await;
    }
}

/// The visibility query of a pass: closed workflows, since `since` when given, leaving out
/// reads unless they are archived. Reads are never archived by default, so without that they
/// would be listed again on every pass, and the server's work per pass would grow with every
/// read ever made (measured: a thousand reads made the embedded server do a thousand
/// persistence reads a second with the dev stack's two-second passes).
pub fn listing_query(
    policy: ArchivePolicy,
    since: Option<time::OffsetDateTime>,
) -> Result<String, String> {
    let mut query = "ExecutionStatus != 'Running'".to_string();
    if !policy.reads {
        query.push_str(&format!(
            " AND (WorkflowType != 'DownstreamOperation' OR WorkflowId NOT STARTS_WITH '{READ_PREFIX}-')"
        ));
    }
    if let Some(since) = since {
        query.push_str(&format!(
            " AND CloseTime > '{}'",
            since
                .format(&time::format_description::well_known::Rfc3339)
                .map_err(|e| e.to_string())?
        ));
    }
    Ok(query)
}

/// One pass: archives every wanted workflow closed since the last archived one (with some
/// overlap); returns how many were archived now.
pub async fn pass(
    client: &Client,
    audit: &AuditStore,
    policy: ArchivePolicy,
) -> Result<usize, String> {
    let latest = audit
        .latest_archived_close()
        .await
        .map_err(|e| e.to_string())?
        .and_then(|latest| {
            time::OffsetDateTime::parse(&latest, &time::format_description::well_known::Rfc3339)
                .ok()
        });
    let query = listing_query(policy, latest.map(|at| at - OVERLAP))?;
    let mut listed = client.list_workflows(query, WorkflowListOptions::builder().build());
    let mut archived = 0;
    while let Some(execution) = listed.next().await {
        let execution = execution.map_err(|e| e.to_string())?;
        let (id, run, kind) = (
            execution.id(),
            execution.run_id(),
            execution.workflow_type(),
        );
        if !policy.wants(kind, id)
            || audit
                .is_archived(id, run)
                .await
                .map_err(|e| e.to_string())?
        {
            continue;
        }
        let handle = WorkflowExecutionInfo::builder()
            .namespace(client.namespace())
            .workflow_id(id)
            .run_id(run)
            .build()
            .bind_untyped(client.clone());
        let events = handle
            .fetch_history(Default::default())
            .into_events()
            .await
            .map_err(|e| format!("history of {id}: {e}"))?;
        let count = events.len() as i64;
        let history = History { events }.encode_to_vec();
        let status = format!("{:?}", execution.status()).to_ascii_lowercase();
        let closed_at = execution.close_time().map(format_time).unwrap_or_default();
        let record = ArchivedHistory::new(
            id.to_string(),
            run.to_string(),
            kind.to_string(),
            status,
            closed_at,
            count,
            history,
        );
        if audit
            .archive(&record)
            .await
            .map_err(|e| e.to_string())?
            .is_some()
        {
            archived += 1;
        }
    }
    Ok(archived)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_locks_and_writes_are_archived_reads_only_on_request() {
        let default = ArchivePolicy { reads: false };
        assert!(default.wants("TemplateDeployment", "change-1"));
        assert!(default.wants("DeviceLock", "device-lock-sj-1"));
        assert!(default.wants("DownstreamOperation", "op-1"));
        assert!(!default.wants("DownstreamOperation", "read-1"));
        assert!(ArchivePolicy { reads: true }.wants("DownstreamOperation", "read-1"));
    }

    #[test]
    fn a_pass_lists_only_the_closed_workflows_it_may_archive() {
        let since = time::macros::datetime!(2026-11-28 05:00 UTC);
        assert_eq!(
            listing_query(ArchivePolicy { reads: false }, Some(since)).unwrap(),
            "ExecutionStatus != 'Running' AND (WorkflowType != 'DownstreamOperation' OR \
             WorkflowId NOT STARTS_WITH 'read-') AND CloseTime > '2026-11-28T05:00:00Z'"
        );
        assert_eq!(
            listing_query(ArchivePolicy { reads: true }, None).unwrap(),
            "ExecutionStatus != 'Running'"
        );
    }
}
