-- Invariant 12: holds. A job that has not ended ('running') may be held: 'scheduled' until its
-- start time, 'paused' by an administrator. A held job sends nothing, its lease names no owner,
-- and it is not the domain's running job: `running_domain`, which the one-running-job index
-- covers, is NULL for it.
ALTER TABLE xb_jobs ADD COLUMN hold VARCHAR(16) NULL CHECK (hold IN ('scheduled', 'paused'));
ALTER TABLE xb_jobs ADD COLUMN start_at DATETIME(6) NULL;
ALTER TABLE xb_jobs ADD COLUMN paused_at DATETIME(6) NULL;
ALTER TABLE xb_jobs DROP INDEX xb_jobs_one_running_per_domain;
ALTER TABLE xb_jobs DROP COLUMN running_domain;
ALTER TABLE xb_jobs ADD COLUMN running_domain VARCHAR(255) GENERATED ALWAYS AS
    (IF(execution_state = 'running' AND hold IS NULL, domain, NULL)) STORED;
CREATE UNIQUE INDEX xb_jobs_one_running_per_domain ON xb_jobs (running_domain);
CREATE INDEX xb_jobs_scheduled ON xb_jobs (hold, start_at);
