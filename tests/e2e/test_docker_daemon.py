"""The seeds' own flow with a real docker daemon: `aws ecr get-login-password |
docker login`, `docker build`, `tag`, `push`, `pull` — and what docker shows
when the registry refuses (an immutable tag, a missing repository, a wrong
password).
"""
import json
import os
import re
import shlex
import subprocess

import pytest

from dockerd_util import dockerd  # noqa: F401 (fixture)

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no ECR API",
)


def aws(registry, *args):
    p = subprocess.run(["aws", "ecr", *args, "--endpoint-url", registry.url, "--output", "json"],
                       env=registry.aws_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "aws ecr %s: %s\n%s" % (" ".join(args), p.stderr, registry.log()[-3000:])
    return json.loads(p.stdout) if p.stdout.strip() else None


def login(registry, dockerd):
    """`aws ecr get-login-password | docker login --username AWS --password-stdin <host>`."""
    env = dict(registry.aws_env())
    env.update(dockerd.env())
    line = "aws ecr get-login-password --endpoint-url %s | %s login --username AWS --password-stdin %s" % (
        shlex.quote(registry.url), shlex.quote(dockerd.docker), shlex.quote(registry.host))
    p = subprocess.run(["sh", "-c", line], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Login Succeeded" in p.stdout + p.stderr, p.stdout + p.stderr


def build(dockerd, ctx, tag, files):
    """`docker build` of a FROM-scratch image with one layer per file."""
    ctx.mkdir(parents=True, exist_ok=True)
    lines = ["FROM scratch"]
    for name, content in files.items():
        (ctx / name).write_bytes(content)
        lines.append("COPY %s /%s" % (name, name))
    lines.append('LABEL org.opencontainers.image.title="kura e2e"')
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    dockerd("build", "-t", tag, str(ctx))


def pushed_digest(output):
    m = re.search(r"digest: (sha256:[0-9a-f]{64}) size: \d+", output)
    assert m, output
    return m.group(1)


def read_file(dockerd, image, path):
    """A file of an image, through `docker create` + `docker cp` (nothing runs)."""
    cid = dockerd("create", image, "/nothing").stdout.strip()
    try:
        return dockerd("cp", "%s:%s" % (cid, path), "-").stdout  # a tar stream
    finally:
        dockerd("rm", cid)


def test_login_build_tag_push_pull(bare_registry, dockerd, tmp_path):
    reg = bare_registry
    aws(reg, "create-repository", "--repository-name", "team/hello")
    login(reg, dockerd)
    a, b = os.urandom(200_000), b"hello from kura\n"
    build(dockerd, tmp_path / "ctx", "kura-e2e/hello:local", {"data.bin": a, "hello.txt": b})
    remote = "%s/team/hello:v1" % reg.host
    dockerd("tag", "kura-e2e/hello:local", remote)
    out = dockerd("push", remote)
    digest = pushed_digest(out.stdout)

    # The registry has the image under the tag, with docker's manifest digest.
    detail = aws(reg, "describe-images", "--repository-name", "team/hello")["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in detail] == [(digest, ["v1"])]
    assert detail[0]["imageManifestMediaType"] == "application/vnd.docker.distribution.manifest.v2+json"

    # A second push sends no layer again.
    again = dockerd("push", remote).stdout
    assert "Layer already exists" in again and pushed_digest(again) == digest

    # Gone locally, pulled back by tag and by digest, byte for byte.
    dockerd("rmi", remote, "kura-e2e/hello:local")
    assert dockerd("image", "inspect", remote, check=False).returncode != 0
    pulled = dockerd("pull", remote).stdout
    assert digest in pulled
    assert b.decode() in read_file(dockerd, remote, "/hello.txt")
    by_digest = "%s/team/hello@%s" % (reg.host, digest)
    dockerd("pull", by_digest)
    inspect = json.loads(dockerd("image", "inspect", by_digest).stdout)[0]
    assert inspect["Config"]["Labels"]["org.opencontainers.image.title"] == "kura e2e"
    assert len(inspect["RootFS"]["Layers"]) == 2
    dockerd("rmi", "-f", remote, by_digest)


def test_what_docker_shows_when_the_registry_refuses(bare_registry, dockerd, tmp_path):
    reg = bare_registry
    aws(reg, "create-repository", "--repository-name", "team/locked", "--image-tag-mutability", "IMMUTABLE")

    # A wrong password: docker login fails and stores nothing.
    p = dockerd("login", "--username", "AWS", "--password-stdin", reg.host, input="not-a-token",
                check=False)
    assert p.returncode != 0 and re.search(r"401|[Uu]nauthorized", p.stderr), p.stderr
    cfg = os.path.join(dockerd.config, "config.json")
    if os.path.exists(cfg):
        with open(cfg) as f:
            assert reg.host not in json.load(f).get("auths", {})

    login(reg, dockerd)
    build(dockerd, tmp_path / "one", "kura-e2e/locked:one", {"a.txt": b"one\n"})
    build(dockerd, tmp_path / "two", "kura-e2e/locked:two", {"a.txt": b"two\n"})
    remote = "%s/team/locked:v1" % reg.host
    dockerd("tag", "kura-e2e/locked:one", remote)
    first = pushed_digest(dockerd("push", remote).stdout)
    # The same tag on other content: refused by the immutable repository.
    dockerd("tag", "kura-e2e/locked:two", remote)
    p = dockerd("push", remote, check=False)
    assert p.returncode != 0 and "immutable" in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
    tags = aws(reg, "describe-images", "--repository-name", "team/locked")["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"]) for d in tags] == [(first, ["v1"])]

    # No repository and no creation template: docker reports the name unknown and nothing is created.
    missing = "%s/team/missing:v1" % reg.host
    dockerd("tag", "kura-e2e/locked:one", missing)
    p = dockerd("push", missing, check=False)
    assert p.returncode != 0 and re.search(r"name unknown|does not exist", p.stdout + p.stderr), p.stdout + p.stderr
    names = [r["repositoryName"] for r in aws(reg, "describe-repositories")["repositories"]]
    assert names == ["team/locked"]
    dockerd("rmi", "-f", remote, missing, "kura-e2e/locked:one", "kura-e2e/locked:two")
