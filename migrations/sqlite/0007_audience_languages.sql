-- Audiences and languages (invariant 13). `recipient_group` says who a job is for:
-- 'all_users_in_domain' (MongooseIM's only group), 'listed' (accounts named in the request) or
-- 'group' (a named group of the config, `audience_group`). A listed or group job's recipients
-- are listed in xb_recipients whatever the users schema; `unknown_recipients` counts the names
-- of a list that were not accounts of the domain when the list was checked, and
-- `unknown_sample` keeps the first of them (a JSON array of bare JIDs).
-- `language` is the BCP 47 tag of `subject`/`body` (the stanza's xml:lang), NULL when none was
-- given; `translations` a JSON array of {"language", "subject", "body"} sent in the same
-- stanza after the default text, NULL for none.
ALTER TABLE xb_jobs ADD COLUMN audience_group TEXT;
ALTER TABLE xb_jobs ADD COLUMN unknown_recipients INTEGER;
ALTER TABLE xb_jobs ADD COLUMN unknown_sample TEXT;
ALTER TABLE xb_jobs ADD COLUMN language TEXT;
ALTER TABLE xb_jobs ADD COLUMN translations TEXT;
