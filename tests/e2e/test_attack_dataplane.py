"""Attacks on the data plane's authorization, against `kura serve` with curl,
requests and boto3 (IAM users made through Kura's IAM API).

- The smuggled cross-repository mount of the review, sent with curl exactly
  as written (`?mount=<d>&fr%6Fm=secret`, `m%6Funt=`, `%66rom=secret&from=mine`):
  authorization read the raw query while the registry decoded it, so the
  blob of a repository the caller cannot read was linked (201) and then
  downloaded. Each must start an ordinary upload (202).
- The same into a public repository: the private blob must not become
  anonymously downloadable.
- `/v2/_catalog` lists only the repositories the caller may describe.
- Open upload sessions are capped (KURA_MAX_UPLOADS_PER_REPO / _PER_PRINCIPAL).
- A presigned download URL (GetDownloadUrlForLayer) and registry tokens never
  reach the server's log.
"""
import base64
import json
import os
import subprocess

import boto3
import pytest
import requests
from botocore.config import Config

from blobs_util import Client, assert_error, describe, expect, rand_bytes
from conftest import ACCOUNT_ID, REGION, Registry

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no authentication and no IAM",
)

TIMEOUT = 30


def client(reg, service, key=None, secret=None):
    return boto3.client(
        service,
        endpoint_url=reg.url,
        region_name=REGION,
        aws_access_key_id=key or reg.access_key,
        aws_secret_access_key=secret or reg.secret_key,
        config=Config(retries={"max_attempts": 1}),
    )


def new_user(reg, name, statements):
    """An IAM user with an inline policy, made through Kura's IAM API; its
    registry password (a GetAuthorizationToken token)."""
    iam = client(reg, "iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(
        UserName=name,
        PolicyName="inline",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    ecr = client(reg, "ecr", key["AccessKeyId"], key["SecretAccessKey"])
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, token = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    assert user == "AWS"
    return token


def curl(reg, method, path, token=None):
    """curl with the path sent byte for byte as given (no globbing, no
    re-encoding); returns (status, body)."""
    cmd = ["curl", "-sS", "--globoff", "-o", "-", "-w", "\n%{http_code}", "-X", method, reg.url + path]
    if token is not None:
        cmd[1:1] = ["-u", "AWS:" + token]
    if method == "POST":
        cmd[1:1] = ["-H", "Content-Length: 0"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    body, _, status = p.stdout.rpartition("\n")
    return int(status), body


def mallory(reg):
    """A user who may do anything in repository `mine` and nothing in `secret`."""
    return new_user(
        reg,
        "mallory",
        [
            {"Effect": "Allow", "Action": "ecr:*",
             "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/mine"},
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        ],
    )


SMUGGLED = [
    "mount={d}&fr%6Fm=secret",
    "m%6Funt={d}&from=secret",
    "mount={d}&%66rom=secret&from=mine",
    "mount={d}&from=mine&from=secret",
    "mount={d}&mount={d}&from=secret",
]


def test_smuggled_mount_is_an_ordinary_upload(bare_registry):
    reg = bare_registry
    root_ecr = client(reg, "ecr")
    for name in ("mine", "secret"):
        root_ecr.create_repository(repositoryName=name)
    reg.login()
    secret = rand_bytes(4096, seed=16)
    d = Client(reg.url, auth=reg.auth).push_blob("secret", secret)
    token = mallory(reg)
    # Mallory cannot read `secret` ...
    status, body = curl(reg, "GET", f"/v2/secret/blobs/{d}", token)
    assert status == 403, body
    for q in SMUGGLED:
        path = "/v2/mine/blobs/uploads/?" + q.format(d=d)
        status, body = curl(reg, "POST", path, token)
        assert status == 202, f"POST {path} -> {status} {body}\n{reg.log()[-2000:]}"
        # ... and did not get it into `mine` either.
        status, body = curl(reg, "GET", f"/v2/mine/blobs/{d}", token)
        assert status == 404, f"after POST {path}: GET -> {status}"
        assert json.loads(body)["errors"][0]["code"] == "BLOB_UNKNOWN"
    # The plain mount by someone who may read `secret` still works.
    status, body = curl(reg, "POST", f"/v2/mine/blobs/uploads/?mount={d}&from=secret", reg.token)
    assert status == 201, body


def test_private_blob_is_not_published_through_a_public_repository(bare_registry):
    reg = bare_registry
    client(reg, "ecr-public").create_repository(repositoryName="mine")
    client(reg, "ecr").create_repository(repositoryName="secret")
    reg.login()
    secret = rand_bytes(2048, seed=17)
    d = Client(reg.url, auth=reg.auth).push_blob("secret", secret)
    token = mallory(reg)
    status, body = curl(reg, "POST", f"/v2/mine/blobs/uploads/?mount={d}&fr%6Fm=secret", token)
    assert status == 202, body
    r = requests.get(f"{reg.url}/v2/mine/blobs/{d}", timeout=TIMEOUT)
    assert r.content != secret, "the private blob is public"
    assert_error(r, 404, "BLOB_UNKNOWN")


def test_catalog_lists_only_describable_repositories(bare_registry):
    reg = bare_registry
    ecr = client(reg, "ecr")
    names = ["app/1", "other/1", "team/1", "team/2", "team/3", "zz/1"]
    for name in names:
        ecr.create_repository(repositoryName=name)
    token = new_user(
        reg,
        "team",
        [
            {"Effect": "Allow", "Action": "ecr:DescribeRepositories",
             "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT_ID}:repository/team/*"},
            {"Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        ],
    )
    ecr.set_repository_policy(
        repositoryName="zz/1",
        policyText=json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/team"},
            "Action": "ecr:DescribeRepositories"}]}),
    )
    auth = ("AWS", token)
    r = expect(requests.get(f"{reg.url}/v2/_catalog", auth=auth, timeout=TIMEOUT), 200)
    assert r.json()["repositories"] == ["team/1", "team/2", "team/3", "zz/1"]
    # Pages stay full and the Link resumes after the last name shown.
    seen, url = [], f"{reg.url}/v2/_catalog?n=3"
    while url:
        r = expect(requests.get(url, auth=auth, timeout=TIMEOUT), 200)
        page = r.json()["repositories"]
        seen += page
        link = r.headers.get("Link")
        if link:
            assert len(page) == 3, describe(r)
            url = reg.url + link.split(";")[0].strip("<>")
        else:
            url = None
    assert seen == ["team/1", "team/2", "team/3", "zz/1"]
    reg.login()
    r = expect(requests.get(f"{reg.url}/v2/_catalog", auth=reg.auth, timeout=TIMEOUT), 200)
    assert r.json()["repositories"] == names


def test_open_upload_sessions_are_capped(tmp_path):
    reg = Registry(str(tmp_path))
    reg.start(extra_env={"KURA_MAX_UPLOADS_PER_REPO": "2", "KURA_MAX_UPLOADS_PER_PRINCIPAL": "3"})
    try:
        ecr = client(reg, "ecr")
        for name in ("ca", "cb"):
            ecr.create_repository(repositoryName=name)
        reg.login()
        c = Client(reg.url, auth=reg.auth)
        opened = [expect(c.request("POST", "/v2/ca/blobs/uploads/"), 202) for _ in range(2)]
        r = c.request("POST", "/v2/ca/blobs/uploads/")
        assert_error(r, 429, "TOOMANYREQUESTS")
        assert "max-uploads-per-repo" in r.text, describe(r)
        expect(c.request("POST", "/v2/cb/blobs/uploads/"), 202)
        r = c.request("POST", "/v2/cb/blobs/uploads/")
        assert_error(r, 429, "TOOMANYREQUESTS")
        assert "max-uploads-per-principal" in r.text, describe(r)
        # The ECR API's InitiateLayerUpload counts against the same caps.
        with pytest.raises(ecr.exceptions.LimitExceededException):
            ecr.initiate_layer_upload(repositoryName="cb")
        # Cancelling one makes room.
        expect(c.request("DELETE", opened[0].headers["Location"]), 204)
        expect(c.request("POST", "/v2/cb/blobs/uploads/"), 202)
    finally:
        reg.stop()


def test_download_urls_and_tokens_stay_out_of_the_log(registry):
    reg = registry
    c = Client(reg.url, auth=reg.auth)
    data = rand_bytes(10_000, seed=18)
    d = c.push_blob("logs/app", data)
    url = client(reg, "ecr").get_download_url_for_layer(repositoryName="logs/app", layerDigest=d)["downloadUrl"]
    secret = url.split("X-Kura-Download=", 1)[1]
    assert len(secret) > 20, url
    r = requests.get(url, timeout=TIMEOUT)
    expect(r, 200)
    assert r.content == data
    # A HEAD and a failing GET with the same URL are logged too.
    requests.head(url, timeout=TIMEOUT)
    requests.get(url.replace(d, "sha256:" + "0" * 64), timeout=TIMEOUT)
    reg.stop()
    with open(reg.log_path, "rb") as f:
        log = f.read().decode(errors="replace")
    assert f"/v2/logs/app/blobs/{d}" in log, "the download must be logged (by path)"
    assert secret not in log, "the presigned download token is in the log"
    assert secret.split(".")[-1] not in log, "the download token's signature is in the log"
    assert reg.token not in log, "a registry token is in the log"
    assert reg.token.split(".")[-1] not in log
