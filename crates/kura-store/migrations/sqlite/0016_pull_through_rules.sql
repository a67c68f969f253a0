-- Pull-through cache rules (schema 16): per account, an ECR repository
-- prefix (`ROOT` for every name) mapped to an upstream registry, with the
-- Secrets Manager secret holding its credentials. `upstream_registry` is
-- ECR's enum value (NULL for a generic OCI registry).
CREATE TABLE IF NOT EXISTS pull_through_rules (
    account           TEXT NOT NULL,
    prefix            TEXT NOT NULL,
    upstream_url      TEXT NOT NULL,
    upstream_registry TEXT,
    credential_arn    TEXT,
    custom_role_arn   TEXT,
    upstream_prefix   TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (account, prefix)
);
