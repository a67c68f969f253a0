"""Who may do what, end to end: principals made with the real `aws iam` and
`aws sts` CLI, then used by podman, skopeo and the `aws ecr` CLI.

- a read-only user pulls but cannot push (podman shows the denial);
- a user with a repository-scoped inline policy reaches only those repositories;
- a repository policy grants another account pull, through its host name
  `<account>.dkr.localhost` (the CI adds these names to /etc/hosts);
- a Deny with a resource-tag condition blocks pushes to tagged repositories;
- AssumeRole credentials work, then expire (the server caps sessions at a few
  seconds with KURA_STS_MAX_SESSION).
"""
import json
import os
import socket
import subprocess
import time

import pytest

from conftest import ACCOUNT_ID, REGION, Registry
from helpers import container_store, podman_cmd, require_tool, run  # noqa: F401 (fixture)
from images import Layout, make_rng, random_image

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no IAM",
)

OTHER_ACCOUNT = "210987654321"
READ_ONLY = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
POWER_USER = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPowerUser"


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws", "skopeo", "podman")


def root_creds(reg):
    return {"key": reg.access_key, "secret": reg.secret_key}


def aws_env(reg, creds):
    env = reg.aws_env()
    env["AWS_ACCESS_KEY_ID"] = creds["key"]
    env["AWS_SECRET_ACCESS_KEY"] = creds["secret"]
    if creds.get("token"):
        env["AWS_SESSION_TOKEN"] = creds["token"]
    return env


def aws(reg, creds, *args, expect_error=None):
    """`aws <service> <args>` as a principal. Returns parsed JSON; with
    expect_error, asserts the command failed with that code and returns stderr."""
    p = subprocess.run(["aws", *args, "--endpoint-url", reg.url, "--output", "json"],
                       env=aws_env(reg, creds), capture_output=True, text=True, timeout=120)
    what = "aws %s -> exit %d\nstdout: %s\nstderr: %s\n--- registry log ---\n%s" % (
        " ".join(args), p.returncode, p.stdout[-2000:], p.stderr[-2000:], reg.log()[-3000:])
    if expect_error:
        assert p.returncode != 0, what
        assert "(%s)" % expect_error in p.stderr, what
        return p.stderr
    assert p.returncode == 0, what
    return json.loads(p.stdout) if p.stdout.strip() else None


def new_user(reg, admin, name, managed=(), inline=None):
    """A user made with `aws iam` by `admin`, with an access key."""
    aws(reg, admin, "iam", "create-user", "--user-name", name)
    for arn in managed:
        aws(reg, admin, "iam", "attach-user-policy", "--user-name", name, "--policy-arn", arn)
    if inline:
        aws(reg, admin, "iam", "put-user-policy", "--user-name", name, "--policy-name", "inline",
            "--policy-document", json.dumps(inline))
    key = aws(reg, admin, "iam", "create-access-key", "--user-name", name)["AccessKey"]
    return {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


def registry_password(reg, creds):
    args = ["ecr", "get-login-password"]
    p = subprocess.run(["aws", *args, "--endpoint-url", reg.url], env=aws_env(reg, creds),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


def push(reg, creds, layout, tag, dest, host=None, check=True):
    password = registry_password(reg, creds)
    return run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
                "--dest-creds", "AWS:" + password, "oci:%s:%s" % (layout.path, tag),
                "docker://%s/%s" % (host or reg.host, dest)], registry=reg, check=check)


def inspect(reg, creds, ref, host=None, check=True):
    password = registry_password(reg, creds)
    return run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "AWS:" + password,
                "docker://%s/%s" % (host or reg.host, ref)], registry=reg, check=check)


def image(tmp_path, name="src"):
    layout = Layout(tmp_path / name)
    random_image(layout, make_rng(), "v1", nlayers=2)
    return layout


def test_read_only_user_pulls_but_cannot_push(bare_registry, tmp_path, container_store):
    reg = bare_registry
    root = root_creds(reg)
    aws(reg, root, "ecr", "create-repository", "--repository-name", "team/app")
    src = image(tmp_path)
    push(reg, root, src, "v1", "team/app:v1")

    reader = new_user(reg, root, "reader", managed=[READ_ONLY])
    # The key is the user's, as STS reports it.
    me = aws(reg, reader, "sts", "get-caller-identity")
    assert me["Arn"] == "arn:aws:iam::%s:user/reader" % ACCOUNT_ID

    p = podman_cmd(container_store())
    authfile = tmp_path / "reader-auth.json"
    out = run(p + ["login", "--authfile", authfile, "--tls-verify=false", "--username", "AWS",
                   "--password-stdin", reg.host], registry=reg,
              input=registry_password(reg, reader).encode())
    assert b"Login Succeeded" in out.stdout + out.stderr
    ref = "%s/team/app:v1" % reg.host
    run(p + ["pull", "--authfile", authfile, "--tls-verify=false", ref], registry=reg)
    run(p + ["tag", ref, "%s/team/app:v2" % reg.host], registry=reg)
    out = run(p + ["push", "--authfile", authfile, "--tls-verify=false", "%s/team/app:v2" % reg.host],
              registry=reg, check=False)
    assert out.returncode != 0
    err = out.stderr.decode()
    assert "denied" in err.lower(), err
    assert "is not authorized to perform: ecr:" in err, err
    assert "user/reader" in err, err

    # The API says the same, in ECR's words.
    e = aws(reg, reader, "ecr", "create-repository", "--repository-name", "team/new",
            expect_error="AccessDeniedException")
    assert "ecr:CreateRepository" in e
    # And the read-only user may still describe and list.
    images = aws(reg, reader, "ecr", "list-images", "--repository-name", "team/app")["imageIds"]
    assert [i.get("imageTag") for i in images] == ["v1"]


def test_repository_scoped_inline_policy(bare_registry, tmp_path):
    reg = bare_registry
    root = root_creds(reg)
    for name in ("team/app", "team/web", "other/app"):
        aws(reg, root, "ecr", "create-repository", "--repository-name", name)
    scoped = new_user(reg, root, "team", inline=policy(
        {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Effect": "Allow", "Action": "ecr:*",
         "Resource": "arn:aws:ecr:%s:%s:repository/${aws:username}/*" % (REGION, ACCOUNT_ID)},
    ))
    got = aws(reg, root, "iam", "get-user-policy", "--user-name", "team", "--policy-name", "inline")
    assert "${aws:username}" in json.dumps(got["PolicyDocument"])

    src = image(tmp_path)
    push(reg, scoped, src, "v1", "team/app:v1")
    out = push(reg, scoped, src, "v1", "other/app:v1", check=False)
    assert out.returncode != 0
    # skopeo stops at its first refused request (a HEAD: status only).
    assert b"403" in out.stderr or b"denied" in out.stderr.lower(), out.stderr
    # Listing shows only what the policy reaches; naming another repository is refused.
    names = [r["repositoryName"] for r in
             aws(reg, scoped, "ecr", "describe-repositories")["repositories"]]
    assert names == ["team/app", "team/web"]
    aws(reg, scoped, "ecr", "describe-images", "--repository-name", "other/app",
        expect_error="AccessDeniedException")
    aws(reg, scoped, "ecr", "delete-repository", "--repository-name", "team/web")


def _resolves(name):
    try:
        return socket.gethostbyname(name) == "127.0.0.1"
    except OSError:
        return False


def test_cross_account_pull_through_a_repository_policy(bare_registry, tmp_path):
    reg = bare_registry
    host_a = "%s.dkr.localhost:%d" % (ACCOUNT_ID, reg.port)
    if not _resolves("%s.dkr.localhost" % ACCOUNT_ID):
        pytest.skip("%s.dkr.localhost does not resolve to 127.0.0.1 (scripts/test.sh adds it to /etc/hosts)"
                    % ACCOUNT_ID)
    root_a = root_creds(reg)
    aws(reg, root_a, "ecr", "create-repository", "--repository-name", "shared/base")
    src = image(tmp_path)
    push(reg, root_a, src, "v1", "shared/base:v1")

    # A second account, made by the operator, with a user of its own.
    out = run([reg._cmd()[0], "account", "create", "--data-dir", reg.data_dir, "--id", OTHER_ACCOUNT],
              registry=reg)
    created = json.loads(out.stdout)
    assert created["accountId"] == OTHER_ACCOUNT
    bad = run([reg._cmd()[0], "account", "create", "--data-dir", reg.data_dir, "--id", "12"],
              registry=reg, check=False)
    assert bad.returncode != 0 and b"an account id is 12 digits" in bad.stderr, bad.stderr
    root_b = {"key": created["accessKeyId"], "secret": created["secretAccessKey"]}
    assert aws(reg, root_b, "sts", "get-caller-identity")["Account"] == OTHER_ACCOUNT
    bob = new_user(reg, root_b, "bob", inline=policy(
        {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Effect": "Allow",
         "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
                    "ecr:DescribeImages"],
         "Resource": "arn:aws:ecr:*:%s:repository/*" % ACCOUNT_ID},
    ))

    # Only bob's side allows: refused.
    out = inspect(reg, bob, "shared/base:v1", host=host_a, check=False)
    assert out.returncode != 0 and b"denied" in out.stderr.lower(), out.stderr
    aws(reg, bob, "ecr", "describe-images", "--registry-id", ACCOUNT_ID, "--repository-name", "shared/base",
        expect_error="AccessDeniedException")

    # The repository policy grants account B pull.
    text = json.dumps(policy({
        "Sid": "AccountBPull", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % OTHER_ACCOUNT},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
                   "ecr:DescribeImages"]}))
    aws(reg, root_a, "ecr", "set-repository-policy", "--repository-name", "shared/base", "--policy-text", text)
    got = aws(reg, root_a, "ecr", "get-repository-policy", "--repository-name", "shared/base")
    assert json.loads(got["policyText"]) == json.loads(text)

    manifest = json.loads(inspect(reg, bob, "shared/base:v1", host=host_a).stdout)
    assert manifest["layers"]
    run(["skopeo", "copy", "--src-tls-verify=false", "--src-creds", "AWS:" + registry_password(reg, bob),
         "docker://%s/shared/base:v1" % host_a, "oci:%s:v1" % (tmp_path / "pulled")], registry=reg)
    details = aws(reg, bob, "ecr", "describe-images", "--registry-id", ACCOUNT_ID,
                  "--repository-name", "shared/base")["imageDetails"]
    assert details[0]["imageTags"] == ["v1"]
    # Pull only: pushing is still refused.
    out = push(reg, bob, src, "v1", "shared/base:v2", host=host_a, check=False)
    assert out.returncode != 0 and b"denied" in out.stderr.lower(), out.stderr
    # GetAuthorizationToken answers each registry asked for: A is this
    # deployment's default registry (its plain host), B is addressed by name.
    data = aws(reg, bob, "ecr", "get-authorization-token", "--registry-ids", ACCOUNT_ID,
               OTHER_ACCOUNT)["authorizationData"]
    assert [d["proxyEndpoint"] for d in data] == [reg.url, "http://%s.dkr.%s" % (OTHER_ACCOUNT, reg.host)]

    # Without the policy, B is out again.
    aws(reg, root_a, "ecr", "delete-repository-policy", "--repository-name", "shared/base")
    out = inspect(reg, bob, "shared/base:v1", host=host_a, check=False)
    assert out.returncode != 0


def test_deny_on_a_resource_tag_condition(bare_registry, tmp_path):
    reg = bare_registry
    root = root_creds(reg)
    aws(reg, root, "ecr", "create-repository", "--repository-name", "prod/api",
        "--tags", "Key=env,Value=prod")
    aws(reg, root, "ecr", "create-repository", "--repository-name", "dev/api",
        "--tags", "Key=env,Value=dev")
    dev = new_user(reg, root, "dev", managed=[POWER_USER], inline=policy({
        "Effect": "Deny", "Action": ["ecr:PutImage", "ecr:InitiateLayerUpload"], "Resource": "*",
        "Condition": {"StringEquals": {"ecr:ResourceTag/env": "prod"}}}))
    src = image(tmp_path)
    push(reg, dev, src, "v1", "dev/api:v1")
    out = push(reg, dev, src, "v1", "prod/api:v1", check=False)
    assert out.returncode != 0
    assert b"explicit deny" in out.stderr, out.stderr
    # Pulling from the tagged repository is not denied.
    push(reg, root, src, "v1", "prod/api:v1")
    inspect(reg, dev, "prod/api:v1")


def test_assumed_role_credentials_work_then_expire(tmp_path):
    reg = Registry(str(tmp_path / "r"))
    os.makedirs(reg.workdir, exist_ok=True)
    reg.start({"KURA_STS_MAX_SESSION": "6s"})
    try:
        root = root_creds(reg)
        aws(reg, root, "ecr", "create-repository", "--repository-name", "ci/app")
        alice = new_user(reg, root, "alice")
        trust = policy({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:user/alice" % ACCOUNT_ID},
                        "Action": "sts:AssumeRole"})
        aws(reg, root, "iam", "create-role", "--role-name", "ci", "--assume-role-policy-document",
            json.dumps(trust))
        aws(reg, root, "iam", "attach-role-policy", "--role-name", "ci", "--policy-arn", POWER_USER)
        # alice alone may do nothing with the registry.
        assert aws(reg, alice, "ecr", "describe-repositories")["repositories"] == []
        aws(reg, alice, "ecr", "describe-images", "--repository-name", "ci/app",
            expect_error="AccessDeniedException")

        got = aws(reg, alice, "sts", "assume-role", "--role-arn", "arn:aws:iam::%s:role/ci" % ACCOUNT_ID,
                  "--role-session-name", "build-7")
        c = got["Credentials"]
        session = {"key": c["AccessKeyId"], "secret": c["SecretAccessKey"], "token": c["SessionToken"]}
        started = time.time()
        me = aws(reg, session, "sts", "get-caller-identity")
        assert me["Arn"] == "arn:aws:sts::%s:assumed-role/ci/build-7" % ACCOUNT_ID
        src = image(tmp_path)
        password = registry_password(reg, session)
        run(["skopeo", "copy", "--dest-tls-verify=false", "--dest-creds", "AWS:" + password,
             "oci:%s:v1" % src.path, "docker://%s/ci/app:v1" % reg.host], registry=reg)

        time.sleep(max(0.0, 7 - (time.time() - started)))
        aws(reg, session, "ecr", "describe-repositories", expect_error="ExpiredTokenException")
        out = run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", "AWS:" + password,
                   "docker://%s/ci/app:v1" % reg.host], registry=reg, check=False)
        assert out.returncode != 0 and b"unauthorized" in out.stderr.lower(), out.stderr
    finally:
        reg.stop()
