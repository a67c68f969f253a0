"""ECR Public on Kura with the real `aws ecr-public` CLI, and anonymous pulls.

A fresh install (`bare_registry`): the CLI creates a public repository with
catalog data, describes it, replaces and reads its catalog data; skopeo pushes
an image after `aws ecr-public get-login-password | skopeo login`; then skopeo
and podman pull it with no credentials at all, while the same anonymous pull
of a private repository is refused with 401. The docker CLI (no daemon here:
`docker manifest inspect`) reads a public repository anonymously through the
token service the 401 challenge names (`/token` hands out an anonymous
bearer token).
"""
import json
import os
import shlex
import subprocess

import pytest
import requests

from helpers import ACCEPT, container_store, podman_cmd, require_tool, run  # noqa: F401 (fixture)
from images import Layout, make_rng, random_image

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no ECR API",
)

PUBLIC = "pub/hello"
PRIVATE = "priv/hello"


class AwsPublic:
    """`aws ecr-public ...` (and `aws ecr ...`) with the root key at the registry."""

    def __init__(self, registry):
        self.registry = registry
        self.env = registry.aws_env()

    def _run(self, service, args, expect_error):
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

    def __call__(self, *args, expect_error=None):
        return self._run("ecr-public", args, expect_error)

    def ecr(self, *args, expect_error=None):
        return self._run("ecr", args, expect_error)

    def pipe_login(self, client_cmd):
        """`aws ecr-public get-login-password | <client_cmd>`, as AWS's docs put it."""
        line = "%s | %s" % (
            " ".join(shlex.quote(a) for a in ["aws", "ecr-public", "get-login-password",
                                               "--endpoint-url", self.registry.url]),
            " ".join(shlex.quote(str(a)) for a in client_cmd),
        )
        p = subprocess.run(["bash", "-o", "pipefail", "-c", line], env=self.env,
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, "%s -> exit %d\nstdout: %s\nstderr: %s" % (
            line, p.returncode, p.stdout, p.stderr)
        assert "Login Succeeded" in p.stdout + p.stderr, p.stdout + p.stderr


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws", "skopeo")


@pytest.fixture
def aws(bare_registry):
    return AwsPublic(bare_registry)


@pytest.fixture
def published(bare_registry, aws, tmp_path):
    """A public and a private repository, each with the same image pushed by
    skopeo after an ECR Public login. Returns (manifest digest, layout)."""
    reg = bare_registry
    aws("create-repository", "--repository-name", PUBLIC,
        "--catalog-data", json.dumps({"description": "hello", "operatingSystems": ["Linux"]}))
    aws.ecr("create-repository", "--repository-name", PRIVATE)
    authfile = tmp_path / "push-auth.json"
    aws.pipe_login(["skopeo", "login", "--authfile", authfile, "--username", "AWS",
                    "--password-stdin", "--tls-verify=false", reg.host])
    src = Layout(tmp_path / "src")
    desc, _ = random_image(src, make_rng(), "v1", nlayers=2)
    for repo in (PUBLIC, PRIVATE):
        run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
             "--dest-authfile", authfile, "oci:%s:v1" % src.path,
             "docker://%s/%s:v1" % (reg.host, repo)], registry=reg)
    return desc["digest"], src


def empty_auth_file(tmp_path):
    path = tmp_path / "empty-auth.json"
    path.write_text("{}")
    return path


def assert_unauthorized(p):
    out = (p.stdout + p.stderr).decode(errors="replace") if isinstance(p.stdout, bytes) \
        else p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "unauthorized" in out.lower() or "401" in out, out


# ---------------------------------------------------------------- the API


def test_repositories_and_catalog_data(bare_registry, aws):
    reg = bare_registry
    catalog = {
        "description": "A tiny image",
        "architectures": ["x86-64", "ARM 64"],
        "operatingSystems": ["Linux"],
        "aboutText": "# hello",
        "usageText": "pull it",
    }
    out = aws("create-repository", "--repository-name", PUBLIC,
              "--catalog-data", json.dumps(catalog), "--tags", "Key=team,Value=kura")
    repo = out["repository"]
    assert repo["repositoryName"] == PUBLIC
    assert repo["registryId"] == reg.account_id
    assert repo["repositoryArn"] == "arn:aws:ecr-public::%s:repository/%s" % (reg.account_id, PUBLIC)
    assert repo["repositoryUri"] == "%s/%s" % (reg.host, PUBLIC)
    assert isinstance(repo["createdAt"], (int, float))
    assert out["catalogData"] == dict(catalog, marketplaceCertified=False)
    aws("create-repository", "--repository-name", PUBLIC,
        expect_error="RepositoryAlreadyExistsException")
    aws("create-repository", "--repository-name", "Bad Name",
        expect_error="InvalidParameterException")

    aws("create-repository", "--repository-name", "pub/second")
    aws.ecr("create-repository", "--repository-name", PRIVATE)
    listed = aws("describe-repositories")["repositories"]
    assert [r["repositoryName"] for r in listed] == [PUBLIC, "pub/second"], listed
    one = aws("describe-repositories", "--repository-names", PUBLIC)["repositories"]
    assert one == [repo]
    aws("describe-repositories", "--repository-names", PRIVATE,
        expect_error="RepositoryNotFoundException")
    # The CLI pages with maxResults=1 and follows nextToken.
    paged = aws("describe-repositories", "--page-size", "1")["repositories"]
    assert [r["repositoryName"] for r in paged] == [PUBLIC, "pub/second"]
    # Private ECR sees all three as repositories of the registry.
    private = aws.ecr("describe-repositories")["repositories"]
    assert sorted(r["repositoryName"] for r in private) == sorted([PUBLIC, "pub/second", PRIVATE])

    got = aws("get-repository-catalog-data", "--repository-name", PUBLIC)["catalogData"]
    assert got == dict(catalog, marketplaceCertified=False)
    put = aws("put-repository-catalog-data", "--repository-name", PUBLIC,
              "--catalog-data", json.dumps({"description": "replaced"}))["catalogData"]
    assert put == {"description": "replaced", "marketplaceCertified": False}
    assert aws("get-repository-catalog-data", "--repository-name", PUBLIC)["catalogData"] == put
    aws("get-repository-catalog-data", "--repository-name", "pub/none",
        expect_error="RepositoryNotFoundException")

    regs = aws("describe-registries")["registries"]
    assert regs[0]["registryId"] == reg.account_id
    aws("put-registry-catalog-data", "--display-name", "Kura e2e")
    assert aws("get-registry-catalog-data")["registryCatalogData"] == {"displayName": "Kura e2e"}

    aws("delete-repository", "--repository-name", "pub/second")
    aws("delete-repository", "--repository-name", "pub/second",
        expect_error="RepositoryNotFoundException")
    assert [r["repositoryName"] for r in aws("describe-repositories")["repositories"]] == [PUBLIC]


def test_get_login_password_and_delete_needs_force(bare_registry, aws, published):
    reg = bare_registry
    p = subprocess.run(["aws", "ecr-public", "get-login-password", "--endpoint-url", reg.url],
                       env=aws.env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    password = p.stdout.strip()
    assert password and ":" not in password
    r = requests.get(reg.url + "/v2/", auth=("AWS", password), timeout=30)
    assert r.status_code == 200, r.text

    aws("delete-repository", "--repository-name", PUBLIC, expect_error="RepositoryNotEmptyException")
    out = aws("delete-repository", "--repository-name", PUBLIC, "--force")
    assert out["repository"]["repositoryName"] == PUBLIC
    # Gone for both APIs, and no longer readable anonymously.
    aws.ecr("describe-repositories", "--repository-names", PUBLIC,
            expect_error="RepositoryNotFoundException")
    r = requests.get("%s/v2/%s/manifests/v1" % (reg.url, PUBLIC), timeout=30)
    assert r.status_code == 401, r.text


# ---------------------------------------------------------------- anonymous pulls


def test_anonymous_http_reads(bare_registry, published):
    reg = bare_registry
    digest, src = published
    r = requests.get("%s/v2/%s/manifests/v1" % (reg.url, PUBLIC), headers={"Accept": ACCEPT},
                     timeout=30)
    assert r.status_code == 200, r.text
    assert r.content == src.blob(digest)
    layer = json.loads(r.content)["layers"][0]["digest"]
    r = requests.get("%s/v2/%s/blobs/%s" % (reg.url, PUBLIC, layer), timeout=30)
    assert r.status_code == 200 and r.content == src.blob(layer)
    assert requests.get("%s/v2/%s/tags/list" % (reg.url, PUBLIC), timeout=30).json()["tags"] == ["v1"]
    # Private: 401 with the token service's challenge.
    r = requests.get("%s/v2/%s/manifests/v1" % (reg.url, PRIVATE), headers={"Accept": ACCEPT},
                     timeout=30)
    assert r.status_code == 401, r.text
    assert r.headers["WWW-Authenticate"].startswith("Bearer realm=")
    # Anonymous writes to the public repository are refused.
    r = requests.post("%s/v2/%s/blobs/uploads/" % (reg.url, PUBLIC), timeout=30)
    assert r.status_code == 401, r.text
    r = requests.put("%s/v2/%s/manifests/v2" % (reg.url, PUBLIC), data=src.blob(digest),
                     headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                     timeout=30)
    assert r.status_code == 401, r.text


def test_skopeo_anonymous_pull(bare_registry, published, tmp_path):
    reg = bare_registry
    digest, src = published
    out = run(["skopeo", "inspect", "--raw", "--no-creds", "--tls-verify=false",
               "docker://%s/%s:v1" % (reg.host, PUBLIC)], registry=reg)
    assert out.stdout == src.blob(digest)
    run(["skopeo", "copy", "--preserve-digests", "--src-no-creds", "--src-tls-verify=false",
         "docker://%s/%s:v1" % (reg.host, PUBLIC), "oci:%s:v1" % (tmp_path / "dst")], registry=reg)
    dst = Layout(tmp_path / "dst")
    assert dst.resolve("v1")["digest"] == digest
    for d, _ in src.walk(digest):
        assert dst.blob(d) == src.blob(d)
    out = run(["skopeo", "list-tags", "--no-creds", "--tls-verify=false",
               "docker://%s/%s" % (reg.host, PUBLIC)], registry=reg)
    assert json.loads(out.stdout)["Tags"] == ["v1"]

    # The same, for the private repository: 401.
    assert_unauthorized(run(["skopeo", "inspect", "--raw", "--no-creds", "--tls-verify=false",
                             "docker://%s/%s:v1" % (reg.host, PRIVATE)], check=False))
    assert_unauthorized(run(["skopeo", "copy", "--src-no-creds", "--src-tls-verify=false",
                             "docker://%s/%s:v1" % (reg.host, PRIVATE),
                             "oci:%s:v1" % (tmp_path / "nope")], check=False))
    # And an anonymous push to the public repository fails.
    p = run(["skopeo", "copy", "--dest-no-creds", "--dest-tls-verify=false",
             "oci:%s:v1" % src.path, "docker://%s/%s:anon" % (reg.host, PUBLIC)], check=False)
    assert_unauthorized(p)


def test_podman_anonymous_pull(bare_registry, published, tmp_path, container_store):
    require_tool("podman")
    reg = bare_registry
    digest, _ = published
    env = {"REGISTRY_AUTH_FILE": str(empty_auth_file(tmp_path))}
    p = podman_cmd(container_store())
    run(p + ["pull", "--tls-verify=false", "%s/%s:v1" % (reg.host, PUBLIC)], registry=reg, env=env)
    out = run(p + ["image", "inspect", "%s/%s:v1" % (reg.host, PUBLIC)], registry=reg, env=env)
    info = json.loads(out.stdout)[0]
    assert info["Digest"] == digest, info["Digest"]
    assert_unauthorized(run(p + ["pull", "--tls-verify=false", "%s/%s:v1" % (reg.host, PRIVATE)],
                            env=env, check=False))


def docker_cli(tmp_path):
    require_tool("docker")
    docker = "docker"
    cfg = tmp_path / "docker-config"
    cfg.mkdir(exist_ok=True)
    env = {"DOCKER_CONFIG": str(cfg), "DOCKER_HOST": "unix://%s" % (tmp_path / "no-docker.sock")}
    return lambda *args: run([docker, *args], env=env, check=False)


def test_docker_cli_anonymous_private_is_refused(bare_registry, published, tmp_path):
    docker = docker_cli(tmp_path)
    p = docker("manifest", "inspect", "--insecure", "%s/%s:v1" % (bare_registry.host, PRIVATE))
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode != 0, out
    assert "no basic auth credentials" in out or "unauthorized" in out.lower() or "401" in out, out


def test_docker_cli_anonymous_pull(bare_registry, published, tmp_path):
    digest, src = published
    docker = docker_cli(tmp_path)
    p = docker("manifest", "inspect", "--insecure", "%s/%s:v1" % (bare_registry.host, PUBLIC))
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode == 0, out
    shown = json.loads(p.stdout)
    assert shown["config"]["digest"] == json.loads(src.blob(digest))["config"]["digest"]
