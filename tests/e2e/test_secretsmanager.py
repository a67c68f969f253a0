"""Secrets Manager, end to end with the real `aws secretsmanager` CLI (v1, pointed at Kura by
AWS_ENDPOINT_URL_SECRETS_MANAGER) and boto3.

1. The CLI: create-secret (an `ecr-pullthroughcache/` secret with {"username","accessToken"}),
   get-secret-value by name, full and partial ARN, put-secret-value (AWSCURRENT moves,
   AWSPREVIOUS follows), describe-secret, list-secrets with a filter, update-secret,
   delete-secret with a recovery window (reads refused, restore-secret brings it back),
   tag-resource/untag-resource, list-secret-version-ids, forced deletion (not found after),
   and the errors by their codes.
2. boto3: a binary secret, the paginator over list_secrets, ClientError codes, the
   idempotency token, another account (from `kura account create`) denied A's secret by ARN
   and not finding it by name, a user without a policy denied.
3. The secret value appears in neither the server log (RUST_LOG=debug) nor any audit record
   (`cloudtrail lookup-events` and `kura audit`), while the calls themselves are recorded.
"""
import base64
import json
import os
import re
import subprocess
import time

import pytest

from conftest import Registry
from helpers import require_tool, run

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no Secrets Manager API",
)

CREDS = {"username": "kura-e2e", "accessToken": "dckr_pat_E2E-MUST-NOT-LEAK-91c4"}
MARK = "E2E-MUST-NOT-LEAK-91c4"
ARN_RE = r"^arn:aws:secretsmanager:us-east-1:123456789012:secret:%s-[A-Za-z0-9]{6}$"


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws")


def sm_env(reg, key=None, secret=None):
    env = reg.aws_env()
    env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] = reg.url
    if key:
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = key, secret
    return env


def sm(reg, *args, error=None, key=None, secret=None):
    """`aws secretsmanager <args>`; JSON output, or (with `error`) the refusal's stderr."""
    p = subprocess.run(["aws", "--output", "json", "secretsmanager", *args],
                       capture_output=True, text=True, env=sm_env(reg, key, secret), timeout=120)
    if error:
        assert p.returncode != 0 and "(%s)" % error in p.stderr, (args, p.stdout, p.stderr)
        return p.stderr
    assert p.returncode == 0, (args, p.stderr, reg.log())
    return json.loads(p.stdout) if p.stdout.strip() else None


def boto(reg, key=None, secret=None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "secretsmanager", endpoint_url=reg.url, region_name=reg.region,
        aws_access_key_id=key or reg.access_key, aws_secret_access_key=secret or reg.secret_key,
        config=Config(retries={"max_attempts": 1}))


def code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def test_cli_lifecycle(bare_registry):
    reg = bare_registry
    name = "ecr-pullthroughcache/hub"
    out = sm(reg, "create-secret", "--name", name, "--secret-string", json.dumps(CREDS),
             "--description", "Docker Hub")
    arn = out["ARN"]
    assert re.match(ARN_RE % re.escape(name), arn), arn
    first = out["VersionId"]  # the CLI's own idempotency token
    partial = "arn:aws:secretsmanager:us-east-1:123456789012:secret:%s" % name
    for sid in (name, arn, partial):
        got = sm(reg, "get-secret-value", "--secret-id", sid)
        assert json.loads(got["SecretString"]) == CREDS
        assert got["VersionStages"] == ["AWSCURRENT"] and got["VersionId"] == first
    sm(reg, "create-secret", "--name", name, "--secret-string", "x", error="ResourceExistsException")

    put = sm(reg, "put-secret-value", "--secret-id", name, "--secret-string", "v2")
    assert put["VersionStages"] == ["AWSCURRENT"]
    assert sm(reg, "get-secret-value", "--secret-id", name)["SecretString"] == "v2"
    prev = sm(reg, "get-secret-value", "--secret-id", name, "--version-stage", "AWSPREVIOUS")
    assert prev["VersionId"] == first
    d = sm(reg, "describe-secret", "--secret-id", arn)
    assert d["Name"] == name and d["Description"] == "Docker Hub"
    assert d["VersionIdsToStages"] == {first: ["AWSPREVIOUS"], put["VersionId"]: ["AWSCURRENT"]}

    sm(reg, "create-secret", "--name", "app/db", "--secret-string", "db")
    listed = sm(reg, "list-secrets", "--filters", "Key=name,Values=ecr-pullthroughcache/")
    assert [s["Name"] for s in listed["SecretList"]] == [name]
    assert len(sm(reg, "list-secrets")["SecretList"]) == 2

    sm(reg, "tag-resource", "--secret-id", name, "--tags", "Key=team,Value=platform")
    assert sm(reg, "describe-secret", "--secret-id", name)["Tags"] == [{"Key": "team", "Value": "platform"}]
    tagged = sm(reg, "list-secrets", "--filters", "Key=tag-key,Values=team")
    assert [s["Name"] for s in tagged["SecretList"]] == [name]
    sm(reg, "untag-resource", "--secret-id", name, "--tag-keys", "team")
    assert "Tags" not in sm(reg, "describe-secret", "--secret-id", name)
    ids = sm(reg, "list-secret-version-ids", "--secret-id", name)
    assert [v["VersionId"] for v in ids["Versions"]] == [put["VersionId"], first]

    up = sm(reg, "update-secret", "--secret-id", name, "--description", "rotated", "--secret-string", "v3")
    assert up["ARN"] == arn and up["VersionId"]
    assert sm(reg, "describe-secret", "--secret-id", name)["Description"] == "rotated"

    deleted = sm(reg, "delete-secret", "--secret-id", name, "--recovery-window-in-days", "7")
    assert deleted["ARN"] == arn and deleted["DeletionDate"]
    sm(reg, "get-secret-value", "--secret-id", name, error="InvalidRequestException")
    sm(reg, "create-secret", "--name", name, "--secret-string", "x", error="InvalidRequestException")
    assert "DeletedDate" in sm(reg, "describe-secret", "--secret-id", name)
    assert [s["Name"] for s in sm(reg, "list-secrets")["SecretList"]] == ["app/db"]
    assert len(sm(reg, "list-secrets", "--include-planned-deletion")["SecretList"]) == 2
    sm(reg, "restore-secret", "--secret-id", name)
    assert sm(reg, "get-secret-value", "--secret-id", name)["SecretString"] == "v3"

    sm(reg, "delete-secret", "--secret-id", name, "--force-delete-without-recovery")
    sm(reg, "describe-secret", "--secret-id", name, error="ResourceNotFoundException")
    sm(reg, "get-secret-value", "--secret-id", arn, error="ResourceNotFoundException")
    # Errors by their codes.
    sm(reg, "delete-secret", "--secret-id", "app/db", "--recovery-window-in-days", "3",
       error="InvalidParameterException")
    sm(reg, "delete-secret", "--secret-id", "app/db", "--recovery-window-in-days", "7",
       "--force-delete-without-recovery", error="InvalidParameterException")
    sm(reg, "create-secret", "--name", "bad name", error="InvalidParameterException")
    sm(reg, "put-secret-value", "--secret-id", "missing", "--secret-string", "x",
       error="ResourceNotFoundException")
    sm(reg, "list-secrets", "--next-token", "bogus", error="InvalidNextTokenException")
    sm(reg, "rotate-secret", "--secret-id", "app/db", error="UnsupportedOperationException")


def test_boto3_binary_paging_accounts_and_iam(bare_registry):
    from botocore.exceptions import ClientError

    reg = bare_registry
    c = boto(reg)
    blob = bytes(range(256))
    out = c.create_secret(Name="bin", SecretBinary=blob)
    got = c.get_secret_value(SecretId=out["ARN"])
    assert got["SecretBinary"] == blob and "SecretString" not in got
    # The same request token and value again: the same answer; another value: refused.
    token = "0123456789abcdef0123456789abcdef"
    a1 = c.put_secret_value(SecretId="bin", SecretString="s", ClientRequestToken=token)
    a2 = c.put_secret_value(SecretId="bin", SecretString="s", ClientRequestToken=token)
    assert a1["VersionId"] == a2["VersionId"] == token
    with pytest.raises(ClientError) as e:
        c.put_secret_value(SecretId="bin", SecretString="t", ClientRequestToken=token)
    assert code(e) == "ResourceExistsException"

    for i in range(7):
        c.create_secret(Name="page/%d" % i, SecretString="v%d" % i)
    names = []
    for page in c.get_paginator("list_secrets").paginate(
            Filters=[{"Key": "name", "Values": ["page/"]}], SortBy="name", PaginationConfig={"PageSize": 3}):
        assert len(page["SecretList"]) <= 3
        names += [s["Name"] for s in page["SecretList"]]
    assert names == ["page/%d" % i for i in range(7)]
    with pytest.raises(ClientError) as e:
        c.get_secret_value(SecretId="page/0", VersionStage="AWSPREVIOUS")
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        c.create_secret(Name="big", SecretString="x" * 65537)
    assert code(e) == "InvalidParameterException"

    # Another account: A's secret by ARN is denied, by name not found; its own list is empty.
    p = run([reg._cmd()[0], "account", "create", "--data-dir", reg.data_dir], registry=reg)
    other = json.loads(p.stdout.decode().strip().splitlines()[-1])
    b = boto(reg, other["accessKeyId"], other["secretAccessKey"])
    with pytest.raises(ClientError) as e:
        b.get_secret_value(SecretId=out["ARN"])
    assert code(e) == "AccessDeniedException"
    with pytest.raises(ClientError) as e:
        b.get_secret_value(SecretId="bin")
    assert code(e) == "ResourceNotFoundException"
    assert b.list_secrets()["SecretList"] == []
    b.create_secret(Name="bin", SecretString="b's own")
    assert b.get_secret_value(SecretId="bin")["SecretString"] == "b's own"
    assert c.get_secret_value(SecretId="bin")["SecretString"] == "s"

    # A user without a policy is denied; with one on `page/*` it reads those only.
    import boto3
    iam = boto3.client("iam", endpoint_url=reg.url, region_name=reg.region,
                       aws_access_key_id=reg.access_key, aws_secret_access_key=reg.secret_key)
    iam.create_user(UserName="reader")
    k = iam.create_access_key(UserName="reader")["AccessKey"]
    u = boto(reg, k["AccessKeyId"], k["SecretAccessKey"])
    with pytest.raises(ClientError) as e:
        u.get_secret_value(SecretId="page/1")
    assert code(e) == "AccessDeniedException"
    iam.put_user_policy(UserName="reader", PolicyName="p", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
                                                "Resource": "arn:aws:secretsmanager:*:*:secret:page/*"}]}))
    deadline = time.time() + 10
    while True:
        try:
            assert u.get_secret_value(SecretId="page/1")["SecretString"] == "v1"
            break
        except ClientError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    with pytest.raises(ClientError) as e:
        u.get_secret_value(SecretId="bin")
    assert code(e) == "AccessDeniedException"
    # A deleted key is refused.
    iam.delete_access_key(UserName="reader", AccessKeyId=k["AccessKeyId"])
    with pytest.raises(ClientError) as e:
        u.get_secret_value(SecretId="page/1")
    assert code(e) in ("UnrecognizedClientException", "InvalidClientTokenId", "AccessDeniedException"), code(e)


def test_value_in_neither_log_nor_audit(tmp_path):
    reg = Registry(str(tmp_path), env={"RUST_LOG": "debug"})
    reg.start()
    try:
        value = json.dumps(CREDS)
        sm(reg, "create-secret", "--name", "ecr-pullthroughcache/q", "--secret-string", value)
        sm(reg, "get-secret-value", "--secret-id", "ecr-pullthroughcache/q")
        sm(reg, "put-secret-value", "--secret-id", "ecr-pullthroughcache/q", "--secret-string", value + " ")
        sm(reg, "update-secret", "--secret-id", "ecr-pullthroughcache/q", "--secret-string", value + "  ")
        sm(reg, "create-secret", "--name", "b", "--secret-binary", base64.b64encode(MARK.encode()).decode())
        sm(reg, "get-secret-value", "--secret-id", "b")
        # Refused calls carry the value too.
        sm(reg, "put-secret-value", "--secret-id", "missing", "--secret-string", value,
           error="ResourceNotFoundException")
        sm(reg, "create-secret", "--name", "bad name", "--secret-string", value, error="InvalidParameterException")

        # The writes are in the trail (the recorder commits in groups: wait for them).
        deadline = time.time() + 20
        while True:
            p = subprocess.run(["aws", "--output", "json", "cloudtrail", "lookup-events", "--lookup-attributes",
                                "AttributeKey=EventSource,AttributeValue=secretsmanager.amazonaws.com"],
                               capture_output=True, text=True, env=sm_env(reg) | {"AWS_ENDPOINT_URL_CLOUDTRAIL": reg.url},
                               timeout=120)
            assert p.returncode == 0, p.stderr
            events = json.loads(p.stdout)["Events"]
            if len(events) >= 8 or time.time() > deadline:
                break
            time.sleep(0.3)
        names = sorted(e["EventName"] for e in events)
        assert names.count("CreateSecret") == 3 and names.count("GetSecretValue") == 2, names
        assert "PutSecretValue" in names and "UpdateSecret" in names
        assert MARK not in p.stdout, "a CloudTrail record holds the secret value"
        hidden = [json.loads(e["CloudTrailEvent"])["requestParameters"] for e in events
                  if e["EventName"] in ("CreateSecret", "PutSecretValue", "UpdateSecret")]
        assert any(h.get("SecretString") == "HIDDEN_DUE_TO_SECURITY_REASONS" for h in hidden if h), hidden
    finally:
        reg.stop()
    out = run([reg._cmd()[0], "audit", "--data-dir", reg.data_dir], registry=reg).stdout.decode()
    assert "secretsmanager.amazonaws.com" in out
    assert MARK not in out, "`kura audit` prints the secret value"
    encoded = base64.b64encode(MARK.encode()).decode()
    assert encoded not in out
    with open(reg.log_path, "rb") as f:
        log = f.read().decode(errors="replace")
    assert "GetSecretValue" in log, "the debug log names the calls"
    assert MARK not in log and encoded not in log, "the server log holds the secret value"
