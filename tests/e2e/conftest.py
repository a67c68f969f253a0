"""Shared fixtures for Kura's end-to-end tests with real clients.

Each test gets its own Kura process on a free loopback port with a fresh data
directory. The binary is `$KURA_BIN` (default: target/release/kura in the repo).

Kura authenticates like ECR: the fixture starts it with a known account and
root key (KURA_ACCOUNT_ID, KURA_ROOT_ACCESS_KEY_ID, KURA_ROOT_SECRET_ACCESS_KEY),
and `registry` (for client tests) also creates a `ROOT` repository creation
template with CREATE_ON_PUSH, so a push may create its repository, and fetches
a registry token (`registry.token`, used as the password of user `AWS`).
`bare_registry` skips the template: pushes to missing repositories fail.

For harness development only, KURA_E2E_STANDIN=distribution runs Debian's
docker-registry instead (no auth, no ECR API: most tests fail there).
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


ACCOUNT_ID = "123456789012"
ACCESS_KEY_ID = "AKIAKURAE2ETEST00001"
SECRET_ACCESS_KEY = "kuraE2eSecretKey/0123456789abcdefghijklm"
REGION = "us-east-1"


class Registry:
    """A running registry process: `host` is "127.0.0.1:PORT", `url` is "http://host".

    `account_id`, `access_key`, `secret_key`, `region` are the root credentials;
    `ecr()` returns a boto3 ECR client for it; `token` (after `login()`) is a
    registry password for user "AWS"; `auth` is ("AWS", token).
    """

    account_id = ACCOUNT_ID
    access_key = ACCESS_KEY_ID
    secret_key = SECRET_ACCESS_KEY
    region = REGION

    def __init__(self, workdir, region=None, args=(), env=None):
        """`region`: the deployment's region (KURA_REGION; default us-east-1);
        `args`: extra `kura serve` arguments; `env`: extra environment for
        every start (a start's own `extra_env` goes on top)."""
        self.workdir = workdir
        self.region = region or REGION
        self.args = list(args)
        self.env = dict(env or {})
        self.data_dir = os.path.join(workdir, "data")
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.proc = None
        self.log_path = os.path.join(workdir, "server.log")
        self.token = None

    @property
    def auth(self):
        return ("AWS", self.token)

    def aws_env(self):
        """Environment for the aws CLI and boto3 pointing at this registry."""
        env = dict(os.environ)
        env.update({
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL_ECR": self.url,
            "AWS_CONFIG_FILE": os.path.join(self.workdir, "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.workdir, "aws-credentials"),
        })
        env.pop("AWS_SESSION_TOKEN", None)
        env.pop("AWS_PROFILE", None)
        return env

    def ecr(self, **kw):
        """A boto3 ECR client signed with the root key."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "ecr",
            endpoint_url=self.url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(retries={"max_attempts": 1}),
            **kw,
        )

    def login(self):
        """Fetch a registry token (the password docker/podman/skopeo use with user AWS)."""
        import base64

        data = self.ecr().get_authorization_token()["authorizationData"][0]
        user, token = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
        assert user == "AWS"
        self.token = token
        return token

    def allow_create_on_push(self):
        """A ROOT creation template with CREATE_ON_PUSH: any push may create its repository."""
        self.ecr().create_repository_creation_template(
            prefix="ROOT", appliedFor=["CREATE_ON_PUSH"], description="e2e: create on push"
        )

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
        return [binary, "serve", "--listen", self.host, "--data-dir", self.data_dir, *self.args]

    def start(self, extra_env=None):
        env = dict(os.environ)
        # Embedded storage unless the caller passes the shared stores itself
        # (test_multinode.py): the variables scripts/with-postgres-s3 exports
        # must not turn every other test into a PostgreSQL/S3 test.
        for var in list(env):
            if var == "KURA_DATABASE_URL" or var.startswith("KURA_S3_"):
                del env[var]
        env.setdefault("RUST_LOG", "info")
        # The space reserve is a file of real blocks written at every start (64 MiB by
        # default); hundreds of registries start in one run, so tests keep it small.
        # test_disk_full.py sets its own.
        env.setdefault("KURA_DISK_RESERVE_MIB", "8")
        env.update({
            "KURA_ACCOUNT_ID": self.account_id,
            "KURA_ROOT_ACCESS_KEY_ID": self.access_key,
            "KURA_ROOT_SECRET_ACCESS_KEY": self.secret_key,
            "KURA_REGION": self.region,
        })
        env.update(self.env)
        env.update(extra_env or {})
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self._cmd(), stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("registry exited early:\n" + self.log())
            try:
                probe = "/v2/" if os.environ.get("KURA_E2E_STANDIN") == "distribution" else "/healthz"
                with urllib.request.urlopen(self.url + probe, timeout=1) as r:
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
        """The log's last 8000 characters (for assertion messages)."""
        return self.full_log()[-8000:]

    def full_log(self):
        """The whole log: search this one, since every request logs a line and
        a message can scroll out of the tail under load."""
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


def pytest_configure(config):
    config.addinivalue_line("markers", "large: multi-GiB tests")


@pytest.fixture
def registry(tmp_path):
    """Kura with a CREATE_ON_PUSH template for every name, logged in (`registry.token`)."""
    reg = Registry(str(tmp_path))
    reg.start()
    if os.environ.get("KURA_E2E_STANDIN") != "distribution":
        reg.allow_create_on_push()
        reg.login()
    else:
        reg.token = "stand-in"  # distribution without auth ignores the credentials
    yield reg
    reg.stop()


@pytest.fixture
def bare_registry(tmp_path):
    """Kura as a fresh install: root key only, no templates, not logged in."""
    reg = Registry(str(tmp_path))
    reg.start()
    yield reg
    reg.stop()


@pytest.fixture
def workdir(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    return d
