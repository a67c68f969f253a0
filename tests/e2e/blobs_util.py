"""Small helpers for raw OCI distribution API calls in the e2e tests.

Only `requests` and the standard library: a tiny OCI pusher (blobs and
manifests), deterministic pseudo-random data, and error-shape assertions.
"""
import hashlib
import json
import os
import random
import re
import shutil
from urllib.parse import urljoin

import pytest
import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

EMPTY_JSON = b"{}"
EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

MANIFEST_ACCEPT = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST])

# Every request gets a timeout so a wedged server fails a test instead of hanging it.
TIMEOUT = 60


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def rand_bytes(n, seed=None):
    """`n` pseudo-random bytes; deterministic when `seed` is given."""
    rng = random.Random(seed) if seed is not None else random.Random(os.urandom(16))
    return rng.randbytes(n)


def canonical(obj):
    """Serialize a manifest/config dict to bytes (the exact bytes we push)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def abs_location(base_url, resp):
    """The absolute form of a response's Location header (it may be relative)."""
    loc = resp.headers.get("Location")
    assert loc, f"{resp.request.method} {resp.request.url} -> {resp.status_code}: no Location header"
    return urljoin(base_url + "/", loc)


def with_query(url, **params):
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in params.items())


def describe(resp):
    """A one-paragraph description of a response, for assertion messages."""
    try:
        body = resp.content[:600]
    except Exception:  # a streamed body that was already consumed
        body = b"<streamed>"
    return (
        f"{resp.request.method} {resp.request.url} -> {resp.status_code}\n"
        f"headers: {dict(resp.headers)}\nbody: {body!r}"
    )


def expect(resp, *statuses):
    assert resp.status_code in statuses, f"expected {statuses}\n" + describe(resp)
    return resp


def assert_error(resp, status, code):
    """Assert an OCI error response: the status and `{"errors":[{"code","message",...}]}`."""
    assert resp.status_code == status, f"expected {status} {code}\n" + describe(resp)
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError("error body is not JSON\n" + describe(resp))
    assert isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"], (
        "error body must be {\"errors\": [...]} with at least one entry\n" + describe(resp)
    )
    for err in body["errors"]:
        assert isinstance(err, dict), describe(resp)
        assert isinstance(err.get("code"), str), describe(resp)
        assert re.fullmatch(r"[A-Z_]+", err["code"]), describe(resp)
        # "message" is OPTIONAL (a string when present); "detail" is OPTIONAL, any JSON.
        assert isinstance(err.get("message", ""), str), describe(resp)
        assert set(err) <= {"code", "message", "detail"}, describe(resp)
    codes = [e["code"] for e in body["errors"]]
    assert code in codes, f"expected error code {code}, got {codes}\n" + describe(resp)
    return body


class Client:
    """A minimal OCI distribution client over `requests` for one registry.

    `auth` is sent with every request: a `(user, password)` pair for Basic auth
    (Kura wants `("AWS", token)`, i.e. `registry.auth`), or None for none.
    """

    def __init__(self, base_url, auth=None):
        self.base = base_url.rstrip("/")
        self.auth = auth
        self.s = requests.Session()
        self.s.auth = auth

    def url(self, path):
        return self.base + path

    def get(self, path, **kw):
        kw.setdefault("timeout", TIMEOUT)
        return self.s.get(self.url(path), **kw)

    def head(self, path, **kw):
        kw.setdefault("timeout", TIMEOUT)
        return self.s.head(self.url(path), **kw)

    def delete(self, path, **kw):
        kw.setdefault("timeout", TIMEOUT)
        return self.s.delete(self.url(path), **kw)

    def request(self, method, url, **kw):
        """`url` may be absolute or a path."""
        kw.setdefault("timeout", TIMEOUT)
        if url.startswith("/"):
            url = self.url(url)
        return self.s.request(method, url, **kw)

    # ---- blobs ----

    def start_upload(self, repo, **query):
        path = f"/v2/{repo}/blobs/uploads/"
        if query:
            path = with_query(path, **query)
        r = self.request("POST", path, headers={"Content-Length": "0"})
        expect(r, 202)
        return abs_location(self.base, r)

    def push_blob(self, repo, data, digest=None):
        """POST + PUT (monolithic, two requests). Returns the digest."""
        digest = digest or sha256(data)
        loc = self.start_upload(repo)
        r = self.request(
            "PUT",
            with_query(loc, digest=digest),
            data=data,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
        )
        expect(r, 201)
        assert r.headers.get("Location"), describe(r)
        return digest

    def push_blob_chunked(self, repo, data, chunk):
        """POST, PATCH each `chunk`-sized piece with Content-Range, then PUT ?digest=."""
        digest = sha256(data)
        loc = self.start_upload(repo)
        for off in range(0, len(data), chunk):
            piece = data[off : off + chunk]
            r = self.request(
                "PATCH",
                loc,
                data=piece,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{off}-{off + len(piece) - 1}",
                    "Content-Length": str(len(piece)),
                },
            )
            expect(r, 202)
            assert r.headers.get("Range") == f"0-{off + len(piece) - 1}", describe(r)
            loc = abs_location(self.base, r)
        r = self.request("PUT", with_query(loc, digest=digest), headers={"Content-Length": "0"})
        expect(r, 201)
        return digest

    def get_blob(self, repo, digest, **kw):
        return self.get(f"/v2/{repo}/blobs/{digest}", **kw)

    def blob_exists(self, repo, digest):
        r = self.head(f"/v2/{repo}/blobs/{digest}")
        assert r.status_code in (200, 404), describe(r)
        return r.status_code == 200

    # ---- manifests ----

    def put_manifest(self, repo, ref, body, media_type=OCI_MANIFEST):
        """PUT raw manifest bytes (or a dict, serialized canonically). Returns the response."""
        if isinstance(body, dict):
            body = canonical(body)
        headers = {"Content-Type": media_type} if media_type else {}
        return self.request("PUT", f"/v2/{repo}/manifests/{ref}", data=body, headers=headers)

    def push_manifest(self, repo, ref, body, media_type=OCI_MANIFEST):
        if isinstance(body, dict):
            body = canonical(body)
        r = self.put_manifest(repo, ref, body, media_type)
        expect(r, 201)
        digest = sha256(body)
        got = r.headers.get("Docker-Content-Digest")
        assert got in (None, digest), f"Docker-Content-Digest {got} != {digest}\n" + describe(r)
        return digest, len(body)

    def get_manifest(self, repo, ref, accept=MANIFEST_ACCEPT):
        return self.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": accept})

    def push_image(self, repo, tag=None, layers=None, arch="amd64", os_="linux",
                   docker=False, annotations=None, seed=None):
        """Push config + layers + manifest. Returns (digest, size, manifest_bytes).

        If `tag` is None the manifest is pushed by digest.
        """
        if layers is None:
            layers = [rand_bytes(1024, seed)]
        cfg = canonical({
            "architecture": arch,
            "os": os_,
            "rootfs": {"type": "layers", "diff_ids": [sha256(l) for l in layers]},
            "config": {},
        })
        cfg_digest = self.push_blob(repo, cfg)
        layer_descs = []
        for l in layers:
            d = self.push_blob(repo, l)
            layer_descs.append({
                "mediaType": DOCKER_LAYER if docker else OCI_LAYER,
                "size": len(l),
                "digest": d,
            })
        mt = DOCKER_MANIFEST if docker else OCI_MANIFEST
        man = {
            "schemaVersion": 2,
            "mediaType": mt,
            "config": {"mediaType": DOCKER_CONFIG if docker else OCI_CONFIG,
                       "size": len(cfg), "digest": cfg_digest},
            "layers": layer_descs,
        }
        if annotations:
            man["annotations"] = annotations
        if docker:
            # Exactly what docker itself pushes (Go's json.MarshalIndent with 3 spaces);
            # old docker CLIs re-serialize manifests this way and expect the same digest.
            body = json.dumps(man, indent=3).encode()
        else:
            body = canonical(man)
        digest = sha256(body)
        self.push_manifest(repo, tag or digest, body, mt)
        return digest, len(body), body

    def ensure_empty_config(self, repo):
        if not self.blob_exists(repo, EMPTY_DIGEST):
            self.push_blob(repo, EMPTY_JSON)
        return {"mediaType": OCI_EMPTY, "digest": EMPTY_DIGEST, "size": 2}


def stream_digest(resp, chunk=1 << 20):
    """Hash a streamed response body; returns (digest, length)."""
    h = hashlib.sha256()
    n = 0
    for part in resp.iter_content(chunk_size=chunk):
        h.update(part)
        n += len(part)
    return "sha256:" + h.hexdigest(), n


def need_tool(name):
    """The path of a CLI tool; skips the test if missing (fails under KURA_E2E_REQUIRE_TOOLS=1)."""
    path = shutil.which(name)
    if not path:
        msg = f"{name} not installed (see .ci/install-deps.sh)"
        if os.environ.get("KURA_E2E_REQUIRE_TOOLS") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return path


PRNG_BLOCK = 64 * 1024


def prng_chunks(seed, size, chunk=1 << 20):
    """Yield `size` pseudo-random bytes in pieces of `chunk` (SHAKE-128 in counter mode).

    The byte stream depends only on `seed` (not on `chunk`), and never more than
    one chunk is held in memory.
    """
    assert chunk % PRNG_BLOCK == 0
    seed = str(seed).encode()
    counter = 0
    left = size
    while left > 0:
        n = min(chunk, left)
        blocks = []
        for _ in range((n + PRNG_BLOCK - 1) // PRNG_BLOCK):
            blocks.append(hashlib.shake_128(seed + counter.to_bytes(8, "little")).digest(PRNG_BLOCK))
            counter += 1
        yield b"".join(blocks)[:n]
        left -= n


def prng_digest(seed, size):
    h = hashlib.sha256()
    for piece in prng_chunks(seed, size):
        h.update(piece)
    return "sha256:" + h.hexdigest()
