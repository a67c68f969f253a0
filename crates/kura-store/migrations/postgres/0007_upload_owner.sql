-- Who opened an upload session (the principal's unique id; NULL for sessions
-- opened without a known caller), so open sessions can be capped per
-- repository and per principal.
ALTER TABLE uploads ADD COLUMN IF NOT EXISTS principal TEXT COLLATE "C";
CREATE INDEX IF NOT EXISTS uploads_repo ON uploads(repo_id);
CREATE INDEX IF NOT EXISTS uploads_principal ON uploads(principal);
