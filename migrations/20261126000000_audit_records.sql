-- Append-only, hash-chained audit records. The same SQL runs on SQLite and PostgreSQL.
-- Each record's `hash` covers its fields and `prev_hash`, the previous record's hash, so an
-- edited, deleted or reordered record breaks the chain (`changeflow audit verify`).
-- Times are RFC 3339 UTC with milliseconds (fixed width, so text order is time order); absent
-- values are empty strings, which keeps the schema identical on both databases.
CREATE TABLE audit_records (
    seq BIGINT PRIMARY KEY,
    recorded_at TEXT NOT NULL,
    subject TEXT NOT NULL,
    client TEXT NOT NULL,
    server TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments_hash TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    policy_revision TEXT NOT NULL,
    workflow_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_records_subject ON audit_records (subject);
CREATE INDEX audit_records_tool ON audit_records (tool);
CREATE INDEX audit_records_workflow ON audit_records (workflow_id);
CREATE INDEX audit_records_time ON audit_records (recorded_at);
