-- Audit records in blocks: one row per run of at most 64 records of one append, keyed
-- tid << 44 | the first record's number, `last` the last one's; a block never spans a
-- multiple of 64 (store::audit_block). A row per record cost SQLite about 2 µs of
-- binding, b-tree, WAL and commit whatever it held. Records already stored stay rows in
-- audit_log, and a tenant import writes rows: readers take both.
CREATE TABLE audit_block (
    key INTEGER PRIMARY KEY,
    last INTEGER NOT NULL,
    records BLOB NOT NULL
);
