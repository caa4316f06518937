-- Invariant 4 for user directories with creation times: the instant, in the users database's
-- own clock and rendering, up to which its accounts are recipients. NULL when the recipients
-- are listed in xb_recipients.
ALTER TABLE xb_jobs ADD COLUMN snapshot_at TEXT;
