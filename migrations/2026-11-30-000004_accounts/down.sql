DROP TABLE auth_throttle;
DROP TABLE account_tokens;
DELETE FROM oauth2_access_tokens WHERE client_id = 'first-party';
DELETE FROM oauth2_refresh_tokens WHERE client_id = 'first-party';
DELETE FROM oauth2_clients WHERE client_id = 'first-party';
ALTER TABLE oauth2_refresh_tokens DROP COLUMN session_id;
ALTER TABLE oauth2_access_tokens DROP COLUMN session_id;
DROP TABLE user_sessions;
