"""buildah against the registry: build from scratch, push, pull back into fresh
storage and read the files out of the mounted image."""
import json
import os

import pytest

from helpers import RegistryAPI, container_store, buildah_cmd, creds, image_files, require_tool, run  # noqa: F401 (container_store is a fixture)
from images import DOCKER_MANIFEST, MT_MANIFEST, make_rng, random_bytes


@pytest.fixture(autouse=True)
def _buildah():
    require_tool("buildah")


def build_two_layers(b, workdir, rng, name, fmt="oci"):
    """Commit a scratch image with two layers (one file each); returns {path: bytes}."""
    files = {
        "payload-1.bin": random_bytes(rng, rng.randint(50_000, 400_000)),
        "opt/kura/payload-2.bin": random_bytes(rng, rng.randint(50_000, 400_000)),
    }
    for p, data in files.items():
        with open(os.path.join(workdir, os.path.basename(p)), "wb") as f:
            f.write(data)
    ctr = run(b + ["from", "scratch"]).stdout.decode().strip()
    run(b + ["copy", ctr, os.path.join(workdir, "payload-1.bin"), "/payload-1.bin"])
    run(b + ["config", "--label", "kura.e2e=%x" % rng.getrandbits(64), ctr])
    run(b + ["commit", "--format", fmt, ctr, "localhost/%s-base:latest" % name])
    ctr2 = run(b + ["from", "localhost/%s-base:latest" % name]).stdout.decode().strip()
    run(b + ["copy", ctr2, os.path.join(workdir, "payload-2.bin"), "/opt/kura/payload-2.bin"])
    run(b + ["commit", "--format", fmt, ctr2, "localhost/%s:latest" % name])
    run(b + ["rm", ctr, ctr2])
    return files


def push(b, registry, image, dest, workdir):
    digestfile = os.path.join(workdir, "digest")
    run(b + ["push", "--tls-verify=false", "--creds", creds(registry),
             "--digestfile", digestfile, image,
             "docker://%s/%s" % (registry.host, dest)], registry=registry)
    with open(digestfile) as f:
        return f.read().strip()


def pull_and_read(registry, store, ref, files):
    """Pull ref into fresh storage, mount it, and compare files; returns the
    image's manifest digest as buildah recorded it."""
    b = buildah_cmd(store)
    run(b + ["pull", "--tls-verify=false", "--creds", creds(registry), ref], registry=registry)
    ctr = run(b + ["from", "--tls-verify=false", "--creds", creds(registry), ref],
              registry=registry).stdout.decode().strip()
    mnt = run(b + ["mount", ctr]).stdout.decode().strip()
    try:
        for path, data in files.items():
            with open(os.path.join(mnt, path), "rb") as f:
                assert f.read() == data, "%s differs in the pulled image" % path
    finally:
        run(b + ["umount", ctr], check=False)
    info = json.loads(run(b + ["inspect", "--type", "image", ref]).stdout)
    return info["FromImageDigest"]


@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_build_push_pull(registry, tmp_path, container_store, fmt):
    rng = make_rng()
    work = tmp_path / "work"
    work.mkdir()
    b = buildah_cmd(container_store())
    files = build_two_layers(b, str(work), rng, "app", fmt=fmt)

    repo = "buildah/%s/app" % fmt
    digest = push(b, registry, "localhost/app:latest", repo + ":v1", str(work))

    api = RegistryAPI(registry)
    body, served_digest, ctype = api.manifest_bytes(repo, "v1")
    assert served_digest == digest, "registry digest %s != buildah's %s" % (served_digest, digest)
    assert ctype == (MT_MANIFEST if fmt == "oci" else DOCKER_MANIFEST)
    assert len(json.loads(body)["layers"]) == 2
    served_files = image_files(api, repo, "v1")
    for path, data in files.items():
        assert served_files.get(path) == data, "%s differs in the registry's layers" % path
    assert "v1" in api.tags(repo)

    pulled = pull_and_read(registry, container_store(), "%s/%s:v1" % (registry.host, repo), files)
    assert pulled == digest
