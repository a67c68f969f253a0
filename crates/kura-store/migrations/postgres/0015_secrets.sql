-- Secrets Manager (kura-secrets): one row per secret (unique per account and name, and by
-- its ARN, which ends in a random suffix so a secret made again under a deleted one's name
-- has another ARN), and one row per version with its value sealed with the master key
-- (bound to the ARN and version id) and its staging labels (a JSON array of strings).
-- `revision` increases with every change to a secret or its versions: writers compare it,
-- so two nodes moving the same labels cannot both win. A secret scheduled for deletion has
-- `deleted_at` (when the deletion was asked) and `purge_at` (when it goes); from `purge_at`
-- on it is treated as absent and removed by the next write that meets it.
CREATE TABLE IF NOT EXISTS secrets (
    account      TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    arn          TEXT COLLATE "C" NOT NULL UNIQUE,
    description  TEXT COLLATE "C",
    kms_key_id   TEXT COLLATE "C",
    tags         TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    changed_at   BIGINT NOT NULL,
    accessed_at  BIGINT,
    deleted_at   BIGINT,
    purge_at     BIGINT,
    revision     BIGINT NOT NULL,
    PRIMARY KEY (account, name)
);

CREATE TABLE IF NOT EXISTS secret_versions (
    arn          TEXT COLLATE "C" NOT NULL,
    version_id   TEXT COLLATE "C" NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL,
    sealed       BYTEA NOT NULL,
    stages       TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (arn, version_id)
);
