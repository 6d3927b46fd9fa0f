-- Data migrations that need the application's own rules (the canonical form of an email
-- address, say), applied once each by `platform-admin migrate` right after the SQL migrations,
-- under the same lock; a row here says one is done.
CREATE TABLE data_migrations (
    name       TEXT PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The rule "one mailbox, one place in a campaign" looks participants up by their mailbox.
CREATE INDEX participants_mailbox ON participants (campaign_id, email_canonical);
