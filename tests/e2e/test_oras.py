"""Push and pull with the ORAS Python client (oras-py)."""
import json
import os

import pytest

from blobs_util import (
    EMPTY_DIGEST,
    OCI_MANIFEST,
    Client,
    describe,
    expect,
    rand_bytes,
    sha256,
)

oras_client = pytest.importorskip("oras.client")
import oras.oci  # noqa: E402


@pytest.fixture
def oc(registry, workdir):
    """An oras-py client logged in to the registry (user AWS, the registry token as
    password; the login is saved to a private docker config). The Basic backend
    answers Kura's `Basic` challenge; oras-py's default backend only speaks Bearer."""
    client = oras_client.OrasClient(hostname=registry.host, insecure=True, auth_backend="basic")
    cfg = workdir / "oras-docker-config.json"
    out = client.login(username="AWS", password=registry.token, hostname=registry.host,
                       config_path=str(cfg))
    assert out.get("Status") == "Login Succeeded", out
    with open(cfg) as f:
        assert registry.host in json.load(f)["auths"]
    return client


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_push_pull_files(registry, oc, workdir, monkeypatch):
    src = workdir / "src"
    src.mkdir()
    monkeypatch.chdir(src)  # oras-py wants pushed paths under the working directory
    files = {
        "one.bin": rand_bytes(3 * 1024 * 1024 + 17, seed=11),
        "two.bin": rand_bytes(1024 * 1024, seed=12),
        "small.txt": b"hello kura\n",
    }
    for name, data in files.items():
        write(name, data)
    target = f"{registry.host}/oras/files:v1"
    r = oc.push(files=list(files), target=target, quiet=True)
    assert r.status_code == 201, describe(r)

    out = workdir / "out"
    pulled = oc.pull(target=target, outdir=str(out))
    assert sorted(os.path.basename(p) for p in pulled) == sorted(files)
    for name, data in files.items():
        assert read(out / name) == data, f"{name} differs after pull"

    # The registry holds exactly what oras described.
    c = Client(registry.url, auth=registry.auth)
    g = c.get_manifest("oras/files", "v1")
    expect(g, 200)
    man = g.json()
    assert g.headers.get("Docker-Content-Digest") == sha256(g.content)
    layers = {l["annotations"]["org.opencontainers.image.title"]: l for l in man["layers"]}
    for name, data in files.items():
        assert layers[name]["digest"] == sha256(data)
        assert layers[name]["size"] == len(data)
        h = c.head(f"/v2/oras/files/blobs/{sha256(data)}")
        expect(h, 200)
        assert int(h.headers["Content-Length"]) == len(data)
    assert c.get("/v2/oras/files/tags/list").json()["tags"] == ["v1"]


def test_chunked_push(registry, oc, workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    data = rand_bytes(5 * 1024 * 1024 + 333, seed=13)
    write("big.bin", data)
    target = f"{registry.host}/oras/chunked:v1"
    # 1 MiB chunks: six PATCH requests, each with Content-Range, then PUT ?digest=.
    patches = []
    real = oc.do_request

    def spy(url, method="GET", *a, **kw):
        if method == "PATCH":
            patches.append((kw.get("headers") or {}).get("Content-Range"))
        return real(url, method, *a, **kw)

    monkeypatch.setattr(oc, "do_request", spy)
    r = oc.push(files=["big.bin"], target=target, do_chunked=True,
                  chunk_size=1024 * 1024, quiet=True)
    assert r.status_code == 201, describe(r)
    mib = 1024 * 1024
    assert patches == [f"{i * mib}-{min((i + 1) * mib, len(data)) - 1}" for i in range(6)]
    out = workdir / "out"
    oc.pull(target=target, outdir=str(out))
    assert read(out / "big.bin") == data
    c = Client(registry.url, auth=registry.auth)
    g = c.get_blob("oras/chunked", sha256(data))
    expect(g, 200)
    assert g.content == data
    # Pushing the same content again is a no-op on the blob (oras HEADs it first).
    r = oc.push(files=["big.bin"], target=f"{registry.host}/oras/chunked:v2",
                  do_chunked=True, chunk_size=1024 * 1024, quiet=True)
    assert r.status_code == 201, describe(r)
    assert sorted(c.get("/v2/oras/chunked/tags/list").json()["tags"]) == ["v1", "v2"]


def test_custom_config_media_type(registry, oc, workdir, monkeypatch):
    """The old-style artifact type: a custom config mediaType (oras push --config x:type)."""
    monkeypatch.chdir(workdir)
    cfg = json.dumps({"kind": "kura-test", "n": 1}).encode()
    write("config.json", cfg)
    write("payload.dat", rand_bytes(200_000, seed=14))
    target = f"{registry.host}/oras/typed:1.0"
    r = oc.push(files=["payload.dat:application/vnd.kura.payload.v1"], target=target,
                  manifest_config="config.json:application/vnd.kura.config.v1+json",
                  manifest_annotations={"org.kura.purpose": "e2e"}, quiet=True)
    assert r.status_code == 201, describe(r)
    man = oc.get_manifest(target)
    assert man["config"]["mediaType"] == "application/vnd.kura.config.v1+json"
    assert man["config"]["digest"] == sha256(cfg)
    assert man["layers"][0]["mediaType"] == "application/vnd.kura.payload.v1"
    assert man["annotations"] == {"org.kura.purpose": "e2e"}
    c = Client(registry.url, auth=registry.auth)
    assert c.get_blob("oras/typed", sha256(cfg)).content == cfg
    out = workdir / "out"
    oc.pull(target=target, outdir=str(out))
    assert read(out / "payload.dat") == read(workdir / "payload.dat")


def test_artifact_type_and_subject(registry, oc, workdir, monkeypatch):
    """An OCI 1.1 artifact: `artifactType` with the empty config, attached to a subject."""
    monkeypatch.chdir(workdir)
    write("app.bin", rand_bytes(100_000, seed=15))
    subject_target = f"{registry.host}/oras/art:app"
    r = oc.push(files=["app.bin"], target=subject_target, quiet=True)
    assert r.status_code == 201, describe(r)
    subj_digest = r.headers["Docker-Content-Digest"]
    c = Client(registry.url, auth=registry.auth)
    subj = c.get_manifest("oras/art", "app")
    assert sha256(subj.content) == subj_digest

    # oras-py has no artifactType option, so build the manifest with its lower-level API.
    sbom = write("sbom.json", b'{"spdxVersion": "SPDX-2.3"}')
    layer = oras.oci.NewLayer(sbom, media_type="application/spdx+json")
    layer["annotations"] = {"org.opencontainers.image.title": "sbom.json"}
    container = oc.get_container(f"{registry.host}/oras/art:sbom")
    resp = oc.upload_blob(sbom, container, layer)
    assert resp.status_code in (200, 201), describe(resp)
    empty_cfg = write("empty.json", b"{}")
    conf = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_DIGEST, "size": 2}
    resp = oc.upload_blob(empty_cfg, container, conf)
    assert resp.status_code in (200, 201), describe(resp)
    manifest = oras.oci.NewManifest()
    manifest["mediaType"] = OCI_MANIFEST
    manifest["artifactType"] = "application/vnd.kura.sbom.v1"
    manifest["config"] = conf
    manifest["layers"] = [layer]
    manifest["subject"] = {"mediaType": OCI_MANIFEST, "digest": subj_digest,
                           "size": len(subj.content)}
    manifest["annotations"] = {"org.kura.kind": "sbom"}
    resp = oc.upload_manifest(manifest, container)
    assert resp.status_code == 201, describe(resp)
    art_digest = resp.headers["Docker-Content-Digest"]
    assert resp.headers.get("OCI-Subject") == subj_digest, describe(resp)

    got = oc.get_manifest(f"{registry.host}/oras/art:sbom")
    assert got["artifactType"] == "application/vnd.kura.sbom.v1"
    assert got["subject"]["digest"] == subj_digest
    out = workdir / "out"
    files = oc.pull(target=f"{registry.host}/oras/art:sbom", outdir=str(out))
    assert [os.path.basename(f) for f in files] == ["sbom.json"]
    assert read(out / "sbom.json") == b'{"spdxVersion": "SPDX-2.3"}'

    r = c.get(f"/v2/oras/art/referrers/{subj_digest}")
    expect(r, 200)
    refs = r.json()["manifests"]
    assert [(m["digest"], m["artifactType"]) for m in refs] == [
        (art_digest, "application/vnd.kura.sbom.v1")]
    assert refs[0]["annotations"] == {"org.kura.kind": "sbom"}


def test_pull_missing_tag_fails(registry, oc, workdir):
    with pytest.raises(ValueError) as e:
        oc.pull(target=f"{registry.host}/oras/none:nope", outdir=str(workdir / "out"))
    assert "Not Found" in str(e.value)
