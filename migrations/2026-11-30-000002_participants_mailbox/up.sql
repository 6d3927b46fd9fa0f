-- The rule "one inbox, one place in a campaign" looks participants up by their mailbox (the
-- address without +tags, and without dots where the provider ignores them). Not unique: rows
-- from before the rule may share one; signups are serialized per campaign by its row lock.
CREATE INDEX participants_mailbox ON participants (campaign_id, email_canonical);
