-- The audit trail keyed by its rowid, `key` = tid << 44 | seq, with no other index: the
-- unique index on (tid, seq) was a second b-tree that every appended record went into,
-- a fifth of the writer's time per record (store::audit::Numbering). Lookups by tenant
-- and number read a range of the rowid instead. 44 bits of number: 17 trillion records
-- per tenant; 19 bits of tenant: 524,287 tenants (the writer refuses beyond either).
--
-- Whoever writes a row sets its key (the writer, a tenant import). Triggers that set it
-- for rows written without one cost the writer all that the index had cost, even when
-- they did not fire. A row whose key does not match its number is out of its place in
-- the chain, and `audit verify` reports it so.
CREATE TABLE audit_log_v15 (
    key INTEGER PRIMARY KEY,
    tid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    recorded INTEGER NOT NULL,
    event TEXT NOT NULL,
    action TEXT NOT NULL,
    status INTEGER NOT NULL,
    user_id TEXT,
    fhir_user TEXT,
    client_id TEXT,
    token TEXT,
    address TEXT,
    user_agent TEXT,
    entity TEXT,
    query TEXT,
    via TEXT,
    patients TEXT,
    request_id TEXT,
    purpose TEXT,
    reason TEXT,
    prev TEXT,
    hash TEXT
);
INSERT INTO audit_log_v15 SELECT (tid << 44) | seq, * FROM audit_log ORDER BY tid, seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_v15 RENAME TO audit_log;
