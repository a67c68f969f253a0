"""More real ECR clients against Kura: the aws CLI v2 and the AWS SDK for
JavaScript v3 (`@aws-sdk/client-ecr`, run by node), each through the flow the
CLI v1 test (test_ecr_awscli.py) covers: create a repository, log in with the
client's token (podman/skopeo-style `--password-stdin`), push with skopeo,
describe the images (each client's own timestamp parsing and pagination),
put and read a lifecycle policy, delete images and the repository. And ECR
Public through `aws ecr-public` (CLI v2): a push through the API's own layer
operations, a push by skopeo after `aws ecr-public get-login-password`, the
images described, the repository's policy and tags.

The aws CLI v2 is Debian 12's `awscli` package (2.9.x, /usr/bin/aws); the
`aws` first on PATH may be pip's v1, so v2 is called by its path
($KURA_AWS_CLI_V2). The SDK is installed by .ci/install-deps.sh under
$KURA_E2E_NODE_DIR (default /opt/kura-e2e-node).
"""
import base64
import datetime
import json
import os
import shlex
import subprocess

import pytest

from helpers import require_tool, run
from images import Layout, make_rng, random_image, sha256_digest

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no ECR API",
)

AWS2 = os.environ.get("KURA_AWS_CLI_V2", "/usr/bin/aws")
NODE_DIR = os.environ.get("KURA_E2E_NODE_DIR", "/opt/kura-e2e-node")
JS_DRIVER = os.path.join(os.path.dirname(__file__), "ecr_sdk_js.cjs")
LIFECYCLE = {"rules": [{"rulePriority": 1, "description": "expire untagged images",
                        "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                      "countUnit": "days", "countNumber": 14},
                        "action": {"type": "expire"}}]}


def need(ok, what):
    """Skip when a client is missing, unless CI is set: then fail."""
    if not ok:
        msg = "%s is not installed (run .ci/install-deps.sh)" % what
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def recent(when):
    """A datetime within a day of now."""
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - when).total_seconds()) < 86400, when
    return when


def iso(text):
    """An ISO 8601 timestamp as the CLI v2 and the JS SDK print them."""
    assert isinstance(text, str), text
    return recent(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")))


class AwsV2:
    """`aws <service> ...` with the CLI v2, the root key, the registry's endpoint, JSON output."""

    def __init__(self, registry):
        self.registry = registry
        self.env = registry.aws_env()
        self.env["AWS_PAGER"] = ""

    def __call__(self, service, *args, expect_error=None):
        argv = [AWS2, service, *map(str, args), "--endpoint-url", self.registry.url,
                "--output", "json"]
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=120)
        what = "aws %s %s -> exit %d\nstdout: %s\nstderr: %s\n--- registry log ---\n%s" % (
            service, " ".join(map(str, args)), p.returncode, p.stdout[-3000:], p.stderr[-3000:],
            self.registry.log()[-3000:])
        if expect_error:
            assert p.returncode != 0, "expected %s\n%s" % (expect_error, what)
            assert "(%s)" % expect_error in p.stderr, "expected %s\n%s" % (expect_error, what)
            return p.stderr
        assert p.returncode == 0, what
        return json.loads(p.stdout) if p.stdout.strip() else None

    def pipe_login(self, service, authfile):
        """`aws <service> get-login-password | skopeo login --password-stdin`."""
        line = "%s | %s" % (
            " ".join(shlex.quote(a) for a in [AWS2, service, "get-login-password",
                                               "--endpoint-url", self.registry.url]),
            " ".join(shlex.quote(str(a)) for a in [
                "skopeo", "login", "--authfile", authfile, "--username", "AWS",
                "--password-stdin", "--tls-verify=false", self.registry.host]),
        )
        p = subprocess.run(["bash", "-o", "pipefail", "-c", line], env=self.env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, "%s -> exit %d\nstdout: %s\nstderr: %s" % (
            line, p.returncode, p.stdout, p.stderr)
        assert "Login Succeeded" in p.stdout + p.stderr, p.stdout + p.stderr


class JsSdk:
    """One ECR operation through @aws-sdk/client-ecr (ecr_sdk_js.cjs)."""

    def __init__(self, registry):
        self.registry = registry
        self.env = registry.aws_env()
        self.env["KURA_URL"] = registry.url
        self.env["NODE_PATH"] = os.path.join(NODE_DIR, "node_modules")

    def _run(self, args, expect_error):
        p = subprocess.run(["node", JS_DRIVER, *args], env=self.env, capture_output=True,
                           text=True, timeout=120)
        what = "node %s -> exit %d\nstdout: %s\nstderr: %s\n--- registry log ---\n%s" % (
            " ".join(args), p.returncode, p.stdout[-3000:], p.stderr[-3000:],
            self.registry.log()[-3000:])
        out = json.loads(p.stdout) if p.stdout.strip() else None
        if expect_error:
            assert p.returncode == 3 and out["error"] == expect_error, what
            return out["message"]
        assert p.returncode == 0, what
        return out

    def __call__(self, op, expect_error=None, **input):
        return self._run([op, json.dumps(input)], expect_error)

    def paginate(self, op, page_size, **input):
        return self._run(["--paginate", op, json.dumps(input), str(page_size)], None)["pages"]


@pytest.fixture
def aws2(bare_registry):
    require_tool("skopeo")
    need(os.access(AWS2, os.X_OK), "the aws CLI v2 (%s)" % AWS2)
    version = subprocess.run([AWS2, "--version"], capture_output=True, text=True).stdout
    assert version.startswith("aws-cli/2."), version
    return AwsV2(bare_registry)


@pytest.fixture
def js(bare_registry):
    require_tool("skopeo", "node")
    need(os.path.isdir(os.path.join(NODE_DIR, "node_modules", "@aws-sdk", "client-ecr")),
         "@aws-sdk/client-ecr (in %s)" % NODE_DIR)
    return JsSdk(bare_registry)


def skopeo_push(reg, authfile, layout, tag, dest):
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
         "--dest-authfile", authfile, "oci:%s:%s" % (layout.path, tag),
         "docker://%s/%s" % (reg.host, dest)], registry=reg)


def two_images(tmp_path):
    src = Layout(tmp_path / "src")
    rng = make_rng()
    a, _ = random_image(src, rng, "a", nlayers=2)
    b, _ = random_image(src, rng, "b", nlayers=1)
    return src, a["digest"], b["digest"]


# ---------------------------------------------------------------- aws CLI v2


def test_awscli_v2_flow(bare_registry, aws2, tmp_path):
    reg = bare_registry
    repo = aws2("ecr", "create-repository", "--repository-name", "cli2/app",
                "--tags", "Key=team,Value=kura")["repository"]
    assert repo["repositoryUri"] == "%s/cli2/app" % reg.host
    iso(repo["createdAt"])  # v2 prints timestamps as ISO 8601 (v1: epoch numbers)
    aws2("ecr", "create-repository", "--repository-name", "cli2/app",
         expect_error="RepositoryAlreadyExistsException")

    authfile = tmp_path / "auth.json"
    aws2.pipe_login("ecr", authfile)
    src, a, b = two_images(tmp_path)
    skopeo_push(reg, authfile, src, "a", "cli2/app:a")
    skopeo_push(reg, authfile, src, "b", "cli2/app:b")

    details = aws2("ecr", "describe-images", "--repository-name", "cli2/app")["imageDetails"]
    assert {d["imageDigest"]: d["imageTags"] for d in details} == {a: ["a"], b: ["b"]}
    for d in details:
        iso(d["imagePushedAt"])
        assert d["imageSizeInBytes"] > 0
    # v2 pages on its own: one image per request, both in the output.
    paged = aws2("ecr", "describe-images", "--repository-name", "cli2/app", "--page-size", "1")
    assert sorted(d["imageDigest"] for d in paged["imageDetails"]) == sorted([a, b])
    # ... and hands out its own token with --max-items.
    first = aws2("ecr", "describe-images", "--repository-name", "cli2/app", "--max-items", "1")
    assert len(first["imageDetails"]) == 1 and first["NextToken"], first
    rest = aws2("ecr", "describe-images", "--repository-name", "cli2/app", "--max-items", "1",
                "--starting-token", first["NextToken"])
    assert len(rest["imageDetails"]) == 1
    assert {first["imageDetails"][0]["imageDigest"], rest["imageDetails"][0]["imageDigest"]} == {a, b}
    aws2("ecr", "describe-images", "--repository-name", "cli2/app", "--image-ids", "imageTag=nope",
         expect_error="ImageNotFoundException")

    out = aws2("ecr", "put-lifecycle-policy", "--repository-name", "cli2/app",
               "--lifecycle-policy-text", json.dumps(LIFECYCLE))
    assert json.loads(out["lifecyclePolicyText"]) == LIFECYCLE
    got = aws2("ecr", "get-lifecycle-policy", "--repository-name", "cli2/app")
    assert json.loads(got["lifecyclePolicyText"]) == LIFECYCLE
    assert got["registryId"] == reg.account_id

    out = aws2("ecr", "batch-delete-image", "--repository-name", "cli2/app",
               "--image-ids", "imageTag=a")
    assert out["imageIds"] == [{"imageDigest": a, "imageTag": "a"}] and out["failures"] == []
    aws2("ecr", "delete-repository", "--repository-name", "cli2/app",
         expect_error="RepositoryNotEmptyException")
    aws2("ecr", "delete-repository", "--repository-name", "cli2/app", "--force")
    aws2("ecr", "describe-repositories", "--repository-names", "cli2/app",
         expect_error="RepositoryNotFoundException")


def test_awscli_v2_ecr_public_push(bare_registry, aws2, tmp_path):
    reg = bare_registry
    name = "pub/cli2"
    repo = aws2("ecr-public", "create-repository", "--repository-name", name)["repository"]
    arn = repo["repositoryArn"]
    assert arn == "arn:aws:ecr-public::%s:repository/%s" % (reg.account_id, name)

    # A push through ECR Public's own layer operations.
    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = os.urandom(3000)
    digests = []
    for i, blob in enumerate((config, layer)):
        path = tmp_path / ("blob%d" % i)
        path.write_bytes(blob)
        digest = sha256_digest(blob)
        missing = aws2("ecr-public", "batch-check-layer-availability", "--repository-name", name,
                       "--layer-digests", digest)
        assert missing["failures"][0]["failureCode"] == "MissingLayerDigest"
        up = aws2("ecr-public", "initiate-layer-upload", "--repository-name", name)
        assert up["partSize"] > 0
        part = aws2("ecr-public", "upload-layer-part", "--repository-name", name,
                    "--upload-id", up["uploadId"], "--part-first-byte", "0",
                    "--part-last-byte", str(len(blob) - 1),
                    "--layer-part-blob", "fileb://%s" % path)
        assert part["lastByteReceived"] == len(blob) - 1
        done = aws2("ecr-public", "complete-layer-upload", "--repository-name", name,
                    "--upload-id", up["uploadId"], "--layer-digests", digest)
        assert done["layerDigest"] == digest
        digests.append(digest)
    avail = aws2("ecr-public", "batch-check-layer-availability", "--repository-name", name,
                 "--layer-digests", *digests)
    assert [l["layerAvailability"] for l in avail["layers"]] == ["AVAILABLE", "AVAILABLE"]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digests[0], "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digests[1], "size": len(layer)}]})
    mpath = tmp_path / "manifest.json"
    mpath.write_text(manifest)
    put = aws2("ecr-public", "put-image", "--repository-name", name, "--image-tag", "api",
               "--image-manifest", "file://%s" % mpath)["image"]
    api_digest = sha256_digest(manifest.encode())
    assert put["imageId"] == {"imageDigest": api_digest, "imageTag": "api"}

    # A push by skopeo after `aws ecr-public get-login-password`.
    authfile = tmp_path / "auth.json"
    aws2.pipe_login("ecr-public", authfile)
    src, a, _ = two_images(tmp_path)
    skopeo_push(reg, authfile, src, "a", "%s:skopeo" % name)

    details = aws2("ecr-public", "describe-images", "--repository-name", name)["imageDetails"]
    assert {d["imageDigest"]: d["imageTags"] for d in details} == {api_digest: ["api"], a: ["skopeo"]}
    for d in details:
        iso(d["imagePushedAt"])
    tags = aws2("ecr-public", "describe-image-tags", "--repository-name", name,
                "--page-size", "1")["imageTagDetails"]
    assert [(t["imageTag"], t["imageDetail"]["imageDigest"]) for t in tags] == [
        ("api", api_digest), ("skopeo", a)]
    iso(tags[0]["createdAt"])

    # Anyone pulls what the API pushed.
    out = run(["skopeo", "inspect", "--raw", "--no-creds", "--tls-verify=false",
               "docker://%s/%s:api" % (reg.host, name)], registry=reg)
    assert out.stdout.decode() == manifest

    policy = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "pull", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % reg.account_id},
        "Action": ["ecr-public:DescribeImages"]}]})
    aws2("ecr-public", "set-repository-policy", "--repository-name", name, "--policy-text", policy)
    got = aws2("ecr-public", "get-repository-policy", "--repository-name", name)
    assert json.loads(got["policyText"]) == json.loads(policy)
    aws2("ecr-public", "tag-resource", "--resource-arn", arn, "--tags", "Key=team,Value=kura")
    assert aws2("ecr-public", "list-tags-for-resource", "--resource-arn", arn)["tags"] == [
        {"Key": "team", "Value": "kura"}]

    out = aws2("ecr-public", "batch-delete-image", "--repository-name", name,
               "--image-ids", "imageTag=api")
    assert out["imageIds"] == [{"imageDigest": api_digest, "imageTag": "api"}]
    aws2("ecr-public", "delete-repository", "--repository-name", name,
         expect_error="RepositoryNotEmptyException")
    aws2("ecr-public", "delete-repository", "--repository-name", name, "--force")
    aws2("ecr-public", "describe-images", "--repository-name", name,
         expect_error="RepositoryNotFoundException")


# ---------------------------------------------------------------- AWS SDK for JavaScript v3


def test_js_sdk_v3_flow(bare_registry, js, tmp_path):
    reg = bare_registry
    repo = js("CreateRepository", repositoryName="js/app", imageTagMutability="MUTABLE")["repository"]
    assert repo["repositoryUri"] == "%s/js/app" % reg.host
    recent(datetime.datetime.fromisoformat(repo["createdAt"]["$date"].replace("Z", "+00:00")))
    js("CreateRepository", repositoryName="js/app", expect_error="RepositoryAlreadyExistsException")

    data = js("GetAuthorizationToken")["authorizationData"][0]
    user, password = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    assert user == "AWS" and password
    assert "$date" in data["expiresAt"], data
    authfile = tmp_path / "auth.json"
    run(["skopeo", "login", "--authfile", authfile, "--username", "AWS", "--password-stdin",
         "--tls-verify=false", reg.host], registry=reg, input=password.encode())
    src, a, b = two_images(tmp_path)
    skopeo_push(reg, authfile, src, "a", "js/app:a")
    skopeo_push(reg, authfile, src, "b", "js/app:b")

    details = js("DescribeImages", repositoryName="js/app")["imageDetails"]
    assert {d["imageDigest"]: d["imageTags"] for d in details} == {a: ["a"], b: ["b"]}
    for d in details:
        # The SDK parsed the epoch-seconds timestamp into a Date.
        recent(datetime.datetime.fromisoformat(d["imagePushedAt"]["$date"].replace("Z", "+00:00")))
    pages = js.paginate("DescribeImages", 1, repositoryName="js/app")
    assert [len(p["imageDetails"]) for p in pages] == [1, 1], pages
    assert sorted(p["imageDetails"][0]["imageDigest"] for p in pages) == sorted([a, b])
    js("DescribeImages", repositoryName="js/app", imageIds=[{"imageTag": "nope"}],
       expect_error="ImageNotFoundException")

    out = js("PutLifecyclePolicy", repositoryName="js/app", lifecyclePolicyText=json.dumps(LIFECYCLE))
    assert json.loads(out["lifecyclePolicyText"]) == LIFECYCLE
    got = js("GetLifecyclePolicy", repositoryName="js/app")
    assert json.loads(got["lifecyclePolicyText"]) == LIFECYCLE

    out = js("BatchDeleteImage", repositoryName="js/app", imageIds=[{"imageDigest": b}])
    assert out["imageIds"] == [{"imageDigest": b, "imageTag": "b"}] and out["failures"] == []
    js("DeleteRepository", repositoryName="js/app", expect_error="RepositoryNotEmptyException")
    js("DeleteRepository", repositoryName="js/app", force=True)
    js("DescribeRepositories", repositoryNames=["js/app"], expect_error="RepositoryNotFoundException")
