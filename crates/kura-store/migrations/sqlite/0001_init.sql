-- Kura metadata schema, version 1 (SQLite dialect; byte-order BINARY collation
-- is SQLite's default, matching the spec's lexical tag order).
CREATE TABLE IF NOT EXISTS repositories (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    -- JSON: tag mutability (+ exclusion filters), scan on push, encryption.
    settings    TEXT NOT NULL DEFAULT '{}',
    UNIQUE (account, name)
);

CREATE TABLE IF NOT EXISTS blobs (
    digest       TEXT PRIMARY KEY,
    size         INTEGER NOT NULL,
    storage_key  TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS repo_blobs (
    repo_id     INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest      TEXT NOT NULL REFERENCES blobs(digest),
    created_at  INTEGER NOT NULL,
    -- Last upload, mount or existence check (HEAD): GC leaves a link alone
    -- for a grace period after it, so a client that saw the blob can still
    -- reference it in a manifest.
    touched_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX IF NOT EXISTS repo_blobs_touched ON repo_blobs(touched_at);
CREATE INDEX IF NOT EXISTS repo_blobs_digest ON repo_blobs(digest);

CREATE TABLE IF NOT EXISTS manifests (
    repo_id        INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    digest         TEXT NOT NULL,
    media_type     TEXT NOT NULL,
    artifact_type  TEXT,
    subject        TEXT,
    annotations    TEXT,
    size           INTEGER NOT NULL,
    body           BLOB NOT NULL,
    pushed_at      INTEGER NOT NULL,
    last_pulled_at INTEGER,
    PRIMARY KEY (repo_id, digest)
);
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests(repo_id, subject);

CREATE TABLE IF NOT EXISTS manifest_blobs (
    repo_id          INTEGER NOT NULL,
    manifest_digest  TEXT NOT NULL,
    blob_digest      TEXT NOT NULL REFERENCES blobs(digest),
    PRIMARY KEY (repo_id, manifest_digest, blob_digest),
    FOREIGN KEY (repo_id, manifest_digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS manifest_blobs_blob ON manifest_blobs(blob_digest);

CREATE TABLE IF NOT EXISTS manifest_children (
    repo_id       INTEGER NOT NULL,
    parent_digest TEXT NOT NULL,
    child_digest  TEXT NOT NULL,
    PRIMARY KEY (repo_id, parent_digest, child_digest),
    FOREIGN KEY (repo_id, parent_digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE,
    FOREIGN KEY (repo_id, child_digest) REFERENCES manifests(repo_id, digest)
);
CREATE INDEX IF NOT EXISTS manifest_children_child ON manifest_children(repo_id, child_digest);

CREATE TABLE IF NOT EXISTS tags (
    repo_id     INTEGER NOT NULL,
    name        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (repo_id, name),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS tags_digest_name ON tags(repo_id, digest, name);

CREATE TABLE IF NOT EXISTS uploads (
    id           TEXT PRIMARY KEY,
    repo_id      INTEGER NOT NULL REFERENCES repositories(id) ON DELETE CASCADE,
    handle       TEXT NOT NULL,
    received     INTEGER NOT NULL,
    hash_state   BLOB NOT NULL,
    lease        TEXT,
    lease_until  INTEGER,
    started_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- Accounts (one account = one registry) and their access keys. Secrets are
-- sealed (AES-256-GCM) with the deployment's master key before storage.
CREATE TABLE IF NOT EXISTS accounts (
    id          TEXT PRIMARY KEY,
    created_at  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS access_keys (
    access_key_id  TEXT PRIMARY KEY,
    account        TEXT NOT NULL REFERENCES accounts(id),
    principal_arn  TEXT NOT NULL,
    secret_sealed  BLOB NOT NULL,
    status         TEXT NOT NULL DEFAULT 'Active',
    session_token_hash TEXT,
    expires_at     INTEGER,
    created_at     INTEGER NOT NULL
);

-- Deployment-wide secrets (e.g. the token signing key), sealed.
CREATE TABLE IF NOT EXISTS server_secrets (
    name   TEXT PRIMARY KEY,
    value  BLOB NOT NULL
);

-- Tags on resources (repositories, templates), by ARN.
CREATE TABLE IF NOT EXISTS resource_tags (
    arn    TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (arn, key)
);

CREATE TABLE IF NOT EXISTS creation_templates (
    account     TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (account, prefix)
);

CREATE TABLE IF NOT EXISTS account_settings (
    account  TEXT NOT NULL,
    name     TEXT NOT NULL,
    value    TEXT NOT NULL,
    PRIMARY KEY (account, name)
);

-- The outbox of blob-store deletes: written in the same transaction that
-- drops the metadata, emptied once the bytes are gone. A crash in between
-- leaves the entry, and the next GC run finishes the delete.
CREATE TABLE IF NOT EXISTS pending_deletes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    kind        TEXT NOT NULL,          -- 'blob' (a storage key) or 'upload' (a handle)
    key         TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

-- Leases: one holder at a time for deployment-wide jobs (GC, lifecycle).
CREATE TABLE IF NOT EXISTS leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    until_ms    INTEGER NOT NULL
);

-- Lifecycle policies and their previews, per repository.
CREATE TABLE IF NOT EXISTS lifecycle_policies (
    repo_id     INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    policy      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    last_evaluated_at INTEGER
);

CREATE TABLE IF NOT EXISTS lifecycle_previews (
    repo_id     INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    policy      TEXT NOT NULL,
    status      TEXT NOT NULL,          -- IN_PROGRESS, COMPLETE, FAILED
    results     TEXT,                   -- JSON list of preview results
    started_at  INTEGER NOT NULL
);

-- Audit records (CloudTrail-style), e.g. lifecycle expiries.
CREATE TABLE IF NOT EXISTS audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    account     TEXT NOT NULL,
    event_name  TEXT NOT NULL,
    source      TEXT NOT NULL,
    detail      TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
