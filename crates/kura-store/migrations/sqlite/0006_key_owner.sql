-- An access key authenticates the principal it was issued to, by that
-- principal's unique id, never by re-reading its ARN: the id of an IAM user
-- (AIDA...), or for a role session the role's id and the session name
-- (AROA...:session, the session's aws:userid), or for the account root the
-- account id. A deleted user or role takes its id with it, and an entity
-- re-created with the same name gets a new one, so old keys resolve to
-- nothing. A key whose owner cannot be found stays NULL and authenticates
-- nobody.
ALTER TABLE access_keys ADD COLUMN principal_id TEXT;

UPDATE access_keys SET principal_id = account
 WHERE principal_arn = 'arn:aws:iam::' || account || ':root';

UPDATE access_keys SET principal_id = (
    SELECT e.id FROM iam_entities e
     WHERE e.account = access_keys.account AND e.kind = 'user' AND e.arn = access_keys.principal_arn)
 WHERE principal_id IS NULL AND session_token_hash IS NULL;

UPDATE access_keys SET principal_id = (
    SELECT e.id || ':' || substr(access_keys.principal_arn,
                                 length('arn:aws:sts::' || e.account || ':assumed-role/' || e.name || '/') + 1)
      FROM iam_entities e
     WHERE e.account = access_keys.account AND e.kind = 'role'
       AND substr(access_keys.principal_arn, 1,
                  length('arn:aws:sts::' || e.account || ':assumed-role/' || e.name || '/'))
           = 'arn:aws:sts::' || e.account || ':assumed-role/' || e.name || '/')
 WHERE principal_id IS NULL AND session_token_hash IS NOT NULL;

CREATE INDEX IF NOT EXISTS access_keys_by_principal_id ON access_keys (principal_id);
