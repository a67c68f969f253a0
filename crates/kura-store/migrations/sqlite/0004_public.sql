-- Schema version 4: ECR Public. A public repository is an ordinary row of
-- `repositories` (so pushes, pulls, GC and lifecycle treat it like any other)
-- plus this mark, which makes it public and holds its catalog data (the ECR
-- Public API's RepositoryCatalogData as JSON). Deleting the repository, by
-- either API, deletes the mark with it (foreign key cascade).
CREATE TABLE IF NOT EXISTS public_repositories (
    repo_id       INTEGER PRIMARY KEY REFERENCES repositories(id) ON DELETE CASCADE,
    catalog_data  TEXT NOT NULL DEFAULT '{}',
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
