-- Follow-up jobs: a correction or retraction of what a broadcast sent. `amends` is the
-- broadcast (always a job of kind 'broadcast'; not a foreign key, so that the original can be
-- deleted once its follow-ups ended), `reach` how many of its recipients, in sending order, the
-- follow-up sends to. A follow-up pages the original's snapshot, which is therefore kept for as
-- long as the original job exists (xb_recipients rows go with the job).
ALTER TABLE xb_jobs ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'broadcast'
    CHECK (kind IN ('broadcast', 'correction', 'retraction'));
ALTER TABLE xb_jobs ADD COLUMN amends BIGINT NULL;
ALTER TABLE xb_jobs ADD COLUMN reach BIGINT NULL;
CREATE INDEX xb_jobs_amends ON xb_jobs (amends);
