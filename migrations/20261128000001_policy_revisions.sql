-- The text of every policy revision that decided a call, content-addressed by the revision
-- (a hash of the files) that audit records carry, so an auditor can read the exact rules
-- behind each decision after the policy has changed. `sources` is a JSON object: file name to
-- text.
CREATE TABLE policy_revisions (
    revision TEXT PRIMARY KEY,
    sources TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
