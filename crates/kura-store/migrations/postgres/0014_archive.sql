-- The archive storage class (schema 14). An image's status: ACTIVE (standard
-- storage, pullable), ARCHIVED (kept, listed, not pullable) or ACTIVATING (a
-- restore job is bringing it back). When it last moved to the archive and when
-- a restore last finished. Blob rows do not change: an archived image keeps its
-- manifest_blobs links, so GC keeps its bytes.
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS image_status TEXT NOT NULL DEFAULT 'ACTIVE';
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS archived_at BIGINT;
ALTER TABLE manifests ADD COLUMN IF NOT EXISTS activated_at BIGINT;
CREATE INDEX IF NOT EXISTS manifests_status ON manifests(repo_id, image_status, digest);
