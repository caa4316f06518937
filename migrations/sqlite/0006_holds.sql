-- Invariant 12: holds. A job that has not ended ('running') may be held: 'scheduled' until its
-- start time, 'paused' by an administrator. A held job sends nothing, its lease names no owner,
-- and it is not the domain's running job: the one-running-job index skips it. Times are
-- written as the other columns' (strftime('%Y-%m-%dT%H:%M:%fZ')), so that they compare as text.
ALTER TABLE xb_jobs ADD COLUMN hold TEXT CHECK (hold IN ('scheduled', 'paused'));
ALTER TABLE xb_jobs ADD COLUMN start_at TEXT;
ALTER TABLE xb_jobs ADD COLUMN paused_at TEXT;
DROP INDEX xb_jobs_one_running_per_domain;
CREATE UNIQUE INDEX xb_jobs_one_running_per_domain ON xb_jobs (domain)
    WHERE execution_state = 'running' AND hold IS NULL;
CREATE INDEX xb_jobs_scheduled ON xb_jobs (start_at) WHERE hold = 'scheduled';
