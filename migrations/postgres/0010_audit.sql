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
    tid BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    recorded BIGINT NOT NULL,
    event TEXT NOT NULL,
    action TEXT NOT NULL,
    status BIGINT NOT NULL,
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
);
-- Which records concern which patient (AuditEvent?patient=, $access-log).
CREATE TABLE audit_patient (
    tid BIGINT NOT NULL,
    patient TEXT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (tid, patient, seq)
);
-- The last number taken and the last record's hash, per tenant.
CREATE TABLE audit_sequence (
    tid BIGINT PRIMARY KEY,
    last BIGINT NOT NULL,
    hash TEXT NOT NULL
);
-- Where pruned records ended: the last pruned record's seq and hash, signed.
CREATE TABLE audit_checkpoint (
    tid BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    recorded BIGINT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (tid, seq)
);
