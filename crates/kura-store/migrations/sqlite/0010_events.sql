-- EventBridge: rules (an event pattern per account and name), their targets, and the
-- connections and API destinations HTTP targets deliver through. Names are unique per
-- account. A rule cannot be deleted while targets remain (the application refuses, as
-- EventBridge does; the foreign key keeps it so).
CREATE TABLE IF NOT EXISTS event_rules (
    account      TEXT NOT NULL,
    name         TEXT NOT NULL,
    pattern      TEXT NOT NULL,
    state        TEXT NOT NULL,
    description  TEXT,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (account, name)
);

-- A rule's targets: the target's id and ARN, and the target as the API gave it (JSON).
CREATE TABLE IF NOT EXISTS event_targets (
    account  TEXT NOT NULL,
    rule     TEXT NOT NULL,
    id       TEXT NOT NULL,
    arn      TEXT NOT NULL,
    body     TEXT NOT NULL,
    PRIMARY KEY (account, rule, id),
    FOREIGN KEY (account, rule) REFERENCES event_rules(account, name)
);

-- Connections (kind 'connection') and API destinations (kind 'api-destination'): the public
-- description as JSON, a connection's secret parts sealed with the master key.
CREATE TABLE IF NOT EXISTS event_resources (
    account     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    name        TEXT NOT NULL,
    uuid        TEXT NOT NULL,
    body        TEXT NOT NULL,
    secret      BLOB,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (account, kind, name)
);

-- Bumped after every change to rules or targets: delivery caches enabled rules under it.
CREATE TABLE IF NOT EXISTS event_generation (
    id   INTEGER PRIMARY KEY,
    gen  BIGINT NOT NULL
);
INSERT INTO event_generation (id, gen) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
