"""Shared fixtures for Kura's end-to-end tests with real clients.

Each test gets its own Kura process on a free loopback port with a fresh data
directory. The binary is `$KURA_BIN` (default: target/release/kura in the repo).

For harness development only, KURA_E2E_STANDIN=distribution runs Debian's
docker-registry instead (it lacks features Kura has, so some tests fail there).
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A running registry process: `host` is "127.0.0.1:PORT", `url` is "http://host"."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.data_dir = os.path.join(workdir, "data")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.proc = None
        self.log_path = os.path.join(workdir, "server.log")

    def _cmd(self):
        if os.environ.get("KURA_E2E_STANDIN") == "distribution":
            cfg = os.path.join(self.workdir, "distribution.yml")
            with open(cfg, "w") as f:
                f.write(
                    "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
                    "  delete:\n    enabled: true\nhttp:\n  addr: %s\n" % (self.data_dir, self.host)
                )
            return ["/usr/bin/docker-registry", "serve", cfg]
        binary = os.environ.get("KURA_BIN", os.path.join(REPO_ROOT, "target", "release", "kura"))
        return [binary, "serve", "--listen", self.host, "--data-dir", self.data_dir]

    def start(self, extra_env=None):
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.update(extra_env or {})
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._cmd(), stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("registry exited early:\n" + self.log())
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=1) as r:
                    if r.status == 200:
                        return self
            except Exception:
                time.sleep(0.05)
        raise RuntimeError("registry did not become ready:\n" + self.log())

    def kill9(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()

    def restart(self):
        self.stop()
        return self.start()

    def peak_rss_kib(self):
        """The server's peak resident set size (VmHWM) in KiB, while it runs."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-8000:]
        except OSError:
            return ""


def pytest_configure(config):
    config.addinivalue_line("markers", "large: multi-GiB tests")


@pytest.fixture
def registry(tmp_path):
    reg = Registry(str(tmp_path))
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture
def workdir(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    return d
