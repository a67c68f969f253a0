"""A full disk must never wedge Kura (run as root: it mounts a small tmpfs).

The failure this guards: fill the disk, restart (kill -9), delete every
image: GC then failed forever with SQLite's "database or disk is full",
pushes answered 500, and `kura gc` failed too, until a person deleted a file
by hand. Also, uploads that met the full disk got 400 BLOB_UPLOAD_INVALID
(the client's fault) and left their partial files behind.

Now: an upload that meets a full disk gets 503 UNAVAILABLE with Retry-After
and its partial file is removed at once; Kura keeps a space reserve in the
data directory that it releases when a metadata write finds the disk full,
so after a restart the deletes and GC still run, and pushes work again once
GC has freed space.

Skipped (not failed) when not root or when tmpfs cannot be mounted; CI runs
as root.
"""
import hashlib
import json
import os
import subprocess
import time

import pytest

from blobs_util import Client, describe, expect, rand_bytes
from conftest import Registry

MIB = 1024 * 1024


@pytest.fixture
def tmpfs(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96m", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def kura_bin():
    from conftest import REPO_ROOT
    return os.environ.get("KURA_BIN", os.path.join(REPO_ROOT, "target", "release", "kura"))


def fill(path):
    """Write zeros to `path` until the disk is full."""
    chunk = b"\0" * MIB
    with open(path, "wb") as f:
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
        try:
            os.fsync(f.fileno())
        except OSError:
            pass


def push_image(c, repo, tag, seed, size):
    """Push one layer + config + manifest; returns the first non-2xx response or None."""
    layer = rand_bytes(size, seed)
    cfg = ('{"seed":"%s"}' % seed).encode()
    digests = []
    for data in (cfg, layer):
        loc = c.start_upload(repo)
        d = "sha256:" + hashlib.sha256(data).hexdigest()
        r = c.request("PUT", loc + ("&" if "?" in loc else "?") + "digest=" + d, data=data,
                      headers={"Content-Type": "application/octet-stream"})
        if r.status_code != 201:
            return r
        digests.append((d, len(data)))
    man = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digests[0][0], "size": digests[0][1]},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digests[1][0], "size": digests[1][1]}],
    }
    r = c.put_manifest(repo, tag, man)
    return None if r.status_code == 201 else r


def test_a_full_disk_and_a_restart_do_not_wedge_the_registry(tmp_path, tmpfs):
    reg = Registry(str(tmp_path))
    reg.data_dir = str(tmpfs / "data")
    env = {"KURA_DISK_RESERVE_MIB": "8", "KURA_GC_INTERVAL": "0s", "KURA_LIFECYCLE_INTERVAL": "0s"}
    reg.start(extra_env=env)
    try:
        reg.allow_create_on_push()
        reg.login()
        c = Client(reg.url, auth=reg.auth)
        assert os.path.getsize(os.path.join(reg.data_dir, "space.reserve")) == 8 * MIB
        pushed = 6
        for i in range(pushed):
            r = push_image(c, "fill/app", f"t{i}", f"seed-{i}", 4 * MIB)
            assert r is None, describe(r)

        # The disk fills up (here: another file takes every byte left).
        fill(str(tmpfs / "someone-elses-file"))

        # Crash and restart on the full disk: it must start.
        reg.kill9()
        reg.start(extra_env=env)
        reg.login()
        c = Client(reg.url, auth=reg.auth)

        # A push meets the full disk: a server condition the client retries,
        # not the client's fault, and no partial file stays behind.
        refused = push_image(c, "fill/app", "late", "late", 4 * MIB)
        assert refused is not None, "a push fit on a full disk"
        assert refused.status_code == 503, describe(refused)
        assert refused.json()["errors"][0]["code"] == "UNAVAILABLE", describe(refused)
        assert int(refused.headers["Retry-After"]) > 0, describe(refused)
        uploads = os.path.join(reg.data_dir, "blobs", "uploads")
        assert os.listdir(uploads) == [], os.listdir(uploads)
        assert "disk_full" in reg.full_log()

        # Delete every image through the API.
        ecr = reg.ecr()
        ids = []
        for page in ecr.get_paginator("list_images").paginate(repositoryName="fill/app"):
            ids.extend(page["imageIds"])
        assert len(ids) >= pushed
        for k in range(0, len(ids), 100):
            out = ecr.batch_delete_image(repositoryName="fill/app", imageIds=ids[k:k + 100])
            assert out["failures"] == [], out["failures"]
        assert ecr.list_images(repositoryName="fill/app")["imageIds"] == []

        # Stop (SIGTERM), and collect offline: it must free the space.
        reg.stop()
        time.sleep(2.5)  # past the HEAD-touch slack GC adds to the grace period
        out = subprocess.run(
            [kura_bin(), "gc", "--data-dir", reg.data_dir, "--gc-grace", "0s"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "KURA_DISK_RESERVE_MIB": "8"},
        )
        assert out.returncode == 0, out.stdout + out.stderr
        report = json.loads(out.stdout)
        assert report["blobs_deleted"] >= 2 * pushed, report
        assert report["bytes_freed"] >= pushed * 4 * MIB, report
        # The reserve is back for the next time.
        assert os.path.getsize(os.path.join(reg.data_dir, "space.reserve")) == 8 * MIB

        # Pushes work again.
        reg.start(extra_env=env)
        reg.login()
        c = Client(reg.url, auth=reg.auth)
        for i in range(3):
            r = push_image(c, "fill/app", f"again{i}", f"again-{i}", 4 * MIB)
            assert r is None, describe(r)
        r = c.get("/v2/fill/app/manifests/again2",
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        expect(r, 200)
    finally:
        reg.stop()


def test_online_gc_frees_a_full_disk_after_a_restart(tmp_path, tmpfs):
    """Pushes fill the disk (the reserve is released by then), kill -9,
    restart, delete everything: the background GC frees the space and pushes
    resume by themselves."""
    reg = Registry(str(tmp_path))
    reg.data_dir = str(tmpfs / "data")
    env = {"KURA_DISK_RESERVE_MIB": "8", "KURA_GC_INTERVAL": "0s", "KURA_LIFECYCLE_INTERVAL": "0s"}
    reg.start(extra_env=env)
    try:
        reg.allow_create_on_push()
        reg.login()
        c = Client(reg.url, auth=reg.auth)
        # Push until the disk is full: the reserve is released, uploads get 503.
        refused = None
        for i in range(60):
            refused = push_image(c, "fill/app", f"t{i}", f"seed-{i}", 4 * MIB)
            if refused is not None:
                break
        assert refused is not None and refused.status_code == 503, describe(refused)
        reg.kill9()
        # Back with GC every second and no grace.
        env2 = dict(env, KURA_GC_INTERVAL="1s", KURA_GC_GRACE="0s")
        reg.start(extra_env=env2)
        reg.login()
        ecr = reg.ecr()
        ids = ecr.list_images(repositoryName="fill/app", maxResults=1000)["imageIds"]
        assert ids
        out = ecr.batch_delete_image(repositoryName="fill/app", imageIds=ids)
        assert out["failures"] == [], out["failures"]
        c = Client(reg.url, auth=reg.auth)
        deadline = time.time() + 60
        while True:
            r = push_image(c, "fill/app", "after", "after-gc", 4 * MIB)
            if r is None:
                break
            assert r.status_code == 503, describe(r)
            assert time.time() < deadline, "GC never freed the disk:\n" + reg.log()
            time.sleep(1)
        assert "garbage collection failed" not in reg.full_log(), reg.log()
    finally:
        reg.stop()
