-- The audit trail: one compact row per access (a read, a search, a write, a sign-in, a
-- refusal), rendered as an AuditEvent only when someone searches the trail. Resources
-- would cost ten times the room at tens of thousands of reads a second.
--
-- seq is taken from audit_sequence in the appending transaction (a row lock held to its
-- commit), so each tenant's records are numbered without gaps in commit order; the same
-- transaction seals them in that order: hash = SHA-256(prev, the record), prev the hash
-- of the record before, the last hash kept in audit_sequence for the next. Rows are only
-- ever inserted, and pruned from the oldest end behind a signed checkpoint.
CREATE TABLE audit_log (
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
    hash TEXT,
    PRIMARY KEY (tid, seq)
) WITHOUT ROWID;
-- Which records concern which patient (AuditEvent?patient=, $access-log).
CREATE TABLE audit_patient (
    tid INTEGER NOT NULL,
    patient TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (tid, patient, seq)
) WITHOUT ROWID;
-- The last number taken and the last record's hash, per tenant.
CREATE TABLE audit_sequence (
    tid INTEGER PRIMARY KEY,
    last INTEGER NOT NULL,
    hash TEXT NOT NULL
);
-- Where pruned records ended: the last pruned record's seq and hash, signed.
CREATE TABLE audit_checkpoint (
    tid INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    recorded INTEGER NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (tid, seq)
);
