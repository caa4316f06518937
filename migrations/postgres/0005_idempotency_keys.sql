-- Invariant 11: one job per idempotency key and domain, enforced by the database. A request
-- may carry a key of the client's choice; the job it created stores the key and the SHA-256
-- of the request's arguments, so that a retry (on any instance, even racing the first) is
-- answered with that job and the key with other arguments is refused. Keys live as long as
-- their job: deleting the job frees its key. NULL for jobs started without a key (NULLs never
-- collide in a unique index).
ALTER TABLE xb_jobs ADD COLUMN idempotency_key TEXT;
ALTER TABLE xb_jobs ADD COLUMN request_fingerprint TEXT;
CREATE UNIQUE INDEX xb_jobs_idempotency_key ON xb_jobs (domain, idempotency_key);
