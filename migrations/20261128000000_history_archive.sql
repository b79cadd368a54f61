-- Histories of closed workflows, archived so that replay and evidence outlive Temporal's
-- retention. `history` is the protobuf `History` in base64 (text keeps one schema on SQLite
-- and PostgreSQL); `sha256` is over the protobuf bytes and is also the `arguments_hash` of the
-- audit record written in the same transaction, so every archive is covered by the hash chain.
CREATE TABLE history_archive (
    workflow_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    workflow_type TEXT NOT NULL,
    status TEXT NOT NULL,
    closed_at TEXT NOT NULL,
    events BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    history TEXT NOT NULL,
    archived_at TEXT NOT NULL,
    PRIMARY KEY (workflow_id, run_id)
);

CREATE INDEX history_archive_closed ON history_archive (closed_at);
