-- Broadcast jobs, their leases and their recipient snapshots. Times are DATETIME(6) in UTC:
-- every connection of the component sets time_zone = '+00:00', so NOW(6) is UTC.
-- Texts are utf8mb4; MEDIUMTEXT holds the longest name, subject and body the API accepts
-- (16,000 user-perceived characters of a body can take far more than TEXT's 65,535 bytes).

CREATE TABLE xb_jobs (
    id                   BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name                 MEDIUMTEXT   NOT NULL,
    domain               VARCHAR(255) NOT NULL,
    sender_jid           TEXT         NOT NULL,
    subject              MEDIUMTEXT   NOT NULL,
    body                 MEDIUMTEXT   NOT NULL,
    message_rate         INT          NOT NULL,
    recipient_group      VARCHAR(64)  NOT NULL DEFAULT 'all_users_in_domain',
    recipient_count      BIGINT       NOT NULL,
    execution_state      VARCHAR(16)  NOT NULL DEFAULT 'running'
        CHECK (execution_state IN ('running', 'finished', 'abort_error', 'abort_admin')),
    abortion_reason      TEXT         NULL,
    created_at           DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    started_at           DATETIME(6)  NULL,
    stopped_at           DATETIME(6)  NULL,
    cursor_username      TEXT         NULL,
    recipients_processed BIGINT       NOT NULL DEFAULT 0,
    -- Invariant 2: at most one running job per domain, enforced by the database. MySQL and
    -- MariaDB have no partial index: this column is the domain while the job runs and NULL
    -- otherwise, and a UNIQUE index admits any number of NULLs.
    running_domain       VARCHAR(255) GENERATED ALWAYS AS
        (IF(execution_state = 'running', domain, NULL)) STORED,
    UNIQUE KEY xb_jobs_one_running_per_domain (running_domain),
    KEY xb_jobs_domain_id (domain, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Invariant 1: a running job is owned through its lease; every worker write checks (owner, epoch).
CREATE TABLE xb_leases (
    job_id     BIGINT       NOT NULL PRIMARY KEY,
    owner      VARCHAR(255) NOT NULL,
    epoch      BIGINT       NOT NULL,
    expires_at DATETIME(6)  NOT NULL,
    KEY xb_leases_owner (owner),
    KEY xb_leases_expires_at (expires_at),
    CONSTRAINT xb_leases_job FOREIGN KEY (job_id) REFERENCES xb_jobs (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Invariant 4: the recipient set fixed at creation, for user directories without creation times.
-- utf8mb4_bin: recipients are paged in code point order (= UTF-8 byte order), as on the other
-- databases. 700 characters keep the primary key within InnoDB's 3072-byte limit.
CREATE TABLE xb_recipients (
    job_id   BIGINT       NOT NULL,
    username VARCHAR(700) NOT NULL,
    PRIMARY KEY (job_id, username),
    CONSTRAINT xb_recipients_job FOREIGN KEY (job_id) REFERENCES xb_jobs (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
