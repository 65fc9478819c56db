-- Tenants: every other row carries one; `default` serves {root}/fhir.
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT,
    created_at  INTEGER NOT NULL
);
INSERT INTO tenants (id, name, created_at) VALUES ('default', 'Default tenant', 0);

-- Every version of every resource, as served (JSON with id and meta set).
-- A delete is a version with deleted = 1 and no body. seq orders history.
CREATE TABLE resource_versions (
    seq           INTEGER PRIMARY KEY,
    tenant        TEXT NOT NULL,
    type          TEXT NOT NULL,
    id            TEXT NOT NULL,
    version       INTEGER NOT NULL,
    last_updated  INTEGER NOT NULL,   -- microseconds since the Unix epoch
    method        TEXT NOT NULL,      -- POST, PUT, PATCH or DELETE: what made this version
    deleted       INTEGER NOT NULL DEFAULT 0,
    body          BLOB
);
CREATE UNIQUE INDEX resource_versions_key ON resource_versions (tenant, type, id, version);
CREATE INDEX resource_versions_system_history ON resource_versions (tenant, last_updated, seq);
CREATE INDEX resource_versions_type_history ON resource_versions (tenant, type, last_updated, seq);

-- The head of each resource: its current version. res_id is the join key of the index tables.
CREATE TABLE resources (
    res_id        INTEGER PRIMARY KEY,
    tenant        TEXT NOT NULL,
    type          TEXT NOT NULL,
    id            TEXT NOT NULL,
    version       INTEGER NOT NULL,
    last_updated  INTEGER NOT NULL,
    deleted       INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX resources_key ON resources (tenant, type, id);

-- Search index: token values (system, code) of current, non-deleted versions.
CREATE TABLE idx_token (
    res_id  INTEGER NOT NULL,
    tenant  TEXT NOT NULL,
    type    TEXT NOT NULL,
    param   TEXT NOT NULL,
    system  TEXT NOT NULL DEFAULT '',
    code    TEXT NOT NULL
);
CREATE INDEX idx_token_lookup ON idx_token (tenant, type, param, code, system);
CREATE INDEX idx_token_res ON idx_token (res_id);
