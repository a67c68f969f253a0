-- Image listing pages (ListImages, DescribeImages) read their rows from
-- covering indexes, in digest order, instead of one table page per image:
-- manifests are stored in insertion order, so the rows of a page of 100
-- digests were 100 random table pages at 100k images.
CREATE INDEX IF NOT EXISTS manifests_listing
    ON manifests(repo_id, digest, media_type, artifact_type, subject, pushed_at, last_pulled_at);
-- An image's tags from the index alone (it replaces tags(repo_id, digest)).
CREATE INDEX IF NOT EXISTS tags_digest_name ON tags(repo_id, digest, name);
DROP INDEX IF EXISTS tags_digest;
