-- Image scanning (schema version 2).

-- One import of vulnerability data (`kura vulndb import`). Advisories of an import become
-- visible when it completes; a completed import replaces older advisories of the same
-- ecosystems.
CREATE TABLE IF NOT EXISTS vuln_imports (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    origin       TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    completed_at INTEGER,
    kinds        TEXT NOT NULL DEFAULT '',
    records      INTEGER NOT NULL DEFAULT 0,
    advisories   INTEGER NOT NULL DEFAULT 0,
    ecosystems   TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE IF NOT EXISTS vuln_advisories (
    import_id  INTEGER NOT NULL REFERENCES vuln_imports(id) ON DELETE CASCADE,
    ecosystem  TEXT NOT NULL,
    package    TEXT NOT NULL,
    name       TEXT NOT NULL,
    data       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS vuln_advisories_pkg ON vuln_advisories(ecosystem, package);
CREATE INDEX IF NOT EXISTS vuln_advisories_import ON vuln_advisories(import_id, ecosystem);

-- The scanner's per-layer file index, by layer digest: new vulnerability data re-matches
-- without reading layers again. `format` versions the serialized index.
CREATE TABLE IF NOT EXISTS scan_layers (
    digest     TEXT NOT NULL,
    format     INTEGER NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (digest, format)
);

-- The latest scan of each image. Deleting the image deletes its scan.
CREATE TABLE IF NOT EXISTS image_scans (
    repo_id          INTEGER NOT NULL,
    digest           TEXT NOT NULL,
    status           TEXT NOT NULL,
    description      TEXT,
    scan_type        TEXT NOT NULL,
    requested_at     INTEGER NOT NULL,
    completed_at     INTEGER,
    vuln_import_id   INTEGER,
    vuln_updated_at  INTEGER,
    inventory        TEXT,
    findings         TEXT,
    counts           TEXT,
    PRIMARY KEY (repo_id, digest),
    FOREIGN KEY (repo_id, digest) REFERENCES manifests(repo_id, digest) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS image_scans_status ON image_scans(status, vuln_import_id);
