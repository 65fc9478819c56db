-- Compact keys. Every row used to repeat its tenant, resource type and parameter as text
-- (`default`, `Patient`, `address-postalcode`), in the table and again in each of its
-- indexes; that text was most of the search index's bytes, and so most of what each write
-- dirtied and logged. Now:
--   * a tenant is a small integer, `tid`, everywhere below the tenants table;
--   * an index row names its resource type and parameter by one integer `key`, a stable
--     hash of the pair (see `index::key`);
--   * the index tables are clustered by res_id (WITHOUT ROWID), so a resource's rows sit
--     together (one append per new resource) and the lookup index is the only other b-tree.
-- The index tables start empty: the server rebuilds them at start (see `store_meta`).

CREATE TABLE tenants_v3 (
    tid         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    name        TEXT,
    created_at  INTEGER NOT NULL
);
INSERT INTO tenants_v3 (id, name, created_at)
    SELECT id, name, created_at FROM tenants ORDER BY created_at, id;
DROP TABLE tenants;
ALTER TABLE tenants_v3 RENAME TO tenants;

CREATE TABLE resource_versions_v3 (
    seq           INTEGER PRIMARY KEY,
    tid           INTEGER NOT NULL,
    type          TEXT NOT NULL,
    id            TEXT NOT NULL,
    version       INTEGER NOT NULL,
    last_updated  INTEGER NOT NULL,   -- microseconds since the Unix epoch
    method        TEXT NOT NULL,      -- POST, PUT, PATCH or DELETE: what made this version
    deleted       INTEGER NOT NULL DEFAULT 0,
    body          BLOB
);
INSERT INTO resource_versions_v3
    SELECT v.seq, t.tid, v.type, v.id, v.version, v.last_updated, v.method, v.deleted, v.body
    FROM resource_versions v JOIN tenants t ON t.id = v.tenant;
DROP TABLE resource_versions;
ALTER TABLE resource_versions_v3 RENAME TO resource_versions;
CREATE UNIQUE INDEX resource_versions_key ON resource_versions (tid, type, id, version);
CREATE INDEX resource_versions_system_history ON resource_versions (tid, last_updated, seq);
CREATE INDEX resource_versions_type_history ON resource_versions (tid, type, last_updated, seq);

CREATE TABLE resources_v3 (
    res_id        INTEGER PRIMARY KEY,
    tid           INTEGER NOT NULL,
    type          TEXT NOT NULL,
    id            TEXT NOT NULL,
    version       INTEGER NOT NULL,
    last_updated  INTEGER NOT NULL,
    deleted       INTEGER NOT NULL DEFAULT 0
);
INSERT INTO resources_v3
    SELECT r.res_id, t.tid, r.type, r.id, r.version, r.last_updated, r.deleted
    FROM resources r JOIN tenants t ON t.id = r.tenant;
DROP TABLE resources;
ALTER TABLE resources_v3 RENAME TO resources;
CREATE UNIQUE INDEX resources_key ON resources (tid, type, id);
CREATE INDEX resources_type_order ON resources (tid, type, deleted, res_id);
CREATE INDEX resources_last_updated ON resources (tid, type, last_updated);

DROP TABLE idx_token;
DROP TABLE idx_string;
DROP TABLE idx_date;
DROP TABLE idx_reference;
DROP TABLE idx_number;
DROP TABLE idx_quantity;
DROP TABLE idx_uri;

-- token: (system, code). `:of-type` keeps `type-code|value` as its code.
CREATE TABLE idx_token (
    res_id  INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    system  TEXT NOT NULL,
    code    TEXT NOT NULL,
    tid     INTEGER NOT NULL,
    PRIMARY KEY (res_id, key, code, system)
) WITHOUT ROWID;
CREATE INDEX idx_token_lookup ON idx_token (tid, key, code, system, res_id);

-- string: value_norm is lowercased with accents removed (default and :contains search);
-- value_exact is the value as written (:exact). part is the HumanName or Address part the
-- value is (index::PARTS), 0 for other strings: `family` and `address-city` are answered
-- from the rows of `name` and `address` (registry::Derived).
CREATE TABLE idx_string (
    res_id      INTEGER NOT NULL,
    key         INTEGER NOT NULL,
    part        INTEGER NOT NULL,
    value_norm  TEXT NOT NULL,
    value_exact TEXT NOT NULL,
    tid         INTEGER NOT NULL,
    PRIMARY KEY (res_id, key, part, value_norm, value_exact)
) WITHOUT ROWID;
CREATE INDEX idx_string_lookup ON idx_string (tid, key, value_norm, part, res_id);

-- date, dateTime, instant, Period, Timing: the value as a range of microseconds.
-- short is 1 when the range is at most a day long: then high >= d implies low >= d - 1 day,
-- so a lower bound on high becomes a range on low, and a date window one index range.
CREATE TABLE idx_date (
    res_id  INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    low     INTEGER NOT NULL,
    high    INTEGER NOT NULL,
    short   INTEGER NOT NULL,
    tid     INTEGER NOT NULL,
    PRIMARY KEY (res_id, key, low, high)
) WITHOUT ROWID;
CREATE INDEX idx_date_lookup ON idx_date (tid, key, short, low, high, res_id);

-- reference: the target as type and id when it names a resource here (url is then empty),
-- else the reference as written in url (absolute, canonical, urn).
CREATE TABLE idx_reference (
    res_id       INTEGER NOT NULL,
    key          INTEGER NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    url          TEXT NOT NULL,
    tid          INTEGER NOT NULL,
    PRIMARY KEY (res_id, key, target_type, target_id, url)
) WITHOUT ROWID;
CREATE INDEX idx_reference_lookup ON idx_reference (tid, key, target_id, target_type, url, res_id);

CREATE TABLE idx_number (
    res_id  INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    value   REAL NOT NULL,
    tid     INTEGER NOT NULL,
    PRIMARY KEY (res_id, key, value)
) WITHOUT ROWID;
CREATE INDEX idx_number_lookup ON idx_number (tid, key, value, res_id);

CREATE TABLE idx_quantity (
    res_id  INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    value   REAL NOT NULL,
    system  TEXT NOT NULL,
    code    TEXT NOT NULL,
    tid     INTEGER NOT NULL,
    PRIMARY KEY (res_id, key, value, system, code)
) WITHOUT ROWID;
CREATE INDEX idx_quantity_lookup ON idx_quantity (tid, key, value, res_id);

CREATE TABLE idx_uri (
    res_id  INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    value   TEXT NOT NULL,
    tid     INTEGER NOT NULL,
    PRIMARY KEY (res_id, key, value)
) WITHOUT ROWID;
CREATE INDEX idx_uri_lookup ON idx_uri (tid, key, value, res_id);

-- A reference and a date of one resource together, for the pairs of
-- registry::REFERENCE_DATE_PAIRS (key names the pair): "this schedule's slots in this
-- week" is one range of the lookup index.
CREATE TABLE idx_ref_date (
    res_id       INTEGER NOT NULL,
    key          INTEGER NOT NULL,
    target_type  TEXT NOT NULL,
    target_id    TEXT NOT NULL,
    low          INTEGER NOT NULL,
    high         INTEGER NOT NULL,
    short        INTEGER NOT NULL,
    tid          INTEGER NOT NULL,
    PRIMARY KEY (res_id, key, target_type, target_id, low, high)
) WITHOUT ROWID;
CREATE INDEX idx_ref_date_lookup
    ON idx_ref_date (tid, key, target_id, target_type, short, low, high, res_id);

-- Facts about the stored data itself. `index_fingerprint` names the registry and extraction
-- rules the search index was built with; when it differs from the running server's, the
-- server rebuilds the index before it serves.
CREATE TABLE store_meta (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
