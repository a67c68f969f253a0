"""The docker CLI without a daemon: `docker login` and `docker manifest` against the registry.

The child images are pushed with plain HTTP requests (blobs_util.Client); the CLI
then builds, annotates, pushes and inspects a multi-platform index from them.
"""
import json
import os
import re
import subprocess

import pytest

from blobs_util import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Client,
    expect,
    need_tool,
    sha256,
)


@pytest.fixture
def docker(registry, workdir):
    """The docker CLI with a private DOCKER_CONFIG (not logged in: see `login`)."""
    binary = need_tool("docker")
    cfg = workdir / "docker-config"
    cfg.mkdir()
    env = dict(os.environ)
    env["DOCKER_CONFIG"] = str(cfg)
    # No daemon here: make sure the CLI never talks to one by accident.
    env["DOCKER_HOST"] = "unix://" + str(workdir / "no-docker.sock")

    def run(*args, check=True, input=None):
        stdin = {"input": input} if input is not None else {"stdin": subprocess.DEVNULL}
        p = subprocess.run([binary, *args], env=env, capture_output=True, text=True,
                           timeout=120, **stdin)
        if check:
            assert p.returncode == 0, (
                f"docker {' '.join(args)} -> exit {p.returncode}\n"
                f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    run.config_dir = cfg

    def login():
        p = run("login", registry.host, "-u", "AWS", "--password-stdin", input=registry.token)
        assert "Login Succeeded" in p.stdout + p.stderr, p.stdout + p.stderr
        return p

    run.login = login
    version = subprocess.run([binary, "version", "--format", "{{.Client.Version}}"], env=env,
                             capture_output=True, text=True, timeout=60).stdout.strip()
    run.major = int(re.match(r"\d+", version).group()) if re.match(r"\d+", version) else 0
    return run


def test_docker_login(registry, docker):
    # A password that is not a registry token is refused.
    p = docker("login", registry.host, "-u", "AWS", "--password-stdin", input="not-a-token",
               check=False)
    assert p.returncode != 0, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert "401" in out or "unauthorized" in out.lower(), out
    assert "Login Succeeded" not in p.stdout + p.stderr
    docker.login()
    with open(docker.config_dir / "config.json") as f:
        cfg = json.load(f)
    assert registry.host in cfg["auths"]
    p = docker("logout", registry.host)
    with open(docker.config_dir / "config.json") as f:
        assert registry.host not in json.load(f).get("auths", {})


@pytest.mark.parametrize("flavor", ["oci", "docker"])
def test_docker_manifest_create_push_inspect(registry, docker, flavor):
    if flavor == "oci" and docker.major < 21:
        pytest.skip("docker CLI 20.10 (Debian's docker.io) cannot use OCI manifests in "
                    "`docker manifest create`")
    docker.login()
    c = Client(registry.url, auth=registry.auth)
    is_docker = flavor == "docker"
    a, a_size, _ = c.push_image("dm/a", "v1", arch="amd64", docker=is_docker, seed=101)
    b, b_size, _ = c.push_image("dm/b", "v1", arch="arm64", docker=is_docker, seed=102)
    h = registry.host
    p = docker("manifest", "create", "--insecure", f"{h}/dm/multi:1", f"{h}/dm/a@{a}",
               f"{h}/dm/b@{b}")
    assert "Created manifest list" in p.stdout, p.stdout + p.stderr
    docker("manifest", "annotate", f"{h}/dm/multi:1", f"{h}/dm/b@{b}",
           "--os", "linux", "--arch", "arm64", "--variant", "v8")
    p = docker("manifest", "push", "--insecure", f"{h}/dm/multi:1")
    m = re.findall(r"sha256:[0-9a-f]{64}", p.stdout)
    assert m, p.stdout + p.stderr
    index_digest = m[-1]

    # The registry has the index under the tag, byte-for-byte with that digest.
    g = c.get_manifest("dm/multi", "1")
    expect(g, 200)
    assert sha256(g.content) == index_digest
    assert g.headers.get("Docker-Content-Digest") == index_digest
    want_index_type = DOCKER_LIST if is_docker else OCI_INDEX
    want_child_type = DOCKER_MANIFEST if is_docker else OCI_MANIFEST
    assert g.headers.get("Content-Type", "").split(";")[0] == want_index_type
    idx = g.json()
    assert idx["mediaType"] == want_index_type
    children = {m["digest"]: m for m in idx["manifests"]}
    assert set(children) == {a, b}
    assert children[a]["size"] == a_size and children[b]["size"] == b_size
    assert all(m["mediaType"] == want_child_type for m in idx["manifests"])
    # The CLI copied the children (and mounted their blobs) into dm/multi.
    for d in (a, b):
        assert c.get_manifest("dm/multi", d).status_code == 200
        for layer in c.get_manifest("dm/multi", d).json()["layers"]:
            assert c.head(f"/v2/dm/multi/blobs/{layer['digest']}").status_code == 200

    # docker manifest inspect reads it back.
    p = docker("manifest", "inspect", "--insecure", f"{h}/dm/multi:1")
    shown = json.loads(p.stdout)
    assert shown["mediaType"] == want_index_type
    got = {m["digest"]: m["platform"] for m in shown["manifests"]}
    assert set(got) == {a, b}
    assert got[a]["architecture"] == "amd64" and got[a]["os"] == "linux"
    assert got[b] == {"architecture": "arm64", "os": "linux", "variant": "v8"}

    # And a child by digest, through the index's repository.
    p = docker("manifest", "inspect", "--insecure", f"{h}/dm/multi@{b}")
    child = json.loads(p.stdout)
    assert child["mediaType"] == want_child_type
    assert child["config"]["digest"] == c.get_manifest("dm/b", b).json()["config"]["digest"]


def test_docker_manifest_inspect_missing(registry, docker):
    docker.login()
    p = docker("manifest", "inspect", "--insecure", f"{registry.host}/dm/none:1", check=False)
    assert p.returncode != 0
    assert "no such manifest" in (p.stdout + p.stderr).lower(), p.stdout + p.stderr
