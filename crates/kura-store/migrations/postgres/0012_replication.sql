-- Replication (schema 12): one row per image and destination, what
-- DescribeImageReplicationStatus shows. `progress` is the replicating job's
-- checkpoint (JSON: the destination's upload session per blob), so a retry
-- resumes a layer where the last attempt stopped. Rows go with the repository.
CREATE TABLE IF NOT EXISTS replication_status (
    repo_id       BIGINT NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest        TEXT COLLATE "C" NOT NULL,
    region        TEXT COLLATE "C" NOT NULL,
    registry_id   TEXT COLLATE "C" NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,
    failure_code  TEXT COLLATE "C",
    reason        TEXT COLLATE "C",
    progress      TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    attempts      BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (repo_id, digest, region, registry_id)
);
