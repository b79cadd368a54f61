//! The audit store on real databases: SQLite always; PostgreSQL when CHANGEFLOW_TEST_POSTGRES_URL
//! names a server (each test gets a fresh database there). Tampering is done with plain SQL, as
//! someone with database access would.

use changeflow_engine::audit::{AuditEntry, AuditFilter, AuditStore};
use std::sync::Arc;

/// A fresh database for one test, dropped afterwards where that is possible.
struct Database {
    url: String,
    cleanup: Option<(String, String)>,
    _dir: Option<std::path::PathBuf>,
}

impl Database {
    fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("cf-audit-{}", uuid()));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            url: changeflow_engine::audit::default_url(&dir),
            cleanup: None,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("CHANGEFLOW_TEST_POSTGRES_URL") else {
            eprintln!("CHANGEFLOW_TEST_POSTGRES_URL not set: skipping the PostgreSQL audit suite");
            return None;
        };
        sqlx::any::install_default_drivers();
        let name = format!("cf_audit_{}", uuid());
        let admin = sqlx::AnyPool::connect(&admin_url)
            .await
            .expect("PostgreSQL reachable");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        Some(Self {
            url: url.to_string(),
            cleanup: Some((admin_url, name)),
            _dir: None,
        })
    }

    async fn drop_database(&self) {
        if let Some((admin_url, name)) = &self.cleanup {
            let admin = sqlx::AnyPool::connect(admin_url).await.unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(dir) = &self._dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn uuid() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn entry(subject: &str, tool: &str, workflow: &str) -> AuditEntry {
    AuditEntry {
        subject: subject.into(),
        client: "test-client".into(),
        server: "catalyst-center".into(),
        tool: tool.into(),
        arguments_hash: changeflow_engine::audit::canonical_hash(
            &serde_json::json!({"devices": ["sj-access-01"]}),
        ),
        decision: "allow".into(),
        reason: "network-engineers may execute on catalyst-center".into(),
        policy_revision: "rev-1".into(),
        workflow_id: workflow.into(),
        outcome: "requested".into(),
        note: String::new(),
    }
}

async fn store_with_five(db: &Database) -> AuditStore {
    let store = AuditStore::open(&db.url).await.expect("open and migrate");
    for (i, (subject, tool)) in [
        ("alice", "deploy_template"),
        ("bob", "get_change_request"),
        ("alice", "list_devices"),
        ("carol", "deploy_template"),
        ("alice", "deploy_template"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut entry = entry(subject, tool, &format!("wf-{i}"));
        if subject == "carol" {
            entry.note = "emergency: core link down".into();
        }
        let record = store.append(entry).await.unwrap();
        assert_eq!(record.seq, i as i64 + 1);
    }
    store
}

async fn run_suite(db: &Database) {
    // A clean chain verifies, and reopening (migrations again) changes nothing.
    let store = store_with_five(db).await;
    let report = store.verify().await.unwrap();
    assert_eq!(report.records, 5);
    assert_eq!(report.first_broken, None);
    drop(store);
    let store = AuditStore::open(&db.url).await.expect("reopen");
    assert_eq!(store.verify().await.unwrap().first_broken, None);

    // The readiness probe writes and rolls back: nothing is kept, the chain is untouched.
    assert!(store.writable().await);
    let report = store.verify().await.unwrap();
    assert_eq!((report.records, report.first_broken), (5, None));

    // Filters.
    let by = |f: AuditFilter| {
        let store = &store;
        async move {
            store
                .list(&f)
                .await
                .unwrap()
                .iter()
                .map(|r| r.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        by(AuditFilter {
            subject: Some("alice".into()),
            ..Default::default()
        })
        .await,
        vec![1, 3, 5]
    );
    assert_eq!(
        by(AuditFilter {
            tool: Some("deploy_template".into()),
            ..Default::default()
        })
        .await,
        vec![1, 4, 5]
    );
    assert_eq!(
        by(AuditFilter {
            workflow_id: Some("wf-1".into()),
            ..Default::default()
        })
        .await,
        vec![2]
    );
    assert_eq!(
        by(AuditFilter {
            since: Some("2000-01-01T00:00:00Z".into()),
            limit: Some(2),
            ..Default::default()
        })
        .await,
        vec![1, 2]
    );
    assert_eq!(
        by(AuditFilter {
            until: Some("2000-01-01T00:00:00+02:00".into()),
            ..Default::default()
        })
        .await,
        Vec::<i64>::new()
    );
    assert!(
        store
            .list(&AuditFilter {
                since: Some("yesterday".into()),
                ..Default::default()
            })
            .await
            .is_err()
    );
    drop(store);
    db.drop_database().await;
}

async fn tampered(db: &Database, sql: &[&str]) -> changeflow_engine::audit::ChainReport {
    let store = store_with_five(db).await;
    // The tampering goes through a connection of its own, as an attacker's would.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    for statement in sql {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    pool.close().await;
    let report = store.verify().await.unwrap();
    drop(store);
    report
}

async fn run_tamper_suite(make: impl AsyncFn() -> Option<Database>) {
    let cases: Vec<(&str, Vec<&str>, i64, &str)> = vec![
        (
            "edited",
            vec!["UPDATE audit_records SET decision = 'allow', reason = 'changed' WHERE seq = 3"],
            3,
            "edited",
        ),
        (
            "note edited",
            vec!["UPDATE audit_records SET note = 'routine' WHERE seq = 4"],
            4,
            "edited",
        ),
        (
            "note added",
            vec!["UPDATE audit_records SET note = 'approved by the CAB' WHERE seq = 2"],
            2,
            "edited",
        ),
        (
            "deleted",
            vec!["DELETE FROM audit_records WHERE seq = 2"],
            3,
            "missing or out of place",
        ),
        (
            "deleted and renumbered",
            vec![
                "DELETE FROM audit_records WHERE seq = 2",
                "UPDATE audit_records SET seq = seq - 1 WHERE seq > 2",
            ],
            2,
            "does not follow",
        ),
        (
            "reordered",
            vec![
                "UPDATE audit_records SET seq = 100 WHERE seq = 2",
                "UPDATE audit_records SET seq = 2 WHERE seq = 3",
                "UPDATE audit_records SET seq = 3 WHERE seq = 100",
            ],
            2,
            "does not follow",
        ),
        (
            "rehashed without the chain",
            vec!["UPDATE audit_records SET prev_hash = hash WHERE seq = 4"],
            4,
            "does not follow",
        ),
    ];
    for (name, sql, seq, problem) in cases {
        let Some(db) = make().await else { return };
        let report = tampered(&db, &sql).await;
        let broken = report
            .first_broken
            .unwrap_or_else(|| panic!("{name}: tampering went unnoticed"));
        assert_eq!(broken.seq, seq, "{name}: {broken:?}");
        assert!(broken.problem.contains(problem), "{name}: {broken:?}");
        db.drop_database().await;
    }
}

async fn run_concurrency(db: &Database) {
    // Two stores on one database act like two processes appending at once; within one store,
    // appends made at once share transactions (more of them than one transaction takes).
    let a = Arc::new(AuditStore::open(&db.url).await.unwrap());
    let b = Arc::new(AuditStore::open(&db.url).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..400 {
        let store = if i % 4 == 0 { b.clone() } else { a.clone() };
        tasks.push(tokio::spawn(async move {
            store
                .append(entry("dave", "list_devices", &format!("c-{i}")))
                .await
        }));
    }
    let mut told = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let record = task.await.unwrap().expect("append under contention");
        assert_eq!(
            record.entry.workflow_id,
            format!("c-{i}"),
            "each caller gets its own record"
        );
        told.push(record);
    }
    let report = a.verify().await.unwrap();
    assert_eq!(report.records, 400);
    assert_eq!(report.first_broken, None);
    // What each caller was told is exactly what is stored: one place in the chain each.
    told.sort_by_key(|r| r.seq);
    assert_eq!(a.list(&AuditFilter::default()).await.unwrap(), told);
    drop((a, b));
    db.drop_database().await;
}

/// A caller that stops waiting (a client that hung up) does not lose its record: once asked
/// for, it is written.
async fn run_abandoned_append(db: &Database) {
    let store = AuditStore::open(&db.url).await.unwrap();
    // Polled once, then dropped: the caller gives up before the write could answer. (A zero
    // timeout is not that: its timer rounds up to the next millisecond, and a fast write wins.)
    let mut call = Box::pin(store.append(entry("erin", "deploy_template", "c-abandoned")));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(
        call.as_mut().poll(&mut cx).is_pending(),
        "the caller stopped waiting before the write answered"
    );
    drop(call);
    let only_it = AuditFilter {
        workflow_id: Some("c-abandoned".into()),
        ..AuditFilter::default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.list(&only_it).await.unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned record was never written"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let later = store
        .append(entry("erin", "list_devices", "c-later"))
        .await
        .unwrap();
    assert_eq!(later.seq, 2, "the abandoned record took its place once");
    assert_eq!(store.verify().await.unwrap().first_broken, None);
    drop(store);
    db.drop_database().await;
}

/// Archiving a history: once per run (a second archive of the same run changes nothing), with
/// an audit record carrying its hash; read back intact; an altered archive is refused. Policy
/// revisions' texts are kept once.
async fn run_archive(db: &Database) {
    use changeflow_engine::audit::ArchivedHistory;
    let store = AuditStore::open(&db.url).await.unwrap();
    let history = |run: &str| {
        ArchivedHistory::new(
            "change-1".into(),
            run.into(),
            "TemplateDeployment".into(),
            "completed".into(),
            format!("2026-11-27T10:00:0{}.000Z", run.len()),
            42,
            vec![8, 1, 18, 3, 1, 2, 3],
        )
    };
    let first = history("run-a");
    let record = store.archive(&first).await.unwrap().expect("archived");
    assert_eq!(record.entry.arguments_hash, first.sha256);
    assert_eq!(record.entry.tool, "archive_history");
    assert!(store.archive(&first).await.unwrap().is_none(), "idempotent");
    assert!(store.is_archived("change-1", "run-a").await.unwrap());
    assert!(!store.is_archived("change-1", "run-b").await.unwrap());
    let later = history("run-bb");
    store.archive(&later).await.unwrap().expect("another run");
    assert_eq!(store.archived("change-1").await.unwrap(), Some(later));
    assert_eq!(store.archived("nothing").await.unwrap(), None);
    assert_eq!(store.verify().await.unwrap().records, 2);
    assert_eq!(
        store.latest_archived_close().await.unwrap().as_deref(),
        Some("2026-11-27T10:00:06.000Z")
    );
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE history_archive SET history = 'CAESAwECBA==' WHERE run_id = 'run-bb'")
        .execute(&pool)
        .await
        .unwrap();
    let err = store.archived("change-1").await.unwrap_err().to_string();
    assert!(err.contains("does not match its SHA-256"), "{err}");
    pool.close().await;
    // Policy revisions: kept once, read back; another process's copy is left alone.
    let files = vec![("authz.rego".to_string(), "package x".to_string())];
    store.keep_policy_revision("rev-1", &files).await.unwrap();
    let other = AuditStore::open(&db.url).await.unwrap();
    other
        .keep_policy_revision("rev-1", &[("authz.rego".into(), "changed".into())])
        .await
        .unwrap();
    let kept = store.policy_revision("rev-1").await.unwrap().unwrap();
    assert_eq!(kept["authz.rego"], "package x");
    assert_eq!(store.policy_revision("rev-2").await.unwrap(), None);
    drop((store, other));
    db.drop_database().await;
}

#[tokio::test]
async fn sqlite_store_archives_histories_once_with_their_hash() {
    run_archive(&Database::sqlite()).await;
}

#[tokio::test]
async fn postgres_store_archives_histories_once_with_their_hash() {
    if let Some(db) = Database::postgres().await {
        run_archive(&db).await;
    }
}

#[tokio::test]
async fn sqlite_store_chains_filters_and_verifies() {
    run_suite(&Database::sqlite()).await;
}

#[tokio::test]
async fn sqlite_store_detects_every_kind_of_tampering() {
    run_tamper_suite(async || Some(Database::sqlite())).await;
}

#[tokio::test]
async fn sqlite_store_keeps_the_chain_under_concurrent_appends() {
    run_concurrency(&Database::sqlite()).await;
}

#[tokio::test]
async fn sqlite_store_writes_an_abandoned_append() {
    run_abandoned_append(&Database::sqlite()).await;
}

#[tokio::test]
async fn postgres_store_writes_an_abandoned_append() {
    if let Some(db) = Database::postgres().await {
        run_abandoned_append(&db).await;
    }
}

#[tokio::test]
async fn postgres_store_chains_filters_and_verifies() {
    if let Some(db) = Database::postgres().await {
        run_suite(&db).await;
    }
}

#[tokio::test]
async fn postgres_store_detects_every_kind_of_tampering() {
    run_tamper_suite(Database::postgres).await;
}

#[tokio::test]
async fn postgres_store_keeps_the_chain_under_concurrent_appends() {
    if let Some(db) = Database::postgres().await {
        run_concurrency(&db).await;
    }
}

#[tokio::test]
async fn postgres_store_is_not_writable_once_its_database_is_gone() {
    let Some(db) = Database::postgres().await else {
        return;
    };
    let store = store_with_five(&db).await;
    assert!(store.writable().await);
    db.drop_database().await;
    assert!(
        !store.writable().await,
        "a dropped database is not writable"
    );
    let refused = store
        .append(entry("carol", "deploy_template", "c-after"))
        .await
        .expect_err("nothing is appended to a dropped database");
    assert!(refused.to_string().starts_with("audit store"), "{refused}");
}
