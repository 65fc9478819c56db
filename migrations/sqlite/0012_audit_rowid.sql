-- The audit trail's rows in a rowid table, found by a small unique index on (tid, seq).
-- As a WITHOUT ROWID table keyed (tid, seq), each row of some 300 bytes was the b-tree's
-- key, copied whole into its interior pages on every split (SQLite advises against
-- WITHOUT ROWID for rows over about a twentieth of a page): appends cost more page work
-- than the rows themselves. A rowid table appends at its right edge with 8-byte
-- interior keys, and the index adds a row of a few bytes.
CREATE TABLE audit_log_v12 (
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
INSERT INTO audit_log_v12 SELECT * FROM audit_log ORDER BY tid, seq;
DROP TABLE audit_log;
ALTER TABLE audit_log_v12 RENAME TO audit_log;
CREATE UNIQUE INDEX audit_log_key ON audit_log (tid, seq);
