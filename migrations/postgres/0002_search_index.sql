-- Search index tables, one per parameter type. Rows exist for current, non-deleted versions;
-- each carries tenant, resource type and parameter code, and every lookup index leads with
-- them. `param` is the SearchParameter code, or a derived key such as `code:text`,
-- `subject:identifier` or `identifier:of-type` for the modifiers that need their own values.

-- string: value_norm is lowercased with accents removed (default and :contains search);
-- value_exact is the value as written (:exact).
CREATE TABLE idx_string (
    res_id      BIGINT NOT NULL,
    tenant      TEXT NOT NULL,
    type        TEXT NOT NULL,
    param       TEXT COLLATE "C" NOT NULL,
    value_norm  TEXT COLLATE "C" NOT NULL,
    value_exact TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_string_lookup ON idx_string (tenant, type, param, value_norm, res_id);
CREATE INDEX idx_string_res ON idx_string (res_id, param);

-- date, dateTime, instant, Period, Timing: the value as a range of microseconds.
CREATE TABLE idx_date (
    res_id  BIGINT NOT NULL,
    tenant  TEXT NOT NULL,
    type    TEXT NOT NULL,
    param   TEXT COLLATE "C" NOT NULL,
    low     BIGINT NOT NULL,
    high    BIGINT NOT NULL,
    -- 1 when the range is at most a day long: then high >= d implies low >= d - 1 day, so a
    -- lower bound on high becomes a range on low, and a date window one index range.
    short   SMALLINT NOT NULL
);
CREATE INDEX idx_date_lookup ON idx_date (tenant, type, param, short, low, high, res_id);
CREATE INDEX idx_date_res ON idx_date (res_id, param);

-- reference: the target as type and id when it names one, and the reference as written.
CREATE TABLE idx_reference (
    res_id       BIGINT NOT NULL,
    tenant       TEXT NOT NULL,
    type         TEXT NOT NULL,
    param        TEXT COLLATE "C" NOT NULL,
    target_type  TEXT COLLATE "C" NOT NULL DEFAULT '',
    target_id    TEXT COLLATE "C" NOT NULL DEFAULT '',
    url          TEXT COLLATE "C" NOT NULL DEFAULT ''
);
CREATE INDEX idx_reference_lookup ON idx_reference (tenant, type, param, target_id, target_type, res_id);
CREATE INDEX idx_reference_res ON idx_reference (res_id, param);

CREATE TABLE idx_number (
    res_id  BIGINT NOT NULL,
    tenant  TEXT NOT NULL,
    type    TEXT NOT NULL,
    param   TEXT COLLATE "C" NOT NULL,
    value   DOUBLE PRECISION NOT NULL
);
CREATE INDEX idx_number_lookup ON idx_number (tenant, type, param, value, res_id);
CREATE INDEX idx_number_res ON idx_number (res_id, param);

CREATE TABLE idx_quantity (
    res_id  BIGINT NOT NULL,
    tenant  TEXT NOT NULL,
    type    TEXT NOT NULL,
    param   TEXT COLLATE "C" NOT NULL,
    system  TEXT COLLATE "C" NOT NULL DEFAULT '',
    code    TEXT COLLATE "C" NOT NULL DEFAULT '',
    value   DOUBLE PRECISION NOT NULL
);
CREATE INDEX idx_quantity_lookup ON idx_quantity (tenant, type, param, value, res_id);
CREATE INDEX idx_quantity_res ON idx_quantity (res_id, param);

CREATE TABLE idx_uri (
    res_id  BIGINT NOT NULL,
    tenant  TEXT NOT NULL,
    type    TEXT NOT NULL,
    param   TEXT COLLATE "C" NOT NULL,
    value   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX idx_uri_lookup ON idx_uri (tenant, type, param, value, res_id);
CREATE INDEX idx_uri_res ON idx_uri (res_id, param);

-- Type searches without criteria, and _lastUpdated, walk the head table.
CREATE INDEX resources_type_order ON resources (tenant, type, deleted, res_id);
CREATE INDEX resources_last_updated ON resources (tenant, type, last_updated);

-- The token table of migration 1 compares byte-wise too.
ALTER TABLE idx_token ALTER COLUMN system TYPE TEXT COLLATE "C";
ALTER TABLE idx_token ALTER COLUMN code TYPE TEXT COLLATE "C";

-- Non-driving clauses probe a resource's rows by (res_id, param); lookups are covering
-- (they end with res_id), so an intersection of two clauses reads indexes only.
DROP INDEX idx_token_res;
CREATE INDEX idx_token_res ON idx_token (res_id, param);
DROP INDEX idx_token_lookup;
CREATE INDEX idx_token_lookup ON idx_token (tenant, type, param, code, system, res_id);
