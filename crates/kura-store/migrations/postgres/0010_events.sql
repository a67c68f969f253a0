-- EventBridge: rules (an event pattern per account and name), their targets, and the
-- connections and API destinations HTTP targets deliver through. Names are unique per
-- account. A rule cannot be deleted while targets remain (the application refuses, as
-- EventBridge does; the foreign key keeps it so).
CREATE TABLE IF NOT EXISTS event_rules (
    account      TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    pattern      TEXT COLLATE "C" NOT NULL,
    state        TEXT COLLATE "C" NOT NULL,
    description  TEXT COLLATE "C",
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (account, name)
);

-- A rule's targets: the target's id and ARN, and the target as the API gave it (JSON).
CREATE TABLE IF NOT EXISTS event_targets (
    account  TEXT COLLATE "C" NOT NULL,
    rule     TEXT COLLATE "C" NOT NULL,
    id       TEXT COLLATE "C" NOT NULL,
    arn      TEXT COLLATE "C" NOT NULL,
    body     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (account, rule, id),
    FOREIGN KEY (account, rule) REFERENCES event_rules(account, name)
);

-- Connections (kind 'connection') and API destinations (kind 'api-destination'): the public
-- description as JSON, a connection's secret parts sealed with the master key.
CREATE TABLE IF NOT EXISTS event_resources (
    account     TEXT COLLATE "C" NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    uuid        TEXT COLLATE "C" NOT NULL,
    body        TEXT COLLATE "C" NOT NULL,
    secret      BYTEA,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (account, kind, name)
);

-- Bumped after every change to rules or targets: delivery caches enabled rules under it.
CREATE TABLE IF NOT EXISTS event_generation (
    id   BIGINT PRIMARY KEY,
    gen  BIGINT NOT NULL
);
INSERT INTO event_generation (id, gen) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
