"""A 2 GiB streamed push with bounded server memory, and kill -9 crash consistency.

test_two_gib_streamed_push is marked `large` (deselect with -m "not large").
"""
import hashlib
import json
import os
import random
import re
import sqlite3
import subprocess
import threading
import time

import pytest
import requests

from blobs_util import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Client,
    abs_location,
    canonical,
    describe,
    expect,
    prng_chunks,
    prng_digest,
    sha256,
    stream_digest,
    with_query,
)

GIB = 1024 * 1024 * 1024
MIB = 1024 * 1024


# ---------------------------------------------------------------- (a) 2 GiB


@pytest.mark.large
def test_two_gib_streamed_push(registry, record_property):
    c = Client(registry.url, auth=registry.auth)
    repo = "large/blob"
    size = 2 * GIB
    seed = "two-gib"
    h = hashlib.sha256()
    sent = [0]

    def body():
        # Hash as we go: the test never holds more than one 1 MiB chunk.
        for piece in prng_chunks(seed, size):
            h.update(piece)
            sent[0] += len(piece)
            yield piece

    t0 = time.time()
    loc = c.start_upload(repo)
    # One PATCH, streamed with chunked transfer encoding: no Content-Length, no
    # Content-Range (what docker/containerd do for a stream of unknown length).
    r = requests.patch(loc, data=body(), headers={"Content-Type": "application/octet-stream"},
                       auth=registry.auth, timeout=(10, 600))
    expect(r, 202)
    assert sent[0] == size
    assert r.headers.get("Range") == f"0-{size - 1}", describe(r)
    digest = "sha256:" + h.hexdigest()
    loc = abs_location(c.base, r)
    r = c.request("PUT", with_query(loc, digest=digest), headers={"Content-Length": "0"},
                  timeout=(10, 600))
    expect(r, 201)
    t_push = time.time() - t0

    hd = c.head(f"/v2/{repo}/blobs/{digest}")
    expect(hd, 200)
    assert int(hd.headers["Content-Length"]) == size

    t1 = time.time()
    with c.get_blob(repo, digest, stream=True, timeout=(10, 600)) as g:
        expect(g, 200)
        assert int(g.headers["Content-Length"]) == size
        got, n = stream_digest(g)
    t_pull = time.time() - t1
    assert n == size
    assert got == digest

    rss = registry.peak_rss_kib()
    record_property("server_peak_rss_kib", rss)
    print(f"\n2 GiB push {t_push:.1f}s, pull {t_pull:.1f}s, server peak RSS {rss} KiB "
          f"({rss / 1024:.1f} MiB)")
    assert rss is not None
    assert rss < 256 * 1024, f"server peak RSS {rss} KiB >= 256 MiB"


# ---------------------------------------------------------------- (b) crash


class SlowPush(threading.Thread):
    """Push one pseudo-random blob in a single slow, streamed PATCH, then PUT ?digest=."""

    def __init__(self, base, repo, seed, size, piece=256 * 1024, delay=0.006, auth=None):
        super().__init__(daemon=True)
        self.base, self.repo, self.seed, self.size = base, repo, seed, size
        self.auth = auth
        self.piece, self.delay = piece, delay
        self.digest = prng_digest(seed, size)
        self.sent = 0
        self.progress = threading.Event()   # set once `want_bytes` have been produced
        self.want_bytes = size + 1
        self.about_to_put = threading.Event()
        self.put_done = threading.Event()
        self.put_status = None
        self.error = None
        self.loc = None  # the upload session's URL

    def run(self):
        s = requests.Session()
        s.auth = self.auth
        try:
            r = s.post(f"{self.base}/v2/{self.repo}/blobs/uploads/",
                       headers={"Content-Length": "0"}, timeout=30)
            assert r.status_code == 202, r.status_code
            loc = self.loc = abs_location(self.base, r)

            def body():
                for chunk in prng_chunks(self.seed, self.size, self.piece):
                    self.sent += len(chunk)
                    if self.sent >= self.want_bytes:
                        self.progress.set()
                    yield chunk
                    time.sleep(self.delay)

            r = s.patch(loc, data=body(), headers={"Content-Type": "application/octet-stream"},
                        timeout=60)
            assert r.status_code == 202, r.status_code
            loc = abs_location(self.base, r)
            self.about_to_put.set()
            r = s.put(with_query(loc, digest=self.digest), headers={"Content-Length": "0"},
                      timeout=60)
            self.put_status = r.status_code
            self.put_done.set()
        except Exception as e:  # the server was killed under us: expected
            self.error = e
        finally:
            self.progress.set()
            self.about_to_put.set()
            self.put_done.set()


def check_blob_complete(c, repo, digest, size):
    """The blob is present, the right length, and hashes to its digest."""
    h = c.head(f"/v2/{repo}/blobs/{digest}")
    assert h.status_code == 200, describe(h)
    assert int(h.headers["Content-Length"]) == size, describe(h)
    with c.get_blob(repo, digest, stream=True) as g:
        assert g.status_code == 200, describe(g)
        got, n = stream_digest(g)
    assert (got, n) == (digest, size), f"{repo}@{digest}: got {n} bytes hashing to {got}"


def check_absent_or_complete(c, repo, digest, size):
    h = c.head(f"/v2/{repo}/blobs/{digest}")
    assert h.status_code in (200, 404), describe(h)
    if h.status_code == 200:
        check_blob_complete(c, repo, digest, size)
    else:
        g = c.get_blob(repo, digest)
        assert g.status_code == 404, describe(g)
    return h.status_code == 200


def check_resume(c, push):
    """After a restart, the interrupted upload session is gone or consistently resumable."""
    st = c.request("GET", push.loc)
    if st.status_code == 404:
        return "session gone"
    assert st.status_code == 204, describe(st)
    m = re.fullmatch(r"0-(\d+)", st.headers.get("Range", ""))
    assert m, describe(st)
    end = int(m.group(1))
    # "0-0" is ambiguous (empty, or one byte): try 0 first; a 416 means it was 1.
    offsets = [0, 1] if end == 0 else [end + 1]
    assert offsets[-1] <= push.sent, f"session claims {offsets[-1]} bytes, {push.sent} sent"
    loc = abs_location(c.base, st)
    for offset in offsets:
        how = resume_from(c, push, loc, offset)
        if how:
            return how
    raise AssertionError(f"could not resume the upload session (Range {st.headers['Range']})")


def resume_from(c, push, loc, offset):
    def rest():
        skip = offset
        for piece in prng_chunks(push.seed, push.size):
            if skip >= len(piece):
                skip -= len(piece)
                continue
            yield piece[skip:]
            skip = 0

    if offset < push.size:
        r = c.request("PATCH", loc, data=b"".join(rest()), timeout=120,
                      headers={"Content-Type": "application/octet-stream",
                               "Content-Range": f"{offset}-{push.size - 1}"})
        if r.status_code == 416 and offset == 0:
            return None
        expect(r, 202)
        loc = abs_location(c.base, r)
    r = c.request("PUT", with_query(loc, digest=push.digest), headers={"Content-Length": "0"})
    expect(r, 201)
    return f"resumed at byte {offset}"


def small_image(c, repo, tag, seed):
    layer = random.Random(seed).randbytes(2048)
    return c.push_image(repo, tag, layers=[layer], seed=seed)


def test_kill9_during_blob_pushes(registry):
    rng = random.Random(20240601)
    c = Client(registry.url, auth=registry.auth)
    size = 64 * MIB
    committed_blobs = []      # (repo, digest, size): PUT answered 201 before the kill
    committed_manifests = []  # (repo, tag, digest, body)
    modes = ["mid-patch", "after-put", "during-put", "mid-patch", "during-put", "after-put"]
    for rnd, mode in enumerate(modes):
        repo = f"crash/r{rnd % 2}"
        # Some content that is fully committed before anything goes wrong.
        data = random.Random(rnd).randbytes(300_000 + rnd)
        committed_blobs.append((repo, c.push_blob(repo, data), len(data)))
        d, _, body = small_image(c, repo, f"round{rnd}", seed=1000 + rnd)
        committed_manifests.append((repo, f"round{rnd}", d, body))

        push = SlowPush(registry.url, repo, f"crash-{rnd}", size, auth=registry.auth)
        if mode == "mid-patch":
            push.want_bytes = rng.randrange(size // 20, size * 19 // 20)
        push.start()
        if mode == "mid-patch":
            assert push.progress.wait(120)
        elif mode == "during-put":
            assert push.about_to_put.wait(120)
            time.sleep(rng.choice([0, 0.001, 0.003, 0.008]))
        else:
            assert push.put_done.wait(120)
        registry.kill9()
        push.join(60)
        assert not push.is_alive()
        print(f"round {rnd} ({mode}): sent {push.sent} bytes, PUT status {push.put_status}, "
              f"client error {type(push.error).__name__ if push.error else None}")
        if push.put_status is not None:
            assert push.put_status == 201, push.put_status
            committed_blobs.append((repo, push.digest, size))

        registry.start()
        for repo_, digest, n in committed_blobs:
            check_blob_complete(c, repo_, digest, n)
        for repo_, tag, digest, body in committed_manifests:
            g = c.get_manifest(repo_, tag)
            assert g.status_code == 200, describe(g)
            assert g.content == body
            assert c.get_manifest(repo_, digest).content == body
        present = check_absent_or_complete(c, repo, push.digest, size)
        if mode == "after-put":
            assert present, "a blob whose PUT returned 201 must survive kill -9"
        if push.put_status is None and push.loc:
            how = check_resume(c, push)
            print(f"round {rnd}: interrupted blob present={present}; upload session: {how}")
            if how.startswith("resumed"):
                check_blob_complete(c, repo, push.digest, size)
        # A fresh upload of the interrupted blob succeeds and is complete.
        loc = c.start_upload(repo)
        r = requests.patch(loc, data=prng_chunks(f"crash-{rnd}", size),
                           headers={"Content-Type": "application/octet-stream"},
                           auth=registry.auth, timeout=120)
        expect(r, 202)
        r = c.request("PUT", with_query(abs_location(c.base, r), digest=push.digest),
                      headers={"Content-Length": "0"})
        expect(r, 201)
        check_blob_complete(c, repo, push.digest, size)
        committed_blobs.append((repo, push.digest, size))

    # GC leaves no file that no row names (orphans of the kills), and takes
    # nothing that one does (unreferenced blobs go: the grace period is 0).
    registry.stop()
    time.sleep(2.5)  # past the HEAD-touch slack GC adds to the grace period
    out = subprocess.run([kura_bin(), "gc", "--data-dir", registry.data_dir, "--gc-grace", "0s",
                          "--upload-max-age", "0s"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    print("gc after the kills:", out.stdout)
    assert_no_orphans(registry.data_dir)
    registry.start()
    for repo_, tag, digest, body in committed_manifests:
        g = c.get_manifest(repo_, tag)
        assert g.status_code == 200 and g.content == body, describe(g)
        for desc in [json.loads(body)["config"]] + json.loads(body)["layers"]:
            check_blob_complete(c, repo_, desc["digest"], desc["size"])


def kura_bin():
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
    return os.environ.get("KURA_BIN", os.path.join(root, "target", "release", "kura"))


def assert_no_orphans(data_dir):
    """Every blob file is named by a `blobs` row; no upload file is left."""
    db = sqlite3.connect(f"file:{os.path.join(data_dir, 'meta.db')}?mode=ro", uri=True)
    keys = {k for (k,) in db.execute("SELECT storage_key FROM blobs")}
    uploads = {u for (u,) in db.execute("SELECT id FROM uploads")}
    db.close()
    root = os.path.join(data_dir, "blobs", "blobs")
    files = set()
    for dirpath, _, names in os.walk(root):
        for n in names:
            files.add(os.path.relpath(os.path.join(dirpath, n), root))
    assert files == keys, f"orphan files: {sorted(files - keys)}; rows without files: {sorted(keys - files)}"
    left = set(os.listdir(os.path.join(data_dir, "blobs", "uploads"))) - uploads
    assert not left, f"orphan upload files: {sorted(left)}"


class ManifestBurst(threading.Thread):
    """PUT many distinct small manifests (tag t0000, t0001, ...) as fast as possible."""

    def __init__(self, base, repo, config, layer, count=5000, auth=None):
        super().__init__(daemon=True)
        self.base, self.repo, self.config, self.layer = base, repo, config, layer
        self.auth = auth
        self.count = count
        self.acked = []        # (tag, digest, body) answered 201
        self.in_flight = None  # (tag, digest, body) sent when the server died
        self.error = None
        self.started = threading.Event()

    def body(self, i):
        return canonical({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": self.config, "layers": [self.layer],
            "annotations": {"i": str(i), "pad": "p" * (i % 997)},
        })

    def run(self):
        s = requests.Session()
        s.auth = self.auth
        try:
            for i in range(self.count):
                tag = f"t{i:04d}"
                b = self.body(i)
                self.in_flight = (tag, sha256(b), b)
                r = s.put(f"{self.base}/v2/{self.repo}/manifests/{tag}", data=b,
                          headers={"Content-Type": OCI_MANIFEST}, timeout=30)
                assert r.status_code == 201, (r.status_code, r.text)
                self.acked.append(self.in_flight)
                self.in_flight = None
                if len(self.acked) == 5:
                    self.started.set()
        except Exception as e:
            self.error = e
        finally:
            self.started.set()


def test_kill9_during_manifest_burst(registry):
    rng = random.Random(7)
    c = Client(registry.url, auth=registry.auth)
    repo = "crash/manifests"
    cfg = canonical({"architecture": "amd64", "os": "linux"})
    layer = b"burst layer"
    config = {"mediaType": OCI_CONFIG, "digest": c.push_blob(repo, cfg), "size": len(cfg)}
    layer_d = {"mediaType": OCI_LAYER, "digest": c.push_blob(repo, layer), "size": len(layer)}
    all_acked = {}
    for rnd in range(3):
        burst = ManifestBurst(registry.url, repo, config, layer_d, auth=registry.auth)
        burst.start()
        assert burst.started.wait(60)
        time.sleep(rng.uniform(0.05, 0.6))
        registry.kill9()
        burst.join(60)
        assert not burst.is_alive()
        assert burst.error is not None, "the burst finished before the kill; make it longer"
        print(f"burst {rnd}: {len(burst.acked)} manifests acknowledged before kill -9")
        for tag, digest, body in burst.acked:
            all_acked[tag] = (digest, body)  # a later round overwrites the same tags
        registry.start()

        in_flight_tag = burst.in_flight[0] if burst.in_flight else None
        for tag, (digest, body) in all_acked.items():
            if tag == in_flight_tag:
                continue  # being overwritten at the kill: checked below
            g = c.get_manifest(repo, tag)
            assert g.status_code == 200, f"acked tag {tag} lost after kill -9\n" + describe(g)
            assert g.content == body, f"tag {tag} points at different bytes after kill -9"
            assert g.headers.get("Docker-Content-Digest") in (None, digest)
        if burst.in_flight:
            tag, digest, body = burst.in_flight
            g = c.get_manifest(repo, tag)
            # Absent, or the new manifest, or (if a previous round set it) the old one.
            allowed = {body}
            if tag in all_acked:
                allowed.add(all_acked[tag][1])
                if g.status_code == 200:
                    all_acked[tag] = (sha256(g.content), g.content)
            if g.status_code == 200:
                assert g.content in allowed, f"in-flight tag {tag}: partial/unknown manifest"
            else:
                assert g.status_code == 404, describe(g)
                assert tag not in all_acked, describe(g)

        # Every tag the registry lists points at a complete, parseable manifest.
        r = c.get(f"/v2/{repo}/tags/list")
        expect(r, 200)
        tags = r.json()["tags"] or []
        assert set(all_acked) <= set(tags)
        for tag in tags:
            if not tag.startswith("t"):
                continue  # the after-N images below
            g = c.get_manifest(repo, tag)
            assert g.status_code == 200, f"listed tag {tag} not readable\n" + describe(g)
            man = json.loads(g.content)
            assert man["config"] == config and man["layers"] == [layer_d]
            assert g.headers.get("Docker-Content-Digest") in (None, sha256(g.content))
        # The registry still takes writes.
        small_image(c, repo, f"after-{rnd}", seed=rnd)


def test_kill9_during_upload_finalize(registry):
    """Sweep kill -9 over the closing PUT of finished uploads (the rename + commit window).

    After each restart: the blob is absent or complete; the upload session is gone,
    or it still works (finishing it gives 201 and the right content); a fresh
    upload succeeds.
    """
    c = Client(registry.url, auth=registry.auth)
    size = 8 * MIB
    repo = "crash/finalize"
    outcomes = []
    for i, delay_ms in enumerate([0, 0.5, 1, 1.5, 2, 3, 4, 5, 6, 8, 10, 12, 15, 20]):
        push = SlowPush(registry.url, repo, f"finalize-{i}", size, piece=MIB, delay=0,
                        auth=registry.auth)
        s = requests.Session()
        s.auth = registry.auth
        r = s.post(f"{c.base}/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
        expect(r, 202)
        r = s.patch(abs_location(c.base, r), data=b"".join(prng_chunks(push.seed, size)),
                    headers={"Content-Type": "application/octet-stream"})
        expect(r, 202)
        push.loc = abs_location(c.base, r)
        push.sent = size
        status = []

        def put():
            try:
                status.append(s.put(with_query(push.loc, digest=push.digest),
                                    headers={"Content-Length": "0"}, timeout=30).status_code)
            except Exception:
                status.append(None)

        t = threading.Thread(target=put, daemon=True)
        t.start()
        time.sleep(delay_ms / 1000)
        registry.kill9()
        t.join(30)
        registry.start()
        present = check_absent_or_complete(c, repo, push.digest, size)
        if status[0] == 201:
            assert present, f"delay {delay_ms}ms: PUT returned 201 but the blob is gone"
            how = "PUT finished"
        else:
            try:
                how = check_resume(c, push)
                if how.startswith("resumed"):
                    check_blob_complete(c, repo, push.digest, size)
            except AssertionError as e:
                raise AssertionError(
                    f"kill -9 {delay_ms}ms after sending the closing PUT (no response), "
                    f"blob present={present}; the upload session is still listed but "
                    f"cannot be finished:\n{e}\nearlier rounds: {outcomes}") from None
        # A fresh upload of the same content always works.
        d = c.push_blob(repo, b"".join(prng_chunks(push.seed, size)))
        assert d == push.digest
        check_blob_complete(c, repo, push.digest, size)
        outcomes.append(f"{delay_ms}ms: PUT {status[0]}, present={present}, {how}")
    print("\n" + "\n".join(outcomes))
