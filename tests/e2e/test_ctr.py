"""containerd's ctr against the registry: pull an image skopeo pushed, push it to
another repository, and compare digests and bytes.

containerd runs privately: its own root, state, socket and config under /tmp,
with CRI and the system-dependent snapshotters disabled, and the `native`
snapshotter for unpacking (no overlay mounts)."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from helpers import RegistryAPI, creds, require_tool, run
from images import Layout, make_rng, random_image, random_multiarch

CONFIG = """version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"""


class Containerd:
    def __init__(self):
        # A short path: unix socket paths are limited to 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="kura-ctrd-", dir="/tmp")
        self.sock = os.path.join(self.dir, "containerd.sock")
        self.config = os.path.join(self.dir, "config.toml")
        self.log_path = os.path.join(self.dir, "containerd.log")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(d=self.dir))
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["containerd", "--config", self.config], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("containerd exited early:\n" + self.log_tail())
            if os.path.exists(self.sock):
                if subprocess.run(["ctr", "-a", self.sock, "version"], capture_output=True).returncode == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("containerd did not start:\n" + self.log_tail())

    def ctr(self, *args):
        return ["ctr", "-a", self.sock, *args]

    def log_tail(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def containerd():
    require_tool("containerd", "ctr", "skopeo")
    c = Containerd()
    yield c
    c.stop()
    assert c.proc.returncode is not None


def skopeo_push(registry, layout, tag, dest, *extra):
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
         "--dest-creds", creds(registry), *extra,
         "oci:%s:%s" % (layout.path, tag), "docker://%s/%s" % (registry.host, dest)], registry=registry)


def ctr_image_digest(containerd, ref):
    """The target digest of an image in containerd's image store."""
    out = run(containerd.ctr("images", "ls")).stdout.decode()
    for line in out.splitlines()[1:]:
        cols = line.split()
        if cols and cols[0] == ref:
            return cols[2]
    raise AssertionError("image %s not in containerd:\n%s" % (ref, out))


def assert_content_matches(containerd, layout, digest):
    """Every blob reachable from digest is in containerd's content store, byte for byte."""
    for d, _ in layout.walk(digest):
        got = run(containerd.ctr("content", "get", d)).stdout
        assert got == layout.blob(d), "containerd holds different bytes for %s" % d


def test_pull_push_image(registry, containerd, tmp_path):
    rng = make_rng()
    src = Layout(tmp_path / "src")
    desc, _ = random_image(src, rng, "v1", nlayers=3)
    skopeo_push(registry, src, "v1", "ctr/src/app:v1")

    ref = "%s/ctr/src/app:v1" % registry.host
    run(containerd.ctr("images", "pull", "--plain-http", "--user", creds(registry),
                       "--snapshotter", "native", ref), registry=registry)
    assert ctr_image_digest(containerd, ref) == desc["digest"]
    assert_content_matches(containerd, src, desc["digest"])

    dest = "%s/ctr/dst:v2" % registry.host
    run(containerd.ctr("images", "push", "--plain-http", "--user", creds(registry), dest, ref),
        registry=registry)

    api = RegistryAPI(registry)
    body, digest, _ = api.manifest_bytes("ctr/dst", "v2")
    assert digest == desc["digest"] and body == src.blob(desc["digest"])
    served = api.check_tree("ctr/dst", "v2")
    for d, _ in src.walk(desc["digest"]):
        assert served[d] == src.blob(d)
    assert api.tags("ctr/dst") == ["v2"]


def test_pull_push_multiarch(registry, containerd, tmp_path):
    rng = make_rng()
    src = Layout(tmp_path / "src")
    idx, children = random_multiarch(src, rng, "multi")
    skopeo_push(registry, src, "multi", "ctr/multi:v1", "--all")

    ref = "%s/ctr/multi:v1" % registry.host
    run(containerd.ctr("images", "pull", "--plain-http", "--user", creds(registry),
                       "--all-platforms", "--snapshotter", "native", ref),
        registry=registry)
    assert ctr_image_digest(containerd, ref) == idx["digest"]
    assert_content_matches(containerd, src, idx["digest"])

    dest = "%s/ctr/multi/copy:v1" % registry.host
    run(containerd.ctr("images", "push", "--plain-http", "--user", creds(registry), dest, ref),
        registry=registry)

    api = RegistryAPI(registry)
    body, digest, _ = api.manifest_bytes("ctr/multi/copy", "v1")
    assert digest == idx["digest"] and body == src.blob(idx["digest"])
    served = api.check_tree("ctr/multi/copy", "v1")
    for d, _ in src.walk(idx["digest"]):
        assert served[d] == src.blob(d)
    for c in children:
        assert api.manifest_bytes("ctr/multi/copy", c["digest"])[1] == c["digest"]
