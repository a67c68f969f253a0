"""podman against the registry: pull an image that buildah pushed, push it back
under other names, and push a multi-arch manifest list."""
import json
import os

import pytest

from helpers import RegistryAPI, container_store, buildah_cmd, image_files, podman_cmd, podman_login, require_tool, run  # noqa: F401 (container_store is a fixture)
from images import INDEX_TYPES, make_rng, random_bytes


@pytest.fixture(autouse=True)
def _tools():
    require_tool("podman", "buildah")


def buildah_image(b, workdir, rng, name, arch="amd64"):
    """A one-layer scratch image with one random file; returns {path: bytes}."""
    data = random_bytes(rng, rng.randint(100_000, 500_000))
    src = os.path.join(workdir, name + ".bin")
    with open(src, "wb") as f:
        f.write(data)
    ctr = run(b + ["from", "scratch"]).stdout.decode().strip()
    run(b + ["copy", ctr, src, "/srv/%s.bin" % name])
    run(b + ["config", "--arch", arch, "--os", "linux", "--label", "kura.e2e=%x" % rng.getrandbits(64), ctr])
    run(b + ["commit", ctr, "localhost/%s:latest" % name])
    run(b + ["rm", ctr])
    return {"srv/%s.bin" % name: data}


def test_pull_and_repush(registry, tmp_path, container_store):
    rng = make_rng()
    work = tmp_path / "work"
    work.mkdir()
    b = buildah_cmd(container_store())
    files = buildah_image(b, str(work), rng, "app")
    # podman's own fresh storage; its login (a private auth file) serves buildah too.
    p = podman_cmd(container_store())
    auth = podman_login(p, registry, tmp_path / "auth.json")
    run(b + ["push", "--tls-verify=false", *auth, "localhost/app:latest",
             "docker://%s/podman/app:v1" % registry.host], registry=registry)

    api = RegistryAPI(registry)
    _, digest, _ = api.manifest_bytes("podman/app", "v1")

    # Pull into podman's storage.
    src = "%s/podman/app:v1" % registry.host
    run(p + ["pull", "--tls-verify=false", *auth, src], registry=registry)
    info = json.loads(run(p + ["image", "inspect", src]).stdout)[0]
    assert info["Digest"] == digest, "podman recorded %s, registry serves %s" % (info["Digest"], digest)
    assert "%s/podman/app@%s" % (registry.host, digest) in info["RepoDigests"]

    # Push it again: another tag in the same repository, and another repository.
    run(p + ["push", "--tls-verify=false", *auth, src, "docker://%s/podman/app:v2" % registry.host], registry=registry)
    run(p + ["tag", src, "%s/podman/mirror/app:v3" % registry.host])
    run(p + ["push", "--tls-verify=false", *auth, "%s/podman/mirror/app:v3" % registry.host], registry=registry)

    assert sorted(api.tags("podman/app")) == ["v1", "v2"]
    assert api.tags("podman/mirror/app") == ["v3"]
    for repo, tag in (("podman/app", "v2"), ("podman/mirror/app", "v3")):
        _, d, _ = api.manifest_bytes(repo, tag)
        assert d == digest, "%s:%s has digest %s, expected the pulled %s" % (repo, tag, d, digest)
        served = image_files(api, repo, tag)
        for path, data in files.items():
            assert served.get(path) == data, "%s differs in %s:%s" % (path, repo, tag)

    # And pull by digest from the second repository into yet another store.
    p2 = podman_cmd(container_store())
    by_digest = "%s/podman/mirror/app@%s" % (registry.host, digest)
    run(p2 + ["pull", "--tls-verify=false", *auth, by_digest], registry=registry)
    info2 = json.loads(run(p2 + ["image", "inspect", by_digest]).stdout)[0]
    assert info2["Id"] == info["Id"], "image config differs after a second round trip"


def test_manifest_list_push(registry, tmp_path, container_store):
    rng = make_rng()
    work = tmp_path / "work"
    work.mkdir()
    store = container_store()  # shared by buildah and podman
    b = buildah_cmd(store)
    p = podman_cmd(store)
    files = {}
    for arch in ("amd64", "arm64"):
        files[arch] = buildah_image(b, str(work), rng, "img-" + arch, arch=arch)

    run(p + ["manifest", "create", "localhost/multi:latest"])
    for arch in ("amd64", "arm64"):
        run(p + ["manifest", "add", "localhost/multi:latest", "containers-storage:localhost/img-%s:latest" % arch])
    auth = podman_login(p, registry, tmp_path / "auth.json")
    run(p + ["manifest", "push", "--all", "--tls-verify=false", *auth, "localhost/multi:latest",
             "docker://%s/podman/multi:v1" % registry.host], registry=registry)

    api = RegistryAPI(registry)
    body, index_digest, ctype = api.manifest_bytes("podman/multi", "v1")
    assert ctype in INDEX_TYPES
    index = json.loads(body)
    arches = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
    assert set(arches) == {"amd64", "arm64"}
    api.check_tree("podman/multi", "v1")
    for arch, digest in arches.items():
        served = image_files(api, "podman/multi", digest)
        for path, data in files[arch].items():
            assert served.get(path) == data

    # podman picks the arm64 child out of the index.
    p2 = podman_cmd(container_store())
    ref = "%s/podman/multi:v1" % registry.host
    run(p2 + ["pull", "--tls-verify=false", *auth, "--arch", "arm64", ref], registry=registry)
    info = json.loads(run(p2 + ["image", "inspect", ref]).stdout)[0]
    # podman records the digest it pulled by (the index's) as Digest, and both
    # the index and the chosen child in RepoDigests.
    assert info["Digest"] in (index_digest, arches["arm64"])
    repo_digests = {r.rsplit("@", 1)[1] for r in info["RepoDigests"]}
    assert arches["arm64"] in repo_digests and arches["amd64"] not in repo_digests
    assert info["Architecture"] == "arm64"
    child = json.loads(api.manifest_bytes("podman/multi", arches["arm64"])[0])
    assert "sha256:" + info["Id"] == child["config"]["digest"], "podman pulled the wrong child"
