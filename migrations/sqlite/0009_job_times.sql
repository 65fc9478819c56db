-- Jobs that wait for their time (a reminder 24 hours before a visit, a retry after a
-- channel failed): run_at is the earliest a worker may claim the job; a job for at once
-- is queued with run_at its creation time. Workers take the earliest due job through
-- jobs_due, so a queue of a hundred thousand reminders costs a claim no more than a short
-- one.
ALTER TABLE jobs ADD COLUMN run_at BIGINT;
UPDATE jobs SET run_at = created_at WHERE run_at IS NULL;
CREATE INDEX jobs_due ON jobs (kind, status, run_at);
