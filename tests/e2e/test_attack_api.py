"""Attacks on Kura's API listener (`POST /`) with the real aws CLI, boto3,
raw sockets and curl, as the security review made them (issue 16):

* registryId smuggling: a principal denied by its own registry policy sent
  DeleteRegistryPolicy with the registryId of an account it controls; Kura
  authorized against that account and deleted the caller's policy.
* pre-authentication memory: unsigned 25 MiB bodies were read whole before
  the signature was checked (20 requests: RSS 57 -> 364 MB).
* SigV4: X-Amz-Target / Content-Type must be signed; presigned POST / is
  refused; the real CLI and boto3 keep working.
* failed authentications are logged with the source address and the claimed
  key/principal, never the secret, signature or token.
* a second start with another master key says the master key differs and
  that nodes must share KURA_MASTER_KEY_FILE.
"""
import base64
import json
import os
import socket
import subprocess
import threading

import pytest
import requests
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import REPO_ROOT, Registry
from ecr_util import raw_call
from helpers import require_tool

TARGET = "AmazonEC2ContainerRegistry_V20150921"
BIG = 25 * 1024 * 1024


def kura_bin():
    return os.environ.get("KURA_BIN", os.path.join(REPO_ROOT, "target", "release", "kura"))


def aws(reg, *args, creds=None, expect_error=None):
    """`aws ...` against the registry; parsed JSON output, or stderr when an
    error (`expect_error`, the code) is expected."""
    env = reg.aws_env()
    env["AWS_ENDPOINT_URL"] = reg.url
    if creds:
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = creds
    p = subprocess.run(["aws", *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=120)
    what = "aws %s -> %d\n%s\n%s\n--- log ---\n%s" % (" ".join(args), p.returncode, p.stdout, p.stderr, reg.log())
    if expect_error:
        assert p.returncode != 0 and "(%s)" % expect_error in p.stderr, what
        return p.stderr
    assert p.returncode == 0, what
    return json.loads(p.stdout) if p.stdout.strip() else None


def other_account(reg):
    """A second account (with its root key), made with `kura account create`."""
    p = subprocess.run([kura_bin(), "account", "create", "--data-dir", reg.data_dir],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def policy(effect, principal):
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "S", "Effect": effect, "Principal": {"AWS": principal}, "Action": "ecr:*", "Resource": "*"}]})


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws", "curl")


# ---------------------------------------------------------------------------
# registryId smuggling


def test_registry_id_smuggling_cannot_delete_the_callers_registry_policy(bare_registry):
    """The reported attack, replayed: it must be refused and the policy must survive."""
    reg = bare_registry
    other = other_account(reg)
    other_creds = (other["accessKeyId"], other["secretAccessKey"])
    mallory_arn = "arn:aws:iam::%s:user/mallory" % reg.account_id
    aws(reg, "iam", "create-user", "--user-name", "mallory")
    aws(reg, "iam", "put-user-policy", "--user-name", "mallory", "--policy-name", "ecr", "--policy-document",
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}]}))
    key = aws(reg, "iam", "create-access-key", "--user-name", "mallory")["AccessKey"]
    mallory = (key["AccessKeyId"], key["SecretAccessKey"])
    aws(reg, "ecr", "put-registry-policy", "--policy-text", policy("Deny", mallory_arn))
    aws(reg, "ecr", "put-registry-policy", "--policy-text", policy("Allow", mallory_arn), creds=other_creds)
    before = aws(reg, "ecr", "get-registry-policy")["policyText"]

    # The Deny holds for the plain call (the real CLI).
    aws(reg, "ecr", "delete-registry-policy", creds=mallory, expect_error="AccessDeniedException")
    # The smuggled registryId (botocore would not send it: raw SigV4 request).
    r = raw_call(reg, "DeleteRegistryPolicy", {"registryId": other["accountId"]},
                 access_key=mallory[0], secret_key=mallory[1])
    assert r.status_code == 400, r.text
    assert r.json()["__type"] == "SerializationException", r.text
    assert "registryId" in r.json()["message"]
    # Template and account-setting operations the same way.
    for op, body in [("CreateRepositoryCreationTemplate", {"prefix": "x", "appliedFor": ["CREATE_ON_PUSH"]}),
                     ("PutAccountSetting", {"name": "BLOB_MOUNTING", "value": "DISABLED"}),
                     ("PutRegistryPolicy", {"policyText": policy("Allow", mallory_arn)})]:
        body["registryId"] = other["accountId"]
        r = raw_call(reg, op, body, access_key=mallory[0], secret_key=mallory[1])
        assert (r.status_code, r.json()["__type"]) == (400, "SerializationException"), (op, r.text)

    assert aws(reg, "ecr", "get-registry-policy")["policyText"] == before
    assert aws(reg, "ecr", "get-registry-policy", creds=other_creds)["policyText"]
    assert aws(reg, "ecr", "describe-repository-creation-templates")["repositoryCreationTemplates"] == []
    assert aws(reg, "ecr", "get-account-setting", "--name", "BLOB_MOUNTING")["value"] == "ENABLED"


# ---------------------------------------------------------------------------
# pre-authentication memory


def _head(reg, headers, length):
    lines = ["POST / HTTP/1.1", "Host: %s" % reg.host, "Content-Length: %d" % length]
    lines += ["%s: %s" % kv for kv in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _answer_before_body(reg, headers, results, i):
    """Send the headers of a 25 MiB request and no body byte: the answer must come anyway."""
    with socket.create_connection(("127.0.0.1", reg.port), timeout=20) as s:
        s.sendall(_head(reg, headers, BIG))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        results[i] = data


UNSIGNED = {
    "ecr": {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + ".DescribeRepositories"},
    "ecr-public": {"Content-Type": "application/x-amz-json-1.1",
                   "X-Amz-Target": "SpencerFrontendService.DescribeRegistries"},
    "iam": {"Content-Type": "application/x-www-form-urlencoded"},
    "unknown-key": {"Content-Type": "application/x-amz-json-1.1",
                    "X-Amz-Target": TARGET + ".DescribeRepositories",
                    "X-Amz-Date": "20260101T000000Z",
                    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIANOSUCHKEY0000000/20260101/us-east-1/ecr/"
                                     "aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, "
                                     "Signature=" + "0" * 64},
}


def test_unauthenticated_25mib_bodies_are_refused_without_being_read(bare_registry):
    """24 concurrent requests declare 25 MiB bodies and send none: each is answered
    4xx (and the connection closed) before any body byte; the server's memory
    does not grow by the bodies (the old code read them: 20 took RSS +300 MB)."""
    reg = bare_registry
    rss_before = reg.peak_rss_kib()
    kinds = sorted(UNSIGNED) * 6
    results = [None] * len(kinds)
    threads = [threading.Thread(target=_answer_before_body, args=(reg, UNSIGNED[k], results, i))
               for i, k in enumerate(kinds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for kind, data in zip(kinds, results):
        assert data, "%s: no answer before the body was sent\n%s" % (kind, reg.log())
        status_line, _, rest = data.partition(b"\r\n")
        code = int(status_line.split()[1])
        assert 400 <= code < 500, (kind, data)
        assert b"connection: close" in rest.lower(), (kind, data)

    # And with curl, sending a real 25 MiB file: refused with the body unsent
    # (curl waits for "100 Continue", which never comes) or cut short.
    big = os.path.join(reg.workdir, "big.json")
    with open(big, "wb") as f:
        f.write(b" " * BIG)
    procs = [subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30",
                               "-H", "Content-Type: application/x-amz-json-1.1",
                               "-H", "X-Amz-Target: %s.DescribeRepositories" % TARGET,
                               "-H", "Expect: 100-continue", "--expect100-timeout", "20",
                               "--data-binary", "@" + big, reg.url + "/"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(20)]
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert out == "400", (out, err)
    rss_after = reg.peak_rss_kib()
    # 44 requests of 25 MiB would be 1.1 GiB; allow the server ordinary growth.
    assert rss_after - rss_before < 100 * 1024, (rss_before, rss_after)
    # The server is fine afterwards.
    assert aws(reg, "ecr", "describe-repositories")["repositories"] == []


def test_body_budget_flag_refuses_bodies_larger_than_the_budget(tmp_path):
    """KURA_API_BODY_BUDGET_MIB bounds the bytes of request bodies held at once:
    with 1 MiB, a signed 2 MiB call gets 503 (Retry-After); a small one works."""
    reg = Registry(str(tmp_path))
    reg.start(extra_env={"KURA_API_BODY_BUDGET_MIB": "1"})
    try:
        body = b"{}" + b" " * (2 * 1024 * 1024)
        r = raw_call(reg, "DescribeRepositories", body)
        assert r.status_code == 503, r.text
        assert r.json()["__type"] == "ServiceUnavailableException"
        assert r.headers.get("Retry-After") == "1"
        assert raw_call(reg, "DescribeRepositories", {}).status_code == 200
    finally:
        reg.stop()


# ---------------------------------------------------------------------------
# SigV4 on POST /


def test_target_and_content_type_must_be_signed(bare_registry):
    reg = bare_registry
    creds = Credentials(reg.access_key, reg.secret_key)
    body = json.dumps({"repositoryName": "sneaky"}).encode()
    # Signed without X-Amz-Target, which is added afterwards.
    req = AWSRequest(method="POST", url=reg.url + "/", data=body,
                     headers={"Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(creds, "ecr", reg.region).add_auth(req)
    h = dict(req.headers.items())
    h["X-Amz-Target"] = TARGET + ".CreateRepository"
    r = requests.post(reg.url + "/", data=body, headers=h, timeout=30)
    assert (r.status_code, r.json()["__type"]) == (400, "IncompleteSignatureException"), r.text
    # Signed without Content-Type.
    req = AWSRequest(method="POST", url=reg.url + "/", data=body,
                     headers={"X-Amz-Target": TARGET + ".CreateRepository"})
    SigV4Auth(creds, "ecr", reg.region).add_auth(req)
    h = dict(req.headers.items())
    h["Content-Type"] = "application/x-amz-json-1.1"
    r = requests.post(reg.url + "/", data=body, headers=h, timeout=30)
    assert (r.status_code, r.json()["__type"]) == (400, "IncompleteSignatureException"), r.text
    # IAM (Query protocol): Content-Type must be signed.
    form = b"Action=CreateUser&Version=2010-05-08&UserName=sneaky"
    req = AWSRequest(method="POST", url=reg.url + "/", data=form, headers={})
    SigV4Auth(creds, "iam", reg.region).add_auth(req)
    h = dict(req.headers.items())
    h["Content-Type"] = "application/x-www-form-urlencoded"
    r = requests.post(reg.url + "/", data=form, headers=h, timeout=30)
    assert r.status_code == 400 and "<Code>IncompleteSignature</Code>" in r.text, r.text
    assert aws(reg, "ecr", "describe-repositories")["repositories"] == []
    assert all(u["UserName"] != "sneaky" for u in aws(reg, "iam", "list-users")["Users"])


def test_presigned_post_is_refused(bare_registry):
    """A presigned POST / (valid signature in the query string, UNSIGNED-PAYLOAD
    allowed) would run whatever body it carries: refused."""
    reg = bare_registry
    creds = Credentials(reg.access_key, reg.secret_key)
    for service, headers, body in [
        ("ecr", {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + ".CreateRepository"},
         json.dumps({"repositoryName": "presigned"}).encode()),
        ("iam", {"Content-Type": "application/x-www-form-urlencoded"},
         b"Action=CreateUser&Version=2010-05-08&UserName=presigned"),
    ]:
        # botocore moves a presigned form's fields into the query string.
        data = dict(kv.split("=") for kv in body.decode().split("&")) if service == "iam" else body
        req = AWSRequest(method="POST", url=reg.url + "/", data=data, headers=headers)
        SigV4QueryAuth(creds, service, reg.region, expires=300).add_auth(req)
        assert "X-Amz-Signature=" in req.url
        r = requests.post(req.url, data=body, headers=headers, timeout=30)
        assert r.status_code == 400 and "IncompleteSignature" in r.text and "Presigned" in r.text, r.text
    assert aws(reg, "ecr", "describe-repositories")["repositories"] == []
    assert all(u["UserName"] != "presigned" for u in aws(reg, "iam", "list-users")["Users"])


def test_real_clients_still_sign_what_is_required(bare_registry):
    """The aws CLI and boto3 sign X-Amz-Target and Content-Type (ECR, ECR
    Public) and Content-Type (IAM, STS Query): every call works."""
    reg = bare_registry
    aws(reg, "ecr", "create-repository", "--repository-name", "signed/ok")
    assert [r["repositoryName"] for r in aws(reg, "ecr", "describe-repositories")["repositories"]] == ["signed/ok"]
    assert aws(reg, "ecr-public", "describe-registries", "--region", "us-east-1")["registries"]
    assert aws(reg, "sts", "get-caller-identity")["Account"] == reg.account_id
    aws(reg, "iam", "create-user", "--user-name", "signed")
    assert reg.ecr().describe_repositories()["repositories"][0]["repositoryName"] == "signed/ok"


# ---------------------------------------------------------------------------
# failed authentication is logged


def test_failed_authentication_is_logged_without_secrets(bare_registry):
    reg = bare_registry
    wrong_secret = "WrongSecretWrongSecretWrongSecretWrong00"
    r = raw_call(reg, "DescribeRepositories", {}, secret_key=wrong_secret)
    assert r.status_code == 400
    signature = r.request.headers["Authorization"].rsplit("Signature=", 1)[1]
    r = raw_call(reg, "DescribeRepositories", {}, access_key="AKIAUNKNOWNKEY000042")
    assert r.json()["__type"] == "UnrecognizedClientException"
    # IAM with a bad signature.
    form = b"Action=ListUsers&Version=2010-05-08"
    req = AWSRequest(method="POST", url=reg.url + "/", data=form,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    SigV4Auth(Credentials(reg.access_key, wrong_secret), "iam", reg.region).add_auth(req)
    r = requests.post(reg.url + "/", data=form, headers=dict(req.headers.items()), timeout=30)
    assert r.status_code == 403
    # A forged registry token on the data plane: real claims, altered signature.
    token = reg.login()
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    r = requests.get(reg.url + "/v2/", auth=("AWS", forged), timeout=30)
    assert r.status_code == 401
    r = requests.get(reg.url + "/token", auth=("AWS", forged), timeout=30)
    assert r.status_code == 401

    log = reg.log()
    failures = [line for line in log.splitlines() if "authentication failed" in line]
    assert any("AKIAUNKNOWNKEY000042" in l and "127.0.0.1" in l for l in failures), log
    assert sum(reg.access_key in l and "127.0.0.1" in l
               and "arn:aws:iam::%s:root" % reg.account_id in l for l in failures) >= 2, log
    assert sum("registry authentication failed" in l and "127.0.0.1" in l
               and "arn:aws:iam::%s:root" % reg.account_id in l for l in failures) >= 2, log
    assert len(failures) >= 5, failures
    for secret in [wrong_secret, reg.secret_key, signature, token, forged, token.split(".")[1]]:
        assert secret not in log, "the log holds a secret: %s" % secret


# ---------------------------------------------------------------------------
# two master keys


@pytest.mark.parametrize("explicit_root_key", [True, False])
def test_a_second_master_key_is_named_as_the_cause(tmp_path, explicit_root_key):
    reg = Registry(str(tmp_path))
    env = {} if explicit_root_key else {"KURA_ROOT_ACCESS_KEY_ID": "", "KURA_ROOT_SECRET_ACCESS_KEY": ""}
    reg.start(extra_env=env)
    reg.stop()
    other_key = os.path.join(str(tmp_path), "other-master.key")
    full = dict(os.environ)
    full.update({
        "KURA_ACCOUNT_ID": reg.account_id,
        "KURA_ROOT_ACCESS_KEY_ID": reg.access_key if explicit_root_key else "",
        "KURA_ROOT_SECRET_ACCESS_KEY": reg.secret_key if explicit_root_key else "",
        "KURA_MASTER_KEY_FILE": other_key,
    })
    full.pop("KURA_DATABASE_URL", None)
    p = subprocess.run([kura_bin(), "serve", "--listen", "127.0.0.1:%d" % reg.port, "--data-dir", reg.data_dir],
                       env=full, capture_output=True, text=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "master key differs from the one that sealed" in out, out
    assert "KURA_MASTER_KEY_FILE" in out, out
    assert "already exists with another secret" not in out, out
    # `kura account create` with the wrong key says the same.
    p = subprocess.run([kura_bin(), "account", "create", "--data-dir", reg.data_dir, "--master-key-file", other_key],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "master key differs" in p.stdout + p.stderr, p.stdout + p.stderr
    # The right key still starts.
    reg.start(extra_env=env)
    reg.stop()
