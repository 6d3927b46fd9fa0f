-- Campaigns belong to the user who created them: only that user (directly, through an OAuth2
-- client they authorized with a campaigns scope, or through a client of their own) and platform
-- admins read a campaign in full, list its participants, change it or pause it. Campaigns made
-- before owners existed, and those whose owner was erased, have none: only admins manage them.
ALTER TABLE campaigns ADD COLUMN owner_user_id BIGINT REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX campaigns_owner_idx ON campaigns (owner_user_id, created_at DESC, id DESC);

-- The scopes of the API beyond OpenID Connect's. `campaigns:*` a user may grant a client;
-- the service scopes and `admin` are only given to a client by `platform-admin create-client`.
INSERT INTO oauth2_scopes (name, description, is_default) VALUES
    ('campaigns:read', 'See your waitlist campaigns and their participants', FALSE),
    ('campaigns:write', 'Create and change your waitlist campaigns', FALSE),
    ('activity:write', 'Publish user activity events (services only)', FALSE),
    ('activity:read', 'Read the activity log of any user (services only)', FALSE),
    ('registrations:bulk', 'Register users in bulk (services only)', FALSE),
    ('tokens:introspect', 'Introspect the access tokens of every client (resource servers only)', FALSE),
    ('admin', 'Administer the platform: audit logs, every campaign (platform admins only)', FALSE)
ON CONFLICT (name) DO NOTHING;
