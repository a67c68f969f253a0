-- GC's orphan sweep asks, for each stored file, whether a blob row names its
-- storage key: one index lookup per file instead of a table scan.
CREATE INDEX IF NOT EXISTS blobs_storage_key ON blobs(storage_key);
