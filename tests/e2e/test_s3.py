"""Kura with its blobs in S3: push and pull with skopeo, blob GETs served
through Kura and redirected to presigned URLs, and GetDownloadUrlForLayer.

Needs an S3-compatible server: KURA_TEST_S3_ENDPOINT, KURA_TEST_S3_BUCKET,
KURA_TEST_S3_ACCESS_KEY_ID, KURA_TEST_S3_SECRET_ACCESS_KEY (skipped when
unset, unless KURA_REQUIRE_S3=1). Each test uses a fresh prefix in the bucket.
"""
import os
import uuid

import pytest
import requests

from conftest import Registry
from helpers import RegistryAPI, creds, require_tool, run
from images import Layout, make_rng, random_layer, sha256_digest


def s3_env():
    names = ["ENDPOINT", "BUCKET", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY"]
    vals = {n: os.environ.get("KURA_TEST_S3_" + n, "") for n in names}
    if not all(vals.values()):
        msg = "set KURA_TEST_S3_ENDPOINT, _BUCKET, _ACCESS_KEY_ID and _SECRET_ACCESS_KEY to run the S3 tests"
        if os.environ.get("KURA_REQUIRE_S3") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    env = {"KURA_S3_" + n: v for n, v in vals.items()}
    env["KURA_S3_PREFIX"] = "e2e-%s" % uuid.uuid4().hex
    env["KURA_S3_REGION"] = "us-east-1"
    return env


def start(tmp_path, redirect):
    env = s3_env()
    if redirect:
        env["KURA_BLOB_REDIRECT"] = "true"
    reg = Registry(str(tmp_path))
    reg.start(extra_env=env)
    reg.allow_create_on_push()
    reg.login()
    return reg


@pytest.fixture
def s3_registry(tmp_path):
    reg = start(tmp_path, redirect=False)
    yield reg
    reg.stop()


@pytest.fixture
def s3_redirect_registry(tmp_path):
    reg = start(tmp_path, redirect=True)
    yield reg
    reg.stop()


def image(tmp_path):
    """An image with a layer of several S3 parts and a small one."""
    rng = make_rng()
    src = Layout(tmp_path / "src")
    big, _ = random_layer(rng, nfiles=1, min_size=20 << 20, max_size=20 << 20)
    small, _ = random_layer(rng, nfiles=3)
    desc = src.add_image([small, big], tag="v1")
    return src, desc


def roundtrip(registry, tmp_path, repo):
    require_tool("skopeo")
    src, desc = image(tmp_path)
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds(registry),
         "oci:%s:v1" % src.path, "docker://%s/%s:v1" % (registry.host, repo)], registry=registry, timeout=300)
    dst = tmp_path / "dst"
    run(["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", creds(registry),
         "docker://%s/%s:v1" % (registry.host, repo), "oci:%s:v1" % dst], registry=registry, timeout=300)
    out = Layout(dst)
    for d, _ in src.walk(desc["digest"]):
        assert out.blob(d) == src.blob(d), "blob %s differs after the round trip" % d
    # No blob bytes on the local disk: they are in the bucket.
    blobs_dir = os.path.join(registry.data_dir, "blobs")
    assert not os.path.exists(blobs_dir) or not any(files for _, _, files in os.walk(blobs_dir))
    return src, desc


def layer_digests(src, desc):
    return [d for d, _ in src.walk(desc["digest"]) if d != desc["digest"]]


def test_push_pull_through_kura(s3_registry, tmp_path):
    src, desc = roundtrip(s3_registry, tmp_path, "s3/app")
    api = RegistryAPI(s3_registry)
    api.check_tree("s3/app", "v1")
    for d in layer_digests(src, desc):
        r = api.s.get("%s/v2/s3/app/blobs/%s" % (s3_registry.url, d), allow_redirects=False)
        assert r.status_code == 200, "without redirects Kura serves the bytes"
        # A range across the first part boundary.
        data = src.blob(d)
        if len(data) > (8 << 20) + 10:
            a, b = (8 << 20) - 5, (8 << 20) + 5
            r = api.s.get("%s/v2/s3/app/blobs/%s" % (s3_registry.url, d), headers={"Range": "bytes=%d-%d" % (a, b)})
            assert r.status_code == 206
            assert r.content == data[a:b + 1]


def test_redirects_to_presigned_urls(s3_redirect_registry, tmp_path):
    reg = s3_redirect_registry
    src, desc = roundtrip(reg, tmp_path, "s3/redirect")
    api = RegistryAPI(reg)
    for d in layer_digests(src, desc):
        url = "%s/v2/s3/redirect/blobs/%s" % (reg.url, d)
        r = api.s.get(url, allow_redirects=False)
        assert r.status_code == 307, r.text
        assert r.headers["Docker-Content-Digest"] == d
        loc = r.headers["Location"]
        assert loc.startswith(os.environ["KURA_TEST_S3_ENDPOINT"].rstrip("/")), loc
        # The presigned URL needs no credentials.
        got = requests.get(loc)
        assert got.status_code == 200
        assert sha256_digest(got.content) == d
        # HEAD is answered by Kura.
        h = api.s.head(url, allow_redirects=False)
        assert h.status_code == 200
        assert int(h.headers["Content-Length"]) == len(src.blob(d))
        # The ECR API hands out the same kind of URL.
        v = reg.ecr().get_download_url_for_layer(repositoryName="s3/redirect", layerDigest=d)
        assert v["downloadUrl"].startswith(os.environ["KURA_TEST_S3_ENDPOINT"].rstrip("/"))
        got = requests.get(v["downloadUrl"])
        assert got.status_code == 200 and sha256_digest(got.content) == d
