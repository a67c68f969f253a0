-- An image's tags from the index alone (it replaces tags(repo_id, digest)).
-- The manifests listing index of the SQLite schema is not needed here: the
-- listing pages stay flat from 1k to 100k images on PostgreSQL (BENCHMARKS.md).
CREATE INDEX IF NOT EXISTS tags_digest_name ON tags(repo_id, digest, name);
DROP INDEX IF EXISTS tags_digest;
