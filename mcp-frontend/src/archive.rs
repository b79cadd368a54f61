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

/// How far before the last archived close time a sweep looks again: visibility is eventually
/// consistent, so a workflow's record may show up after those of workflows that closed later.
const OVERLAP: Duration = Duration::from_secs(600);

/// How far before the newest close time it has seen a pass between sweeps looks: longer than a
/// record takes to show up in visibility on a server that is keeping up.
const RECENT: Duration = Duration::from_secs(30);

/// How often a pass is a sweep (looking back `OVERLAP`) rather than only at what closed lately.
/// Every pass used to be a sweep, so each listed every workflow closed in the last ten
/// minutes again: after a burst of a few thousand changes the dev stack's two-second passes
/// kept the embedded server busy for ten minutes.
const SWEEP_EVERY: Duration = Duration::from_secs(300);

/// Archives until the task is dropped, a pass every `every`.
pub async fn run(
    client: Client,
    audit: std::sync::Arc<AuditStore>,
    policy: ArchivePolicy,
    every: Duration,
) {
    let mut passes = Passes::default();
    loop {
        let now = std::time::Instant::now();
        let window = passes.next(now);
        match pass(&client, &audit, policy, window).await {
            Ok(done) => {
                if done.archived > 0 {
                    tracing::info!(
                        archived = done.archived,
                        "archived closed workflow histories"
                    );
                }
                passes.done(window, now, done.newest_close);
            }
            Err(e) => tracing::warn!(error = %e, "archiving histories failed; retrying"),
        }
        tokio::time::sleep(every).await;
    }
}

/// What a pass looks at.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Window {
    /// Everything closed since `OVERLAP` before the last archived close (everything, when
    /// nothing is archived yet).
    Sweep,
    /// Everything closed since this time.
    Since(time::OffsetDateTime),
}

/// Which window each pass looks at: a sweep first and every `SWEEP_EVERY`, in between what
/// closed since `RECENT` before the newest close a pass has listed. Only a pass that went
/// through (every wanted workflow it listed archived) moves either on, so a failed pass is
/// looked at again whole.
#[derive(Debug, Default)]
struct Passes {
    newest_close: Option<time::OffsetDateTime>,
    last_sweep: Option<std::time::Instant>,
}

impl Passes {
    fn next(&self, now: std::time::Instant) -> Window {
        match (self.last_sweep, self.newest_close) {
            (Some(swept), Some(newest)) if now.duration_since(swept) < SWEEP_EVERY => {
                Window::Since(newest - RECENT)
            }
            _ => Window::Sweep,
        }
    }

    fn done(
        &mut self,
        window: Window,
        now: std::time::Instant,
        newest_close: Option<time::OffsetDateTime>,
    ) {
        if window == Window::Sweep {
            self.last_sweep = Some(now);
        }
        self.newest_close = self.newest_close.max(newest_close);
    }
}

/// What a pass did.
#[derive(Debug, Default)]
struct Pass {
    /// Histories archived now.
    archived: usize,
    /// The newest close time among the workflows listed.
    newest_close: Option<time::OffsetDateTime>,
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

/// One pass: archives every wanted workflow closed in `window` that is not archived yet.
async fn pass(
    client: &Client,
    audit: &AuditStore,
    policy: ArchivePolicy,
    window: Window,
) -> Result<Pass, String> {
    let since = match window {
        Window::Since(since) => Some(since),
        Window::Sweep => audit
            .latest_archived_close()
            .await
            .map_err(|e| e.to_string())?
            .and_then(|latest| {
                time::OffsetDateTime::parse(&latest, &time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .map(|latest| latest - OVERLAP),
    };
    let query = listing_query(policy, since)?;
    let mut listed = client.list_workflows(query, WorkflowListOptions::builder().build());
    let mut done = Pass::default();
    while let Some(execution) = listed.next().await {
        let execution = execution.map_err(|e| e.to_string())?;
        let closed = execution.close_time().map(time::OffsetDateTime::from);
        done.newest_close = done.newest_close.max(closed);
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
            done.archived += 1;
        }
    }
    Ok(done)
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
    fn passes_sweep_first_and_every_few_minutes_and_look_at_recent_closes_between() {
        let start = std::time::Instant::now();
        let mut passes = Passes::default();
        assert_eq!(passes.next(start), Window::Sweep);
        // A sweep that listed nothing leaves nothing to look back from: sweep again.
        passes.done(Window::Sweep, start, None);
        assert_eq!(passes.next(start + Duration::from_secs(2)), Window::Sweep);
        let closed = time::macros::datetime!(2026-11-28 05:00 UTC);
        passes.done(Window::Sweep, start, Some(closed));
        let soon = start + Duration::from_secs(2);
        assert_eq!(passes.next(soon), Window::Since(closed - RECENT));
        // A pass that listed only older closes does not move the window back.
        passes.done(
            Window::Since(closed - RECENT),
            soon,
            Some(closed - Duration::from_secs(5)),
        );
        assert_eq!(passes.next(soon), Window::Since(closed - RECENT));
        let later = closed + Duration::from_secs(40);
        passes.done(Window::Since(closed - RECENT), soon, Some(later));
        assert_eq!(passes.next(soon), Window::Since(later - RECENT));
        // A failed pass reports nothing (`done` is not called): the same window again.
        assert_eq!(passes.next(soon), Window::Since(later - RECENT));
        assert_eq!(passes.next(start + SWEEP_EVERY), Window::Sweep);
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
