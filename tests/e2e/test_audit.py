"""The audit trail with real clients: the aws CLI's `cloudtrail lookup-events` finds
`aws ecr create-repository` with the caller's identity, a skopeo push shows up as PutImage,
a failed authentication is recorded, `kura audit` prints the same records, and an
acknowledged call's record survives kill -9."""
import json
import subprocess

import pytest

from helpers import creds, require_tool, run
from images import Layout, make_rng, random_layer


def aws(reg, *args, check=True):
    env = reg.aws_env()
    p = subprocess.run(["aws", "--endpoint-url", reg.url, "--output", "json", *args],
                       capture_output=True, text=True, env=env, timeout=120)
    if check:
        assert p.returncode == 0, (args, p.stderr, reg.log())
    return p


def lookup(reg, key, value):
    p = aws(reg, "cloudtrail", "lookup-events", "--lookup-attributes",
            "AttributeKey=%s,AttributeValue=%s" % (key, value))
    return json.loads(p.stdout)["Events"]


def kura_audit(reg, *args):
    p = run([reg._cmd()[0], "audit", "--data-dir", reg.data_dir, *args], registry=reg)
    return [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]


@pytest.fixture(autouse=True)
def _aws():
    require_tool("aws")


def test_lookup_events_finds_the_call_with_its_identity(registry):
    aws(registry, "ecr", "create-repository", "--repository-name", "audit/app")
    events = lookup(registry, "EventName", "CreateRepository")
    assert len(events) == 1, events
    e = events[0]
    assert e["EventName"] == "CreateRepository"
    assert e["EventSource"] == "ecr.amazonaws.com"
    assert e["AccessKeyId"] == registry.access_key
    assert e["Username"] == "root"
    assert e["ReadOnly"] == "false"
    assert {"ResourceType": "AWS::ECR::Repository", "ResourceName": "audit/app"} in e["Resources"]
    rec = json.loads(e["CloudTrailEvent"])
    ident = rec["userIdentity"]
    assert ident["type"] == "Root"
    assert ident["arn"] == "arn:aws:iam::%s:root" % registry.account_id
    assert ident["accountId"] == registry.account_id
    assert ident["accessKeyId"] == registry.access_key
    assert rec["sourceIPAddress"] == "127.0.0.1"
    assert rec["userAgent"].startswith("aws-cli/"), rec["userAgent"]
    assert rec["awsRegion"] == registry.region
    assert rec["eventType"] == "AwsApiCall" and rec["eventVersion"] == "1.08"
    assert rec["requestParameters"] == {"repositoryName": "audit/app"}
    assert rec["recipientAccountId"] == registry.account_id
    assert rec["eventID"] == e["EventId"] and rec["requestID"]

    # Other attributes and paging, through the CLI's own paginator.
    assert lookup(registry, "ResourceName", "audit/app")[0]["EventId"] == e["EventId"]
    assert lookup(registry, "AccessKeyId", registry.access_key)
    p = aws(registry, "cloudtrail", "lookup-events", "--max-items", "3", "--page-size", "2")
    assert len(json.loads(p.stdout)["Events"]) == 3
    p = aws(registry, "cloudtrail", "lookup-events", "--max-results", "51", check=False)
    assert p.returncode != 0 and "InvalidMaxResultsException" in p.stderr, p.stderr

    # `kura audit` prints the same records (what LookupEvents returns as CloudTrailEvent).
    lines = kura_audit(registry, "--event-name", "CreateRepository")
    assert lines == [rec], lines


def test_a_skopeo_push_is_recorded_as_put_image(registry, tmp_path):
    require_tool("skopeo")
    rng = make_rng()
    src = Layout(tmp_path / "src")
    layer, _ = random_layer(rng, nfiles=2)
    src.add_image([layer], tag="v1")
    run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", creds(registry),
         "oci:%s:v1" % src.path, "docker://%s/audit/pushed:v1" % registry.host], registry=registry)
    puts = lookup(registry, "EventName", "PutImage")
    assert len(puts) == 1, puts
    rec = json.loads(puts[0]["CloudTrailEvent"])
    assert rec["requestParameters"]["repositoryName"] == "audit/pushed"
    assert rec["requestParameters"]["imageTag"] == "v1"
    assert rec["userIdentity"]["accessKeyId"] == registry.access_key
    assert "skopeo" in rec["userAgent"].lower() or "containers" in rec["userAgent"].lower(), rec["userAgent"]
    assert rec["sourceIPAddress"] == "127.0.0.1"
    assert lookup(registry, "EventName", "CompleteLayerUpload") or lookup(registry, "EventName", "InitiateLayerUpload")
    # Pulls are data events, off by default.
    run(["skopeo", "inspect", "--tls-verify=false", "--creds", creds(registry),
         "docker://%s/audit/pushed:v1" % registry.host], registry=registry)
    assert lookup(registry, "EventName", "BatchGetImage") == []


def test_failed_authentication_is_recorded(registry):
    env_bad = registry.aws_env()
    env_bad["AWS_SECRET_ACCESS_KEY"] = "not-the-secret-not-the-secret-000000000"
    p = subprocess.run(["aws", "--endpoint-url", registry.url, "ecr", "describe-repositories"],
                       capture_output=True, text=True, env=env_bad, timeout=120)
    assert p.returncode != 0
    events = lookup(registry, "EventName", "DescribeRepositories")
    failed = [json.loads(e["CloudTrailEvent"]) for e in events]
    failed = [r for r in failed if r.get("errorCode")]
    assert failed, events
    assert failed[0]["errorCode"] in ("InvalidSignatureException", "SignatureDoesNotMatch"), failed[0]
    assert failed[0]["sourceIPAddress"] == "127.0.0.1"
    assert "not-the-secret" not in json.dumps(failed[0])


def test_an_acknowledged_calls_record_survives_kill_9(registry):
    aws(registry, "ecr", "create-repository", "--repository-name", "audit/crash")
    registry.kill9()
    registry.start()
    events = lookup(registry, "ResourceName", "audit/crash")
    assert [e["EventName"] for e in events] == ["CreateRepository"], events
    lines = kura_audit(registry, "--resource-name", "audit/crash")
    assert [l["eventName"] for l in lines] == ["CreateRepository"]
