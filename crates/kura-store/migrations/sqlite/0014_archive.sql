-- The archive storage class (schema 14). An image's status: ACTIVE (standard
-- storage, pullable), ARCHIVED (kept, listed, not pullable) or ACTIVATING (a
-- restore job is bringing it back). When it last moved to the archive and when
-- a restore last finished. Blob rows do not change: an archived image keeps its
-- manifest_blobs links, so GC keeps its bytes.
ALTER TABLE manifests ADD COLUMN image_status TEXT NOT NULL DEFAULT 'ACTIVE';
ALTER TABLE manifests ADD COLUMN archived_at BIGINT;
ALTER TABLE manifests ADD COLUMN activated_at BIGINT;
-- Listing pages stay on covering indexes (see 0005_listing.sql): the
-- unfiltered listing gains the three columns, and listing one status (the
-- default of DescribeImages and ListImages is ACTIVE) has its own.
DROP INDEX IF EXISTS manifests_listing;
CREATE INDEX IF NOT EXISTS manifests_listing
    ON manifests(repo_id, digest, media_type, artifact_type, subject, pushed_at, last_pulled_at,
                 image_status, archived_at, activated_at);
CREATE INDEX IF NOT EXISTS manifests_status
    ON manifests(repo_id, image_status, digest, media_type, artifact_type, subject, pushed_at,
                 last_pulled_at, archived_at, activated_at);
