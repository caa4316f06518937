-- Invariant 7a: the users database a job's recipients were fixed against (what the directory
-- reports as its identity, or users.database_id). Only an instance reading the same database
-- runs, resumes or takes over the job. NULL for jobs created before it was recorded.
ALTER TABLE xb_jobs ADD COLUMN users_database VARCHAR(1024) NULL;
