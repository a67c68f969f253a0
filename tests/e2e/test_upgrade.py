"""Upgrades: today's kura on data directories written by older commits.

Each tests/fixtures/upgrade/vNN.tar.gz is a data directory (SQLite metadata,
master key, blobs) that a real older build of this repository wrote (see the
README there and scripts/make-upgrade-fixture.py); vNN.json says what that
build stored. Today's binary must start on it, migrate the schema to the
newest version, and serve every image byte for byte with its tags, repository
policy, lifecycle policy and tag mutability; it must accept new pushes; and a
garbage collection right after the upgrade must not take any old blob.
"""
import copy
import glob
import json
import os
import sqlite3
import subprocess
import tarfile

import pytest

from conftest import REPO_ROOT, Registry
from helpers import RegistryAPI, creds, require_tool, run
from images import sha256_digest

FIXTURES = os.path.join(REPO_ROOT, "tests", "fixtures", "upgrade")
MIGRATIONS = os.path.join(REPO_ROOT, "crates", "kura-store", "migrations", "sqlite")


def fixtures():
    return sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(FIXTURES, "v*.json")))


def newest_schema():
    """The highest migration number in the tree: what an upgrade must reach."""
    return max(int(os.path.basename(p).split("_", 1)[0]) for p in glob.glob(os.path.join(MIGRATIONS, "*.sql")))


def schema_version(data_dir):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data_dir, "meta.db"), uri=True)
    try:
        return db.execute("SELECT version FROM schema_version").fetchone()[0]
    finally:
        db.close()


def local_env():
    """Embedded storage whatever the environment says (scripts/with-postgres-s3 exports these)."""
    env = {k: v for k, v in os.environ.items() if not (k == "KURA_DATABASE_URL" or k.startswith("KURA_S3_"))}
    env["KURA_DISK_RESERVE_MIB"] = "0"
    return env


def kura_bin():
    return os.environ.get("KURA_BIN", os.path.join(REPO_ROOT, "target", "release", "kura"))


def open_fixture(name, tmp_path):
    """Unpack fixture `name` into a Registry's data directory (not started yet)."""
    with open(os.path.join(FIXTURES, name + ".json")) as f:
        stored = json.load(f)
    reg = Registry(str(tmp_path))
    with tarfile.open(os.path.join(FIXTURES, name + ".tar.gz")) as tar:
        tar.extractall(str(tmp_path), filter="data")
    assert os.path.isdir(reg.data_dir), "fixture %s has no data/ directory" % name
    reg.account_id = stored["account"]
    reg.access_key = stored["accessKeyId"]
    reg.secret_key = stored["secretAccessKey"]
    return reg, stored


def check_everything_pulls(reg, stored):
    """Every tag resolves to its old manifest digest, and the manifests and
    blobs reachable from the tags are exactly the ones the old build stored,
    each served with its exact bytes (check_tree verifies sha256 and size)."""
    api = RegistryAPI(reg)
    for repo, want in stored["repositories"].items():
        assert sorted(api.tags(repo)) == sorted(want["tags"]), "tags of %s after the upgrade" % repo
        served = {}
        for tag, digest in want["tags"].items():
            _, got, _ = api.manifest_bytes(repo, tag)
            assert got == digest, "%s:%s points at %s, the old build stored %s" % (repo, tag, got, digest)
            served.update(api.check_tree(repo, tag))
        assert set(served) == set(want["manifests"]) | set(want["blobs"]), \
            "what %s serves differs from what the old build stored" % repo


def check_settings(reg, stored):
    ecr = reg.ecr()
    for repo, want in stored["repositories"].items():
        desc = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
        assert desc["imageTagMutability"] == want["tagMutability"], repo
        images = ecr.describe_images(repositoryName=repo)["imageDetails"]
        tagged = {t: i["imageDigest"] for i in images for t in i.get("imageTags", [])}
        assert tagged == want["tags"], "DescribeImages of %s after the upgrade" % repo
        if want["policy"] is None:
            with pytest.raises(ecr.exceptions.RepositoryPolicyNotFoundException):
                ecr.get_repository_policy(repositoryName=repo)
        else:
            text = ecr.get_repository_policy(repositoryName=repo)["policyText"]
            assert json.loads(text) == want["policy"], "repository policy of %s" % repo
        if want["lifecycle"] is None:
            with pytest.raises(ecr.exceptions.LifecyclePolicyNotFoundException):
                ecr.get_lifecycle_policy(repositoryName=repo)
        else:
            text = ecr.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"]
            assert json.loads(text) == want["lifecycle"], "lifecycle policy of %s" % repo


def test_fixtures_present():
    """The fixtures exist, each from an older schema, each small."""
    names = fixtures()
    assert len(names) >= 3, "expected at least three upgrade fixtures, found %s" % names
    for name in names:
        with open(os.path.join(FIXTURES, name + ".json")) as f:
            stored = json.load(f)
        assert stored["schemaVersion"] <= newest_schema()
        assert os.path.getsize(os.path.join(FIXTURES, name + ".tar.gz")) < 200 * 1024, name
    assert min(json.load(open(os.path.join(FIXTURES, n + ".json")))["schemaVersion"] for n in names) < newest_schema()


@pytest.mark.parametrize("name", fixtures())
def test_upgrade_serves_old_data(name, tmp_path):
    reg, stored = open_fixture(name, tmp_path)
    assert schema_version(reg.data_dir) == stored["schemaVersion"], "the fixture is not the schema it claims"
    reg.start()
    try:
        assert schema_version(reg.data_dir) == newest_schema(), "the schema was not upgraded"
        reg.login()
        check_everything_pulls(reg, stored)
        check_settings(reg, stored)

        # Writes after the upgrade: an immutable tag stays refused (if the old
        # build stored the repository as IMMUTABLE), a new push works.
        api = RegistryAPI(reg)
        base = "upgrade/base"
        old_tag, old_digest = next(iter(stored["repositories"][base]["tags"].items()))
        body, _, ctype = api.manifest_bytes(base, old_tag)
        doc = json.loads(body)
        doc["annotations"] = {"upgrade": "retag"}
        if stored["repositories"][base]["tagMutability"] == "IMMUTABLE":
            r = api.s.put("%s/v2/%s/manifests/%s" % (reg.url, base, old_tag), data=json.dumps(doc),
                          headers={"Content-Type": ctype})
            assert r.status_code == 400 and "TAG_INVALID" in r.text, "the immutable tag was overwritten: %s" % r.text
        body = json.dumps(doc).encode()
        r = api.s.put("%s/v2/%s/manifests/after-upgrade" % (reg.url, base), data=body,
                      headers={"Content-Type": ctype})
        assert r.status_code == 201, (r.status_code, r.text)
        assert api.manifest_bytes(base, old_tag)[1] == old_digest
        # From now on the new image is part of what must be there.
        new = sha256_digest(body)
        stored = copy.deepcopy(stored)
        stored["repositories"][base]["tags"]["after-upgrade"] = new
        stored["repositories"][base]["manifests"].append(new)
    finally:
        reg.stop()

    # GC right after the upgrade (no grace) must keep every blob the old build stored.
    p = subprocess.run([kura_bin(), "gc", "--data-dir", reg.data_dir, "--gc-grace", "0s"],
                       capture_output=True, text=True, timeout=120,
                       env=local_env())
    assert p.returncode == 0, p.stderr
    reg.start()
    try:
        reg.login()
        check_everything_pulls(reg, stored)
    finally:
        reg.stop()


@pytest.mark.parametrize("name", sorted(set(fixtures()[:1] + fixtures()[-1:])))
def test_upgrade_skopeo_pull(name, tmp_path):
    """A real client pulls the oldest and the newest fixture's images (every
    platform), byte for byte: skopeo's dir: transport keeps each manifest and
    blob as the registry sent it."""
    require_tool("skopeo")
    reg, stored = open_fixture(name, tmp_path)
    reg.start()
    try:
        reg.login()
        (tmp_path / "pulled").mkdir()
        for repo, want in stored["repositories"].items():
            files = {}
            for tag, digest in want["tags"].items():
                dest = tmp_path / "pulled" / ("%s_%s" % (repo.replace("/", "_"), tag))
                run(["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false",
                     "--src-creds", creds(reg), "docker://%s/%s:%s" % (reg.host, repo, tag),
                     "dir:%s" % dest], registry=reg)
                with open(dest / "manifest.json", "rb") as f:
                    assert sha256_digest(f.read()) == digest, "skopeo pulled another manifest for %s:%s" % (repo, tag)
                for entry in os.listdir(dest):
                    if entry in ("manifest.json", "version"):
                        continue
                    with open(dest / entry, "rb") as f:
                        data = f.read()
                    d = "sha256:" + entry.split(".", 1)[0]
                    assert sha256_digest(data) == d, "%s from %s:%s has other bytes" % (entry, repo, tag)
                    files[d] = entry
            pulled = {d for d, e in files.items() if not e.endswith(".manifest.json")}
            assert pulled == set(want["blobs"]), "skopeo pulled other blobs of %s" % repo
    finally:
        reg.stop()


def test_newer_schema_is_refused(tmp_path):
    """A data directory from a newer Kura (downgrade): a clear error, no change."""
    name = fixtures()[-1]
    reg, _ = open_fixture(name, tmp_path)
    db = sqlite3.connect(os.path.join(reg.data_dir, "meta.db"))
    try:
        db.execute("UPDATE schema_version SET version = 9999")
        db.commit()
    finally:
        db.close()
    p = subprocess.run([kura_bin(), "serve", "--listen", reg.host, "--data-dir", reg.data_dir],
                       capture_output=True, text=True, timeout=60,
                       env=local_env())
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "schema version 9999 is newer than this Kura" in p.stderr, p.stderr
    assert schema_version(reg.data_dir) == 9999
