"""Identity attacks of issue 16 replayed with the real `aws` CLI, and curl and
requests on the data plane, against a fresh `kura serve` (`bare_registry`).

- Vulnerability 1: a principal allowed only iam:CreateUser and
  iam:CreateAccessKey creates `mallory` with path `/boss:/`; her ARN
  `arn:aws:iam::A:user/boss:/mallory` used to be read as user `boss`, with
  boss's policies on every plane and keys for boss.
- Vulnerability 3: a role session (and its registry token) outlived
  `delete-role`, and acted as a re-created role of the same name; the root
  could not revoke sessions (`aws:TokenIssueTime`).
- Stale credentials: a deactivated key's registry token and download URL.
"""
import base64
import datetime
import json
import os
import subprocess
import time

import pytest
import requests

from ecr_util import sha256
from helpers import require_tool

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no IAM API",
)

ACCOUNT = "123456789012"
POWER_USER = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser"
REPO = "team-app"


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


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
        """The parsed JSON output; with expect_error="Code" the command must
        fail with that error code (its stderr is returned)."""
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

    def ecr(self, *args, **kw):
        return self("ecr", *args, **kw)

    def registry_password(self):
        data = self.ecr("get-authorization-token")["authorizationData"][0]
        user, token = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
        assert user == "AWS"
        return token


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws", "curl")


@pytest.fixture
def aws(bare_registry):
    a = Aws(bare_registry)
    a.ecr("create-repository", "--repository-name", REPO)
    return a


def curl_status(registry, path, password):
    """The status of `curl -u AWS:<password> <registry><path>`."""
    p = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", "AWS:" + password,
         registry.url + path],
        capture_output=True, text=True, timeout=60)
    return int(p.stdout)


def pull_status(registry, password):
    """The status of a tag listing with requests and the registry password."""
    r = requests.get(registry.url + "/v2/%s/tags/list" % REPO, auth=("AWS", password), timeout=30)
    return r.status_code, r.text


def role_for_root(aws, name):
    trust = doc({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT},
                 "Action": "sts:AssumeRole"})
    role = aws.iam("create-role", "--role-name", name, "--assume-role-policy-document", trust)["Role"]
    aws.iam("attach-role-policy", "--role-name", name, "--policy-arn", POWER_USER)
    return role


def assume(aws, role_arn, session):
    return aws.as_(aws.sts("assume-role", "--role-arn", role_arn, "--role-session-name", session)["Credentials"])


def test_mallory_with_path_boss_colon_is_not_boss(aws, bare_registry):
    # boss: push/pull, and his own keys.
    aws.iam("create-user", "--user-name", "boss")
    aws.iam("attach-user-policy", "--user-name", "boss", "--policy-arn", POWER_USER)
    aws.iam("put-user-policy", "--user-name", "boss", "--policy-name", "self", "--policy-document",
            doc({"Effect": "Allow", "Action": ["iam:CreateAccessKey", "iam:ListAccessKeys", "iam:GetUser"],
                 "Resource": "arn:aws:iam::%s:user/${aws:username}" % ACCOUNT}))
    boss = aws.as_(aws.iam("create-access-key", "--user-name", "boss")["AccessKey"])
    assert pull_status(bare_registry, boss.registry_password())[0] == 200

    # The attacker may only create users and keys.
    aws.iam("create-user", "--user-name", "creator")
    aws.iam("put-user-policy", "--user-name", "creator", "--policy-name", "create", "--policy-document",
            doc({"Effect": "Allow", "Action": ["iam:CreateUser", "iam:CreateAccessKey"], "Resource": "*"}))
    creator = aws.as_(aws.iam("create-access-key", "--user-name", "creator")["AccessKey"])
    user = creator.iam("create-user", "--user-name", "mallory", "--path", "/boss:/")["User"]
    mallory_arn = "arn:aws:iam::%s:user/boss:/mallory" % ACCOUNT
    assert user["Arn"] == mallory_arn
    mallory = aws.as_(creator.iam("create-access-key", "--user-name", "mallory")["AccessKey"])

    me = mallory.sts("get-caller-identity")
    assert me == {"UserId": user["UserId"], "Account": ACCOUNT, "Arn": mallory_arn}
    # None of boss's rights on the ECR API.
    err = mallory.ecr("describe-repositories", "--repository-names", REPO, expect_error="AccessDeniedException")
    assert mallory_arn in err
    mallory.ecr("get-authorization-token", expect_error="AccessDeniedException")
    mallory.ecr("list-images", "--repository-name", REPO, expect_error="AccessDeniedException")
    # No keys for boss.
    mallory.iam("create-access-key", "--user-name", "boss", expect_error="AccessDenied")
    err = mallory.iam("create-access-key", expect_error="AccessDenied")
    assert mallory_arn in err
    assert len(boss.iam("list-access-keys")["AccessKeyMetadata"]) == 1

    # Even with a registry password of her own, the data plane knows her.
    aws.iam("put-user-policy", "--user-name", "mallory", "--policy-name", "login", "--policy-document",
            doc({"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
                {"Effect": "Allow", "Action": "iam:GetUser", "Resource": mallory_arn}))
    password = mallory.registry_password()
    status, body = pull_status(bare_registry, password)
    assert status == 403, body
    assert "boss:/mallory" in body
    assert curl_status(bare_registry, "/v2/%s/tags/list" % REPO, password) == 403
    # GetUser without a name is mallory.
    got = mallory.iam("get-user")["User"]
    assert (got["UserName"], got["Path"], got["UserId"]) == ("mallory", "/boss:/", user["UserId"])
    assert boss.iam("get-user")["User"]["UserName"] == "boss"


def test_deleted_role_ends_sessions_and_tokens(aws, bare_registry):
    role = role_for_root(aws, "ci")
    session = assume(aws, role["Arn"], "build-1")
    password = session.registry_password()
    assert pull_status(bare_registry, password)[0] == 200
    assert curl_status(bare_registry, "/v2/", password) == 200

    aws.iam("detach-role-policy", "--role-name", "ci", "--policy-arn", POWER_USER)
    aws.iam("delete-role", "--role-name", "ci")
    session.sts("get-caller-identity", expect_error="InvalidClientTokenId")
    session.ecr("describe-repositories", "--repository-names", REPO, expect_error="UnrecognizedClientException")
    assert pull_status(bare_registry, password)[0] == 401
    assert curl_status(bare_registry, "/v2/", password) == 401

    # A new role of the same name is another role: the old session gets nothing.
    again = role_for_root(aws, "ci")
    assert again["Arn"] == role["Arn"] and again["RoleId"] != role["RoleId"]
    session.sts("get-caller-identity", expect_error="InvalidClientTokenId")
    session.ecr("describe-repositories", "--repository-names", REPO, expect_error="UnrecognizedClientException")
    assert pull_status(bare_registry, password)[0] == 401
    fresh = assume(aws, again["Arn"], "build-2")
    assert fresh.sts("get-caller-identity")["UserId"] == again["RoleId"] + ":build-2"
    assert pull_status(bare_registry, fresh.registry_password())[0] == 200


def test_revoke_older_sessions_with_token_issue_time(aws, bare_registry):
    role = role_for_root(aws, "ci")
    old = assume(aws, role["Arn"], "old")
    old_password = old.registry_password()
    assert pull_status(bare_registry, old_password)[0] == 200

    # What the IAM console's "Revoke active sessions" puts on the role.
    cut = time.time() + 0.01
    stamp = datetime.datetime.fromtimestamp(cut, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    aws.iam("put-role-policy", "--role-name", "ci", "--policy-name", "AWSRevokeOlderSessions",
            "--policy-document", doc({"Effect": "Deny", "Action": ["*"], "Resource": ["*"],
                                      "Condition": {"DateLessThan": {"aws:TokenIssueTime": stamp}}}))
    while time.time() <= cut + 0.005:
        time.sleep(0.005)
    new = assume(aws, role["Arn"], "new")

    err = old.ecr("describe-repositories", "--repository-names", REPO, expect_error="AccessDeniedException")
    assert "explicit deny" in err
    old.ecr("get-authorization-token", expect_error="AccessDeniedException")
    status, body = pull_status(bare_registry, old_password)
    assert status == 403, body
    assert curl_status(bare_registry, "/v2/%s/tags/list" % REPO, old_password) == 403

    assert new.ecr("describe-repositories", "--repository-names", REPO)["repositories"][0]["repositoryName"] == REPO
    assert pull_status(bare_registry, new.registry_password())[0] == 200


def test_deactivated_key_ends_its_tokens_and_download_urls(aws, bare_registry):
    # A layer to download.
    root_password = aws.registry_password()
    data = b"layer bytes for the stale-credential test"
    digest = sha256(data)
    r = requests.post(bare_registry.url + "/v2/%s/blobs/uploads/?digest=%s" % (REPO, digest), data=data,
                      auth=("AWS", root_password), timeout=30)
    assert r.status_code == 201, r.text

    aws.iam("create-user", "--user-name", "dev")
    aws.iam("attach-user-policy", "--user-name", "dev", "--policy-arn", POWER_USER)
    key = aws.iam("create-access-key", "--user-name", "dev")["AccessKey"]
    dev = aws.as_(key)
    password = dev.registry_password()
    url = dev.ecr("get-download-url-for-layer", "--repository-name", REPO, "--layer-digest", digest)["downloadUrl"]
    assert requests.get(url, timeout=30).content == data
    assert pull_status(bare_registry, password)[0] == 200

    aws.iam("update-access-key", "--user-name", "dev", "--access-key-id", key["AccessKeyId"], "--status", "Inactive")
    dev.ecr("describe-repositories", "--repository-names", REPO, expect_error="UnrecognizedClientException")
    assert pull_status(bare_registry, password)[0] == 401
    assert curl_status(bare_registry, "/v2/", password) == 401
    assert requests.get(url, timeout=30).status_code == 403

    aws.iam("update-access-key", "--user-name", "dev", "--access-key-id", key["AccessKeyId"], "--status", "Active")
    assert pull_status(bare_registry, password)[0] == 200
    assert requests.get(url, timeout=30).status_code == 200
    aws.iam("delete-access-key", "--user-name", "dev", "--access-key-id", key["AccessKeyId"])
    assert pull_status(bare_registry, password)[0] == 401
    assert requests.get(url, timeout=30).status_code == 403
