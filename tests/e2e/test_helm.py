"""Helm charts as OCI artifacts: helm push / pull / show / template against the registry."""
import json
import os
import re
import subprocess

import pytest

from blobs_util import Client, OCI_MANIFEST, expect, need_tool, sha256

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"


@pytest.fixture
def helm(registry, workdir):
    """helm with private homes and registry config, logged in to the registry."""
    binary = need_tool("helm")
    home = workdir / "helm-home"
    env = dict(os.environ)
    env.update({
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "HELM_REGISTRY_CONFIG": str(home / "registry.json"),
    })

    def run(*args, check=True, input=None):
        p = subprocess.run([binary, *args], cwd=workdir, env=env, capture_output=True,
                           text=True, timeout=120, input=input)
        out = p.stdout + p.stderr
        if check:
            assert p.returncode == 0, f"helm {' '.join(args)} -> exit {p.returncode}\n{out}"
        return p.returncode, out

    _, out = run("registry", "login", registry.host, "--username", "AWS", "--password-stdin",
                 "--plain-http", input=registry.token)
    assert "Login Succeeded" in out, out
    with open(env["HELM_REGISTRY_CONFIG"]) as f:
        assert registry.host in json.load(f)["auths"]
    return run


def make_chart(helm, workdir, name, version):
    helm("create", name)
    chart_yaml = workdir / name / "Chart.yaml"
    text = chart_yaml.read_text()
    text = re.sub(r"(?m)^version: .*$", f"version: {version}", text)
    chart_yaml.write_text(text)
    pkg = workdir / "pkg"
    pkg.mkdir(exist_ok=True)
    helm("package", name, "-d", str(pkg))
    tgz = pkg / f"{name}-{version}.tgz"
    assert tgz.exists()
    return tgz


def pushed_digest(out):
    m = re.search(r"Digest: (sha256:[0-9a-f]{64})", out)
    assert m, "helm push printed no digest:\n" + out
    return m.group(1)


def test_helm_push_pull_roundtrip(registry, helm, workdir):
    tgz = make_chart(helm, workdir, "mychart", "0.1.0")
    _, out = helm("push", str(tgz), f"oci://{registry.host}/charts", "--plain-http")
    digest = pushed_digest(out)

    # What the registry stored: helm's manifest has no mediaType field.
    c = Client(registry.url, auth=registry.auth)
    g = c.get_manifest("charts/mychart", "0.1.0")
    expect(g, 200)
    assert sha256(g.content) == digest
    assert g.headers.get("Docker-Content-Digest") == digest
    assert g.headers.get("Content-Type", "").split(";")[0] == OCI_MANIFEST
    man = g.json()
    assert "mediaType" not in man
    assert man["config"]["mediaType"] == HELM_CONFIG
    assert [l["mediaType"] for l in man["layers"]] == [HELM_LAYER]
    chart_bytes = tgz.read_bytes()
    assert man["layers"][0]["digest"] == sha256(chart_bytes)
    assert man["layers"][0]["size"] == len(chart_bytes)
    assert man["annotations"]["org.opencontainers.image.version"] == "0.1.0"
    assert c.get("/v2/charts/mychart/tags/list").json()["tags"] == ["0.1.0"]

    # Pull by tag: byte-identical .tgz (helm pull -d needs an existing directory).
    out_dir = workdir / "pulled"
    out_dir.mkdir()
    _, out = helm("pull", f"oci://{registry.host}/charts/mychart", "--version", "0.1.0",
                  "--plain-http", "-d", str(out_dir))
    assert pushed_digest(out) == digest
    pulled = out_dir / "mychart-0.1.0.tgz"
    assert pulled.read_bytes() == chart_bytes

    # Pull by digest.
    by_digest = workdir / "by-digest"
    by_digest.mkdir()
    helm("pull", f"oci://{registry.host}/charts/mychart@{digest}", "--plain-http",
         "-d", str(by_digest))
    files = os.listdir(by_digest)
    assert len(files) == 1, files
    assert (by_digest / files[0]).read_bytes() == chart_bytes

    # helm show chart reads the config/chart from the registry.
    _, out = helm("show", "chart", f"oci://{registry.host}/charts/mychart",
                  "--version", "0.1.0", "--plain-http")
    assert re.search(r"(?m)^name: mychart$", out), out
    assert re.search(r"(?m)^version: 0\.1\.0$", out), out
    assert "apiVersion: v2" in out
    _, out = helm("show", "values", f"oci://{registry.host}/charts/mychart",
                  "--version", "0.1.0", "--plain-http")
    assert "replicaCount: 1" in out, out

    # And the chart renders straight from the registry.
    _, out = helm("template", "rel", f"oci://{registry.host}/charts/mychart",
                  "--version", "0.1.0", "--plain-http")
    assert "kind: Deployment" in out and "name: rel-mychart" in out, out[:2000]


def test_helm_versions_and_missing(registry, helm, workdir):
    first = make_chart(helm, workdir, "multi", "1.0.0")
    helm("push", str(first), f"oci://{registry.host}/charts", "--plain-http")
    second = make_chart(helm, workdir, "multi", "1.1.0")
    helm("push", str(second), f"oci://{registry.host}/charts", "--plain-http")
    c = Client(registry.url, auth=registry.auth)
    assert sorted(c.get("/v2/charts/multi/tags/list").json()["tags"]) == ["1.0.0", "1.1.0"]
    for tgz, version in ((first, "1.0.0"), (second, "1.1.0")):
        d = workdir / f"pull-{version}"
        d.mkdir()
        helm("pull", f"oci://{registry.host}/charts/multi", "--version", version,
             "--plain-http", "-d", str(d))
        assert (d / f"multi-{version}.tgz").read_bytes() == tgz.read_bytes()
    # Without --version helm picks the highest semver tag.
    d = workdir / "pull-latest"
    d.mkdir()
    helm("pull", f"oci://{registry.host}/charts/multi", "--plain-http", "-d", str(d))
    assert os.listdir(d) == ["multi-1.1.0.tgz"]
    # A version that does not exist fails cleanly.
    rc, out = helm("pull", f"oci://{registry.host}/charts/multi", "--version", "9.9.9",
                   "--plain-http", "-d", str(d), check=False)
    assert rc != 0
    assert "not found" in out.lower() or "manifest unknown" in out.lower(), out
