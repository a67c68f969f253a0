-- Replication backfills (schema 13): StartReplicationBackfill replicates the
-- images that existed before the configuration to one destination. One row per
-- backfill; at most one running (PREPARING, IN_PROGRESS, STOPPING) per account
-- and destination. `cursor` is where the enumerating job got to (JSON), so a
-- restarted job resumes there. Items are the images it queued; their outcome is
-- the replication_status row of (repo_id, digest, the backfill's destination).
CREATE TABLE IF NOT EXISTS replication_backfills (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    account       TEXT NOT NULL,
    region        TEXT NOT NULL,
    registry_id   TEXT NOT NULL,
    status        TEXT NOT NULL,
    failure_code  TEXT,
    cursor        TEXT NOT NULL DEFAULT '{}',
    started_at    BIGINT NOT NULL,
    ended_at      BIGINT
);
CREATE INDEX IF NOT EXISTS replication_backfills_account ON replication_backfills(account, seq);
CREATE UNIQUE INDEX IF NOT EXISTS replication_backfills_running
    ON replication_backfills(account, region, registry_id)
    WHERE status IN ('PREPARING', 'IN_PROGRESS', 'STOPPING');
-- No foreign key to repositories: an item outlives its repository (it is then FAILED).
CREATE TABLE IF NOT EXISTS replication_backfill_items (
    backfill_id   TEXT NOT NULL REFERENCES replication_backfills(id) ON DELETE CASCADE,
    repo_id       INTEGER NOT NULL,
    repository    TEXT NOT NULL,
    digest        TEXT NOT NULL,
    tag           TEXT,
    PRIMARY KEY (backfill_id, repository, digest)
);
