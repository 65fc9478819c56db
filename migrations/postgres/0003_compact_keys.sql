-- Compact keys. Every row used to repeat its tenant, resource type and parameter as text
-- (`default`, `Patient`, `address-postalcode`), in the table and again in each of its
-- indexes; that text was most of the search index's bytes, and so most of what each write
-- dirtied and logged. Now:
--   * a tenant is a small integer, `tid`, everywhere below the tenants table;
--   * an index row names its resource type and parameter by one integer `key`, a stable
--     hash of the pair (see `index::key`).
-- The index tables start empty: the server rebuilds them at start (see `store_meta`).

ALTER TABLE tenants ADD COLUMN tid INTEGER;
UPDATE tenants SET tid = n.rn
    FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS rn FROM tenants) n
    WHERE n.id = tenants.id;
CREATE SEQUENCE tenants_tid_seq OWNED BY tenants.tid;
SELECT setval('tenants_tid_seq', (SELECT max(tid) FROM tenants));
ALTER TABLE tenants ALTER COLUMN tid SET DEFAULT nextval('tenants_tid_seq');
ALTER TABLE tenants ALTER COLUMN tid SET NOT NULL;
CREATE UNIQUE INDEX tenants_tid ON tenants (tid);

ALTER TABLE resource_versions ADD COLUMN tid INTEGER;
UPDATE resource_versions v SET tid = t.tid FROM tenants t WHERE t.id = v.tenant;
ALTER TABLE resource_versions ALTER COLUMN tid SET NOT NULL;
ALTER TABLE resource_versions DROP COLUMN tenant;
-- The natural key is the primary key; seq (history's tie-breaker) needs no index of its own.
ALTER TABLE resource_versions DROP CONSTRAINT resource_versions_pkey;
ALTER TABLE resource_versions ADD CONSTRAINT resource_versions_key PRIMARY KEY (tid, type, id, version);
CREATE INDEX resource_versions_system_history ON resource_versions (tid, last_updated, seq);
CREATE INDEX resource_versions_type_history ON resource_versions (tid, type, last_updated, seq);

-- Types and ids compare byte-wise (as in the index tables): cheaper b-tree work than the
-- database's collation, and the same order on every server.
ALTER TABLE resource_versions ALTER COLUMN type TYPE TEXT COLLATE "C";
ALTER TABLE resource_versions ALTER COLUMN id TYPE TEXT COLLATE "C";
ALTER TABLE resources ALTER COLUMN type TYPE TEXT COLLATE "C";
ALTER TABLE resources ALTER COLUMN id TYPE TEXT COLLATE "C";

ALTER TABLE resources ADD COLUMN tid INTEGER;
UPDATE resources r SET tid = t.tid FROM tenants t WHERE t.id = r.tenant;
ALTER TABLE resources ALTER COLUMN tid SET NOT NULL;
ALTER TABLE resources DROP COLUMN tenant;
CREATE UNIQUE INDEX resources_key ON resources (tid, type, id);
CREATE INDEX resources_type_order ON resources (tid, type, deleted, res_id);
CREATE INDEX resources_last_updated ON resources (tid, type, last_updated);

DROP TABLE idx_token, idx_string, idx_date, idx_reference, idx_number, idx_quantity, idx_uri;

-- token: (system, code). `:of-type` keeps `type-code|value` as its code.
CREATE TABLE idx_token (
    res_id  BIGINT NOT NULL,
    tid     INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    system  TEXT COLLATE "C" NOT NULL,
    code    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_token_lookup ON idx_token (tid, key, code, system, res_id) WITH (deduplicate_items = off);
CREATE INDEX idx_token_res ON idx_token (res_id, key);

-- string: value_norm is lowercased with accents removed (default and :contains search);
-- value_exact is the value as written (:exact). part is the HumanName or Address part the
-- value is (index::PARTS), 0 for other strings: `family` and `address-city` are answered
-- from the rows of `name` and `address` (registry::Derived).
CREATE TABLE idx_string (
    res_id      BIGINT NOT NULL,
    tid         INTEGER NOT NULL,
    key         INTEGER NOT NULL,
    part        SMALLINT NOT NULL,
    value_norm  TEXT COLLATE "C" NOT NULL,
    value_exact TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_string_lookup ON idx_string (tid, key, value_norm, part, res_id) WITH (deduplicate_items = off);
CREATE INDEX idx_string_res ON idx_string (res_id, key);

-- date, dateTime, instant, Period, Timing: the value as a range of microseconds.
-- short is 1 when the range is at most a day long: then high >= d implies low >= d - 1 day,
-- so a lower bound on high becomes a range on low, and a date window one index range.
CREATE TABLE idx_date (
    res_id  BIGINT NOT NULL,
    tid     INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    low     BIGINT NOT NULL,
    high    BIGINT NOT NULL,
    short   SMALLINT NOT NULL
);
CREATE INDEX idx_date_lookup ON idx_date (tid, key, short, low, high, res_id) WITH (deduplicate_items = off);
CREATE INDEX idx_date_res ON idx_date (res_id, key);

-- reference: the target as type and id when it names a resource here (url is then empty),
-- else the reference as written in url (absolute, canonical, urn).
CREATE TABLE idx_reference (
    res_id       BIGINT NOT NULL,
    tid          INTEGER NOT NULL,
    key          INTEGER NOT NULL,
    target_type  TEXT COLLATE "C" NOT NULL,
    target_id    TEXT COLLATE "C" NOT NULL,
    url          TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_reference_lookup ON idx_reference (tid, key, target_id, target_type, url, res_id) WITH (deduplicate_items = off);
CREATE INDEX idx_reference_res ON idx_reference (res_id, key);

CREATE TABLE idx_number (
    res_id  BIGINT NOT NULL,
    tid     INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    value   DOUBLE PRECISION NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (tid, key, value, res_id) WITH (deduplicate_items = off);
CREATE INDEX idx_number_res ON idx_number (res_id, key);

CREATE TABLE idx_quantity (
    res_id  BIGINT NOT NULL,
    tid     INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    value   DOUBLE PRECISION NOT NULL,
    system  TEXT COLLATE "C" NOT NULL,
    code    TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_quantity_lookup ON idx_quantity (tid, key, value, res_id) WITH (deduplicate_items = off);
CREATE INDEX idx_quantity_res ON idx_quantity (res_id, key);

CREATE TABLE idx_uri (
    res_id  BIGINT NOT NULL,
    tid     INTEGER NOT NULL,
    key     INTEGER NOT NULL,
    value   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_uri_lookup ON idx_uri (tid, key, value, res_id) WITH (deduplicate_items = off);
CREATE INDEX idx_uri_res ON idx_uri (res_id, key);

-- A reference and a date of one resource together, for the pairs of
-- registry::REFERENCE_DATE_PAIRS (key names the pair): "this schedule's slots in this
-- week" is one range of the lookup index.
CREATE TABLE idx_ref_date (
    res_id       BIGINT NOT NULL,
    tid          INTEGER NOT NULL,
    key          INTEGER NOT NULL,
    target_type  TEXT COLLATE "C" NOT NULL,
    target_id    TEXT COLLATE "C" NOT NULL,
    low          BIGINT NOT NULL,
    high         BIGINT NOT NULL,
    short        SMALLINT NOT NULL
);
CREATE INDEX idx_ref_date_lookup
    ON idx_ref_date (tid, key, target_id, target_type, short, low, high, res_id) WITH (deduplicate_items = off);
CREATE INDEX idx_ref_date_res ON idx_ref_date (res_id, key);

-- The lookup indexes end with res_id, so no two entries are equal: b-tree deduplication
-- (deduplicate_items) would only cost time at each page split, and is off for them.

-- Facts about the stored data itself. `index_fingerprint` names the registry and extraction
-- rules the search index was built with; when it differs from the running server's, the
-- server rebuilds the index before it serves.
CREATE TABLE store_meta (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
