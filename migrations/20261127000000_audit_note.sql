-- The caller's stated reason, where a call has one: an emergency change's justification, an
-- approver's comment. Empty otherwise; an empty note is left out of the record's hash, so
-- records written before this column verify unchanged.
ALTER TABLE audit_records ADD COLUMN note TEXT NOT NULL DEFAULT '';
