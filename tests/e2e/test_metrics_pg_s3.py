"""Metrics and readiness on PostgreSQL + S3: the database and blob store
probes, statement and blob store latency from the PostgreSQL and S3
backends, and /readyz and `kura_database_up` when the database stops
accepting connections (and again when it accepts them).

Needs KURA_DATABASE_URL and the KURA_S3_* settings (scripts/with-postgres-s3
sets them; skipped without, unless KURA_REQUIRE_S3=1) and psql.
"""
import os
import shutil
import subprocess
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from blobs_util import Client
from conftest import Registry
from test_metrics import scrape, value, wait_for

S3_VARS = ["KURA_S3_ENDPOINT", "KURA_S3_BUCKET", "KURA_S3_ACCESS_KEY_ID", "KURA_S3_SECRET_ACCESS_KEY"]


def shared_stores():
    missing = [v for v in ["KURA_DATABASE_URL", *S3_VARS] if not os.environ.get(v)]
    if missing or shutil.which("psql") is None:
        msg = f"PostgreSQL + S3 metrics test: missing {missing or ['psql']} (run under scripts/with-postgres-s3)"
        if os.environ.get("KURA_REQUIRE_S3") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    return os.environ["KURA_DATABASE_URL"]


def psql(url, sql):
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, (sql, p.stderr)
    return p.stdout


def test_probes_and_latency_on_postgres_and_s3(tmp_path):
    base = shared_stores()
    name = "kura_metrics_" + uuid.uuid4().hex[:8]
    psql(base, f'CREATE DATABASE "{name}"')
    u = urlsplit(base)
    db_url = urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))
    env = {v: os.environ[v] for v in S3_VARS}
    env.update({"KURA_DATABASE_URL": db_url, "KURA_S3_PREFIX": "metrics-%s" % uuid.uuid4().hex,
                "KURA_S3_REGION": os.environ.get("KURA_S3_REGION", "us-east-1")})
    reg = Registry(str(tmp_path), args=["--metrics", "--metrics-sample-interval", "200ms"], env=env)
    try:
        reg.start()
        reg.allow_create_on_push()
        reg.login()
        c = Client(reg.url, reg.auth)
        digest, _, _ = c.push_image("pg/app", "v1")
        assert c.get_manifest("pg/app", "v1").status_code == 200

        r = requests.get(reg.url + "/readyz", timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["checks"] == {"database": "ok", "migrations": "ok", "blobStore": "ok"}
        s = wait_for("the sampler's probes", lambda: (lambda m: m if value(m, "kura_database_up") == 1
                                                       and value(m, "kura_blob_store_up") == 1 else None)(
            scrape(reg.url)[0]))
        assert value(s, "kura_schema_version") == value(s, "kura_schema_version_expected")
        assert value(s, "kura_database_query_duration_seconds_count", statement="select") > 0
        assert value(s, "kura_database_query_duration_seconds_count", statement="insert") > 0
        assert value(s, "kura_blob_store_operation_duration_seconds_count", operation="commit") >= 2
        assert value(s, "kura_blob_store_errors_total", operation="stat") == 0  # the probes are not counted

        # The database stops accepting connections and its sessions are ended.
        psql(base, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        psql(base, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
        r = requests.get(reg.url + "/readyz", timeout=30)
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["checks"]["database"] == "failed" and body["checks"]["blobStore"] == "ok", body
        assert "metadata database is unreachable" in body["reason"], body
        wait_for("kura_database_up 0", lambda: value(scrape(reg.url)[0], "kura_database_up") == 0, timeout=30)
        assert requests.get(reg.url + "/healthz", timeout=5).status_code == 200

        psql(base, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        wait_for("ready again", lambda: requests.get(reg.url + "/readyz", timeout=30).status_code == 200, timeout=60)
        wait_for("kura_database_up 1", lambda: value(scrape(reg.url)[0], "kura_database_up") == 1, timeout=30)
    finally:
        reg.stop()
        psql(base, f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        psql(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
