"""umoci builds an image whose upper layers delete a file (whiteout) and replace
a directory (opaque whiteout); skopeo pushes it and pulls it back; umoci
unpacks the pulled copy and the deletions must still apply."""
import os
import shutil

import pytest

from helpers import RegistryAPI, creds, require_tool, run
from images import Layout, make_rng, random_bytes, tar_members


@pytest.fixture(autouse=True)
def _tools():
    require_tool("umoci", "skopeo")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def read_tree(root):
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    out[os.path.relpath(p, root)] = f.read()
    return out


def test_whiteout_and_opaque_roundtrip(registry, tmp_path):
    rng = make_rng()
    layout = str(tmp_path / "layout")
    image = layout + ":v1"
    run(["umoci", "init", "--layout", layout])
    run(["umoci", "new", "--image", image])

    # Layer 1: base files.
    base = {
        "etc/app/keep.conf": random_bytes(rng, 3000),
        "etc/app/gone.conf": random_bytes(rng, 3000),
        "opt/data/old-1.bin": random_bytes(rng, 200_000),
        "opt/data/sub/old-2.bin": random_bytes(rng, 50_000),
        "usr/lib/big.bin": random_bytes(rng, 2_000_000),
    }
    b1 = str(tmp_path / "b1")
    run(["umoci", "unpack", "--image", image, b1])
    for p, d in base.items():
        write(os.path.join(b1, "rootfs", p), d)
    run(["umoci", "repack", "--image", image, b1])
    shutil.rmtree(b1)

    # Layer 2: delete a file (umoci writes etc/app/.wh.gone.conf) and add one.
    b2 = str(tmp_path / "b2")
    run(["umoci", "unpack", "--image", image, b2])
    os.remove(os.path.join(b2, "rootfs", "etc/app/gone.conf"))
    added = {"etc/app/added.conf": random_bytes(rng, 5000)}
    write(os.path.join(b2, "rootfs", "etc/app/added.conf"), added["etc/app/added.conf"])
    run(["umoci", "repack", "--image", image, b2])
    shutil.rmtree(b2)

    # Layer 3: replace /opt/data wholesale (opt/data/.wh..wh..opq).
    newdata = {"new-1.bin": random_bytes(rng, 100_000), "nested/new-2.bin": random_bytes(rng, 1000)}
    src = str(tmp_path / "newdata")
    for p, d in newdata.items():
        write(os.path.join(src, p), d)
    run(["umoci", "insert", "--image", image, "--opaque", src, "/opt/data"])

    # The layout really has the whiteouts we mean to test.
    lay = Layout(layout)
    desc = lay.resolve("v1")
    manifest = lay.json_blob(desc["digest"])
    assert len(manifest["layers"]) == 3
    l2 = tar_members(lay.blob(manifest["layers"][1]["digest"]))
    l3 = tar_members(lay.blob(manifest["layers"][2]["digest"]))
    assert "etc/app/.wh.gone.conf" in l2, sorted(l2)
    assert "opt/data/.wh..wh..opq" in l3, sorted(l3)

    # Push, check what the registry serves, pull back.
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
         "--dest-creds", creds(registry),
         "oci:%s:v1" % layout, "docker://%s/umoci/whiteouts:v1" % registry.host], registry=registry)
    api = RegistryAPI(registry)
    served = api.check_tree("umoci/whiteouts", "v1")
    assert desc["digest"] in served and served[desc["digest"]] == lay.blob(desc["digest"])
    for d, _ in lay.walk(desc["digest"]):
        assert served[d] == lay.blob(d), "blob %s differs in the registry" % d

    back = str(tmp_path / "back")
    run(["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false",
         "--src-creds", creds(registry),
         "docker://%s/umoci/whiteouts:v1" % registry.host, "oci:%s:v1" % back], registry=registry)
    back_lay = Layout(back)
    assert back_lay.resolve("v1")["digest"] == desc["digest"]
    for d, _ in lay.walk(desc["digest"]):
        assert back_lay.blob(d) == lay.blob(d)

    bundle = str(tmp_path / "bundle")
    run(["umoci", "unpack", "--image", back + ":v1", bundle])
    rootfs = os.path.join(bundle, "rootfs")
    got = read_tree(rootfs)
    assert not os.path.exists(os.path.join(rootfs, "etc/app/gone.conf")), "whiteout not applied"
    assert not os.path.exists(os.path.join(rootfs, "opt/data/old-1.bin")), "opaque dir not applied"
    assert not os.path.exists(os.path.join(rootfs, "opt/data/sub")), "opaque dir not applied"
    expected = {
        "etc/app/keep.conf": base["etc/app/keep.conf"],
        "usr/lib/big.bin": base["usr/lib/big.bin"],
        **added,
        **{"opt/data/" + p: d for p, d in newdata.items()},
    }
    assert got == expected, "unpacked rootfs differs: extra %s, missing %s" % (
        sorted(set(got) - set(expected)), sorted(set(expected) - set(got)))
