DROP TABLE oauth2_signing_keys;
ALTER TABLE oauth2_authorization_codes
    DROP COLUMN auth_time,
    DROP COLUMN nonce,
    DROP COLUMN session_id;
DROP INDEX user_sessions_user_client_idx;
ALTER TABLE user_sessions DROP COLUMN client_id;
