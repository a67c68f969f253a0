-- Replication (schema 12): one row per image and destination, what
-- DescribeImageReplicationStatus shows. `progress` is the replicating job's
-- checkpoint (JSON: the destination's upload session per blob), so a retry
-- resumes a layer where the last attempt stopped. Rows go with the repository.
CREATE TABLE IF NOT EXISTS replication_status (
    repo_id       INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT NOT NULL,
    region        TEXT NOT NULL,
    registry_id   TEXT NOT NULL,
    status        TEXT NOT NULL,
    failure_code  TEXT,
    reason        TEXT,
    progress      TEXT NOT NULL DEFAULT '{}',
    attempts      BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest, region, registry_id)
);
