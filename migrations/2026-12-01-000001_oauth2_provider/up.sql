-- The OAuth2 and OpenID Connect provider: grants as sessions, what an ID token needs from its
-- authorization request, and the ID token signing keys.

-- Every grant to a client (an authorization through the consent page) is a session of that
-- client: its codes and tokens are tagged with it, and a replayed code or a reused refresh
-- token revokes it whole. First-party sign-ins are sessions of `first-party`.
ALTER TABLE user_sessions
    ADD COLUMN client_id TEXT NOT NULL DEFAULT 'first-party'
        REFERENCES oauth2_clients (client_id) ON DELETE CASCADE;
CREATE INDEX user_sessions_user_client_idx ON user_sessions (user_id, client_id)
    WHERE revoked_at IS NULL;

ALTER TABLE oauth2_authorization_codes
    ADD COLUMN session_id UUID REFERENCES user_sessions (id) ON DELETE CASCADE,
    -- The OpenID Connect `nonce` of the authorization request, echoed in the ID token.
    ADD COLUMN nonce TEXT,
    -- When the user entered their password (the ID token's `auth_time`).
    ADD COLUMN auth_time TIMESTAMPTZ;

-- RSA keys that sign ID tokens (RS256). The private key is stored encrypted (AES-256-GCM under
-- a key derived from OAUTH2_KEY_SECRET, the key ID as associated data); the public half is published at
-- the JWKS endpoint. The newest key signs once it has been published long enough for relying
-- parties to have fetched it; an older key stays published until the ID tokens it signed
-- expired, and is then deleted.
CREATE TABLE oauth2_signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL CHECK (algorithm = 'RS256'),
    private_key TEXT NOT NULL,
    public_jwk  JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX oauth2_signing_keys_created_idx ON oauth2_signing_keys (created_at DESC);
