-- Jobs that wait for their time (a reminder 24 hours before a visit, a retry after a
-- channel failed): run_at is the earliest a worker may claim the job (NULL: at once).
ALTER TABLE jobs ADD COLUMN run_at BIGINT;
CREATE INDEX jobs_due ON jobs (kind, status, run_at);
