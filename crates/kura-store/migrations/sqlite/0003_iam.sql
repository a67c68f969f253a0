-- Access control: IAM entities, inline policies, links, resource policies.

-- Users, groups, roles and customer managed policies. `name_key` is the
-- lower-cased name: IAM names are unique per account and kind in any case.
CREATE TABLE IF NOT EXISTS iam_entities (
    account     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name_key    TEXT NOT NULL,
    name        TEXT NOT NULL,
    id          TEXT NOT NULL UNIQUE,
    path        TEXT NOT NULL,
    arn         TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account, kind, name_key)
);

-- Inline policies of users, groups and roles (removed with their owner).
CREATE TABLE IF NOT EXISTS iam_inline_policies (
    account     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    owner_key   TEXT NOT NULL,
    name        TEXT NOT NULL,
    document    TEXT NOT NULL,
    PRIMARY KEY (account, kind, owner_key, name),
    FOREIGN KEY (account, kind, owner_key) REFERENCES iam_entities(account, kind, name_key) ON DELETE CASCADE
);

-- Group membership (rel 'member': user -> group) and managed policy
-- attachments (rel 'attached': user/group/role -> policy ARN).
CREATE TABLE IF NOT EXISTS iam_links (
    account     TEXT NOT NULL,
    rel         TEXT NOT NULL,
    from_kind   TEXT NOT NULL,
    from_key    TEXT NOT NULL,
    from_name   TEXT NOT NULL,
    target      TEXT NOT NULL,
    PRIMARY KEY (account, rel, from_kind, from_key, target)
);
CREATE INDEX IF NOT EXISTS iam_links_by_target ON iam_links (account, rel, target);

-- Which principal an access key belongs to, for listing by owner.
CREATE INDEX IF NOT EXISTS access_keys_by_principal ON access_keys (principal_arn);

-- Resource-based policies by the resource's ARN: repository policies
-- (removed when the repository is deleted) and registry policies.
CREATE TABLE IF NOT EXISTS resource_policies (
    arn         TEXT PRIMARY KEY,
    policy      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- Bumped after every change to anything an authorization decision reads
-- (entities, inline policies, links, resource policies, resource tags), so a
-- node may keep decisions' inputs in memory while the generation it read
-- before loading them is still current.
CREATE TABLE IF NOT EXISTS iam_generation (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    gen  INTEGER NOT NULL
);
INSERT INTO iam_generation (id, gen) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
