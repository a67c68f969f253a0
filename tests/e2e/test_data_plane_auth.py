"""The data plane's authentication, as in ECR: every /v2/ request carries Basic
auth with user `AWS` and a registry token from GetAuthorizationToken; pushes
create repositories only through CREATE_ON_PUSH creation templates; presigned
layer download URLs from GetDownloadUrlForLayer work without credentials.
"""
import base64
import os
import random
import string
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
from botocore.exceptions import ClientError

from blobs_util import (
    OCI_MANIFEST,
    Client,
    assert_error,
    canonical,
    describe,
    expect,
    rand_bytes,
    sha256,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no authentication and no ECR API",
)

TIMEOUT = 30
B64URL = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"


def get(registry, path, auth=None, **kw):
    kw.setdefault("timeout", TIMEOUT)
    return requests.get(registry.url + path, auth=auth, **kw)


def assert_challenge(resp):
    """401 with the token service's Bearer challenge and the OCI error body
    with code UNAUTHORIZED."""
    assert_error(resp, 401, "UNAUTHORIZED")
    challenge = resp.headers.get("WWW-Authenticate", "")
    assert challenge.startswith('Bearer realm="http://%s/token"' % resp.url.split("/")[2]), describe(resp)


def forged_variants(token):
    """Tokens that differ from a real one in exactly one character, at several
    places (start of the claims, the middle, inside the signature, the end)."""
    positions = sorted({0, len(token) // 4, len(token) // 2, token.index(".") + 3, len(token) - 2,
                        len(token) - 1})
    out = []
    for i in positions:
        repl = next(ch for ch in B64URL if ch != token[i])
        out.append(token[:i] + repl + token[i + 1:])
    # The signature is 32 bytes: 43 base64 characters whose last one carries two
    # unused bits. Setting one of them leaves the decoded bytes unchanged, so
    # only a strict decoder refuses it (it must: the token text differs).
    last = B64URL.index(token[-1])
    out.append(token[:-1] + B64URL[last ^ 1])
    return out


# ---------------------------------------------------------------- challenges


def test_no_credentials_is_401_with_basic_challenge(registry):
    r = get(registry, "/v2/")
    assert_challenge(r)
    # The same for every data-plane endpoint, whether or not the repository exists.
    c = Client(registry.url, auth=registry.auth)
    c.push_image("auth/existing", "v1", seed=1)
    anon = Client(registry.url)
    for resp in (
        anon.get_manifest("auth/existing", "v1"),
        anon.get("/v2/auth/existing/tags/list"),
        anon.get("/v2/_catalog"),
        anon.request("POST", "/v2/auth/existing/blobs/uploads/", headers={"Content-Length": "0"}),
        anon.get_manifest("auth/missing", "v1"),
        anon.put_manifest("auth/existing", "v2", b"{}"),
        anon.delete("/v2/auth/existing/manifests/v1"),
    ):
        assert_challenge(resp)
    # Nothing changed.
    assert c.get("/v2/auth/existing/tags/list").json()["tags"] == ["v1"]
    # /healthz stays open for probes.
    assert get(registry, "/healthz").status_code == 200
    # With the token, /v2/ answers 200.
    expect(get(registry, "/v2/", auth=registry.auth), 200)


def test_forged_tokens_are_refused(registry):
    token = registry.token
    expect(get(registry, "/v2/", auth=("AWS", token)), 200)
    for forged in forged_variants(token):
        assert forged != token
        r = get(registry, "/v2/", auth=("AWS", forged))
        assert r.status_code == 401, f"token altered to {forged!r} was accepted\n" + describe(r)
        assert_challenge(r)
    rng = random.Random(4242)
    for junk in (
        "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(len(token))),
        "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(40)),
        "a.b",
        ".",
        "",
    ):
        r = get(registry, "/v2/", auth=("AWS", junk))
        assert_challenge(r)
    # A token's claims with a signature from another token do not pass either:
    # sign-in with the root key twice, swap the signatures.
    other = registry.login()
    registry.token = token
    if other != token:
        mixed = token.split(".")[0] + "." + other.split(".")[1]
        if mixed not in (token, other):
            assert_challenge(get(registry, "/v2/", auth=("AWS", mixed)))
    # The token as a bearer token (what the token service hands out) passes;
    # forged bearer tokens and malformed headers do not.
    expect(requests.get(registry.url + "/v2/", headers={"Authorization": "Bearer " + token},
                        timeout=TIMEOUT), 200)
    for header in (
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"AWS").decode(),
        "Bearer " + forged_variants(token)[0],
        "Bearer ",
        token,
    ):
        r = requests.get(registry.url + "/v2/", headers={"Authorization": header}, timeout=TIMEOUT)
        assert_challenge(r)


def test_wrong_user_name_is_refused(registry):
    for user in ("aws", "admin", "AWS ", ""):
        r = get(registry, "/v2/", auth=(user, registry.token))
        assert r.status_code == 401, f"user {user!r} with a valid token was accepted\n" + describe(r)
        assert_challenge(r)
    # Nor does a valid token work for pushing under another user name.
    r = requests.post(registry.url + "/v2/auth/x/blobs/uploads/", auth=("root", registry.token),
                      headers={"Content-Length": "0"}, timeout=TIMEOUT)
    assert_challenge(r)


def test_token_survives_restart(registry):
    c = Client(registry.url, auth=registry.auth)
    digest, _, body = c.push_image("auth/restart", "v1", seed=7)
    registry.restart()
    expect(get(registry, "/v2/", auth=registry.auth), 200)
    g = c.get_manifest("auth/restart", "v1")
    expect(g, 200)
    assert g.content == body
    # Pushing with the same token still works after the restart.
    c.push_image("auth/restart", "v2", seed=8)
    assert sorted(c.get("/v2/auth/restart/tags/list").json()["tags"]) == ["v1", "v2"]
    # And a forged token is still refused.
    assert_challenge(get(registry, "/v2/", auth=("AWS", forged_variants(registry.token)[1])))


# ---------------------------------------------------------------- repositories on push


def test_push_to_missing_repository_is_name_unknown(bare_registry):
    reg = bare_registry
    reg.login()
    c = Client(reg.url, auth=reg.auth)
    expect(c.get("/v2/"), 200)
    r = c.request("POST", "/v2/auth/newrepo/blobs/uploads/", headers={"Content-Length": "0"})
    body = assert_error(r, 404, "NAME_UNKNOWN")
    msg = [e for e in body["errors"] if e["code"] == "NAME_UNKNOWN"][0].get("message")
    assert msg == ("The repository with name 'auth/newrepo' does not exist in the registry "
                   "with id '123456789012'"), describe(r)
    # A single-POST push and a manifest push are refused the same way.
    data = b"some layer"
    r = c.request("POST", f"/v2/auth/newrepo/blobs/uploads/?digest={sha256(data)}", data=data,
                  headers={"Content-Type": "application/octet-stream"})
    assert_error(r, 404, "NAME_UNKNOWN")
    r = c.put_manifest("auth/newrepo", "v1", canonical({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": sha256(b"{}"), "size": 2},
        "layers": []}))
    assert_error(r, 404, "NAME_UNKNOWN")
    # Nothing was created.
    ecr = reg.ecr()
    with pytest.raises(ClientError) as e:
        ecr.describe_repositories(repositoryNames=["auth/newrepo"])
    assert e.value.response["Error"]["Code"] == "RepositoryNotFoundException"

    ecr.create_repository(repositoryName="auth/newrepo")
    r = c.request("POST", "/v2/auth/newrepo/blobs/uploads/", headers={"Content-Length": "0"})
    expect(r, 202)
    digest, _, body = c.push_image("auth/newrepo", "v1", seed=3)
    g = c.get_manifest("auth/newrepo", "v1")
    expect(g, 200)
    assert g.content == body
    ids = ecr.list_images(repositoryName="auth/newrepo")["imageIds"]
    assert {"imageDigest": digest, "imageTag": "v1"} in ids


def test_creation_template_prefix(bare_registry):
    reg = bare_registry
    ecr = reg.ecr()
    ecr.create_repository_creation_template(
        prefix="team", appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE",
        description="team repositories are created on push",
    )
    reg.login()
    c = Client(reg.url, auth=reg.auth)

    # Covered by the template: the push creates the repository.
    digest, _, body = c.push_image("team/x", "v1", seed=21)
    g = c.get_manifest("team/x", "v1")
    expect(g, 200)
    assert g.content == body
    repo = ecr.describe_repositories(repositoryNames=["team/x"])["repositories"][0]
    assert repo["repositoryName"] == "team/x"
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["registryId"] == reg.account_id
    # ... and it behaves as an immutable repository: the tag cannot move.
    other = c.push_image("team/x", None, seed=22)[2]
    r = c.put_manifest("team/x", "v1", other)
    assert_error(r, 400, "TAG_INVALID")
    assert c.get_manifest("team/x", "v1").content == body

    # Deeper names under the prefix are covered too.
    c.push_image("team/a/b", "v1", seed=23)
    assert ecr.describe_repositories(repositoryNames=["team/a/b"])["repositories"][0][
        "imageTagMutability"] == "IMMUTABLE"

    # Not covered: no repository is created.
    for name in ("other/x", "teammate/x"):
        r = c.request("POST", f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"})
        body_ = assert_error(r, 404, "NAME_UNKNOWN")
        assert body_["errors"][0]["message"] == (
            f"The repository with name '{name}' does not exist in the registry with id "
            f"'{reg.account_id}'"), describe(r)
        with pytest.raises(ClientError) as e:
            ecr.describe_repositories(repositoryNames=[name])
        assert e.value.response["Error"]["Code"] == "RepositoryNotFoundException"
    names = sorted(r["repositoryName"] for r in ecr.describe_repositories()["repositories"])
    assert names == ["team/a/b", "team/x"]


# ---------------------------------------------------------------- download URLs


def test_download_url_for_layer(registry):
    c = Client(registry.url, auth=registry.auth)
    repo = "auth/download"
    a = rand_bytes(300_000, seed=31)
    b = rand_bytes(1000, seed=32)
    da = c.push_blob(repo, a)
    db = c.push_blob(repo, b)
    ecr = registry.ecr()
    out = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=da)
    assert out["layerDigest"] == da
    url = out["downloadUrl"]

    # Anyone with the URL can download the blob: no credentials.
    r = requests.get(url, timeout=TIMEOUT)
    expect(r, 200)
    assert r.content == a
    assert sha256(r.content) == da

    # The same URL with the path pointing at another blob is refused.
    parts = urlsplit(url)
    assert parts.path.endswith("/blobs/" + da), url
    other = urlunsplit(parts._replace(path=parts.path[: -len(da)] + db))
    r = requests.get(other, timeout=TIMEOUT)
    assert r.status_code == 403, describe(r)
    # ... and at another repository.
    c.push_blob("auth/download-other", a)
    moved = urlunsplit(parts._replace(path=parts.path.replace(f"/v2/{repo}/", "/v2/auth/download-other/")))
    assert moved != url
    r = requests.get(moved, timeout=TIMEOUT)
    assert r.status_code == 403, describe(r)
    # Without its query the URL is an ordinary unauthenticated request.
    assert_challenge(requests.get(urlunsplit(parts._replace(query="")), timeout=TIMEOUT))
    # The URL is for reading only.
    r = requests.delete(url, timeout=TIMEOUT)
    assert r.status_code in (401, 403, 405), describe(r)
    assert c.get_blob(repo, da).content == a

    # A layer that is not in the repository has no URL.
    with pytest.raises(ClientError) as e:
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha256(b"nope"))
    assert e.value.response["Error"]["Code"] == "LayersNotFoundException"
