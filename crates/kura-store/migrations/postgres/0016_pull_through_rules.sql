-- Pull-through cache rules (schema 16): per account, an ECR repository
-- prefix (`ROOT` for every name) mapped to an upstream registry, with the
-- Secrets Manager secret holding its credentials. `upstream_registry` is
-- ECR's enum value (NULL for a generic OCI registry).
CREATE TABLE IF NOT EXISTS pull_through_rules (
    account           TEXT COLLATE "C" NOT NULL,
    prefix            TEXT COLLATE "C" NOT NULL,
    upstream_url      TEXT COLLATE "C" NOT NULL,
    upstream_registry TEXT COLLATE "C",
    credential_arn    TEXT COLLATE "C",
    custom_role_arn   TEXT COLLATE "C",
    upstream_prefix   TEXT COLLATE "C",
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (account, prefix)
);
