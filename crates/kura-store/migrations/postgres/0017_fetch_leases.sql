-- Pull-through cache fetch leases (schema 17). A node that fetches content of
-- a cached repository from its upstream (a blob, a manifest) holds the lease
-- `key` (e.g. `blob:<repo id>:<digest>`) until it is stored; other nodes wait
-- for the content to appear, or take the lease over once it expired (the
-- holder renews it while it streams). A tag's refresh window is a lease that
-- is never released: `refresh:<repo id>:<tag>` expires when the tag may be
-- checked against the upstream again.
CREATE TABLE IF NOT EXISTS fetch_leases (
    lease_key   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    holder      TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS fetch_leases_expiry ON fetch_leases(expires_at);
