//! The append-only audit store: who asked for what, under which policy decision, with which
//! result. Records are hash-chained so that any edit, deletion or reordering is detectable.
//! SQLite by default (a file in the data directory), PostgreSQL by URL; the same migrations
//! (`migrations/`) and queries serve both through sqlx's `Any` driver.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, oneshot};

/// `prev_hash` of the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const APPEND_ATTEMPTS: u32 = 10;

/// What an audit record says, before it is placed in the chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    /// The verified caller (OIDC subject).
    pub subject: String,
    /// The client application (OIDC client id, or "cli").
    pub client: String,
    /// MCP server (resource) and tool called.
    pub server: String,
    pub tool: String,
    /// SHA-256 of the canonical JSON of the tool arguments (`canonical_hash`).
    pub arguments_hash: String,
    /// `allow` or `deny`, with the policy's reason and revision.
    pub decision: String,
    pub reason: String,
    pub policy_revision: String,
    /// The workflow the call started or read, if any.
    pub workflow_id: String,
    /// What came of it: `requested`, `denied`, `completed`, `failed`, ...
    pub outcome: String,
    /// The caller's stated reason, where the call has one (an emergency's justification, an
    /// approver's comment); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// A record as stored: the entry, its place in the chain, and the chain hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditRecord {
    pub seq: i64,
    pub recorded_at: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// The hash this record must carry: SHA-256 over its fields and `prev_hash` (and its note,
    /// when it has one).
    pub fn expected_hash(&self) -> String {
        let e = &self.entry;
        let mut fields = serde_json::json!([
            self.seq,
            self.recorded_at,
            e.subject,
            e.client,
            e.server,
            e.tool,
            e.arguments_hash,
            e.decision,
            e.reason,
            e.policy_revision,
            e.workflow_id,
            e.outcome,
            self.prev_hash,
        ]);
        if !e.note.is_empty()
            && let Some(list) = fields.as_array_mut()
        {
            list.push(serde_json::json!(e.note));
        }
        hex::encode(Sha256::digest(fields.to_string().as_bytes()))
    }
}

/// Filters for `list`; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub subject: Option<String>,
    pub tool: Option<String>,
    pub workflow_id: Option<String>,
    /// RFC 3339 bounds, inclusive.
    pub since: Option<String>,
    pub until: Option<String>,
    /// `allow`, `deny` or `none`.
    pub decision: Option<String>,
    pub limit: Option<i64>,
    /// Records to skip (paging, with `limit`).
    pub offset: Option<i64>,
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub records: u64,
    /// The last record's hash: the chain's head, to anchor elsewhere.
    pub head: String,
    /// The first record where the chain breaks, with what is wrong there.
    pub first_broken: Option<BrokenLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    pub seq: i64,
    pub problem: String,
}

/// Errors of the audit store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The database could not be opened or migrated.
    #[error("audit store at {url}: {source}")]
    Open { url: String, source: sqlx::Error },
    /// A query failed.
    #[error("audit store: {0}")]
    Database(#[from] sqlx::Error),
    /// The migrations could not be applied.
    #[error("audit store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Concurrent writers kept taking the same place in the chain.
    #[error("audit store: could not append after {APPEND_ATTEMPTS} attempts")]
    Contended,
    /// The runtime stopped (the process is ending) before the record's write answered.
    #[error("audit store: stopped before the record was written")]
    Stopped,
    /// The write that carried this record with others failed (each of them gets its error).
    #[error(transparent)]
    Batch(Arc<AuditError>),
    /// Stored data does not check out (an archive against its hash).
    #[error("audit store: {0}")]
    Corrupt(String),
    /// A filter bound is not an RFC 3339 time.
    #[error("invalid time '{0}': expected RFC 3339, e.g. 2026-11-26T08:00:00Z")]
    InvalidTime(String),
}

/// Who archives histories, as audit records name it.
pub const ARCHIVER: &str = "changeflow-archiver";

/// A closed workflow run's history, as archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedHistory {
    pub workflow_id: String,
    pub run_id: String,
    pub workflow_type: String,
    /// How it closed (`completed`, `failed`, `canceled`, `terminated`, ...).
    pub status: String,
    /// RFC 3339 (UTC, fixed width).
    pub closed_at: String,
    pub events: i64,
    /// SHA-256 (hex) of `history`.
    pub sha256: String,
    /// The protobuf `History` bytes.
    pub history: Vec<u8>,
}

impl ArchivedHistory {
    /// A history to archive; its hash is computed here.
    pub fn new(
        workflow_id: String,
        run_id: String,
        workflow_type: String,
        status: String,
        closed_at: String,
        events: i64,
        history: Vec<u8>,
    ) -> Self {
        ArchivedHistory {
            sha256: sha256_hex(&history),
            workflow_id,
            run_id,
            workflow_type,
            status,
            closed_at,
            events,
            history,
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The audit store. Cheap to share behind an `Arc`.
pub struct AuditStore {
    pool: AnyPool,
    writer: Arc<Writer>,
    /// One probe at a time: callers that asked before a probe began share its answer.
    probing: Mutex<()>,
    /// Policy revisions this process knows are stored.
    kept_revisions: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Group commit: appends queue in `waiting`, and whoever holds `turn` next writes all of them
/// in one transaction (one fsync), so concurrent callers share a commit instead of queueing
/// for one each. The write runs in its own task: once `append` is called, its record is
/// written even if the caller stops waiting. One such task at a time drains the queue (a
/// thousand callers at once queue a thousand entries, not a thousand tasks). Other processes
/// are handled by retrying.
struct Writer {
    pool: AnyPool,
    waiting: std::sync::Mutex<Queue>,
    turn: Mutex<()>,
    /// When the latest write or probe that succeeded began: it proves the store writable to
    /// everyone who asked before then.
    proven: std::sync::Mutex<Option<Instant>>,
}

#[derive(Default)]
struct Queue {
    entries: Vec<Waiting>,
    /// A task is draining `entries` (set with the push that starts it, cleared under the
    /// same lock when it finds them empty).
    draining: bool,
}

/// Lets the next append start a drain again if a draining task ends by panicking.
struct Draining<'a>(&'a Writer);

impl Drop for Draining<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .draining = false;
        }
    }
}

struct Waiting {
    entry: AuditEntry,
    answer: oneshot::Sender<Result<AuditRecord, AuditError>>,
}

/// The most records written in one transaction (well under SQLite's parameter limits).
const MAX_BATCH: usize = 256;

impl Writer {
    fn proven_since(&self, asked: Instant) -> bool {
        self.proven
            .lock()
            .expect("proven")
            .is_some_and(|at| at >= asked)
    }

    fn prove(&self, began: Instant) {
        let mut proven = self.proven.lock().expect("proven");
        if proven.is_none_or(|at| at < began) {
            *proven = Some(began);
        }
    }

    /// Writes what is waiting until nothing is, answering each caller.
    async fn write_waiting(self: Arc<Self>) {
        let _draining = Draining(&self);
        let _turn = self.turn.lock().await;
        loop {
            let batch: Vec<Waiting> = {
                let mut queue = self.waiting.lock().expect("waiting");
                if queue.entries.is_empty() {
                    queue.draining = false;
                    return;
                }
                let take = queue.entries.len().min(MAX_BATCH);
                queue.entries.drain(..take).collect()
            };
            let began = Instant::now();
            let entries: Vec<&AuditEntry> = batch.iter().map(|w| &w.entry).collect();
            match append_retrying(&self.pool, &entries, None).await {
                Ok(records) => {
                    self.prove(began);
                    for (waiting, record) in batch.into_iter().zip(records) {
                        let _ = waiting.answer.send(Ok(record));
                    }
                }
                Err(e) => {
                    let shared = Arc::new(e);
                    for waiting in batch {
                        let _ = waiting.answer.send(Err(AuditError::Batch(shared.clone())));
                    }
                }
            }
        }
    }
}

impl AuditStore {
    /// Whether a record could be appended now (readiness, and before a call starts anything):
    /// proven by a write or probe that began after the question was asked. A probe row is
    /// inserted inside a transaction that is rolled back, so nothing is kept and the chain is
    /// untouched; callers asking at once share one probe.
    pub async fn writable(&self) -> bool {
        let asked = Instant::now();
        let _probing = self.probing.lock().await;
        if self.writer.proven_since(asked) {
            return true;
        }
        let began = Instant::now();
        let writable = self.probe().await;
        if writable {
            self.writer.prove(began);
        }
        writable
    }

    async fn probe(&self) -> bool {
        let Ok(mut transaction) = self.pool.begin().await else {
            return false;
        };
        let probe = sqlx::query(
            "INSERT INTO audit_records (seq, recorded_at, subject, client, server, tool, arguments_hash, decision, \
             reason, policy_revision, workflow_id, outcome, prev_hash, hash) \
             VALUES (-1, '', '', '', '', '', '', '', '', '', '', 'readiness probe', '', '')",
        )
        .execute(&mut *transaction)
        .await;
        let rolled_back = transaction.rollback().await;
        probe.is_ok() && rolled_back.is_ok()
    }

    /// Opens (creating if needed) the store at a database URL and applies the migrations.
    /// `sqlite://path` or `postgres://...`.
    pub async fn open(url: &str) -> Result<Self, AuditError> {
        install_default_drivers();
        let url = if url.starts_with("sqlite:") && !url.contains("mode=") {
            format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
        } else {
            url.to_string()
        };
        let sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 1 } else { 8 })
            // A SQLite connection is a file in this process: pinging it before every use is a
            // round trip to its thread that finds nothing (a PostgreSQL server may have cut it).
            .test_before_acquire(!sqlite)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(|connection, _| {
                Box::pin(async move {
                    // SQLite in write-ahead-log mode with `synchronous = FULL`: a commit is
                    // one append to the log and one fsync (the default rollback journal took
                    // several, which bounded every audited call to about a hundred a second),
                    // and is as durable. The mode is kept in the file.
                    if connection.backend_name() == "SQLite" {
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA synchronous = FULL")
                            .execute(&mut *connection)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(|source| AuditError::Open {
                url: redact_url(&url),
                source,
            })?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(Self {
            writer: Arc::new(Writer {
                pool: pool.clone(),
                waiting: Default::default(),
                turn: Mutex::new(()),
                proven: Default::default(),
            }),
            pool,
            probing: Mutex::new(()),
            kept_revisions: Default::default(),
        })
    }

    /// The default store: `audit.db` in the data directory.
    pub async fn open_in(data_dir: &Path) -> Result<Self, AuditError> {
        std::fs::create_dir_all(data_dir).map_err(|e| AuditError::Open {
            url: data_dir.display().to_string(),
            source: sqlx::Error::Io(e),
        })?;
        Self::open(&default_url(data_dir)).await
    }

    /// Appends an entry at the end of the chain and returns the stored record. Appends made at
    /// once share a transaction; the record is written even if the caller stops waiting.
    pub async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, AuditError> {
        let (answer, answered) = oneshot::channel();
        let start_draining = {
            let mut queue = self.writer.waiting.lock().expect("waiting");
            queue.entries.push(Waiting { entry, answer });
            !std::mem::replace(&mut queue.draining, true)
        };
        if start_draining {
            tokio::spawn(self.writer.clone().write_waiting());
        }
        answered.await.map_err(|_| AuditError::Stopped)?
    }

    /// Archives a closed workflow's history with its audit record, in one transaction: the
    /// record's `arguments_hash` is the history's SHA-256, so the chain covers the archive.
    /// Idempotent: a run already archived is left alone and `None` is returned.
    pub async fn archive(
        &self,
        history: &ArchivedHistory,
    ) -> Result<Option<AuditRecord>, AuditError> {
        let entry = AuditEntry {
            subject: ARCHIVER.into(),
            client: ARCHIVER.into(),
            server: "changes".into(),
            tool: "archive_history".into(),
            arguments_hash: history.sha256.clone(),
            decision: "none".into(),
            reason: String::new(),
            policy_revision: String::new(),
            workflow_id: history.workflow_id.clone(),
            outcome: "archived".into(),
            note: format!(
                "{} {} run {}, {} events, closed {}",
                history.workflow_type,
                history.status,
                history.run_id,
                history.events,
                history.closed_at
            ),
        };
        let _turn = self.writer.turn.lock().await;
        let records = append_retrying(&self.pool, &[&entry], Some(history)).await?;
        Ok(records.into_iter().next())
    }

    /// Whether this process has already kept this policy revision's text (or it is empty).
    pub fn kept_policy_revision(&self, revision: &str) -> bool {
        revision.is_empty()
            || self
                .kept_revisions
                .lock()
                .expect("revisions")
                .contains(revision)
    }

    /// Keeps the text of a policy revision (once; idempotent across processes), so the rules
    /// behind every recorded decision stay readable after the policy changes.
    pub async fn keep_policy_revision(
        &self,
        revision: &str,
        files: &[(String, String)],
    ) -> Result<(), AuditError> {
        if self.kept_policy_revision(revision) {
            return Ok(());
        }
        let sources: serde_json::Map<String, serde_json::Value> = files
            .iter()
            .map(|(name, text)| (name.clone(), serde_json::Value::String(text.clone())))
            .collect();
        sqlx::query(
            "INSERT INTO policy_revisions (revision, sources, first_seen) VALUES ($1, $2, $3) \
             ON CONFLICT (revision) DO NOTHING",
        )
        .bind(revision)
        .bind(serde_json::Value::Object(sources).to_string())
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?;
        self.kept_revisions
            .lock()
            .expect("revisions")
            .insert(revision.to_string());
        Ok(())
    }

    /// The files (name → text) of a policy revision, if it was kept.
    pub async fn policy_revision(
        &self,
        revision: &str,
    ) -> Result<Option<std::collections::BTreeMap<String, String>>, AuditError> {
        let row = sqlx::query("SELECT sources FROM policy_revisions WHERE revision = $1")
            .bind(revision)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get(0)?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| AuditError::Corrupt(format!("policy revision {revision}: {e}")))
    }

    /// Whether this run of a workflow is archived.
    pub async fn is_archived(&self, workflow_id: &str, run_id: &str) -> Result<bool, AuditError> {
        let row =
            sqlx::query("SELECT 1 FROM history_archive WHERE workflow_id = $1 AND run_id = $2")
                .bind(workflow_id)
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    /// The latest archived run of a workflow, with its history (protobuf bytes).
    pub async fn archived(&self, workflow_id: &str) -> Result<Option<ArchivedHistory>, AuditError> {
        let row = sqlx::query(
            "SELECT workflow_id, run_id, workflow_type, status, closed_at, events, sha256, history \
             FROM history_archive WHERE workflow_id = $1 ORDER BY closed_at DESC LIMIT 1",
        )
        .bind(workflow_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        use base64::Engine as _;
        let encoded: String = row.try_get(7)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| AuditError::Corrupt(format!("archived history of {workflow_id}: {e}")))?;
        let archived = ArchivedHistory {
            workflow_id: row.try_get(0)?,
            run_id: row.try_get(1)?,
            workflow_type: row.try_get(2)?,
            status: row.try_get(3)?,
            closed_at: row.try_get(4)?,
            events: row.try_get(5)?,
            sha256: row.try_get(6)?,
            history: bytes,
        };
        if archived.sha256 != sha256_hex(&archived.history) {
            return Err(AuditError::Corrupt(format!(
                "archived history of {workflow_id} does not match its SHA-256"
            )));
        }
        Ok(Some(archived))
    }

    /// The latest close time archived (RFC 3339), where an archiver resumes.
    pub async fn latest_archived_close(&self) -> Result<Option<String>, AuditError> {
        let row =
            sqlx::query("SELECT closed_at FROM history_archive ORDER BY closed_at DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    /// Records matching the filter, oldest first.
    pub async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, AuditError> {
        for bound in [&filter.since, &filter.until].into_iter().flatten() {
            time::OffsetDateTime::parse(bound, &time::format_description::well_known::Rfc3339)
                .map_err(|_| AuditError::InvalidTime(bound.clone()))?;
        }
        let mut sql = String::from("SELECT * FROM audit_records WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let mut condition =
            |clause: &str, value: &Option<String>, normalise: fn(&str) -> String| {
                if let Some(v) = value {
                    binds.push(normalise(v));
                    sql.push_str(&format!(" AND {clause} ${}", binds.len()));
                }
            };
        condition("subject =", &filter.subject, str::to_string);
        condition("tool =", &filter.tool, str::to_string);
        condition("workflow_id =", &filter.workflow_id, str::to_string);
        condition("decision =", &filter.decision, str::to_string);
        condition("recorded_at >=", &filter.since, normalise_time);
        condition("recorded_at <=", &filter.until, normalise_time);
        sql.push_str(" ORDER BY seq");
        if let Some(limit) = filter.limit {
            sql.push_str(&format!(" LIMIT {}", limit.max(0)));
            if let Some(offset) = filter.offset {
                sql.push_str(&format!(" OFFSET {}", offset.max(0)));
            }
        }
        let mut query = sqlx::query(&sql);
        for value in &binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(record_from_row).collect()
    }

    /// The records from `first_seq` to the end of the chain, in order (a chain segment).
    pub async fn segment(&self, first_seq: i64) -> Result<Vec<AuditRecord>, AuditError> {
        let rows = sqlx::query("SELECT * FROM audit_records WHERE seq >= $1 ORDER BY seq")
            .bind(first_seq)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Checks the whole chain and reports the first broken link.
    pub async fn verify(&self) -> Result<ChainReport, AuditError> {
        let rows = sqlx::query("SELECT * FROM audit_records ORDER BY seq")
            .fetch_all(&self.pool)
            .await?;
        let records: Vec<AuditRecord> =
            rows.iter().map(record_from_row).collect::<Result<_, _>>()?;
        Ok(check_chain(&records))
    }
}

/// Appends entries at the end of the chain, retrying when another process took the end first.
async fn append_retrying(
    pool: &AnyPool,
    entries: &[&AuditEntry],
    archive: Option<&ArchivedHistory>,
) -> Result<Vec<AuditRecord>, AuditError> {
    for attempt in 1..=APPEND_ATTEMPTS {
        match try_append(pool, entries, archive).await {
            Err(AuditError::Database(sqlx::Error::Database(db))) if is_contention(db.as_ref()) => {
                // Another writer took this place in the chain, or holds the SQLite write
                // lock: back off briefly, read the new end, and try again.
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
            }
            other => return other,
        }
    }
    Err(AuditError::Contended)
}

/// One attempt: read the end of the chain and insert the entries after it, in one transaction
/// (with the archived history, if one comes with it; nothing is written and no record returned
/// when that run was archived already).
async fn try_append(
    pool: &AnyPool,
    entries: &[&AuditEntry],
    archive: Option<&ArchivedHistory>,
) -> Result<Vec<AuditRecord>, AuditError> {
    let mut tx = pool.begin().await?;
    if let Some(h) = archive {
        use base64::Engine as _;
        let inserted = sqlx::query(
            "INSERT INTO history_archive (workflow_id, run_id, workflow_type, status, closed_at, \
             events, sha256, history, archived_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (workflow_id, run_id) DO NOTHING",
        )
        .bind(&h.workflow_id)
        .bind(&h.run_id)
        .bind(&h.workflow_type)
        .bind(&h.status)
        .bind(&h.closed_at)
        .bind(h.events)
        .bind(&h.sha256)
        .bind(base64::engine::general_purpose::STANDARD.encode(&h.history))
        .bind(now_rfc3339())
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
    }
    let last = sqlx::query("SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *tx)
        .await?;
    let (mut seq, mut prev_hash) = match last {
        Some(row) => (row.try_get::<i64, _>(0)? + 1, row.try_get::<String, _>(1)?),
        None => (1, GENESIS_HASH.to_string()),
    };
    let recorded_at = now_rfc3339();
    let mut records = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut record = AuditRecord {
            seq,
            recorded_at: recorded_at.clone(),
            entry: (*entry).clone(),
            prev_hash,
            hash: String::new(),
        };
        record.hash = record.expected_hash();
        seq += 1;
        prev_hash = record.hash.clone();
        records.push(record);
    }
    for rows in in_statements(&records) {
        insert_records(&mut tx, rows).await?;
    }
    tx.commit().await?;
    Ok(records)
}

/// A batch of records cut into runs of 2^k records, largest first (37 records: 32, 4, 1):
/// each run is one multi-row statement, and runs of the same length are the same statement, so
/// a connection keeps at most nine prepared (up to `MAX_BATCH`, 256). A statement per batch
/// length kept every length seen prepared, up to sqlx's hundred per connection: about 10 MB of
/// a front door's peak at 1000 clients (heaptrack); preparing each batch afresh instead cost a
/// fifth of the calls a second the audit store could take.
fn in_statements(records: &[AuditRecord]) -> Vec<&[AuditRecord]> {
    let mut runs = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let length = 1usize << rest.len().ilog2();
        let (run, after) = rest.split_at(length);
        runs.push(run);
        rest = after;
    }
    runs
}

/// One statement inserting `records`: each statement is a round trip to the database.
async fn insert_records(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    records: &[AuditRecord],
) -> Result<(), AuditError> {
    // `$n` placeholders, which both drivers take (sqlx's builder writes `?` for `Any`).
    const COLUMNS: usize = 15;
    let rows: Vec<String> = (0..records.len())
        .map(|r| {
            let places: Vec<String> = (1..=COLUMNS)
                .map(|c| format!("${}", r * COLUMNS + c))
                .collect();
            format!("({})", places.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO audit_records (seq, recorded_at, subject, client, server, tool, arguments_hash, \
         decision, reason, policy_revision, workflow_id, outcome, prev_hash, hash, note) VALUES {}",
        rows.join(", ")
    );
    let mut insert = sqlx::query(&sql);
    for record in records {
        let e = &record.entry;
        insert = insert
            .bind(record.seq)
            .bind(&record.recorded_at)
            .bind(&e.subject)
            .bind(&e.client)
            .bind(&e.server)
            .bind(&e.tool)
            .bind(&e.arguments_hash)
            .bind(&e.decision)
            .bind(&e.reason)
            .bind(&e.policy_revision)
            .bind(&e.workflow_id)
            .bind(&e.outcome)
            .bind(&record.prev_hash)
            .bind(&record.hash)
            .bind(&e.note);
    }
    insert.execute(&mut **tx).await?;
    Ok(())
}

/// A unique violation on `seq` (another writer appended first) or SQLite's busy/locked.
fn is_contention(db: &dyn sqlx::error::DatabaseError) -> bool {
    db.is_unique_violation() || matches!(db.code().as_deref(), Some("5" | "6" | "517"))
}

/// Verifies a chain given in `seq` order.
pub fn check_chain(records: &[AuditRecord]) -> ChainReport {
    check_segment(records, 1, GENESIS_HASH)
}

/// Verifies a stretch of the chain given in `seq` order that starts at `first_seq`, whose first
/// record must follow `first_prev` (an evidence bundle's chain segment, which starts where the
/// change's first record is).
pub fn check_segment(records: &[AuditRecord], first_seq: i64, first_prev: &str) -> ChainReport {
    let head = records
        .last()
        .map_or_else(|| first_prev.to_string(), |r| r.hash.clone());
    let mut expected_prev = first_prev.to_string();
    for (index, record) in records.iter().enumerate() {
        let broken = |problem: String| ChainReport {
            records: records.len() as u64,
            head: head.clone(),
            first_broken: Some(BrokenLink {
                seq: record.seq,
                problem,
            }),
        };
        let expected_seq = first_seq + index as i64;
        if record.seq != expected_seq {
            return broken(format!(
                "expected record {expected_seq} here: a record is missing or out of place"
            ));
        }
        if record.prev_hash != expected_prev {
            return broken(
                "does not follow the previous record (deleted, inserted or reordered records)"
                    .into(),
            );
        }
        if record.hash != record.expected_hash() {
            return broken("its contents do not match its hash (the record was edited)".into());
        }
        expected_prev = record.hash.clone();
    }
    ChainReport {
        records: records.len() as u64,
        head,
        first_broken: None,
    }
}

fn record_from_row(row: &sqlx::any::AnyRow) -> Result<AuditRecord, AuditError> {
    let text = |name: &str| row.try_get::<String, _>(name);
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        recorded_at: text("recorded_at")?,
        entry: AuditEntry {
            subject: text("subject")?,
            client: text("client")?,
            server: text("server")?,
            tool: text("tool")?,
            arguments_hash: text("arguments_hash")?,
            decision: text("decision")?,
            reason: text("reason")?,
            policy_revision: text("policy_revision")?,
            workflow_id: text("workflow_id")?,
            outcome: text("outcome")?,
            note: text("note")?,
        },
        prev_hash: text("prev_hash")?,
        hash: text("hash")?,
    })
}

/// SQLite file `audit.db` in `data_dir`.
pub fn default_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("audit.db").display())
}

/// SHA-256 of the canonical JSON form of `value` (object keys sorted, no whitespace), so that
/// the same arguments always hash the same whatever their key order.
pub fn canonical_hash(value: &serde_json::Value) -> String {
    fn canonical(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push(':');
                    canonical(&map[key], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut text = String::new();
    canonical(value, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

const TIME_FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

/// A time as the store writes times: RFC 3339 UTC with milliseconds, fixed width.
pub fn format_time(t: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(TIME_FORMAT)
        .expect("time format")
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(TIME_FORMAT)
        .expect("time format")
}

/// Brings an RFC 3339 bound to the stored fixed-width UTC form, so text comparison is time order.
fn normalise_time(value: &str) -> String {
    time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map(|t| {
            t.to_offset(time::UtcOffset::UTC)
                .format(TIME_FORMAT)
                .expect("time format")
        })
        .unwrap_or_else(|_| value.to_string())
}

/// A database URL without its password, for error messages.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_hash_ignores_key_order_but_not_values() {
        let a = serde_json::json!({"devices": ["a", "b"], "template": {"id": 1, "name": "x"}});
        let b = serde_json::json!({"template": {"name": "x", "id": 1}, "devices": ["a", "b"]});
        let c = serde_json::json!({"template": {"name": "x", "id": 1}, "devices": ["b", "a"]});
        assert_eq!(canonical_hash(&a), canonical_hash(&b));
        assert_ne!(canonical_hash(&a), canonical_hash(&c));
    }

    #[test]
    fn a_batch_is_inserted_in_runs_of_powers_of_two_so_few_statements_are_kept() {
        let batch = |n: i64| -> Vec<AuditRecord> {
            (1..=n)
                .map(|seq| AuditRecord {
                    seq,
                    recorded_at: String::new(),
                    entry: AuditEntry::default(),
                    prev_hash: String::new(),
                    hash: String::new(),
                })
                .collect()
        };
        let lengths =
            |n: i64| -> Vec<usize> { in_statements(&batch(n)).iter().map(|r| r.len()).collect() };
        assert!(lengths(0).is_empty());
        assert_eq!(lengths(1), [1]);
        assert_eq!(lengths(37), [32, 4, 1]);
        assert_eq!(lengths(256), [256]);
        assert_eq!(lengths(255), [128, 64, 32, 16, 8, 4, 2, 1]);
        // Every record once, in order.
        let records = batch(37);
        let seqs: Vec<i64> = in_statements(&records)
            .concat()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(seqs, (1..=37).collect::<Vec<_>>());
        // Whatever the batch, one of nine statements.
        let statements: std::collections::BTreeSet<usize> =
            (1..=MAX_BATCH as i64).flat_map(lengths).collect();
        assert_eq!(statements.len(), 9, "{statements:?}");
    }

    #[test]
    fn time_bounds_are_normalised_to_utc() {
        assert_eq!(
            normalise_time("2026-11-26T09:30:00+01:00"),
            "2026-11-26T08:30:00.000Z"
        );
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(
            redact_url("postgres://u:secret@db/audit"),
            "postgres://u:***@db/audit"
        );
    }
}
