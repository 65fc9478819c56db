-- The authorization server's state (SMART on FHIR).
--
-- auth_keys: the server's own token signing keys (RS256), server-wide. The newest
-- unretired key signs; a retired key stays in the JWKS until every token it signed has
-- expired.
CREATE TABLE auth_keys (
    kid         TEXT PRIMARY KEY,
    private_der TEXT NOT NULL,          -- PKCS#1 DER, base64
    created_at  BIGINT NOT NULL,        -- seconds since the Unix epoch
    retired_at  BIGINT
);

-- auth_records: a tenant's accounts and one-time things, one row each, its body JSON:
-- kind 'client' (key: client id), 'user' (username), 'role' (name), 'code' (SHA-256 of
-- the code), 'grant' (grant id), 'refresh' (SHA-256 of the token), 'launch' (launch id),
-- 'jti' (client id + assertion jti), 'failure' (username + '/' + a uuid), 'reset'
-- (SHA-256 of the reset token). `used` makes codes, refresh tokens and reset links
-- single-use: taking one is an UPDATE ... WHERE used = 0 that only one request wins.
CREATE TABLE auth_records (
    tid         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    key         TEXT NOT NULL,
    body        TEXT NOT NULL,
    expires_at  BIGINT,                 -- seconds; NULL: never
    used        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tid, kind, key)
);
CREATE INDEX auth_records_expiry ON auth_records (expires_at);

-- auth_revocations: revoked grants and tokens, in the order they were revoked. Every
-- server process reads the rows after the last one it saw every second, so a revocation
-- on one process holds on all of them within seconds.
CREATE TABLE auth_revocations (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,          -- 'grant' or 'token' (the token's jti)
    value       TEXT NOT NULL,
    expires_at  BIGINT NOT NULL         -- after this nothing it revoked is valid anyway
);
