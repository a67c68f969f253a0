"""Helpers for replication tests and the replication benchmark: two Kura
deployments (regions) of one federation on this machine, the replication
configuration through the aws CLI, and waiting for an image's replication
status.

    fed = Federation(tmp_path).start()      # us-east-1 -> eu-west-1
    fed.configure([rule("prod/", fed.dst)])
    ...
    fed.stop()

Both deployments have the same account id and root key (conftest's), the
same federation key file and name each other as peers: the source with the
`--peer-region` and `--federation-key-file` flags, the destination with
KURA_PEER_REGIONS and KURA_FEDERATION_KEY_FILE (both forms are exercised).
"""
import json
import os
import shutil
import subprocess
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from conftest import Registry
from helpers import ACCEPT

SRC_REGION = "us-east-1"
DST_REGION = "eu-west-1"
# A status that does not settle within this is a failure (not a timing assertion:
# the jobs retry every few hundred ms with the settings below).
WAIT_S = 60
# Short job poll and replication retry backoff, so waits are seconds.
FAST = {"KURA_REPLICATION_RETRY_BASE": "200ms", "KURA_JOB_POLL_INTERVAL": "200ms"}


def write_key(path, key=None):
    """A federation key file (64 hex characters unless `key` is given)."""
    with open(path, "w") as f:
        f.write(key or os.urandom(32).hex())
    return str(path)


class Federation:
    """`src` (us-east-1) and `dst` (eu-west-1): Registry objects, not yet started.

    `dst_key`: the destination's own key file contents (default: the shared one),
    to simulate a misconfigured deployment."""

    def __init__(self, root, dst_key=None, src_env=None, dst_env=None, stores=None):
        """`stores(label)`: environment selecting the stores of deployment `label`
        ("us", "eu"), e.g. pg_s3_stores(); default: embedded (SQLite and files)."""
        root = str(root)
        self.root = root
        for d in ("us", "eu"):
            os.makedirs(os.path.join(root, d), exist_ok=True)
        self.key_file = write_key(os.path.join(root, "federation.key"))
        dst_key_file = self.key_file
        if dst_key is not None:
            dst_key_file = write_key(os.path.join(root, "eu-federation.key"), dst_key)
        self.src = Registry(os.path.join(root, "us"), region=SRC_REGION)
        self.dst = Registry(os.path.join(root, "eu"), region=DST_REGION)
        self.src.args = ["--peer-region", "%s=%s" % (DST_REGION, self.dst.url),
                         "--federation-key-file", self.key_file]
        self.src.env = dict(FAST, **(src_env or {}))
        self.dst.env = dict(FAST, KURA_PEER_REGIONS="%s=%s" % (SRC_REGION, self.src.url),
                            KURA_FEDERATION_KEY_FILE=dst_key_file, **(dst_env or {}))
        if stores:
            self.src.env.update(stores("us"))
            self.dst.env.update(stores("eu"))

    def start(self):
        self.dst.start()
        self.src.start()
        # Pushes to the source create their repositories; the destination has no
        # template unless a test makes one (its repositories come from replication).
        self.src.allow_create_on_push()
        self.src.login()
        self.dst.login()
        return self

    def stop(self):
        self.src.stop()
        self.dst.stop()

    def logs(self):
        return "\n--- source (us-east-1) log ---\n%s\n--- destination (eu-west-1) log ---\n%s" % (
            self.src.log()[-4000:], self.dst.log()[-4000:])


STORE_VARS = ("KURA_S3_ENDPOINT", "KURA_S3_BUCKET", "KURA_S3_REGION", "KURA_S3_ACCESS_KEY_ID",
              "KURA_S3_SECRET_ACCESS_KEY")


def pg_s3_stores():
    """A `stores` function for Federation: each deployment gets a fresh PostgreSQL
    database next to $KURA_DATABASE_URL's and its own prefix in $KURA_S3_BUCKET (as
    scripts/with-postgres-s3 exports them). Skips (fails with KURA_REQUIRE_S3=1)
    without them."""
    missing = [v for v in ("KURA_DATABASE_URL", "KURA_S3_BUCKET") if not os.environ.get(v)]
    if missing or shutil.which("psql") is None:
        msg = "replication on PostgreSQL and S3 needs %s (run under scripts/with-postgres-s3)" % (
            " and ".join(missing) or "psql")
        if os.environ.get("KURA_REQUIRE_S3") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    base = os.environ["KURA_DATABASE_URL"]

    def stores(label):
        tag = "%s_%s" % (label, uuid.uuid4().hex[:8])
        p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", base,
                            "-c", 'CREATE DATABASE "kura_repl_%s"' % tag],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, "creating a database: %s" % p.stderr
        u = urlsplit(base)
        env = {v: os.environ[v] for v in STORE_VARS if os.environ.get(v)}
        env["KURA_DATABASE_URL"] = urlunsplit((u.scheme, u.netloc, "/kura_repl_" + tag, u.query, u.fragment))
        env["KURA_S3_PREFIX"] = "repl-%s/" % tag
        return env

    return stores


def rule(prefix, *dests):
    """A replication rule: `dests` are (region, registryId) pairs or Registry objects."""
    out = []
    for d in dests:
        if isinstance(d, Registry):
            d = (d.region, d.account_id)
        out.append({"region": d[0], "registryId": d[1]})
    return {"destinations": out, "repositoryFilters": [{"filter": prefix, "filterType": "PREFIX_MATCH"}]}


def aws_ecr(reg, *args, expect_error=None, creds=None):
    """`aws ecr <args>` against `reg` (root key unless creds={"key","secret"}).
    Returns parsed JSON; with expect_error, asserts that error code and returns stderr."""
    env = reg.aws_env()
    if creds:
        env["AWS_ACCESS_KEY_ID"] = creds["key"]
        env["AWS_SECRET_ACCESS_KEY"] = creds["secret"]
    p = subprocess.run(["aws", "ecr", *args, "--endpoint-url", reg.url, "--output", "json"],
                       env=env, capture_output=True, text=True, timeout=120)
    what = "aws ecr %s -> exit %d\nstdout: %s\nstderr: %s\n--- registry log ---\n%s" % (
        " ".join(args), p.returncode, p.stdout[-2000:], p.stderr[-2000:], reg.log()[-3000:])
    if expect_error:
        assert p.returncode != 0 and "(%s)" % expect_error in p.stderr, "expected %s\n%s" % (expect_error, what)
        return p.stderr
    assert p.returncode == 0, what
    return json.loads(p.stdout) if p.stdout.strip() else None


def put_configuration(reg, rules, **kw):
    """put-replication-configuration through the aws CLI; returns its answer."""
    return aws_ecr(reg, "put-replication-configuration", "--replication-configuration",
                   json.dumps({"rules": rules}), **kw)


def image_id(ref):
    return {"imageDigest": ref} if ref.startswith("sha256:") else {"imageTag": ref}


def statuses(reg, repo, ref, ecr=None):
    """The replicationStatuses of one image (boto3: cheap enough to poll)."""
    ecr = ecr or reg.ecr()
    return ecr.describe_image_replication_status(repositoryName=repo, imageId=image_id(ref))["replicationStatuses"]


def wait_status(reg, repo, ref, dest, until, timeout=WAIT_S, logs=None, what="", ecr=None):
    """Poll describe-image-replication-status until the status for `dest`
    ((region, registryId) or a Registry) satisfies `until(status)`; returns it.
    Fails with the last answer and the logs when it does not within `timeout`."""
    if isinstance(dest, Registry):
        dest = (dest.region, dest.account_id)
    deadline = time.time() + timeout
    last = None
    ecr = ecr or reg.ecr()
    while True:
        last = statuses(reg, repo, ref, ecr)
        mine = [s for s in last if (s.get("region"), s.get("registryId")) == tuple(dest)]
        if mine and until(mine[0]):
            return mine[0]
        if time.time() > deadline:
            break
        time.sleep(0.2)
    pytest.fail("replication status of %s:%s for %s never became %s within %ss; last: %r%s" % (
        repo, ref, dest, what, timeout, last, logs() if logs else reg.log()[-4000:]))


def complete(s):
    assert s["status"] != "FAILED", "replication FAILED: %r" % s
    return s["status"] == "COMPLETE"


def wait_complete(reg, repo, ref, dest, logs=None, timeout=WAIT_S, ecr=None):
    return wait_status(reg, repo, ref, dest, complete, timeout=timeout, logs=logs, what="COMPLETE", ecr=ecr)


def manifest_visible(reg, repo, ref, session=None):
    """HEAD a manifest with the registry's token: True on 200, False on 404."""
    s = session or requests
    r = s.head("%s/v2/%s/manifests/%s" % (reg.url, repo, ref), headers={"Accept": ACCEPT},
               auth=reg.auth, timeout=30)
    assert r.status_code in (200, 404), "HEAD %s:%s -> %d" % (repo, ref, r.status_code)
    return r.status_code == 200
