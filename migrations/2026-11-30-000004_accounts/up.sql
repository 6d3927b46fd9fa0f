-- Accounts: sign-in sessions, the one-time tokens of verification, recovery and restore, and
-- the counters that throttle sign-in and the emails a caller can trigger.

-- A sign-in: its access and refresh tokens (oauth2_*_tokens.session_id) live and die with it.
-- A refresh token presented after it was rotated revokes the whole session.
CREATE TABLE user_sessions (
    id             UUID PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    ip_address     TEXT,
    user_agent     TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    refreshed_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- No refresh extends a session past this.
    expires_at     TIMESTAMPTZ NOT NULL,
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT
);
CREATE INDEX user_sessions_user_idx ON user_sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX user_sessions_expires_idx ON user_sessions (expires_at);

ALTER TABLE oauth2_access_tokens
    ADD COLUMN session_id UUID REFERENCES user_sessions (id) ON DELETE CASCADE;
ALTER TABLE oauth2_refresh_tokens
    ADD COLUMN session_id UUID REFERENCES user_sessions (id) ON DELETE CASCADE;
CREATE INDEX oauth2_access_tokens_session_idx ON oauth2_access_tokens (session_id);
CREATE INDEX oauth2_refresh_tokens_session_idx ON oauth2_refresh_tokens (session_id);

-- The client that first-party session tokens are issued to: no secret, no redirect URIs, no
-- grant types, so no OAuth2 flow can use it.
INSERT INTO oauth2_clients (id, client_id, client_secret_hash, name, redirect_uris, grant_types,
                            scopes, owner_user_id, is_confidential)
VALUES ('00000000-0000-7000-8000-000000000001', 'first-party', NULL, 'First-party sessions',
        '{}', '{}', '{}', NULL, FALSE);

-- Single-use tokens and codes mailed or texted to a user, stored as SHA-256 hashes.
CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL
               CHECK (purpose IN ('verify_email', 'verify_phone', 'reset_password', 'restore_account')),
    -- The email address or phone number a verification is for: a token for an address the
    -- user has since changed verifies nothing.
    target     TEXT,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expires_idx ON account_tokens (expires_at);

-- Fixed-window counters: sign-in attempts per identifier and per client IP (an IPv6 client by
-- its /64), messages asked per identifier and per IP, wrong codes per phone number. Email
-- addresses and phone numbers appear in keys only as SHA-256 hashes.
CREATE TABLE auth_throttle (
    key               TEXT PRIMARY KEY,
    hits              INTEGER NOT NULL,
    window_started_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX auth_throttle_window_idx ON auth_throttle (window_started_at);

-- A sign-in with an identifier no live user has looks for a deleted account that had it.
CREATE INDEX users_deleted_email_idx ON users (lower(email)) WHERE deleted_at IS NOT NULL;
CREATE INDEX users_deleted_phone_idx ON users (phone) WHERE deleted_at IS NOT NULL;
