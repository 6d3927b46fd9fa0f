-- Users, credentials and OAuth: the tables behind the UserRepository contract (seed 000).
-- Tokens, codes and client secrets are stored as SHA-256 hashes (hex), never in clear.

CREATE TABLE users (
    id                BIGINT PRIMARY KEY,              -- Snowflake ID
    email             TEXT,
    phone             TEXT,                            -- E.164
    is_email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    is_phone_verified BOOLEAN NOT NULL DEFAULT FALSE,
    consent           BOOLEAN NOT NULL DEFAULT FALSE,
    status            TEXT NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'pending', 'suspended', 'deleted')),
    -- When `status` last changed: BatchDeleteByStatus's grace period counts from here.
    status_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at        TIMESTAMPTZ,
    CONSTRAINT users_email_or_phone CHECK (email IS NOT NULL OR phone IS NOT NULL),
    CONSTRAINT users_deleted_status CHECK ((deleted_at IS NULL) = (status <> 'deleted'))
);
SELECT diesel_manage_updated_at('users');
-- Unique among live users only: a soft-deleted user's email can be registered again.
CREATE UNIQUE INDEX users_live_email_key ON users (lower(email)) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX users_live_phone_key ON users (phone) WHERE deleted_at IS NULL;
CREATE INDEX users_status_changed_at_idx ON users (status, status_changed_at);
CREATE INDEX users_deleted_at_idx ON users (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE user_credentials (
    user_id        BIGINT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    password_hash  TEXT NOT NULL,
    is_verified    BOOLEAN NOT NULL DEFAULT FALSE,
    invalidated_at TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
SELECT diesel_manage_updated_at('user_credentials');

CREATE TABLE credential_history (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_hash TEXT NOT NULL,
    replaced_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX credential_history_user_idx ON credential_history (user_id, replaced_at DESC, id DESC);

CREATE TABLE oauth_accounts (
    id                 UUID PRIMARY KEY,
    user_id            BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider           TEXT NOT NULL,
    provider_uid       TEXT NOT NULL,
    email              TEXT,
    access_token_hash  TEXT,
    refresh_token_hash TEXT,
    token_expires_at   TIMESTAMPTZ,
    metadata           JSONB NOT NULL DEFAULT '{}',
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT oauth_accounts_provider_uid_key UNIQUE (provider, provider_uid),
    CONSTRAINT oauth_accounts_user_provider_key UNIQUE (user_id, provider)
);
SELECT diesel_manage_updated_at('oauth_accounts');
CREATE INDEX oauth_accounts_created_at_idx ON oauth_accounts (created_at DESC);

CREATE TABLE oauth2_clients (
    id                 UUID PRIMARY KEY,
    client_id          TEXT NOT NULL UNIQUE,
    client_secret_hash TEXT,
    name               TEXT NOT NULL,
    redirect_uris      TEXT[] NOT NULL,
    grant_types        TEXT[] NOT NULL,
    scopes             TEXT[] NOT NULL,
    owner_user_id      BIGINT REFERENCES users (id) ON DELETE SET NULL,
    is_confidential    BOOLEAN NOT NULL,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT oauth2_clients_secret CHECK (NOT is_confidential OR client_secret_hash IS NOT NULL)
);
SELECT diesel_manage_updated_at('oauth2_clients');
CREATE INDEX oauth2_clients_owner_idx ON oauth2_clients (owner_user_id);

CREATE TABLE oauth2_authorization_codes (
    code_hash             TEXT PRIMARY KEY,
    client_id             TEXT NOT NULL REFERENCES oauth2_clients (client_id) ON DELETE CASCADE,
    user_id               BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    redirect_uri          TEXT NOT NULL,
    scopes                TEXT[] NOT NULL,
    code_challenge        TEXT,
    code_challenge_method TEXT,
    expires_at            TIMESTAMPTZ NOT NULL,
    used_at               TIMESTAMPTZ,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX oauth2_authorization_codes_expires_idx ON oauth2_authorization_codes (expires_at);

CREATE TABLE oauth2_access_tokens (
    token_hash TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL REFERENCES oauth2_clients (client_id) ON DELETE CASCADE,
    user_id    BIGINT REFERENCES users (id) ON DELETE CASCADE,
    scopes     TEXT[] NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX oauth2_access_tokens_user_idx ON oauth2_access_tokens (user_id);
CREATE INDEX oauth2_access_tokens_expires_idx ON oauth2_access_tokens (expires_at);

CREATE TABLE oauth2_refresh_tokens (
    token_hash        TEXT PRIMARY KEY,
    access_token_hash TEXT,
    client_id         TEXT NOT NULL REFERENCES oauth2_clients (client_id) ON DELETE CASCADE,
    user_id           BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scopes            TEXT[] NOT NULL,
    expires_at        TIMESTAMPTZ NOT NULL,
    revoked_at        TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX oauth2_refresh_tokens_user_idx ON oauth2_refresh_tokens (user_id);
CREATE INDEX oauth2_refresh_tokens_expires_idx ON oauth2_refresh_tokens (expires_at);

CREATE TABLE oauth2_user_consents (
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES oauth2_clients (client_id) ON DELETE CASCADE,
    scopes     TEXT[] NOT NULL,
    granted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE oauth2_scopes (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    is_default  BOOLEAN NOT NULL DEFAULT FALSE
);
INSERT INTO oauth2_scopes (name, description, is_default) VALUES
    ('openid', 'Sign you in with your account', TRUE),
    ('profile', 'See your basic profile', TRUE),
    ('email', 'See your email address', FALSE),
    ('phone', 'See your phone number', FALSE),
    ('offline_access', 'Keep access while you are away', FALSE);

CREATE TABLE oauth2_audit_logs (
    id         BIGSERIAL PRIMARY KEY,
    event_type TEXT NOT NULL,
    client_id  TEXT,
    user_id    BIGINT,
    ip_address TEXT,
    user_agent TEXT,
    success    BOOLEAN NOT NULL,
    details    JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX oauth2_audit_logs_created_at_idx ON oauth2_audit_logs (created_at DESC, id DESC);

-- Snowflake node IDs leased by running processes, so two replicas never share one. A lease
-- that is not renewed expires, so a killed process frees its node ID.
CREATE TABLE snowflake_node_leases (
    node_id    SMALLINT PRIMARY KEY CHECK (node_id BETWEEN 0 AND 1023),
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
