"""The real `aws iam` and `aws sts` CLI against Kura's IAM and STS API.

Every test starts from a fresh install (`bare_registry`: the root key only).
The CLI signs with the root key unless a test passes other credentials; it
talks to Kura through `--endpoint-url`, as for ECR.
"""
import calendar
import json
import os
import subprocess
import time

import pytest

from helpers import require_tool

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no IAM API",
)

ACCOUNT = "123456789012"
READ_ONLY = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
PULL_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "Pull",
            "Effect": "Allow",
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "Resource": "arn:aws:ecr:us-east-1:%s:repository/app/*" % ACCOUNT,
        }
    ],
}


def trust(principal):
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}],
    })


class Aws:
    """`aws <service> ...` against the registry, JSON output, root key by default."""

    def __init__(self, registry, creds=None):
        self.registry = registry
        self.env = registry.aws_env()
        if creds:
            self.env["AWS_ACCESS_KEY_ID"] = creds["AccessKeyId"]
            self.env["AWS_SECRET_ACCESS_KEY"] = creds["SecretAccessKey"]
            if creds.get("SessionToken"):
                self.env["AWS_SESSION_TOKEN"] = creds["SessionToken"]

    def as_(self, creds):
        return Aws(self.registry, creds)

    def __call__(self, service, *args, expect_error=None):
        """Run `aws <service> <args>`; the parsed JSON output (None if empty).
        With expect_error="Code": the command must fail with that error code;
        returns stderr."""
        argv = ["aws", service, *args, "--endpoint-url", self.registry.url, "--output", "json"]
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=120)
        what = "aws %s %s -> exit %d\nstdout: %s\nstderr: %s\n--- registry log ---\n%s" % (
            service, " ".join(args), p.returncode, p.stdout[-3000:], p.stderr[-3000:],
            self.registry.log()[-3000:])
        if expect_error:
            assert p.returncode != 0, "expected %s\n%s" % (expect_error, what)
            assert "(%s)" % expect_error in p.stderr, "expected %s\n%s" % (expect_error, what)
            return p.stderr
        assert p.returncode == 0, what
        return json.loads(p.stdout) if p.stdout.strip() else None

    def iam(self, *args, **kw):
        return self("iam", *args, **kw)

    def sts(self, *args, **kw):
        return self("sts", *args, **kw)


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws")


@pytest.fixture
def aws(bare_registry):
    return Aws(bare_registry)


def test_user_key_and_inline_policy(aws):
    user = aws.iam("create-user", "--user-name", "alice", "--tags", "Key=team,Value=platform")["User"]
    assert user["UserName"] == "alice"
    assert user["Arn"] == "arn:aws:iam::%s:user/alice" % ACCOUNT
    assert user["UserId"].startswith("AIDA") and len(user["UserId"]) == 20
    assert user["Tags"] == [{"Key": "team", "Value": "platform"}]
    aws.iam("create-user", "--user-name", "alice", expect_error="EntityAlreadyExists")
    aws.iam("get-user", "--user-name", "nobody", expect_error="NoSuchEntity")

    key = aws.iam("create-access-key", "--user-name", "alice")["AccessKey"]
    assert key["AccessKeyId"].startswith("AKIA") and key["Status"] == "Active"
    assert len(key["SecretAccessKey"]) == 40
    # The new key really authenticates as alice.
    me = aws.as_(key).sts("get-caller-identity")
    assert me == {"UserId": user["UserId"], "Account": ACCOUNT, "Arn": user["Arn"]}
    listed = aws.iam("list-access-keys", "--user-name", "alice")["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in listed] == [key["AccessKeyId"]]

    # The inline policy round-trips (the CLI decodes IAM's URL-encoded JSON).
    aws.iam("put-user-policy", "--user-name", "alice", "--policy-name", "pull",
            "--policy-document", json.dumps(PULL_POLICY))
    got = aws.iam("get-user-policy", "--user-name", "alice", "--policy-name", "pull")
    assert got["UserName"] == "alice" and got["PolicyName"] == "pull"
    assert got["PolicyDocument"] == PULL_POLICY
    assert aws.iam("list-user-policies", "--user-name", "alice")["PolicyNames"] == ["pull"]
    bad = {"Version": "2012-10-17", "Statement": [{"Effect": "Perhaps", "Action": "*", "Resource": "*"}]}
    err = aws.iam("put-user-policy", "--user-name", "alice", "--policy-name", "bad",
                  "--policy-document", json.dumps(bad), expect_error="MalformedPolicyDocument")
    assert "Effect" in err

    # AWS's managed ECR policy: listed, readable, attachable.
    aws_policies = aws.iam("list-policies", "--scope", "AWS")["Policies"]
    assert READ_ONLY in [p["Arn"] for p in aws_policies]
    version = aws.iam("get-policy-version", "--policy-arn", READ_ONLY, "--version-id", "v1")["PolicyVersion"]
    assert "ecr:BatchGetImage" in json.dumps(version["Document"])
    aws.iam("attach-user-policy", "--user-name", "alice", "--policy-arn", READ_ONLY)
    attached = aws.iam("list-attached-user-policies", "--user-name", "alice")["AttachedPolicies"]
    assert attached == [{"PolicyName": "AmazonEC2ContainerRegistryReadOnly", "PolicyArn": READ_ONLY}]
    assert [u["UserName"] for u in aws.iam("list-users")["Users"]] == ["alice"]

    # Deletion is refused while keys, policies or attachments remain.
    err = aws.iam("delete-user", "--user-name", "alice", expect_error="DeleteConflict")
    assert "access keys" in err
    aws.iam("delete-access-key", "--user-name", "alice", "--access-key-id", key["AccessKeyId"])
    aws.iam("delete-user", "--user-name", "alice", expect_error="DeleteConflict")
    aws.iam("delete-user-policy", "--user-name", "alice", "--policy-name", "pull")
    aws.iam("delete-user", "--user-name", "alice", expect_error="DeleteConflict")
    aws.iam("detach-user-policy", "--user-name", "alice", "--policy-arn", READ_ONLY)
    aws.iam("delete-user", "--user-name", "alice")
    assert aws.iam("list-users")["Users"] == []
    # The deleted key no longer works.
    aws.as_(key).sts("get-caller-identity", expect_error="InvalidClientTokenId")


def test_customer_managed_policy_and_groups(aws):
    doc = {"Version": "2012-10-17",
           "Statement": [{"Effect": "Allow", "Action": "iam:List*", "Resource": "*"}]}
    policy = aws.iam("create-policy", "--policy-name", "lister", "--policy-document", json.dumps(doc))["Policy"]
    arn = policy["Arn"]
    assert arn == "arn:aws:iam::%s:policy/lister" % ACCOUNT
    assert policy["DefaultVersionId"] == "v1"
    assert aws.iam("get-policy", "--policy-arn", arn)["Policy"]["PolicyName"] == "lister"
    local = aws.iam("list-policies", "--scope", "Local")["Policies"]
    assert [p["Arn"] for p in local] == [arn]

    aws.iam("create-group", "--group-name", "listers")
    aws.iam("create-user", "--user-name", "bob")
    key = aws.iam("create-access-key", "--user-name", "bob")["AccessKey"]
    bob = aws.as_(key)
    bob.iam("list-users", expect_error="AccessDenied")

    aws.iam("add-user-to-group", "--group-name", "listers", "--user-name", "bob")
    aws.iam("attach-group-policy", "--group-name", "listers", "--policy-arn", arn)
    group = aws.iam("get-group", "--group-name", "listers")
    assert group["Group"]["GroupId"].startswith("AGPA")
    assert [u["UserName"] for u in group["Users"]] == ["bob"]
    assert [g["GroupName"] for g in aws.iam("list-groups-for-user", "--user-name", "bob")["Groups"]] == ["listers"]
    # Through the group's managed policy, bob may list but not create.
    assert [u["UserName"] for u in bob.iam("list-users")["Users"]] == ["bob"]
    err = bob.iam("create-user", "--user-name", "mallory", expect_error="AccessDenied")
    assert "iam:CreateUser" in err

    # A new default version changes what bob may do, on his next call.
    doc2 = {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": ["iam:List*", "iam:CreateUser"], "Resource": "*"}]}
    v = aws.iam("create-policy-version", "--policy-arn", arn, "--policy-document", json.dumps(doc2),
                "--set-as-default")["PolicyVersion"]
    assert v["VersionId"] == "v2" and v["IsDefaultVersion"] is True
    bob.iam("create-user", "--user-name", "carol")
    versions = aws.iam("list-policy-versions", "--policy-arn", arn)["Versions"]
    assert [x["VersionId"] for x in versions] == ["v2", "v1"]

    err = aws.iam("delete-policy", "--policy-arn", arn, expect_error="DeleteConflict")
    aws.iam("delete-group", "--group-name", "listers", expect_error="DeleteConflict")
    aws.iam("detach-group-policy", "--group-name", "listers", "--policy-arn", arn)
    aws.iam("delete-policy", "--policy-arn", arn, expect_error="DeleteConflict")  # two versions
    aws.iam("delete-policy-version", "--policy-arn", arn, "--version-id", "v2",
            expect_error="DeleteConflict")  # the default
    aws.iam("delete-policy-version", "--policy-arn", arn, "--version-id", "v1")
    aws.iam("delete-policy", "--policy-arn", arn)
    aws.iam("get-policy", "--policy-arn", arn, expect_error="NoSuchEntity")
    aws.iam("remove-user-from-group", "--group-name", "listers", "--user-name", "bob")
    aws.iam("delete-group", "--group-name", "listers")
    assert aws.iam("list-groups")["Groups"] == []


def test_role_assume_and_session_identity(aws):
    aws.iam("create-user", "--user-name", "dev")
    key = aws.iam("create-access-key", "--user-name", "dev")["AccessKey"]
    dev = aws.as_(key)
    aws.iam("create-user", "--user-name", "outsider")
    outsider = aws.as_(aws.iam("create-access-key", "--user-name", "outsider")["AccessKey"])

    role = aws.iam("create-role", "--role-name", "deployer", "--max-session-duration", "7200",
                   "--assume-role-policy-document", trust("arn:aws:iam::%s:user/dev" % ACCOUNT))["Role"]
    assert role["RoleId"].startswith("AROA")
    assert role["MaxSessionDuration"] == 7200
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "AWS": "arn:aws:iam::%s:user/dev" % ACCOUNT}
    aws.iam("create-role", "--role-name", "broken", "--assume-role-policy-document",
            json.dumps({"Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}),
            expect_error="MalformedPolicyDocument")
    aws.iam("put-role-policy", "--role-name", "deployer", "--policy-name", "iam-read",
            "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["iam:Get*", "iam:List*"], "Resource": "*"}]}))
    assert [r["RoleName"] for r in aws.iam("list-roles")["Roles"]] == ["deployer"]

    out = dev.sts("assume-role", "--role-arn", role["Arn"], "--role-session-name", "release-42",
                  "--duration-seconds", "5400")
    creds = out["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    assert creds["SessionToken"]
    assumed_arn = "arn:aws:sts::%s:assumed-role/deployer/release-42" % ACCOUNT
    assert out["AssumedRoleUser"] == {"AssumedRoleId": role["RoleId"] + ":release-42", "Arn": assumed_arn}

    session = aws.as_(creds)
    assert session.env["AWS_SESSION_TOKEN"] == creds["SessionToken"]
    me = session.sts("get-caller-identity")
    assert me == {"UserId": role["RoleId"] + ":release-42", "Account": ACCOUNT, "Arn": assumed_arn}
    # The session has the role's permissions, not the user's.
    assert "deployer" in [r["RoleName"] for r in session.iam("list-roles")["Roles"]]
    dev.iam("list-roles", expect_error="AccessDenied")
    session.iam("create-user", "--user-name", "x", expect_error="AccessDenied")

    # Not in the trust policy: refused.
    err = outsider.sts("assume-role", "--role-arn", role["Arn"], "--role-session-name", "nope",
                       expect_error="AccessDenied")
    assert "sts:AssumeRole" in err
    # Longer than the role allows: refused.
    dev.sts("assume-role", "--role-arn", role["Arn"], "--role-session-name", "long",
            "--duration-seconds", "9000", expect_error="ValidationError")

    aws.iam("delete-role", "--role-name", "deployer", expect_error="DeleteConflict")
    aws.iam("delete-role-policy", "--role-name", "deployer", "--policy-name", "iam-read")
    aws.iam("delete-role", "--role-name", "deployer")
    aws.iam("get-role", "--role-name", "deployer", expect_error="NoSuchEntity")


def test_non_admin_is_denied_and_root_identity(aws):
    me = aws.sts("get-caller-identity")
    assert me == {"UserId": ACCOUNT, "Account": ACCOUNT, "Arn": "arn:aws:iam::%s:root" % ACCOUNT}
    aws.iam("create-user", "--user-name", "plain")
    plain = aws.as_(aws.iam("create-access-key", "--user-name", "plain")["AccessKey"])
    err = plain.iam("create-user", "--user-name", "sneaky", expect_error="AccessDenied")
    assert "arn:aws:iam::%s:user/plain" % ACCOUNT in err and "iam:CreateUser" in err
    plain.iam("attach-user-policy", "--user-name", "plain", "--policy-arn", READ_ONLY,
              expect_error="AccessDenied")
    assert aws.iam("list-attached-user-policies", "--user-name", "plain")["AttachedPolicies"] == []
    # Who am I works for everyone.
    assert plain.sts("get-caller-identity")["Arn"] == "arn:aws:iam::%s:user/plain" % ACCOUNT


def test_sessions_expire_under_the_operator_ceiling(bare_registry):
    """KURA_STS_MAX_SESSION caps sessions (here to 3 s) when the binary reads it."""
    bare_registry.stop()
    bare_registry.start({"KURA_STS_MAX_SESSION": "3"})
    aws = Aws(bare_registry)
    aws.iam("create-user", "--user-name", "dev")
    dev = aws.as_(aws.iam("create-access-key", "--user-name", "dev")["AccessKey"])
    role = aws.iam("create-role", "--role-name", "brief", "--assume-role-policy-document",
                   trust("arn:aws:iam::%s:user/dev" % ACCOUNT))["Role"]
    creds = dev.sts("assume-role", "--role-arn", role["Arn"], "--role-session-name", "s1")["Credentials"]
    session = aws.as_(creds)
    session.sts("get-caller-identity")
    expires = calendar.timegm(time.strptime(creds["Expiration"][:19], "%Y-%m-%dT%H:%M:%S"))
    if expires - time.time() > 60:
        pytest.skip("this kura binary does not read KURA_STS_MAX_SESSION")
    time.sleep(4)
    session.sts("get-caller-identity", expect_error="ExpiredTokenException")

