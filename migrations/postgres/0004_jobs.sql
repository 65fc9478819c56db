-- Background jobs (bulk export): a row per job, its state as JSON. Several server processes
-- may share a database: a worker claims a job by moving it to 'running' under its own
-- `owner` token and keeps `updated_at` fresh while it works; a running job whose
-- `updated_at` is stale (its worker died) is claimed again, by a new owner, and started
-- over. A worker that finds another owner on its job stops.
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY,
    tid         INTEGER NOT NULL,
    kind        TEXT NOT NULL,      -- export
    status      TEXT NOT NULL,      -- queued, running, done, failed, cancelled
    owner       TEXT,               -- the claim of the worker running it
    created_at  BIGINT NOT NULL,    -- microseconds since the Unix epoch
    updated_at  BIGINT NOT NULL,
    expires_at  BIGINT,             -- when a finished job and its files are removed
    state       TEXT NOT NULL       -- the job's parameters, progress and output (JSON)
);
CREATE INDEX jobs_status ON jobs (status, updated_at);
