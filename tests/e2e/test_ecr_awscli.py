"""The real `aws` CLI against Kura's ECR API, with podman/skopeo logging in
through `aws ecr get-login-password` and skopeo pushing and pulling images.

Every test starts from a fresh install (`bare_registry`: the root key only, no
creation templates), so repositories exist only when `create-repository` made
them.
"""
import base64
import json
import os
import shlex
import subprocess

import pytest
import requests

from helpers import ACCEPT, require_tool, run
from images import MT_MANIFEST, Layout, make_rng, random_image, sha256_digest

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no ECR API",
)

IMMUTABLE = "cli/immutable"
MUTABLE = "cli/mutable"


class Aws:
    """`aws ecr ...` with the registry's root key, its endpoint, JSON output."""

    def __init__(self, registry):
        self.registry = registry
        self.env = registry.aws_env()

    def argv(self, *args):
        return ["aws", "ecr", *args, "--endpoint-url", self.registry.url, "--output", "json"]

    def __call__(self, *args, expect_error=None):
        """Run `aws ecr <args>`. Returns the parsed JSON output (None if empty).
        With expect_error="SomeException": the command must fail with that error
        code; returns its stderr."""
        p = subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                           timeout=120)
        what = "aws ecr %s -> exit %d\nstdout: %s\nstderr: %s\n--- registry log ---\n%s" % (
            " ".join(args), p.returncode, p.stdout[-3000:], p.stderr[-3000:],
            self.registry.log()[-3000:])
        if expect_error:
            assert p.returncode != 0, "expected %s\n%s" % (expect_error, what)
            assert "(%s)" % expect_error in p.stderr, "expected %s\n%s" % (expect_error, what)
            return p.stderr
        assert p.returncode == 0, what
        return json.loads(p.stdout) if p.stdout.strip() else None

    def pipe_login(self, client_cmd):
        """`aws ecr get-login-password | <client_cmd>` through a shell, as the docs say."""
        line = "%s | %s" % (
            " ".join(shlex.quote(a) for a in ["aws", "ecr", "get-login-password",
                                               "--endpoint-url", self.registry.url]),
            " ".join(shlex.quote(str(a)) for a in client_cmd),
        )
        p = subprocess.run(["bash", "-o", "pipefail", "-c", line], env=self.env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, "%s -> exit %d\nstdout: %s\nstderr: %s" % (
            line, p.returncode, p.stdout, p.stderr)
        assert "Login Succeeded" in p.stdout + p.stderr, p.stdout + p.stderr
        return p


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws", "skopeo", "podman")


@pytest.fixture
def aws(bare_registry):
    return Aws(bare_registry)


def check_auth_file(path, host):
    """A containers auth.json holds AWS:<token> for host; returns the token."""
    with open(path) as f:
        auths = json.load(f)["auths"]
    assert host in auths, auths
    user, token = base64.b64decode(auths[host]["auth"]).decode().split(":", 1)
    assert user == "AWS" and token
    return token


@pytest.fixture
def logged_in(bare_registry, aws, tmp_path):
    """Two repositories created with the CLI; podman and skopeo logged in with
    get-login-password. Returns {"skopeo": authfile, "podman": authfile}."""
    reg = bare_registry
    aws("create-repository", "--repository-name", IMMUTABLE,
        "--image-tag-mutability", "IMMUTABLE", "--tags", "Key=team,Value=kura", "Key=env,Value=e2e")
    aws("create-repository", "--repository-name", MUTABLE, "--image-tag-mutability", "MUTABLE")
    podman_auth = tmp_path / "podman-auth.json"
    aws.pipe_login(["podman", "login", "--authfile", podman_auth, "--username", "AWS",
                    "--password-stdin", "--tls-verify=false", reg.host])
    skopeo_auth = tmp_path / "skopeo-auth.json"
    aws.pipe_login(["skopeo", "login", "--authfile", skopeo_auth, "--username", "AWS",
                    "--password-stdin", "--tls-verify=false", reg.host])
    # Raw HTTP checks below use a token of their own.
    reg.login()
    return {"podman": str(podman_auth), "skopeo": str(skopeo_auth)}


def skopeo_push(reg, authfile, layout, tag, dest, check=True):
    return run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
                "--dest-authfile", authfile, "oci:%s:%s" % (layout.path, tag),
                "docker://%s/%s" % (reg.host, dest)], registry=reg, check=check)


def skopeo_pull(reg, authfile, src, layout_path, tag):
    run(["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false",
         "--src-authfile", authfile, "docker://%s/%s" % (reg.host, src),
         "oci:%s:%s" % (layout_path, tag)], registry=reg)
    return Layout(layout_path)


def served_manifest(reg, repo, ref):
    r = requests.get("%s/v2/%s/manifests/%s" % (reg.url, repo, ref), auth=reg.auth,
                     headers={"Accept": ACCEPT}, timeout=30)
    assert r.status_code == 200, (r.status_code, r.text)
    return r.content


# ---------------------------------------------------------------- repositories and login


def test_create_describe_repositories_and_login(bare_registry, aws, tmp_path):
    reg = bare_registry
    out = aws("create-repository", "--repository-name", IMMUTABLE,
              "--image-tag-mutability", "IMMUTABLE",
              "--tags", "Key=team,Value=kura", "Key=env,Value=e2e")
    repo = out["repository"]
    assert repo["repositoryName"] == IMMUTABLE
    assert repo["registryId"] == reg.account_id
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["repositoryUri"] == "%s/%s" % (reg.host, IMMUTABLE)
    assert repo["repositoryArn"] == "arn:aws:ecr:%s:%s:repository/%s" % (
        reg.region, reg.account_id, IMMUTABLE)
    assert isinstance(repo["createdAt"], (int, float))
    out = aws("create-repository", "--repository-name", MUTABLE, "--image-tag-mutability", "MUTABLE")
    assert out["repository"]["imageTagMutability"] == "MUTABLE"
    aws("create-repository", "--repository-name", MUTABLE,
        expect_error="RepositoryAlreadyExistsException")

    repos = aws("describe-repositories")["repositories"]
    assert {r["repositoryName"]: r["imageTagMutability"] for r in repos} == {
        IMMUTABLE: "IMMUTABLE", MUTABLE: "MUTABLE"}
    tags = aws("list-tags-for-resource", "--resource-arn", repo["repositoryArn"])["tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "e2e"), ("team", "kura")]

    # get-login-password prints the password of user AWS.
    p = subprocess.run(["aws", "ecr", "get-login-password", "--endpoint-url", reg.url],
                       env=aws.env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    password = p.stdout.strip()
    assert password and ":" not in password
    r = requests.get(reg.url + "/v2/", auth=("AWS", password), timeout=30)
    assert r.status_code == 200, r.text

    # ... and podman and skopeo log in with it through a pipe.
    podman_auth = tmp_path / "podman-auth.json"
    aws.pipe_login(["podman", "login", "--authfile", podman_auth, "--username", "AWS",
                    "--password-stdin", "--tls-verify=false", reg.host])
    skopeo_auth = tmp_path / "skopeo-auth.json"
    aws.pipe_login(["skopeo", "login", "--authfile", skopeo_auth, "--username", "AWS",
                    "--password-stdin", "--tls-verify=false", reg.host])
    for authfile in (podman_auth, skopeo_auth):
        check_auth_file(authfile, reg.host)
        # The saved login works: list the (empty) repository's tags.
        out = run(["skopeo", "list-tags", "--tls-verify=false", "--authfile", authfile,
                   "docker://%s/%s" % (reg.host, MUTABLE)], registry=reg)
        assert json.loads(out.stdout)["Tags"] == []
    # Without a login, the registry refuses.
    empty = tmp_path / "empty-auth.json"
    empty.write_text('{"auths": {}}')
    out = run(["skopeo", "list-tags", "--tls-verify=false", "--authfile", empty,
               "docker://%s/%s" % (reg.host, MUTABLE)], check=False)
    assert out.returncode != 0
    assert b"unauthorized" in out.stderr.lower() or b"401" in out.stderr, out.stderr


# ---------------------------------------------------------------- images


def test_push_describe_list_batch_get_put_image(bare_registry, aws, logged_in, tmp_path):
    reg = bare_registry
    rng = make_rng()
    src = Layout(tmp_path / "src")
    desc, _ = random_image(src, rng, "v1", nlayers=2)
    skopeo_push(reg, logged_in["skopeo"], src, "v1", MUTABLE + ":v1")
    digest = desc["digest"]
    manifest = src.json_blob(digest)

    images = aws("describe-images", "--repository-name", MUTABLE)["imageDetails"]
    assert len(images) == 1, images
    img = images[0]
    assert img["imageDigest"] == digest
    assert img["imageTags"] == ["v1"]
    assert img["repositoryName"] == MUTABLE
    assert img["registryId"] == reg.account_id
    assert isinstance(img["imageSizeInBytes"], int) and img["imageSizeInBytes"] > 0
    assert img["imageSizeInBytes"] >= sum(l["size"] for l in manifest["layers"])
    assert isinstance(img["imagePushedAt"], (int, float)) and not isinstance(img["imagePushedAt"], bool)
    assert img["imageManifestMediaType"] == MT_MANIFEST
    one = aws("describe-images", "--repository-name", MUTABLE, "--image-ids", "imageTag=v1")
    assert [i["imageDigest"] for i in one["imageDetails"]] == [digest]
    aws("describe-images", "--repository-name", MUTABLE, "--image-ids", "imageTag=nope",
        expect_error="ImageNotFoundException")

    ids = aws("list-images", "--repository-name", MUTABLE)["imageIds"]
    assert ids == [{"imageDigest": digest, "imageTag": "v1"}]

    got = aws("batch-get-image", "--repository-name", MUTABLE, "--image-ids", "imageTag=v1")
    assert got["failures"] == []
    assert len(got["images"]) == 1
    image = got["images"][0]
    assert image["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    body = image["imageManifest"].encode()
    assert body == served_manifest(reg, MUTABLE, "v1") == src.blob(digest)
    assert sha256_digest(body) == digest
    assert image["imageManifestMediaType"] == MT_MANIFEST
    missing = aws("batch-get-image", "--repository-name", MUTABLE, "--image-ids", "imageTag=nope")
    assert missing["images"] == []
    assert missing["failures"][0]["failureCode"] == "ImageNotFound"

    # Retag with put-image; pull the new tag with skopeo.
    put = aws("put-image", "--repository-name", MUTABLE, "--image-tag", "v2",
              "--image-manifest", image["imageManifest"],
              "--image-manifest-media-type", MT_MANIFEST)["image"]
    assert put["imageId"] == {"imageDigest": digest, "imageTag": "v2"}
    assert put["repositoryName"] == MUTABLE
    assert put["imageManifest"] == image["imageManifest"]
    dst = skopeo_pull(reg, logged_in["podman"], MUTABLE + ":v2", tmp_path / "dst", "v2")
    assert dst.resolve("v2")["digest"] == digest
    for d, _ in src.walk(digest):
        assert dst.blob(d) == src.blob(d)
    assert sorted(aws("describe-images", "--repository-name", MUTABLE)["imageDetails"][0]
                  ["imageTags"]) == ["v1", "v2"]
    # Putting the same manifest under a tag that already has it changes nothing.
    aws("put-image", "--repository-name", MUTABLE, "--image-tag", "v2",
        "--image-manifest", image["imageManifest"], expect_error="ImageAlreadyExistsException")


def test_tag_immutability(bare_registry, aws, logged_in, tmp_path):
    reg = bare_registry
    rng = make_rng()
    src = Layout(tmp_path / "src")
    first, _ = random_image(src, rng, "first")
    second, _ = random_image(src, rng, "second")
    skopeo_push(reg, logged_in["skopeo"], src, "first", IMMUTABLE + ":v1")
    skopeo_push(reg, logged_in["skopeo"], src, "second", IMMUTABLE + ":other")

    # skopeo cannot move the tag to another image.
    p = skopeo_push(reg, logged_in["skopeo"], src, "second", IMMUTABLE + ":v1", check=False)
    assert p.returncode != 0, "pushing over an immutable tag succeeded"
    assert b"already exists" in p.stderr or b"immutable" in p.stderr, p.stderr
    assert served_manifest(reg, IMMUTABLE, "v1") == src.blob(first["digest"])
    # Re-pushing the same image under the same tag is fine.
    skopeo_push(reg, logged_in["skopeo"], src, "first", IMMUTABLE + ":v1")

    # Nor can put-image.
    second_manifest = src.blob(second["digest"]).decode()
    err = aws("put-image", "--repository-name", IMMUTABLE, "--image-tag", "v1",
              "--image-manifest", second_manifest,
              expect_error="ImageTagAlreadyExistsException")
    assert "v1" in err
    assert served_manifest(reg, IMMUTABLE, "v1") == src.blob(first["digest"])
    tags = {i["imageDigest"]: sorted(i.get("imageTags", []))
            for i in aws("describe-images", "--repository-name", IMMUTABLE)["imageDetails"]}
    assert tags == {first["digest"]: ["v1"], second["digest"]: ["other"]}

    # In the MUTABLE repository the same moves are allowed.
    skopeo_push(reg, logged_in["skopeo"], src, "first", MUTABLE + ":v1")
    skopeo_push(reg, logged_in["skopeo"], src, "second", MUTABLE + ":other")
    out = aws("put-image", "--repository-name", MUTABLE, "--image-tag", "v1",
              "--image-manifest", second_manifest)
    assert out["image"]["imageId"] == {"imageDigest": second["digest"], "imageTag": "v1"}
    assert served_manifest(reg, MUTABLE, "v1") == src.blob(second["digest"])


def test_batch_delete_and_delete_repository(bare_registry, aws, logged_in, tmp_path):
    reg = bare_registry
    rng = make_rng()
    src = Layout(tmp_path / "src")
    a, _ = random_image(src, rng, "a")
    b, _ = random_image(src, rng, "b")
    skopeo_push(reg, logged_in["skopeo"], src, "a", MUTABLE + ":a1")
    skopeo_push(reg, logged_in["skopeo"], src, "a", MUTABLE + ":a2")
    skopeo_push(reg, logged_in["skopeo"], src, "b", MUTABLE + ":b1")

    # By tag: only the tag goes; the image keeps its other tag.
    out = aws("batch-delete-image", "--repository-name", MUTABLE, "--image-ids", "imageTag=a2")
    assert out["failures"] == []
    assert out["imageIds"] == [{"imageDigest": a["digest"], "imageTag": "a2"}]
    ids = aws("list-images", "--repository-name", MUTABLE)["imageIds"]
    assert sorted((i["imageDigest"], i.get("imageTag")) for i in ids) == sorted(
        [(a["digest"], "a1"), (b["digest"], "b1")])

    # By digest: the image and all its tags go.
    out = aws("batch-delete-image", "--repository-name", MUTABLE,
              "--image-ids", "imageDigest=%s" % b["digest"], "imageTag=nope")
    assert {i["imageDigest"] for i in out["imageIds"]} == {b["digest"]}
    assert [(f["imageId"], f["failureCode"]) for f in out["failures"]] == [
        ({"imageTag": "nope"}, "ImageNotFound")]
    ids = aws("list-images", "--repository-name", MUTABLE)["imageIds"]
    assert ids == [{"imageDigest": a["digest"], "imageTag": "a1"}]
    r = requests.get("%s/v2/%s/manifests/%s" % (reg.url, MUTABLE, b["digest"]), auth=reg.auth,
                     headers={"Accept": ACCEPT}, timeout=30)
    assert r.status_code == 404, r.text

    # A repository with images is only deleted with --force.
    aws("delete-repository", "--repository-name", MUTABLE,
        expect_error="RepositoryNotEmptyException")
    assert aws("describe-repositories", "--repository-names", MUTABLE)["repositories"]
    out = aws("delete-repository", "--repository-name", MUTABLE, "--force")
    assert out["repository"]["repositoryName"] == MUTABLE
    aws("describe-repositories", "--repository-names", MUTABLE,
        expect_error="RepositoryNotFoundException")
    # Its content is gone from the data plane too; an empty repository needs no --force.
    r = requests.get("%s/v2/%s/tags/list" % (reg.url, MUTABLE), auth=reg.auth, timeout=30)
    assert r.status_code == 404, r.text
    out = aws("delete-repository", "--repository-name", IMMUTABLE)
    assert out["repository"]["repositoryName"] == IMMUTABLE
    assert aws("describe-repositories")["repositories"] == []
