"""The replication API through boto3 against a running `kura serve`: what a
client sees of the configuration (ECR's validation and the DescribeRegistry
echo), of each image's replication status, and of backfills. Every raw answer
is checked against botocore's ECR model before botocore parses it
(ecr_util.client). The copying itself has its own suites; here the one
destination is a region no --peer-region names, so every replication ends
FAILED with DESTINATION_REGION_UNKNOWN, fast and deterministically.
"""
import json
import subprocess
import time
from contextlib import contextmanager

import pytest
from botocore.exceptions import ClientError

import ecr_util
from ecr_util import push_image

SELF_MESSAGE = ("Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: "
                "'Replication destination cannot be the same as the source registry'")


@contextmanager
def raises(code, status=400):
    with pytest.raises(ClientError) as ei:
        yield ei
    r = ei.value.response
    assert r["Error"]["Code"] == code, r
    assert r["ResponseMetadata"]["HTTPStatusCode"] == status, r


@pytest.fixture
def reg(bare_registry):
    return bare_registry


@pytest.fixture
def ecr(reg):
    return ecr_util.client(reg)


@pytest.fixture
def ecr_noval(reg):
    return ecr_util.client(reg, validate_params=False)


def rule(*dests, prefix=None):
    r = {"destinations": [{"region": d[0], "registryId": d[1]} for d in dests]}
    if prefix is not None:
        r["repositoryFilters"] = [{"filter": prefix, "filterType": "PREFIX_MATCH"}]
    return r


def wait_for(what, fn, timeout=30):
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v is not None:
            return v
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_configuration_validation_and_echo(reg, ecr, ecr_noval):
    acct = reg.account_id
    r = ecr.describe_registry()
    assert r["registryId"] == acct
    assert r["replicationConfiguration"] == {"rules": []}
    with raises("InvalidParameterException") as ei:
        ecr.put_replication_configuration(replicationConfiguration={"rules": [rule((reg.region, acct))]})
    assert ei.value.response["Error"]["Message"] == SELF_MESSAGE
    with raises("InvalidParameterException") as ei:
        ecr.put_replication_configuration(replicationConfiguration={"rules": [rule(("eu-west-1", acct))] * 11})
    assert "10" in ei.value.response["Error"]["Message"]
    many = [("eu-west-1", f"{100 + i:012d}") for i in range(26)]
    with raises("InvalidParameterException"):
        ecr.put_replication_configuration(replicationConfiguration={"rules": [rule(*many)]})
    for bad in ["a", "a" * 257]:
        with raises("InvalidParameterException"):
            ecr_noval.put_replication_configuration(
                replicationConfiguration={"rules": [rule(("eu-west-1", acct), prefix=bad)]})
    with raises("InvalidParameterException"):
        ecr_noval.put_replication_configuration(replicationConfiguration={"rules": [
            {"destinations": [{"region": "eu-west-1", "registryId": acct}],
             "repositoryFilters": [{"filter": "prod", "filterType": "WILDCARD"}]}]})
    assert ecr.describe_registry()["replicationConfiguration"] == {"rules": []}, "nothing refused is stored"

    config = {"rules": [rule(("eu-west-1", acct), prefix="prod/"), rule(("ap-northeast-1", "111111111111"))]}
    r = ecr.put_replication_configuration(replicationConfiguration=config)
    assert r["replicationConfiguration"] == config
    assert ecr.describe_registry()["replicationConfiguration"] == config
    ecr.put_replication_configuration(replicationConfiguration={"rules": []})
    assert ecr.describe_registry()["replicationConfiguration"] == {"rules": []}


def test_statuses_and_backfill(reg, ecr):
    acct = reg.account_id
    ecr.create_repository(repositoryName="prod/api")
    ecr.create_repository(repositoryName="dev/tool")
    before = [push_image(ecr, "prod/api", f"v{i}", seed=f"b{i}") for i in range(3)]
    push_image(ecr, "dev/tool", "v1", seed="dev")
    # Before any configuration: no statuses.
    r = ecr.describe_image_replication_status(repositoryName="prod/api", imageId={"imageTag": "v0"})
    assert r["replicationStatuses"] == [] and r["imageId"]["imageDigest"] == before[0].digest
    with raises("ImageNotFoundException"):
        ecr.describe_image_replication_status(repositoryName="prod/api", imageId={"imageTag": "nope"})
    with raises("RepositoryNotFoundException"):
        ecr.describe_image_replication_status(repositoryName="ghost", imageId={"imageTag": "v0"})

    ecr.put_replication_configuration(replicationConfiguration={"rules": [rule(("eu-west-1", acct), prefix="prod/")]})
    # A push now replicates (here: to a region this deployment does not know).
    after = push_image(ecr, "prod/api", "new", seed="after")

    def final_status():
        st = ecr.describe_image_replication_status(repositoryName="prod/api", imageId={"imageTag": "new"})
        s = st["replicationStatuses"]
        return s if s and s[0]["status"] != "IN_PROGRESS" else None
    s = wait_for("the push's replication", final_status)
    assert s == [{"region": "eu-west-1", "registryId": acct, "status": "FAILED",
                  "failureCode": "DESTINATION_REGION_UNKNOWN"}], s
    # Images from before were not replicated.
    r = ecr.describe_image_replication_status(repositoryName="prod/api", imageId={"imageTag": "v1"})
    assert r["replicationStatuses"] == []

    # A backfill: only to a destination a rule names.
    with raises("InvalidParameterException"):
        ecr.start_replication_backfill(destination={"region": "us-west-2", "registryId": acct})
    b = ecr.start_replication_backfill(destination={"region": "eu-west-1", "registryId": acct})
    bid = b["replicationBackfillId"]
    assert b["status"] in ("PREPARING", "IN_PROGRESS", "COMPLETE"), b
    assert b["destination"] == {"region": "eu-west-1", "registryId": acct}
    assert any(x["replicationBackfillId"] == bid for x in ecr.list_replication_backfills()["backfills"])

    def finished():
        r = ecr.describe_replication_backfill_results(replicationBackfillId=bid)
        return r if r["status"] == "COMPLETE" else None
    r = wait_for("the backfill", finished)
    # Every prod/ image (the three from before and the one after), none of dev/.
    assert r["progress"]["totalReplicationCount"] == 4, r["progress"]
    assert r["progress"]["failedReplicationCount"] == 4
    assert r["progress"]["completedReplicationCount"] == 0
    assert r["progress"]["failureCodes"] == ["DESTINATION_REGION_UNKNOWN"]
    assert "endedAt" in r
    got = sorted(x["imageId"]["imageDigest"] for x in r["results"])
    assert got == sorted([i.digest for i in before] + [after.digest])
    assert all(x["repositoryName"] == "prod/api" and x["status"] == "FAILED" for x in r["results"])
    page = ecr.describe_replication_backfill_results(replicationBackfillId=bid, maxResults=3)
    assert len(page["results"]) == 3 and page.get("nextToken")
    rest = ecr.describe_replication_backfill_results(replicationBackfillId=bid, nextToken=page["nextToken"])
    assert len(rest["results"]) == 1
    with raises("ReplicationBackfillInvalidStatusException"):
        ecr.stop_replication_backfill(replicationBackfillId=bid)
    with raises("ReplicationBackfillNotFoundException"):
        ecr.describe_replication_backfill_results(replicationBackfillId="01234567-89ab-cdef-0123-456789abcdef")
    # The old images' statuses now show the backfill's replications.
    r = ecr.describe_image_replication_status(repositoryName="prod/api", imageId={"imageTag": "v1"})
    assert r["replicationStatuses"][0]["failureCode"] == "DESTINATION_REGION_UNKNOWN"


def aws_ecr(reg, *args, expect_error=None):
    """`aws ecr <args>` with the root key; the parsed JSON output, or stderr when
    `expect_error` (an error code) is expected."""
    p = subprocess.run(["aws", "ecr", *args, "--endpoint-url", reg.url, "--output", "json"],
                       env=reg.aws_env(), capture_output=True, text=True, timeout=120)
    if expect_error:
        assert p.returncode != 0 and f"({expect_error})" in p.stderr, (p.stdout, p.stderr)
        return p.stderr
    assert p.returncode == 0, (p.stdout, p.stderr, reg.log())
    return json.loads(p.stdout) if p.stdout.strip() else None


def test_aws_cli_configuration_and_status(reg):
    """The README's commands with the real `aws` CLI."""
    acct = reg.account_id
    config = {"rules": [{"destinations": [{"region": "eu-west-1", "registryId": acct}],
                         "repositoryFilters": [{"filter": "prod/", "filterType": "PREFIX_MATCH"}]}]}
    out = aws_ecr(reg, "put-replication-configuration", "--replication-configuration", json.dumps(config))
    assert out["replicationConfiguration"] == config
    assert aws_ecr(reg, "describe-registry") == {"registryId": acct, "replicationConfiguration": config}
    err = aws_ecr(reg, "put-replication-configuration", "--replication-configuration",
                  json.dumps({"rules": [{"destinations": [{"region": reg.region, "registryId": acct}]}]}),
                  expect_error="InvalidParameterException")
    assert "Replication destination cannot be the same as the source registry" in err
    aws_ecr(reg, "create-repository", "--repository-name", "prod/api")
    img = push_image(ecr_util.client(reg), "prod/api", "v1", seed="cli")

    def final():
        st = aws_ecr(reg, "describe-image-replication-status", "--repository-name", "prod/api",
                     "--image-id", "imageTag=v1")
        s = st["replicationStatuses"]
        return st if s and s[0]["status"] != "IN_PROGRESS" else None
    st = wait_for("the push's replication", final)
    assert st["imageId"] == {"imageDigest": img.digest, "imageTag": "v1"}
    assert st["replicationStatuses"] == [{"region": "eu-west-1", "registryId": acct, "status": "FAILED",
                                          "failureCode": "DESTINATION_REGION_UNKNOWN"}]
