DELETE FROM oauth2_scopes
WHERE name IN ('campaigns:read', 'campaigns:write', 'activity:write', 'activity:read',
               'registrations:bulk', 'tokens:introspect', 'admin');
DROP INDEX campaigns_owner_idx;
ALTER TABLE campaigns DROP COLUMN owner_user_id;
