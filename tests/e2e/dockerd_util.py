"""A real docker daemon for the tests: `dockerd` on a private socket and data
root (vfs storage, no iptables, no bridge), with a private client config.

Registries on 127.0.0.0/8 are plain-HTTP registries to docker by default, so
the tests need no daemon.json. The daemon needs root; without it (or without
dockerd) the tests that use it are skipped, or fail under
KURA_E2E_REQUIRE_TOOLS=1.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from blobs_util import need_tool


class Dockerd:
    def __init__(self):
        self.dockerd = need_tool("dockerd")
        self.docker = need_tool("docker")
        if os.geteuid() != 0:
            msg = "dockerd needs root"
            if os.environ.get("KURA_E2E_REQUIRE_TOOLS") == "1":
                pytest.fail(msg)
            pytest.skip(msg)
        # Unix socket paths are limited to 108 bytes: keep the directory short.
        self.dir = tempfile.mkdtemp(prefix="kura-dockerd-", dir="/tmp")
        self.sock = os.path.join(self.dir, "d.sock")
        self.config = os.path.join(self.dir, "config")
        os.mkdir(self.config)
        self.log_path = os.path.join(self.dir, "dockerd.log")
        self.proc = None

    def start(self):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.dockerd, "--storage-driver", "vfs", "--iptables=false", "--ip6tables=false",
             "--bridge=none", "-H", "unix://" + self.sock,
             "--data-root", os.path.join(self.dir, "root"),
             "--exec-root", os.path.join(self.dir, "exec"),
             "--pidfile", os.path.join(self.dir, "dockerd.pid")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dockerd exited early:\n" + self.log())
            if self("info", check=False, timeout=10).returncode == 0:
                return self
            time.sleep(0.3)
        raise RuntimeError("dockerd did not become ready:\n" + self.log())

    def env(self):
        env = dict(os.environ)
        env["DOCKER_HOST"] = "unix://" + self.sock
        env["DOCKER_CONFIG"] = self.config
        # The legacy builder: Debian's docker.io has no buildx plugin.
        env["DOCKER_BUILDKIT"] = "0"
        return env

    def __call__(self, *args, check=True, input=None, timeout=300):
        p = subprocess.run([self.docker, *map(str, args)], env=self.env(), capture_output=True,
                           text=True, timeout=timeout, input=input,
                           stdin=None if input is not None else subprocess.DEVNULL)
        if check and p.returncode != 0:
            pytest.fail("docker %s -> exit %d\nstdout: %s\nstderr: %s\n--- dockerd log ---\n%s" % (
                " ".join(map(str, args)), p.returncode, p.stdout[-3000:], p.stderr[-3000:],
                self.log()[-3000:]))
        return p

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # vfs layers are plain copies; containerd-shim leftovers are gone with the daemon.
        subprocess.run(["umount", "-R", os.path.join(self.dir, "root")], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def dockerd():
    d = Dockerd()
    try:
        d.start()
        yield d
    finally:
        d.stop()
