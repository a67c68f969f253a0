"""Small helpers shared by the client tests: running tools, and checking what
the registry serves over its HTTP API (independently of any client)."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest
import requests

from images import INDEX_TYPES, sha256_digest

ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def creds(registry):
    """`AWS:<token>`: the user:password pair clients pass with --creds/--user."""
    return "AWS:%s" % registry.token


def require_tool(*names):
    """Skip the test if a tool is missing, unless CI is set: then fail."""
    for name in names:
        if shutil.which(name) is None:
            msg = "%s is not installed (run .ci/install-deps.sh)" % name
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)


def run(cmd, registry=None, timeout=120, check=True, env=None, input=None):
    """Run a command; on failure, fail the test with its output and the
    registry's log tail."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        p = subprocess.run(
            [str(c) for c in cmd],
            capture_output=True,
            timeout=timeout,
            env=full_env,
            input=input,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            "timed out after %ss: %s\nstdout:\n%s\nstderr:\n%s%s"
            % (timeout, " ".join(map(str, cmd)), _tail(e.stdout), _tail(e.stderr), _reglog(registry))
        )
    if check and p.returncode != 0:
        pytest.fail(
            "command failed (exit %d): %s\nstdout:\n%s\nstderr:\n%s%s"
            % (p.returncode, " ".join(map(str, cmd)), _tail(p.stdout), _tail(p.stderr), _reglog(registry))
        )
    return p


def _tail(b, n=6000):
    if b is None:
        return ""
    s = b.decode(errors="replace") if isinstance(b, bytes) else b
    return s[-n:]


def _reglog(registry):
    if registry is None:
        return ""
    return "\n--- registry log (tail) ---\n" + registry.log()[-4000:]


class RegistryAPI:
    """Direct HTTP checks of the distribution API."""

    def __init__(self, registry):
        self.registry = registry
        self.url = registry.url
        self.s = requests.Session()
        self.s.auth = registry.auth

    def _fail(self, what, r):
        pytest.fail(
            "%s: %s %s -> %d\n%s%s"
            % (what, r.request.method, r.url, r.status_code, r.text[:1000], _reglog(self.registry))
        )

    def get_manifest(self, repo, ref, expect=200):
        r = self.s.get("%s/v2/%s/manifests/%s" % (self.url, repo, ref), headers={"Accept": ACCEPT})
        if r.status_code != expect:
            self._fail("GET manifest", r)
        return r

    def head_manifest(self, repo, ref):
        return self.s.head("%s/v2/%s/manifests/%s" % (self.url, repo, ref), headers={"Accept": ACCEPT})

    def get_blob(self, repo, digest, expect=200):
        r = self.s.get("%s/v2/%s/blobs/%s" % (self.url, repo, digest))
        if r.status_code != expect:
            self._fail("GET blob", r)
        return r

    def head_blob(self, repo, digest):
        return self.s.head("%s/v2/%s/blobs/%s" % (self.url, repo, digest))

    def tags(self, repo):
        r = self.s.get("%s/v2/%s/tags/list" % (self.url, repo))
        if r.status_code != 200:
            self._fail("GET tags", r)
        return r.json().get("tags") or []

    def manifest_bytes(self, repo, ref):
        """GET a manifest, checking its digest header and content; returns
        (bytes, digest, media_type)."""
        r = self.get_manifest(repo, ref)
        body = r.content
        digest = sha256_digest(body)
        hdr = r.headers.get("Docker-Content-Digest")
        assert hdr == digest, "Docker-Content-Digest %r != sha256 of body %r (%s:%s)" % (hdr, digest, repo, ref)
        if ref.startswith("sha256:"):
            assert digest == ref, "manifest fetched by digest %s has digest %s" % (ref, digest)
        ctype = r.headers.get("Content-Type", "").split(";")[0].strip()
        mt = json.loads(body).get("mediaType")
        if mt:
            assert ctype == mt, "Content-Type %r != manifest mediaType %r" % (ctype, mt)
        return body, digest, ctype

    def check_tree(self, repo, ref):
        """Fetch a manifest (or index) and everything it references from the
        registry, verifying every digest and size. Returns {digest: bytes}."""
        out = {}
        body, digest, _ = self.manifest_bytes(repo, ref)
        out[digest] = body
        doc = json.loads(body)
        if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
            for d in doc["manifests"]:
                sub = self.check_tree(repo, d["digest"])
                assert len(sub[d["digest"]]) == d["size"], "size mismatch for %s" % d["digest"]
                out.update(sub)
            return out
        for d in [doc["config"]] + doc["layers"]:
            data = self.get_blob(repo, d["digest"]).content
            assert sha256_digest(data) == d["digest"], "blob %s served with wrong content" % d["digest"]
            assert len(data) == d["size"], "blob %s: %d bytes, descriptor says %d" % (d["digest"], len(data), d["size"])
            out[d["digest"]] = data
        return out


@pytest.fixture
def container_store():
    """Factory for private containers-storage dirs. They live directly under
    /tmp because podman refuses a --runroot longer than 50 characters (pytest's
    tmp_path is too long). Removed at teardown."""
    made = []

    def make():
        d = tempfile.mkdtemp(prefix="kura-e2e-", dir="/tmp")
        made.append(d)
        return d

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


def buildah_cmd(store_dir):
    """buildah with private vfs storage under store_dir (no system store)."""
    return [
        "buildah",
        "--root", os.path.join(str(store_dir), "root"),
        "--runroot", os.path.join(str(store_dir), "run"),
        "--storage-driver", "vfs",
    ]


def podman_cmd(store_dir):
    """podman as root in a container without systemd: private vfs storage,
    cgroupfs, file events, private tmpdir. Same storage layout as buildah_cmd,
    so both tools see the same images when given the same store_dir."""
    return [
        "podman",
        "--root", os.path.join(str(store_dir), "root"),
        "--runroot", os.path.join(str(store_dir), "run"),
        "--storage-driver", "vfs",
        "--tmpdir", os.path.join(str(store_dir), "tmp"),
        "--cgroup-manager=cgroupfs",
        "--events-backend=file",
    ]


def podman_login(p, registry, authfile):
    """`podman login` as a user would (the token on stdin) into a private auth
    file; returns the options that make later podman/buildah commands use it."""
    out = run(p + ["login", "--authfile", str(authfile), "--tls-verify=false",
                   "--username", "AWS", "--password-stdin", registry.host],
              registry=registry, input=registry.token.encode())
    assert b"Login Succeeded" in out.stdout + out.stderr, out
    return ["--authfile", str(authfile)]


def image_files(api, repo, ref):
    """{path: bytes} of the regular files in an image's layers as served by the
    registry (layers applied in order; whiteouts are not interpreted). Also
    checks the config's diff_ids against the decompressed layers."""
    import gzip
    import hashlib

    from images import tar_members

    tree = api.check_tree(repo, ref)
    body, _, _ = api.manifest_bytes(repo, ref)
    manifest = json.loads(body)
    config = json.loads(tree[manifest["config"]["digest"]])
    files = {}
    for i, layer in enumerate(manifest["layers"]):
        data = tree[layer["digest"]]
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        assert config["rootfs"]["diff_ids"][i] == diff_id, "layer %d diff_id mismatch" % i
        files.update({k: v for k, v in tar_members(raw).items() if v is not None})
    return files
