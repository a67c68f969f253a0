-- Durable jobs (kura-jobs): background work that survives a crash. A job is
-- claimed with a lease its runner renews; a lapsed lease makes it claimable
-- again (at-least-once). See crates/kura-store/src/jobs.rs.
CREATE TABLE IF NOT EXISTS jobs (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,          -- JSON
    unique_key    TEXT,                   -- one queued/running job per key
    lane          TEXT,                   -- jobs of one lane run one at a time, in id order
    state         TEXT NOT NULL,          -- 'queued', 'running', 'done', 'dead'
    attempts      INTEGER NOT NULL DEFAULT 0,
    max_attempts  INTEGER NOT NULL,
    run_after     INTEGER NOT NULL,       -- ms: not claimed before
    lease_owner   TEXT,
    lease_until   INTEGER,                -- ms
    last_error    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    finished_at   INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_active_key ON jobs(unique_key) WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_key ON jobs(unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(state, run_after);
CREATE INDEX IF NOT EXISTS jobs_lane ON jobs(lane, id) WHERE lane IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs(state, finished_at);
CREATE INDEX IF NOT EXISTS jobs_kind ON jobs(kind, id);
