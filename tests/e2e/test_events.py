"""EventBridge, end to end with the real `aws events` CLI and skopeo.

1. put-rule with ECR's documented pattern (PUSH to a `prod/` repository), create-connection
   (API key) + create-api-destination pointing at a small HTTP receiver on 127.0.0.1,
   put-targets: a skopeo push to prod/x delivers exactly one event in ECR's EventBridge
   shape, with the connection's API key; a push to dev/x delivers none.
2. The receiver down, a push, the receiver up: the event arrives (short retry backoff via
   KURA_EVENTS_RETRY_BASE).
3. Delivery survives a crash: receiver down, push, kill -9 Kura, receiver up, restart: the
   event arrives, once.
4. The API's refusals through the CLI: a malformed pattern (InvalidEventPatternException),
   deleting a rule with targets (ValidationException), a principal without events:PutRule
   (AccessDeniedException).
"""
import json
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port
from helpers import creds, require_tool, run
from images import Layout, make_rng, random_image

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no EventBridge API",
)

PATTERN = {
    "source": ["aws.ecr"],
    "detail-type": ["ECR Image Action"],
    "detail": {"action-type": ["PUSH"], "repository-name": [{"prefix": "prod/"}]},
}
FAST = {"KURA_EVENTS_RETRY_BASE": "200ms", "KURA_JOB_POLL_INTERVAL": "200ms"}


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws", "skopeo")


class Receiver:
    """An HTTP server on 127.0.0.1 recording every request; can stop and start on its port."""

    def __init__(self):
        self.port = free_port()
        self.got = []
        self.lock = threading.Lock()
        self.server = None

    def start(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                with outer.lock:
                    outer.got.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self):
        return "http://127.0.0.1:%d/events" % self.port

    def events(self):
        with self.lock:
            return [json.loads(g["body"]) for g in self.got]

    def wait_for(self, pred, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            evs = self.events()
            if pred(evs):
                return evs
            time.sleep(0.1)
        pytest.fail("receiver: condition not met within %ss; got %r" % (timeout, self.events()))


class Events:
    """`aws events ...` against the registry, JSON output."""

    def __init__(self, registry, env=None):
        self.registry = registry
        self.env = env or registry.aws_env()

    def __call__(self, *args, expect_error=None):
        argv = ["aws", "events", *args, "--endpoint-url", self.registry.url, "--output", "json"]
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=120)
        what = "aws events %s -> exit %d\nstdout: %s\nstderr: %s\n--- registry log ---\n%s" % (
            " ".join(args), p.returncode, p.stdout[-3000:], p.stderr[-3000:], self.registry.log()[-3000:])
        if expect_error:
            assert p.returncode != 0 and "(%s)" % expect_error in p.stderr, "expected %s\n%s" % (expect_error, what)
            return p.stderr
        assert p.returncode == 0, what
        return json.loads(p.stdout) if p.stdout.strip() else None


def configure(reg, receiver):
    ev = Events(reg)
    arn = ev("put-rule", "--name", "prod-push", "--event-pattern", json.dumps(PATTERN))["RuleArn"]
    assert arn == "arn:aws:events:%s:%s:rule/prod-push" % (reg.region, reg.account_id)
    conn = ev("create-connection", "--name", "recv", "--authorization-type", "API_KEY",
              "--auth-parameters", json.dumps({"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key",
                                                                         "ApiKeyValue": "e2e-secret"}}))
    described = ev("describe-connection", "--name", "recv")
    assert "e2e-secret" not in json.dumps(described)
    # Through --cli-input-json: the CLI would fetch a parameter that starts with http://.
    dest = ev("create-api-destination", "--cli-input-json", json.dumps({
        "Name": "recv", "ConnectionArn": conn["ConnectionArn"], "InvocationEndpoint": receiver.url,
        "HttpMethod": "POST"}))
    out = ev("put-targets", "--rule", "prod-push", "--targets",
             json.dumps([{"Id": "recv", "Arn": dest["ApiDestinationArn"]}]))
    assert out["FailedEntryCount"] == 0
    return ev


def push(reg, tmp_path, ref, seed):
    src = Layout(tmp_path / ("src-" + seed))
    desc, _ = random_image(src, make_rng(seed), "t", nlayers=1)
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds(reg),
         "oci:%s:t" % src.path, "docker://%s/%s" % (reg.host, ref)], registry=reg)
    return desc["digest"]


def start_fast(registry):
    registry.stop()
    registry.start(extra_env=FAST)
    registry.login()


def test_push_delivers_exactly_one_matching_event(registry, tmp_path):
    """Acceptance: a matching push delivers one event of the right shape; a non-matching none."""
    rx = Receiver().start()
    try:
        configure(registry, rx)
        push(registry, tmp_path, "dev/x:v1", "dev")
        digest = push(registry, tmp_path, "prod/x:v1", "prod")
        evs = rx.wait_for(lambda e: len(e) >= 1)
        # A sentinel push to another prod repository: once it arrives, anything dev/x or a
        # duplicate of prod/x would have caused had its chance to arrive too.
        push(registry, tmp_path, "prod/sentinel:v1", "sentinel")
        evs = rx.wait_for(lambda e: any(x["detail"]["repository-name"] == "prod/sentinel" for x in e))
        time.sleep(1)
        evs = rx.events()
        repos = sorted(e["detail"]["repository-name"] for e in evs)
        assert repos == ["prod/sentinel", "prod/x"], repos
        ev = next(e for e in evs if e["detail"]["repository-name"] == "prod/x")
        assert ev["version"] == "0"
        assert ev["source"] == "aws.ecr"
        assert ev["detail-type"] == "ECR Image Action"
        assert ev["account"] == registry.account_id
        assert ev["region"] == registry.region
        assert ev["resources"] == []
        assert ev["time"].endswith("Z") and "T" in ev["time"]
        assert len(ev["id"]) == 36
        assert ev["detail"] == {"result": "SUCCESS", "repository-name": "prod/x", "image-digest": digest,
                                "action-type": "PUSH", "image-tag": "v1"}
        got = next(g for g in rx.got if json.loads(g["body"])["detail"]["repository-name"] == "prod/x")
        headers = {k.lower(): v for k, v in got["headers"].items()}
        assert headers["x-api-key"] == "e2e-secret"
        assert headers["content-type"] == "application/json"
    finally:
        rx.stop()


def test_receiver_down_then_up_event_arrives(registry, tmp_path):
    """Acceptance: the receiver down for a while, then up: the event arrives (retries)."""
    start_fast(registry)
    rx = Receiver()
    configure(registry, rx)
    push(registry, tmp_path, "prod/late:v1", "late")
    time.sleep(1.5)  # a few failed attempts against the closed port
    rx.start()
    try:
        evs = rx.wait_for(lambda e: any(x["detail"]["repository-name"] == "prod/late" for x in e))
        assert [e["detail"]["repository-name"] for e in evs].count("prod/late") == 1
    finally:
        rx.stop()


def test_delivery_survives_kill9(registry, tmp_path):
    """Acceptance: delivery survives a restart (kill -9 after the push, before delivery)."""
    start_fast(registry)
    rx = Receiver()
    configure(registry, rx)
    digest = push(registry, tmp_path, "prod/crash:v1", "crash")
    registry.kill9()
    rx.start()
    try:
        time.sleep(0.5)
        assert rx.events() == [], "nothing is delivered while Kura is down"
        registry.start(extra_env=FAST)
        evs = rx.wait_for(lambda e: any(x["detail"]["repository-name"] == "prod/crash" for x in e))
        crash = [e for e in evs if e["detail"]["repository-name"] == "prod/crash"]
        assert len(crash) == 1 and crash[0]["detail"]["image-digest"] == digest
    finally:
        rx.stop()


def test_cli_refusals(registry):
    """Attack: malformed pattern, delete with targets, a principal without events:PutRule."""
    rx = Receiver()
    ev = configure(registry, rx)
    ev("put-rule", "--name", "bad", "--event-pattern", '{"source": "aws.ecr"}',
       expect_error="InvalidEventPatternException")
    ev("put-rule", "--name", "bad", "--event-pattern", '{"detail": {"n": [{"numeric": [">", "x"]}]}}',
       expect_error="InvalidEventPatternException")
    ev("delete-rule", "--name", "prod-push", expect_error="ValidationException")
    res = ev("test-event-pattern", "--event-pattern", json.dumps(PATTERN), "--event", json.dumps({
        "id": "1", "account": registry.account_id, "source": "aws.ecr", "time": "2026-01-01T00:00:00Z",
        "region": registry.region, "detail-type": "ECR Image Action", "resources": [],
        "detail": {"action-type": "PUSH", "repository-name": "prod/a"}}))
    assert res["Result"] is True
    names = [r["Name"] for r in ev("list-rules", "--name-prefix", "prod")["Rules"]]
    assert names == ["prod-push"]

    # A user with no policy may not put rules.
    env = registry.aws_env()
    iam = ["aws", "iam", "--endpoint-url", registry.url, "--output", "json"]
    run(iam + ["create-user", "--user-name", "nobody"], registry=registry, env=env)
    key = json.loads(run(iam + ["create-access-key", "--user-name", "nobody"], registry=registry,
                         env=env).stdout)["AccessKey"]
    env2 = dict(env, AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
    Events(registry, env2)("put-rule", "--name", "x", "--event-pattern", json.dumps(PATTERN),
                           expect_error="AccessDeniedException")
    Events(registry, env2)("describe-rule", "--name", "prod-push", expect_error="AccessDeniedException")
