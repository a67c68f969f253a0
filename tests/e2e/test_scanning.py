"""Image scanning end to end: images pushed with skopeo, vulnerability data imported with
`kura vulndb import`, scans driven and read with the real `aws` CLI.

The Debian data is real (crates/kura-scan/tests/data: a bookworm minbase dpkg status and a
Debian-security-tracker-shaped subset made from real security uploads); matching them gives
14 findings: 13 CVEs of the `perl` source package (binary perl-base) and 1 of `pcre2`
(binary libpcre2-8-0).
"""
import gzip
import io
import json
import os
import subprocess
import tarfile
import time

import pytest

import ecr_util
from conftest import REPO_ROOT
from helpers import require_tool, run
from images import MT_CONFIG, MT_MANIFEST, Layout, canonical_json
from test_ecr_awscli import Aws

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no ECR API",
)

DATA = os.path.join(REPO_ROOT, "crates", "kura-scan", "tests", "data")
TRACKER = os.path.join(DATA, "debian-tracker-subset-bookworm.json")
STATUS = os.path.join(DATA, "dpkg-status-bookworm-12.15-minbase")

EXPECTED_PERL = 13
EXPECTED_PCRE2 = 1

OS_RELEASE = b"""PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""

MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"

# A real advisory (GHSA-x84v-xcm2-53pg / CVE-2018-18074) in OSV form, for requests < 2.20.0.
OSV_REQUESTS = {
    "schema_version": "1.6.0",
    "id": "GHSA-x84v-xcm2-53pg",
    "modified": "2024-01-01T00:00:00Z",
    "published": "2018-10-29T19:06:21Z",
    "aliases": ["CVE-2018-18074"],
    "summary": "Insufficiently Protected Credentials in Requests",
    "details": "The Requests package through 2.19.1 sends an HTTP Authorization header to an http URI upon "
               "receiving a same-hostname https-to-http redirect.",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
    "affected": [{
        "package": {"ecosystem": "PyPI", "name": "requests", "purl": "pkg:pypi/requests"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}],
    }],
    "references": [{"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2018-18074"}],
    "database_specific": {"severity": "MODERATE"},
}


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws", "skopeo")


def tar_layer(files, symlinks=None):
    """A gzip-compressed tar layer: files {path: bytes}, symlinks {path: target}."""
    buf = io.BytesIO()
    dirs = set()
    for p in list(files) + list(symlinks or {}):
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in sorted(dirs):
            ti = tarfile.TarInfo(d)
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            tf.addfile(ti)
        for path, target in sorted((symlinks or {}).items()):
            ti = tarfile.TarInfo(path)
            ti.type = tarfile.SYMTYPE
            ti.linkname = target
            tf.addfile(ti)
        for path, data in sorted(files.items()):
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mode = 0o644
            tf.addfile(ti, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def add_image(layout, layers, tag):
    """An OCI image of gzip layers; returns the manifest digest."""
    descs = [layout.add_blob(l, MT_LAYER_GZIP) for l in layers]
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Labels": {"nonce": os.urandom(8).hex()}},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64 for _ in descs]},
    }
    cdesc = layout.add_blob(canonical_json(config), MT_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc, "layers": descs}
    desc = layout.add_blob(json.dumps(manifest).encode(), MT_MANIFEST)
    layout.tag(desc, tag)
    return desc["digest"]


def debian_layers():
    with open(STATUS, "rb") as f:
        status = f.read()
    # Debian's layout: /etc/os-release is a relative symlink into /usr/lib.
    base = tar_layer({"usr/lib/os-release": OS_RELEASE, "etc/debian_version": b"12.15\n"},
                     symlinks={"etc/os-release": "../usr/lib/os-release"})
    pkgs = tar_layer({"var/lib/dpkg/status": status})
    return [base, pkgs]


def python_layers():
    meta = b"Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\nSummary: HTTP for Humans.\n"
    return [tar_layer({
        "usr/lib/os-release": OS_RELEASE,
        "usr/local/lib/python3.11/site-packages/requests-2.19.0.dist-info/METADATA": meta,
    }, symlinks={"etc/os-release": "../usr/lib/os-release"})]


def kura_cli(registry, *args):
    binary = registry._cmd()[0]
    return run([binary, *args, "--data-dir", registry.data_dir])


def push(registry, aws, tmp_path, layout, tag, dest):
    auth = tmp_path / "auth.json"
    if not auth.exists():
        aws.pipe_login(["skopeo", "login", "--authfile", auth, "--username", "AWS",
                        "--password-stdin", "--tls-verify=false", registry.host])
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false", "--authfile", auth,
         "oci:%s:%s" % (layout.path, tag), "docker://%s/%s" % (registry.host, dest)])


def wait_scan(aws, repo, digest, timeout=90):
    deadline = time.time() + timeout
    while True:
        out = aws("describe-image-scan-findings", "--repository-name", repo,
                  "--image-id", "imageDigest=" + digest)
        if out["imageScanStatus"]["status"] != "IN_PROGRESS":
            return out
        assert time.time() < deadline, "scan still IN_PROGRESS after %ss: %s" % (timeout, out)
        time.sleep(0.5)


@pytest.fixture
def scanning_registry(tmp_path):
    from conftest import Registry
    reg = Registry(str(tmp_path))
    reg.start(extra_env={"KURA_SCAN_POLL_INTERVAL": "1s"})
    yield reg
    reg.stop()


def all_findings(aws, repo, digest, key="findings"):
    """Every finding, following nextToken with small pages."""
    out, token, pages = [], None, 0
    while True:
        args = ["describe-image-scan-findings", "--repository-name", repo,
                "--image-id", "imageDigest=" + digest, "--max-results", "5", "--no-paginate"]
        if token:
            args += ["--next-token", token]
        page = aws(*args)
        out += page["imageScanFindings"].get(key, [])
        pages += 1
        token = page.get("nextToken")
        if not token:
            return out, pages


def test_scan_on_push_debian_findings(scanning_registry, tmp_path):
    reg = scanning_registry
    aws = Aws(reg)
    kura_cli(reg, "vulndb", "import", TRACKER)
    aws("create-repository", "--repository-name", "scan/debian",
        "--image-scanning-configuration", "scanOnPush=true")
    layout = Layout(tmp_path / "src")
    digest = add_image(layout, debian_layers(), "v1")
    push(reg, aws, tmp_path, layout, "v1", "scan/debian:v1")

    out = wait_scan(aws, "scan/debian", digest)
    assert out["imageScanStatus"]["status"] == "COMPLETE", out
    findings = out["imageScanFindings"]
    assert "vulnerabilitySourceUpdatedAt" in findings and "imageScanCompletedAt" in findings
    every, pages = all_findings(aws, "scan/debian", digest)
    assert pages >= 3  # 14 findings in pages of 5
    by_pkg = {}
    for f in every:
        attrs = {a["key"]: a["value"] for a in f["attributes"]}
        by_pkg.setdefault(attrs["package_name"], set()).add(f["name"])
        assert f["name"].startswith("CVE-") and f["uri"].endswith(f["name"])
        assert attrs["package_version"]
        assert f["severity"] == "UNDEFINED"  # the subset carries no urgency and no CVSS
    assert sorted(by_pkg) == ["libpcre2-8-0", "perl-base"], by_pkg
    assert len(by_pkg["perl-base"]) == EXPECTED_PERL
    assert len(by_pkg["libpcre2-8-0"]) == EXPECTED_PCRE2
    assert findings["findingSeverityCounts"] == {"UNDEFINED": EXPECTED_PERL + EXPECTED_PCRE2}

    # DescribeImages carries the status and the summary.
    img = aws("describe-images", "--repository-name", "scan/debian")["imageDetails"][0]
    assert img["imageScanStatus"]["status"] == "COMPLETE"
    assert img["imageScanFindingsSummary"]["findingSeverityCounts"] == {"UNDEFINED": 14}

    # boto3 with the service model parses both responses (shapes and types checked).
    client = ecr_util.client(reg)
    r = client.describe_image_scan_findings(repositoryName="scan/debian", imageId={"imageDigest": digest})
    assert len(r["imageScanFindings"]["findings"]) == 14
    client.describe_images(repositoryName="scan/debian")

    # The scan's completion is an EventBridge event ("ECR Image Scan", kura-events), not a
    # CloudTrail record: the audit trail holds the calls that asked for it.
    events = [json.loads(l) for l in kura_cli(reg, "audit").stdout.decode().splitlines() if l.strip()]
    assert not [e for e in events if e.get("eventName") == "ECR Image Scan"], events
    assert [e for e in events if e.get("eventName") == "DescribeImageScanFindings"], events

    # The scan on push counts against the once-per-24-hours manual scan.
    err = aws("start-image-scan", "--repository-name", "scan/debian", "--image-id", "imageTag=v1",
              expect_error="LimitExceededException")
    assert "quota" in err


def test_manual_scan_scratch_and_index(scanning_registry, tmp_path):
    reg = scanning_registry
    aws = Aws(reg)
    aws("create-repository", "--repository-name", "scan/manual")
    layout = Layout(tmp_path / "src")
    scratch = add_image(layout, [tar_layer({"hello": b"static binary, no OS\n"})], "scratch")
    push(reg, aws, tmp_path, layout, "scratch", "scan/manual:scratch")

    # No scan on push here: no scan yet.
    aws("describe-image-scan-findings", "--repository-name", "scan/manual",
        "--image-id", "imageTag=scratch", expect_error="ScanNotFoundException")
    out = aws("start-image-scan", "--repository-name", "scan/manual", "--image-id", "imageTag=scratch")
    assert out["imageScanStatus"]["status"] == "IN_PROGRESS"
    assert out["imageId"]["imageDigest"] == scratch
    out = wait_scan(aws, "scan/manual", scratch)
    assert out["imageScanStatus"]["status"] == "UNSUPPORTED_IMAGE", out
    assert "not supported" in out["imageScanStatus"]["description"]
    aws("start-image-scan", "--repository-name", "scan/manual", "--image-id", "imageTag=scratch",
        expect_error="LimitExceededException")

    # A layer that is not a tar (corrupt gzip): FAILED, with the reason.
    broken = add_image(layout, [gzip.compress(b"\x00" * 10) + b"garbage"], "broken")
    push(reg, aws, tmp_path, layout, "broken", "scan/manual:broken")
    aws("start-image-scan", "--repository-name", "scan/manual", "--image-id", "imageTag=broken")
    out = wait_scan(aws, "scan/manual", broken)
    assert out["imageScanStatus"]["status"] == "FAILED", out
    assert "ScanError" in out["imageScanStatus"]["description"], out

    # An index is not an image: UnsupportedImageTypeException.
    idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
           "manifests": [{"mediaType": MT_MANIFEST, "digest": scratch,
                          "size": len(layout.blob(scratch)),
                          "platform": {"architecture": "amd64", "os": "linux"}}]}
    aws("put-image", "--repository-name", "scan/manual", "--image-tag", "multi",
        "--image-manifest", json.dumps(idx),
        "--image-manifest-media-type", "application/vnd.oci.image.index.v1+json")
    aws("start-image-scan", "--repository-name", "scan/manual", "--image-id", "imageTag=multi",
        expect_error="UnsupportedImageTypeException")
    # An unknown image: ImageNotFoundException.
    aws("start-image-scan", "--repository-name", "scan/manual", "--image-id", "imageTag=nope",
        expect_error="ImageNotFoundException")


def test_registry_scanning_configuration(scanning_registry):
    aws = Aws(scanning_registry)
    aws("create-repository", "--repository-name", "cont/app")
    aws("create-repository", "--repository-name", "other/app",
        "--image-scanning-configuration", "scanOnPush=true")
    got = aws("get-registry-scanning-configuration")
    assert got["scanningConfiguration"] == {"scanType": "BASIC", "rules": []}
    aws("put-registry-scanning-configuration", "--scan-type", "BASIC", "--rules",
        json.dumps([{"scanFrequency": "CONTINUOUS_SCAN",
                     "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}]}]),
        expect_error="ValidationException")
    aws("put-registry-scanning-configuration", "--scan-type", "ENHANCED", "--rules",
        json.dumps([{"scanFrequency": "CONTINUOUS_SCAN",
                     "repositoryFilters": [{"filter": "cont/*", "filterType": "WILDCARD"}]}]))
    got = aws("get-registry-scanning-configuration")["scanningConfiguration"]
    assert got["scanType"] == "ENHANCED" and got["rules"][0]["scanFrequency"] == "CONTINUOUS_SCAN"
    out = aws("batch-get-repository-scanning-configuration", "--repository-names",
              "cont/app", "other/app", "missing/app")
    confs = {c["repositoryName"]: c for c in out["scanningConfigurations"]}
    assert confs["cont/app"]["scanFrequency"] == "CONTINUOUS_SCAN"
    # As ECR: scanOnPush is the repository's own flag, not the rule's.
    assert confs["cont/app"]["scanOnPush"] is False
    assert confs["other/app"]["scanOnPush"] is True
    assert confs["cont/app"]["appliedScanFilters"] == [{"filter": "cont/*", "filterType": "WILDCARD"}]
    assert confs["other/app"]["scanFrequency"] == "MANUAL"
    assert out["failures"][0]["repositoryName"] == "missing/app"


def test_continuous_scan_rematches_on_osv_import(scanning_registry, tmp_path):
    reg = scanning_registry
    aws = Aws(reg)
    aws("put-registry-scanning-configuration", "--scan-type", "ENHANCED", "--rules",
        json.dumps([{"scanFrequency": "CONTINUOUS_SCAN",
                     "repositoryFilters": [{"filter": "cont/*", "filterType": "WILDCARD"}]}]))
    aws("create-repository", "--repository-name", "cont/py")
    layout = Layout(tmp_path / "src")
    digest = add_image(layout, python_layers(), "v1")
    push(reg, aws, tmp_path, layout, "v1", "cont/py:v1")
    out = wait_scan(aws, "cont/py", digest)
    assert out["imageScanStatus"]["status"] == "COMPLETE", out
    assert out["imageScanFindings"].get("enhancedFindings", []) == []

    # New data arrives: the image is re-matched without a new push or scan request.
    osv_dir = tmp_path / "osv"
    osv_dir.mkdir()
    (osv_dir / "GHSA-x84v-xcm2-53pg.json").write_text(json.dumps(OSV_REQUESTS))
    kura_cli(reg, "vulndb", "import", str(osv_dir))
    deadline = time.time() + 60
    while True:
        out = aws("describe-image-scan-findings", "--repository-name", "cont/py",
                  "--image-id", "imageDigest=" + digest)
        found = out["imageScanFindings"].get("enhancedFindings", [])
        if found:
            break
        assert time.time() < deadline, "no re-match within 60s: %s\n%s" % (out, reg.log()[-3000:])
        time.sleep(0.5)
    assert len(found) == 1
    f = found[0]
    details = f["packageVulnerabilityDetails"]
    assert details["vulnerabilityId"] == "CVE-2018-18074"
    assert details["vulnerablePackages"][0]["name"] == "requests"
    assert details["vulnerablePackages"][0]["version"] == "2.19.0"
    assert details["vulnerablePackages"][0]["fixedInVersion"] == "2.20.0"
    assert details["vulnerablePackages"][0]["packageManager"] == "PYTHONPKG"
    assert f["severity"] == "MEDIUM"  # the database's own rating (MODERATE) comes first
    assert f["score"] == 7.5 and f["fixAvailable"] == "YES"
    assert out["imageScanFindings"]["findingSeverityCounts"] == {"MEDIUM": 1}
    r = ecr_util.client(reg).describe_image_scan_findings(repositoryName="cont/py", imageId={"imageDigest": digest})
    assert r["imageScanFindings"]["enhancedFindings"][0]["packageVulnerabilityDetails"]["source"] == "OSV"

    # vulndb list shows both imports' kinds.
    listed = kura_cli(reg, "vulndb", "list")
    assert "OSV" in (listed.stdout.decode() if isinstance(listed.stdout, bytes) else listed.stdout)
