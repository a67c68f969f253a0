"""skopeo against the registry: OCI layout -> registry -> OCI layout, byte for byte."""
import json

import pytest

from helpers import RegistryAPI, creds, require_tool, run
from images import (
    Layout,
    MT_INDEX,
    make_rng,
    random_image,
    random_layer,
    random_multiarch,
    tar_members,
)


@pytest.fixture(autouse=True)
def _skopeo():
    require_tool("skopeo")


def push(registry, layout, tag, dest, *extra, debug=False):
    return run(
        ["skopeo", *(["--debug"] if debug else []), "copy", "--preserve-digests",
         "--dest-tls-verify=false", "--dest-creds", creds(registry), *extra,
         "oci:%s:%s" % (layout.path, tag), "docker://%s/%s" % (registry.host, dest)],
        registry=registry,
    )


def pull(registry, src, layout_path, tag, *extra):
    run(
        ["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false",
         "--src-creds", creds(registry), *extra,
         "docker://%s/%s" % (registry.host, src), "oci:%s:%s" % (layout_path, tag)],
        registry=registry,
    )
    return Layout(layout_path)


def assert_same_tree(src, dst, digest):
    """Every blob reachable from digest is present and identical in both layouts."""
    for d, _ in src.walk(digest):
        assert dst.blob(d) == src.blob(d), "blob %s differs after round trip" % d


def test_roundtrip_multisegment_name(registry, tmp_path):
    rng = make_rng()
    src = Layout(tmp_path / "src")
    big, big_files = random_layer(rng, nfiles=1, min_size=6 << 20, max_size=6 << 20)
    small, small_files = random_layer(rng, nfiles=4)
    desc = src.add_image([small, big], tag="v1")

    push(registry, src, "v1", "team/app/api:v1")

    api = RegistryAPI(registry)
    served = api.check_tree("team/app/api", "v1")
    body, digest, ctype = api.manifest_bytes("team/app/api", "v1")
    assert digest == desc["digest"], "registry changed the manifest digest"
    assert body == src.blob(desc["digest"])
    for d, _ in src.walk(desc["digest"]):
        assert served[d] == src.blob(d)
    assert api.manifest_bytes("team/app/api", desc["digest"])[0] == body
    assert "v1" in api.tags("team/app/api")

    dst = pull(registry, "team/app/api:v1", tmp_path / "dst", "v1")
    assert dst.resolve("v1")["digest"] == desc["digest"]
    assert_same_tree(src, dst, desc["digest"])

    manifest = dst.json_blob(desc["digest"])
    got = {}
    for layer in manifest["layers"]:
        got.update({k: v for k, v in tar_members(dst.blob(layer["digest"])).items() if v is not None})
    for path, data in {**small_files, **big_files}.items():
        assert got.get(path) == data, "file %s differs after round trip" % path


def test_inspect_raw(registry, tmp_path):
    rng = make_rng()
    src = Layout(tmp_path / "src")
    desc, _ = random_image(src, rng, "v1")
    push(registry, src, "v1", "team/app/api:v1")

    ref = "docker://%s/team/app/api:v1" % registry.host
    opts = ["--tls-verify=false", "--creds", creds(registry)]
    raw = run(["skopeo", "inspect", "--raw", *opts, ref], registry=registry).stdout
    assert raw == src.blob(desc["digest"]), "skopeo inspect --raw differs from the pushed manifest"

    info = json.loads(run(["skopeo", "inspect", *opts, ref], registry=registry).stdout)
    assert info["Digest"] == desc["digest"]
    manifest = src.json_blob(desc["digest"])
    assert info["Layers"] == [l["digest"] for l in manifest["layers"]]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert "v1" in info["RepoTags"]

    cfg = run(["skopeo", "inspect", "--config", "--raw", *opts, ref], registry=registry).stdout
    assert cfg == src.blob(manifest["config"]["digest"])


def test_multiarch_index_all(registry, tmp_path):
    rng = make_rng()
    src = Layout(tmp_path / "src")
    idx, children = random_multiarch(src, rng, "multi")

    push(registry, src, "multi", "team/multi/arch:v1", "--all")

    api = RegistryAPI(registry)
    body, digest, ctype = api.manifest_bytes("team/multi/arch", "v1")
    assert digest == idx["digest"] and body == src.blob(idx["digest"])
    assert ctype == MT_INDEX
    served = api.check_tree("team/multi/arch", "v1")
    for d, _ in src.walk(idx["digest"]):
        assert served[d] == src.blob(d)

    dst = pull(registry, "team/multi/arch:v1", tmp_path / "dst", "multi", "--all")
    assert dst.resolve("multi")["digest"] == idx["digest"]
    got_children = [m["digest"] for m in dst.json_blob(idx["digest"])["manifests"]]
    assert got_children == [c["digest"] for c in children]
    assert_same_tree(src, dst, idx["digest"])

    # Without --all, skopeo picks one platform out of the index by digest.
    one = pull(registry, "team/multi/arch:v1", tmp_path / "one", "one",
               "--override-arch", "arm64", "--override-os", "linux")
    assert one.resolve("one")["digest"] == children[1]["digest"]


def test_cross_repo_mount(registry, tmp_path):
    rng = make_rng()
    src = Layout(tmp_path / "src")
    desc, _ = random_image(src, rng, "v1", nlayers=3)
    layers = [l["digest"] for l in src.json_blob(desc["digest"])["layers"]]

    push(registry, src, "v1", "team/app/api:v1")
    # skopeo's blob-info cache now knows the layers live in team/app/api, so
    # pushing them to another repository tries POST ...?mount=&from= first.
    p = push(registry, src, "v1", "team/other:v1", debug=True)
    log = p.stderr.decode(errors="replace")
    assert "Trying to mount" in log, "skopeo did not attempt a cross-repository mount:\n" + log[-3000:]
    mounted = log.count("... mount OK")
    assert mounted == len(layers), (
        "expected %d layers mounted (201), got %d:\n%s"
        % (len(layers), mounted, "\n".join(l for l in log.splitlines() if "mount" in l.lower())[-3000:])
    )

    api = RegistryAPI(registry)
    for d in layers:
        r = api.head_blob("team/other", d)
        assert r.status_code == 200, "mounted blob %s missing in team/other: %d" % (d, r.status_code)
        assert r.headers.get("Docker-Content-Digest") == d
        assert int(r.headers.get("Content-Length", -1)) == len(src.blob(d))
    api.check_tree("team/other", "v1")

    dst = pull(registry, "team/other:v1", tmp_path / "dst", "v1")
    assert dst.resolve("v1")["digest"] == desc["digest"]
    assert_same_tree(src, dst, desc["digest"])


def test_delete(registry, tmp_path):
    rng = make_rng()
    src = Layout(tmp_path / "src")
    desc, _ = random_image(src, rng, "v1")
    push(registry, src, "v1", "team/app/api:v1")
    push(registry, src, "v1", "team/keep:v1")

    api = RegistryAPI(registry)
    assert api.head_manifest("team/app/api", "v1").status_code == 200
    run(["skopeo", "delete", "--tls-verify=false", "--creds", creds(registry),
         "docker://%s/team/app/api:v1" % registry.host],
        registry=registry)

    for ref in (desc["digest"], "v1"):
        r = api.head_manifest("team/app/api", ref)
        assert r.status_code == 404, "manifest %s still served after delete: %d" % (ref, r.status_code)
    inspect = run(["skopeo", "inspect", "--raw", "--tls-verify=false", "--creds", creds(registry),
                   "docker://%s/team/app/api:v1" % registry.host], registry=registry, check=False)
    assert inspect.returncode != 0, "skopeo inspect still finds the deleted image"

    # The same content in another repository is untouched.
    api.check_tree("team/keep", "v1")
    dst = pull(registry, "team/keep:v1", tmp_path / "dst", "v1")
    assert_same_tree(src, dst, desc["digest"])
