-- Broadcast jobs, their leases and their recipient snapshots.
-- Times are ISO-8601 UTC text written by the database clock, so they compare as text.

CREATE TABLE xb_jobs (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    name                 TEXT    NOT NULL,
    domain               TEXT    NOT NULL,
    sender_jid           TEXT    NOT NULL,
    subject              TEXT    NOT NULL,
    body                 TEXT    NOT NULL,
    message_rate         INTEGER NOT NULL,
    recipient_group      TEXT    NOT NULL DEFAULT 'all_users_in_domain',
    recipient_count      INTEGER NOT NULL,
    execution_state      TEXT    NOT NULL DEFAULT 'running'
        CHECK (execution_state IN ('running', 'finished', 'abort_error', 'abort_admin')),
    abortion_reason      TEXT,
    created_at           TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    started_at           TEXT,
    stopped_at           TEXT,
    cursor_username      TEXT,
    recipients_processed INTEGER NOT NULL DEFAULT 0
);

-- Invariant 2: at most one running job per domain, enforced by the database.
CREATE UNIQUE INDEX xb_jobs_one_running_per_domain ON xb_jobs (domain) WHERE execution_state = 'running';
CREATE INDEX xb_jobs_domain_id ON xb_jobs (domain, id);

-- Invariant 1: a running job is owned through its lease; every worker write checks (owner, epoch).
CREATE TABLE xb_leases (
    job_id     INTEGER PRIMARY KEY REFERENCES xb_jobs (id) ON DELETE CASCADE,
    owner      TEXT    NOT NULL,
    epoch      INTEGER NOT NULL,
    expires_at TEXT    NOT NULL
);
CREATE INDEX xb_leases_owner ON xb_leases (owner);
CREATE INDEX xb_leases_expires_at ON xb_leases (expires_at);

-- Invariant 4: the recipient set fixed at creation, for user directories without creation times.
CREATE TABLE xb_recipients (
    job_id   INTEGER NOT NULL REFERENCES xb_jobs (id) ON DELETE CASCADE,
    username TEXT    NOT NULL,
    PRIMARY KEY (job_id, username)
);
