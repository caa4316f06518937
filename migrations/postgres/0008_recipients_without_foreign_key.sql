-- A listed snapshot is written in the transaction that creates its job, and deleted with the
-- job by the statement that deletes it (the store's `delete_job_recipients`): the foreign key
-- added nothing but a check per row, most of the time of writing a million recipients.
ALTER TABLE xb_recipients DROP CONSTRAINT xb_recipients_job_id_fkey;
