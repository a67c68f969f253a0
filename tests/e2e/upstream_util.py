"""Upstream registries for the pull-through cache tests: Debian's
`docker-registry` (Distribution 2.8), open or behind htpasswd Basic auth, with
its access log, so a test can count what Kura fetched from it.
"""
import base64
import os
import re
import signal
import subprocess
import time
import urllib.request

from conftest import free_port
from helpers import require_tool


class Distribution:
    """`docker-registry serve` on 127.0.0.1:<free port>, storage under `workdir`.

    `htpasswd`: a list of (user, bcrypt hash) lines for Basic auth, or None (open).
    """

    def __init__(self, workdir, htpasswd=None):
        require_tool("docker-registry")
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.root = os.path.join(self.workdir, "storage")
        self.port = free_port()
        self.host = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.host
        self.log_path = os.path.join(self.workdir, "registry.log")
        self.config = os.path.join(self.workdir, "config.yml")
        auth = ""
        if htpasswd:
            path = os.path.join(self.workdir, "htpasswd")
            with open(path, "w") as f:
                f.write("".join("%s:%s\n" % (u, h) for u, h in htpasswd))
            auth = "auth:\n  htpasswd:\n    realm: upstream\n    path: %s\n" % path
        with open(self.config, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
                "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n"
                "http:\n  addr: %s\n%s" % (self.root, self.host, auth))
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["/usr/bin/docker-registry", "serve", self.config],
                                     stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("docker-registry exited:\n" + self.log())
            try:
                urllib.request.urlopen(self.url + "/v2/", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # 401 with auth on: it is up
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("docker-registry did not start:\n" + self.log())

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-6000:]
        except OSError:
            return ""

    def requests(self, method, kind, name=None):
        """The access log's requests of `method` for `kind` ("blobs" or
        "manifests") as (repository, reference, status) tuples."""
        with open(self.log_path, "rb") as f:
            text = f.read().decode(errors="replace")
        out = []
        for m in re.finditer(r'"%s /v2/(.+?)/%s/([^ ?"]+)[^"]*" (\d{3})' % (method, kind), text):
            if name is None or m.group(1) == name:
                out.append((m.group(1), m.group(2), int(m.group(3))))
        return out

    def blob_path(self, digest):
        algo, hexd = digest.split(":", 1)
        return os.path.join(self.root, "docker", "registry", "v2", "blobs", algo, hexd[:2], hexd, "data")


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
