"""Observability end to end: Prometheus `/metrics` (on the main listener with
`--metrics` and on an admin listener with `--metrics-listen`), `/readyz`,
request ids in responses and logs, the OTLP/HTTP export of tracing spans
(to a receiver written here that decodes the protobuf it is sent), and the
Grafana dashboard and alert rules in deploy/ checked against what a live
server exports.
"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import requests
import yaml
from botocore.config import Config

from blobs_util import Client
from conftest import REPO_ROOT, Registry, free_port

SAMPLE = "200ms"  # --metrics-sample-interval: the sampler's gauges follow quickly


def parse_metrics(text):
    """Prometheus text format -> ({sample name: [(labels dict, value)]}, {family: type})."""
    samples, types = {}, {}
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)", line)
        assert m, f"unparseable exposition line: {line!r}"
        labels = dict(label_re.findall(m.group(2) or ""))
        samples.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return samples, types


def value(samples, name, **labels):
    """The sum of `name`'s samples whose labels include `labels` (None if there are none)."""
    hits = [v for l, v in samples.get(name, []) if all(l.get(k) == x for k, x in labels.items())]
    return sum(hits) if hits else None


def scrape(url):
    r = requests.get(url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    return parse_metrics(r.text)


def wait_for(what, fn, timeout=20):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def kura_bin():
    return os.environ.get("KURA_BIN", os.path.join(REPO_ROOT, "target", "release", "kura"))


@pytest.fixture
def metered(tmp_path):
    """Kura with --metrics on the main listener and an admin listener, logged in."""
    admin_port = free_port()
    reg = Registry(str(tmp_path), args=[
        "--metrics", "--metrics-listen", f"127.0.0.1:{admin_port}", "--metrics-sample-interval", SAMPLE,
    ])
    reg.admin_url = f"http://127.0.0.1:{admin_port}"
    reg.start()
    reg.allow_create_on_push()
    reg.login()
    yield reg
    reg.stop()


def sts(reg):
    return boto3.client("sts", endpoint_url=reg.url, region_name=reg.region, aws_access_key_id=reg.access_key,
                        aws_secret_access_key=reg.secret_key, config=Config(retries={"max_attempts": 1}))


def insert_job(reg, kind, state, payload="{}", max_attempts=1):
    """A job row written straight into the embedded database (the queue the sampler reads)."""
    now = int(time.time() * 1000)
    db = sqlite3.connect(os.path.join(reg.data_dir, "meta.db"), timeout=30)
    with db:
        db.execute(
            "INSERT INTO jobs (kind, payload, state, attempts, max_attempts, run_after, created_at, updated_at) "
            "VALUES (?, ?, ?, 0, ?, 0, ?, ?)", (kind, payload, state, max_attempts, now, now))
    db.close()


OSV = {
    "schema_version": "1.6.0", "id": "GHSA-kura-metr-test", "modified": "2024-01-01T00:00:00Z",
    "summary": "a test advisory",
    "affected": [{"package": {"ecosystem": "PyPI", "name": "kura-metrics-test"},
                  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0"}]}]}],
}

REPO = "team/metered-app"
TAG = "v1-secret-tag"


def traffic(reg, tmp_path):
    """Pushes, pulls, a 404, ECR, STS and IAM calls. Returns (digest, layer bytes pushed)."""
    c = Client(reg.url, reg.auth)
    layers = [os.urandom(300_000), os.urandom(5000)]
    digest, _, _ = c.push_image(REPO, TAG, layers=layers)
    assert c.get_manifest(REPO, TAG).status_code == 200
    for _ in range(3):
        assert c.get_manifest(REPO, digest).status_code == 200
    r = c.get_blob(REPO, "sha256:" + __import__("hashlib").sha256(layers[0]).hexdigest())
    assert r.status_code == 200 and r.content == layers[0]
    assert c.get_manifest(REPO, "no-such-tag").status_code == 404
    ecr = reg.ecr()
    ecr.describe_repositories()
    ecr.describe_images(repositoryName=REPO)
    sts(reg).get_caller_identity()
    iam = boto3.client("iam", endpoint_url=reg.url, region_name=reg.region, aws_access_key_id=reg.access_key,
                       aws_secret_access_key=reg.secret_key, config=Config(retries={"max_attempts": 1}))
    iam.list_users()
    return digest, sum(len(l) for l in layers)


def test_metrics_after_traffic(metered, tmp_path):
    reg = metered
    digest, pushed = traffic(reg, tmp_path)
    # A job that fails for good (its payload is not a delivery): the runner counts the
    # failure, and the queue then holds a dead letter.
    insert_job(reg, "events.deliver", "queued")
    osv = tmp_path / "osv"
    osv.mkdir()
    (osv / "GHSA-kura-metr-test.json").write_text(json.dumps(OSV))
    subprocess.run([kura_bin(), "vulndb", "import", str(osv), "--data-dir", reg.data_dir],
                   check=True, capture_output=True, timeout=60)

    def ready():
        s, _ = scrape(reg.url)
        ok = (value(s, "kura_jobs", kind="events.deliver", state="dead") == 1
              and (value(s, "kura_vulndb_last_import_timestamp_seconds") or 0) > 0
              and value(s, "kura_job_failures_total", kind="events.deliver", outcome="dead") == 1)
        return s if ok else None

    s = wait_for("the sampler's dead letter and vulndb freshness", ready)
    _, types = scrape(reg.url)

    # Requests by api, operation, status class and plane, as histograms.
    assert types["kura_http_request_duration_seconds"] == "histogram"
    d = "kura_http_request_duration_seconds_count"
    assert value(s, d, api="oci", operation="manifest_put", status_class="2xx", plane="data") == 1
    assert value(s, d, api="oci", operation="manifest_get", status_class="2xx", plane="data") == 4
    assert value(s, d, api="oci", operation="manifest_get", status_class="4xx", plane="data") == 1
    assert value(s, d, api="oci", operation="upload_start", plane="data") >= 3
    assert value(s, d, api="oci", operation="blob_get", status_class="2xx") == 1
    assert value(s, d, api="ecr", operation="DescribeRepositories", status_class="2xx", plane="control") == 1
    assert value(s, d, api="ecr", operation="DescribeImages", status_class="2xx") == 1
    assert value(s, d, api="ecr", operation="GetAuthorizationToken") >= 1
    assert value(s, d, api="ecr", operation="CreateRepositoryCreationTemplate") == 1
    assert value(s, d, api="sts", operation="GetCallerIdentity", status_class="2xx") == 1
    assert value(s, d, api="iam", operation="ListUsers", status_class="2xx") == 1
    buckets = [l for l, _ in s["kura_http_request_duration_seconds_bucket"]]
    assert any(l.get("le") == "+Inf" for l in buckets)

    # Bounded labels: no repository name, tag or digest anywhere.
    for name, rows in s.items():
        for labels, _ in rows:
            for k, v in labels.items():
                assert "sha256" not in v and "metered" not in v and "secret-tag" not in v, (name, labels)
                if k == "operation":
                    assert re.fullmatch(r"[A-Za-z_]+", v), (name, labels)

    # Bytes: at least the layers pushed were received, at least the layer pulled was sent.
    assert value(s, "kura_http_received_bytes_total", plane="data") >= pushed
    assert value(s, "kura_http_sent_bytes_total", plane="data") >= 300_000
    assert value(s, "kura_uploads_in_flight", plane="data") == 0
    # The scrape itself is the one admin request in flight.
    assert value(s, "kura_http_requests_in_flight", plane="data") == 0

    # Blob store and database latency.
    assert value(s, "kura_blob_store_operation_duration_seconds_count", operation="commit") >= 3
    assert value(s, "kura_blob_store_operation_duration_seconds_count", operation="read") >= 1
    assert value(s, "kura_blob_store_errors_total", operation="read") == 0
    assert value(s, "kura_database_query_duration_seconds_count", statement="select") > 0
    assert value(s, "kura_database_query_duration_seconds_count", statement="insert") > 0

    # Sampled: reachability, schema, jobs, freshness, disk, cache, process.
    assert value(s, "kura_database_up") == 1
    assert value(s, "kura_blob_store_up") == 1
    assert value(s, "kura_schema_version") == value(s, "kura_schema_version_expected") > 0
    assert value(s, "kura_job_runs_total", kind="events.deliver", result="failed") == 1
    assert time.time() - value(s, "kura_vulndb_last_import_timestamp_seconds") < 300
    assert value(s, "kura_scan_last_completed_timestamp_seconds") == 0
    free, size = value(s, "kura_data_dir_free_bytes"), value(s, "kura_data_dir_size_bytes")
    st = os.statvfs(reg.data_dir)
    assert 0 < free <= size == st.f_blocks * st.f_frsize
    assert value(s, "kura_pull_through_cache_hits_total") == 0
    assert value(s, "kura_pull_through_cache_misses_total") == 0
    assert value(s, "process_resident_memory_bytes") > 1 << 20
    assert value(s, "process_cpu_seconds_total") > 0
    assert value(s, "kura_build_info") == 1

    # The admin listener serves the same registry of metrics, plus health.
    a, _ = scrape(reg.admin_url)
    assert value(a, d, api="ecr", operation="DescribeRepositories") == 1
    assert requests.get(reg.admin_url + "/healthz", timeout=5).text == "ok"
    assert requests.get(reg.admin_url + "/readyz", timeout=5).json()["status"] == "ready"


def test_request_ids_in_responses_and_logs(metered):
    reg = metered
    c = Client(reg.url, reg.auth)
    ids = []
    r = c.get("/v2/")
    ids.append(r.headers["x-request-id"])
    r = c.get_manifest("missing/repo", "latest")
    assert r.status_code == 404
    ids.append(r.headers["x-request-id"])
    # The AWS API answers with the same id as x-amzn-RequestId.
    r = requests.post(reg.url + "/", data="{}", timeout=10, headers={
        "x-amz-target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
        "content-type": "application/x-amz-json-1.1"})
    assert r.status_code in (400, 403), r.text
    assert r.headers["x-amzn-requestid"] == r.headers["x-request-id"]
    ids.append(r.headers["x-request-id"])
    assert len(set(ids)) == 3
    log = wait_for("the ids in the log", lambda: all(i in reg.full_log() for i in ids) and reg.full_log())
    # Each id is on the line that reports the response.
    for i in ids:
        lines = [l for l in log.splitlines() if i in l]
        assert any(re.search(r"\bresponse\b.*\bstatus=\d{3}", l) for l in lines), (i, lines)


def test_metrics_off_by_default_and_readyz(bare_registry):
    reg = bare_registry
    # No --metrics: /metrics is not served (it reaches the data plane, which has no such route).
    r = requests.get(reg.url + "/metrics", timeout=5)
    assert r.status_code != 200 and "kura_http" not in r.text
    r = requests.get(reg.url + "/readyz", timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "migrations": "ok", "blobStore": "ok"}
    assert body["schemaVersion"] == body["expectedSchemaVersion"] > 0
    expected = body["expectedSchemaVersion"]

    # The database behind this build's schema (as if another node had not migrated yet).
    db = sqlite3.connect(os.path.join(reg.data_dir, "meta.db"), timeout=30)
    with db:
        db.execute("UPDATE schema_version SET version = ?", (expected - 1,))
    r = requests.get(reg.url + "/readyz", timeout=10)
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["migrations"] == "failed" and body["checks"]["database"] == "ok"
    assert f"schema version {expected - 1}" in body["reason"], body
    with db:
        db.execute("UPDATE schema_version SET version = ?", (expected,))
    db.close()
    assert requests.get(reg.url + "/readyz", timeout=10).status_code == 200

    # The blob store unreachable: its directory replaced by a file.
    blobs = os.path.join(reg.data_dir, "blobs")
    os.rename(blobs, blobs + ".away")
    try:
        with open(blobs, "w") as f:
            f.write("not a directory")
        r = requests.get(reg.url + "/readyz", timeout=10)
        assert r.status_code == 503, r.text
        body = r.json()
        assert body["checks"]["blobStore"] == "failed" and body["checks"]["database"] == "ok"
        assert "blob store is unreachable" in body["reason"], body
        # Liveness is another matter: the process still serves.
        assert requests.get(reg.url + "/healthz", timeout=5).status_code == 200
    finally:
        os.remove(blobs)
        os.rename(blobs + ".away", blobs)
    assert requests.get(reg.url + "/readyz", timeout=10).status_code == 200


def test_blob_store_down_shows_in_metrics(metered):
    reg = metered
    c = Client(reg.url, reg.auth)
    data = os.urandom(2000)
    d = c.push_blob("down/app", data)
    wait_for("blob store up", lambda: value(scrape(reg.url)[0], "kura_blob_store_up") == 1)
    s, _ = scrape(reg.url)
    assert value(s, "kura_blob_store_errors_total", operation="read") == 0
    assert value(s, "kura_blob_store_errors_total", operation="stat") == 0
    blobs = os.path.join(reg.data_dir, "blobs")
    os.rename(blobs, blobs + ".away")
    try:
        with open(blobs, "w") as f:
            f.write("x")
        wait_for("kura_blob_store_up 0", lambda: value(scrape(reg.url)[0], "kura_blob_store_up") == 0)
        # A pull now fails in the blob store, and is counted as its error.
        assert c.get_blob("down/app", d).status_code >= 500
        s, _ = scrape(reg.url)
        assert value(s, "kura_database_up") == 1
        assert value(s, "kura_blob_store_errors_total", operation="read") >= 1
        # The probes themselves are not blob store traffic.
        assert value(s, "kura_blob_store_errors_total", operation="stat") == 0
    finally:
        os.remove(blobs)
        os.rename(blobs + ".away", blobs)
    wait_for("kura_blob_store_up 1", lambda: value(scrape(reg.url)[0], "kura_blob_store_up") == 1)


# --- OTLP ---------------------------------------------------------------------

def pb_fields(buf):
    """Decode one protobuf message's fields: [(number, wire type, value)]."""
    out, i = [], 0

    def varint():
        nonlocal i
        shift = v = 0
        while True:
            b = buf[i]
            i += 1
            v |= (b & 0x7F) << shift
            if b < 0x80:
                return v
            shift += 7

    while i < len(buf):
        key = varint()
        num, wt = key >> 3, key & 7
        if wt == 0:
            out.append((num, wt, varint()))
        elif wt == 1:
            out.append((num, wt, buf[i:i + 8]))
            i += 8
        elif wt == 2:
            n = varint()
            out.append((num, wt, buf[i:i + n]))
            i += n
        elif wt == 5:
            out.append((num, wt, buf[i:i + 4]))
            i += 4
        else:
            raise ValueError(f"wire type {wt}")
    return out


def pb_get(buf, num):
    return [v for n, _, v in pb_fields(buf) if n == num]


def key_values(kvs):
    """OTLP KeyValue messages -> {key: string or int value}."""
    out = {}
    for kv in kvs:
        key = pb_get(kv, 1)[0].decode()
        any_value = pb_get(kv, 2)
        if not any_value:
            continue
        for n, _, v in pb_fields(any_value[0]):
            out[key] = v.decode() if n == 1 else v
    return out


def decode_export(body):
    """ExportTraceServiceRequest -> [span dicts with the resource's attributes]."""
    spans = []
    for rs in pb_get(body, 1):
        resource = key_values(pb_get(pb_get(rs, 1)[0], 1)) if pb_get(rs, 1) else {}
        for ss in pb_get(rs, 2):
            for sp in pb_get(ss, 2):
                spans.append({
                    "trace_id": pb_get(sp, 1)[0].hex(),
                    "span_id": pb_get(sp, 2)[0].hex(),
                    "parent": (pb_get(sp, 4) or [b""])[0].hex(),
                    "name": pb_get(sp, 5)[0].decode(),
                    "attributes": key_values(pb_get(sp, 9)),
                    "resource": resource,
                })
    return spans


class Receiver:
    """A tiny OTLP/HTTP receiver: records every POST /v1/traces and decodes its spans."""

    def __init__(self):
        self.posts, self.spans = [], []
        recv = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                recv.posts.append((self.path, self.headers.get("content-type")))
                if self.path == "/v1/traces":
                    recv.spans.extend(decode_export(body))
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_otlp_export_of_request_spans(tmp_path):
    recv = Receiver()
    reg = Registry(str(tmp_path), args=["--otlp-endpoint", recv.url, "--otlp-service-name", "kura-e2e"],
                   env={"OTEL_BSP_SCHEDULE_DELAY": "200"})
    try:
        reg.start()
        reg.allow_create_on_push()
        reg.login()
        c = Client(reg.url, reg.auth)
        digest, _, _ = c.push_image("otlp/app", "t1")
        r = c.get_manifest("otlp/app", "t1")
        assert r.status_code == 200
        rid = r.headers["x-request-id"]

        # A caller's W3C trace context: the request's span joins that trace.
        caller_trace, caller_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        r2 = c.get("/v2/", headers={"traceparent": f"00-{caller_trace}-{caller_span}-01"})
        rid2 = r2.headers["x-request-id"]

        def exported():
            return [s for s in recv.spans if s["attributes"].get("request_id") == rid]

        roots = wait_for("the manifest GET's span", exported, timeout=30)
        joined = wait_for("the span with a caller's parent",
                          lambda: [s for s in recv.spans if s["attributes"].get("request_id") == rid2], timeout=30)
    finally:
        reg.stop()
        recv.close()
    assert all(p == ("/v1/traces", "application/x-protobuf") for p in recv.posts), recv.posts
    assert joined[0]["trace_id"] == caller_trace and joined[0]["parent"] == caller_span, joined
    assert joined[0]["name"] == "GET oci base"
    root = roots[0]
    assert root["name"] == "GET oci manifest_get"
    assert root["parent"] == ""
    assert root["trace_id"] != caller_trace
    assert str(root["attributes"].get("http.response.status_code")) == "200"
    assert root["resource"].get("service.name") == "kura-e2e"
    # Kura's own spans of the request (the client's, the data plane's) are in its trace, under it.
    trace = {s["span_id"]: s for s in recv.spans if s["trace_id"] == root["trace_id"]}
    assert any(s["parent"] == root["span_id"] for s in trace.values())
    for s in trace.values():
        hops = 0
        while s["parent"] and hops < 10:
            s, hops = trace[s["parent"]], hops + 1
        assert s is root, "a span of the trace that does not lead to the request's span"
    assert any(s["name"] == "request" and s["attributes"].get("path") == "/v2/otlp/app/manifests/t1"
               for s in trace.values()), list(trace.values())
    # Every request was exported: the pushes' uploads too.
    names = {s["name"] for s in recv.spans}
    assert {"POST oci upload_start", "PUT oci manifest_put"} <= names, names


def test_otlp_endpoint_errors_are_clear(tmp_path):
    for endpoint, words in [("https://127.0.0.1:4318", "https"), ("not a url", "not a URL")]:
        r = subprocess.run([kura_bin(), "serve", "--listen", f"127.0.0.1:{free_port()}",
                            "--data-dir", str(tmp_path / "d"), "--otlp-endpoint", endpoint],
                           capture_output=True, text=True, timeout=60,
                           env={**os.environ, "KURA_DISK_RESERVE_MIB": "0"})
        assert r.returncode != 0
        assert words in r.stderr and "otlp" in r.stderr.lower(), r.stderr
        assert "panicked" not in r.stderr


# --- dashboard and alert rules ------------------------------------------------

PROMQL_BUILTINS = {"up"}  # Prometheus' own per-target series


def promql_metric_names(expr):
    """Metric names an expression selects (identifiers followed by a selector, range or nothing
    that are not functions, keywords or label names)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b\s*(\(?)", expr):
        word, call = m.group(1), m.group(2)
        if call or word in {"and", "or", "unless", "bool", "offset", "le", "inf", "nan"}:
            continue
        if re.fullmatch(r"\d+[smhdwy]?", word) or word.startswith("__"):
            continue
        names.add(word)
    return names


def dashboard_exprs():
    with open(os.path.join(REPO_ROOT, "deploy", "grafana", "kura.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    for v in dash["templating"]["list"]:
        if v.get("type") == "query":
            # label_values(metric, label): the metric only.
            m = re.fullmatch(r"label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*\w+\s*\)", v["query"])
            assert m, v["query"]
            exprs.append(m.group(1))
    return dash, exprs


def alert_rules():
    with open(os.path.join(REPO_ROOT, "deploy", "prometheus", "kura-alerts.yml")) as f:
        return yaml.safe_load(f)


def test_rules_file_is_valid():
    path = os.path.join(REPO_ROOT, "deploy", "prometheus", "kura-alerts.yml")
    if shutil.which("promtool"):
        r = subprocess.run(["promtool", "check", "rules", path], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "SUCCESS" in r.stdout
    # A schema check as well (and the only one where promtool is missing).
    doc = alert_rules()
    assert set(doc) == {"groups"} and doc["groups"]
    names = set()
    for g in doc["groups"]:
        assert set(g) <= {"name", "interval", "rules"} and g["name"] and g["rules"]
        for rule in g["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert rule["alert"] not in names
            names.add(rule["alert"])
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"]
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"]), rule
    # The conditions an operator must know about.
    for needed in ["KuraJobFailures", "KuraDeadLetters", "KuraDiskNearlyFull", "KuraDatabaseUnreachable"]:
        assert needed in names


def test_dashboard_and_rules_use_only_exported_metrics(metered, tmp_path):
    reg = metered
    traffic(reg, tmp_path)
    insert_job(reg, "events.deliver", "queued")
    s = wait_for("a failed job in the metrics",
                 lambda: (lambda m: m if value(m, "kura_job_failures_total") else None)(scrape(reg.url)[0]))
    exported = set(s)
    dash, exprs = dashboard_exprs()
    assert len(dash["panels"]) >= 10
    exprs += [r["expr"] for g in alert_rules()["groups"] for r in g["rules"]]
    used = set()
    for e in exprs:
        used |= promql_metric_names(e)
    assert "kura_jobs" in used and "kura_http_request_duration_seconds_bucket" in used
    missing = sorted(n for n in used - PROMQL_BUILTINS if n not in exported)
    assert not missing, f"used by the dashboard or rules but not exported: {missing}"


def test_pull_through_cache_counters(metered, tmp_path):
    """A cold pull through a pull-through cache rule counts misses and upstream fetches and
    bytes; the same pull again counts hits and fetches nothing more."""
    from upstream_util import Distribution

    reg = metered
    up = Distribution(tmp_path / "upstream").start()
    try:
        layer = os.urandom(40_000)
        Client(up.url).push_image("library/cached", "v1", layers=[layer])
        reg.ecr().create_pull_through_cache_rule(ecrRepositoryPrefix="up", upstreamRegistryUrl=up.url)
        c = Client(reg.url, reg.auth)
        digest = "sha256:" + __import__("hashlib").sha256(layer).hexdigest()

        def pull():
            r = c.get_manifest("up/library/cached", "v1")
            assert r.status_code == 200, r.text
            b = c.get_blob("up/library/cached", digest)
            assert b.status_code == 200 and b.content == layer

        pull()
        s = wait_for("the cache's counters", lambda: (lambda m: m if (value(m, "kura_pull_through_upstream_bytes_total")
                                                                     or 0) >= len(layer) else None)(scrape(reg.url)[0]))
        misses, fetches = value(s, "kura_pull_through_cache_misses_total"), value(s, "kura_pull_through_upstream_fetches_total")
        hits, errors = value(s, "kura_pull_through_cache_hits_total"), value(s, "kura_pull_through_cache_errors_total")
        assert misses >= 1 and fetches >= 2 and errors == 0, s
        pull()
        s = wait_for("hits", lambda: (lambda m: m if value(m, "kura_pull_through_cache_hits_total") > hits else None)(
            scrape(reg.url)[0]))
        assert value(s, "kura_pull_through_upstream_fetches_total") == fetches
        assert value(s, "kura_pull_through_cache_misses_total") == misses
    finally:
        up.stop()
