-- Invariant 4a: a job of a large domain answers before its recipients are counted. Its set is
-- fixed at the request (the instant `snapshot_at`, or an open read of the users database that
-- its worker lists into xb_recipients); until the worker has stored their number,
-- `recipients_counted` is false and `recipient_count` is 0. Every earlier job was counted.
ALTER TABLE xb_jobs ADD COLUMN recipients_counted INTEGER NOT NULL DEFAULT 1;
