-- Counters a tenant draws from, one row per name: X12 interchange control numbers (ISA13
-- must not repeat for a sender), taken with one atomic upsert.
CREATE TABLE counters (
    tid   INTEGER NOT NULL,
    name  TEXT NOT NULL,
    value BIGINT NOT NULL,
    PRIMARY KEY (tid, name)
);
