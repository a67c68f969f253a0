"""Raw HTTP tests of the OCI distribution API (spec v1.1.1).

These complement the real-client tests: they pin down protocol details that
clients rarely exercise (416 on out-of-order chunks, upload status, cancel,
mount fallbacks, ranges, pagination, referrers, deletes, error bodies).
"""
import base64
import http.client
import json
import uuid
from urllib.parse import urljoin

import pytest

from blobs_util import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Client,
    abs_location,
    assert_error,
    canonical,
    describe,
    expect,
    rand_bytes,
    sha256,
    with_query,
)


@pytest.fixture
def c(registry):
    return Client(registry.url, auth=registry.auth)


def raw_request(registry, method, path, body=b"", headers=None):
    """Send a request with the path exactly as given (requests would collapse `..`),
    authenticated with the registry's token."""
    conn = http.client.HTTPConnection(registry.host, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        hdrs = {"Content-Length": str(len(body))}
        if registry.token:
            basic = base64.b64encode(("AWS:%s" % registry.token).encode()).decode()
            hdrs["Authorization"] = "Basic " + basic
        hdrs.update(headers or {})
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            conn.send(body)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def assert_raw_error(status, headers, body, want_status, want_code, what):
    msg = f"{what} -> {status}\nheaders: {headers}\nbody: {body[:600]!r}"
    assert status == want_status, f"expected {want_status} {want_code}\n" + msg
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError("error body is not JSON\n" + msg)
    codes = [e.get("code") for e in doc.get("errors", [])]
    assert want_code in codes, f"expected {want_code}\n" + msg


def patch(c, loc, data, start, extra_headers=None):
    headers = {
        "Content-Type": "application/octet-stream",
        "Content-Range": f"{start}-{start + len(data) - 1}",
        "Content-Length": str(len(data)),
    }
    headers.update(extra_headers or {})
    return c.request("PATCH", loc, data=data, headers=headers)


def simple_manifest(c, repo, layer=b"layer", annotations=None, artifact_type=None,
                    subject=None, config=None):
    """Push the blobs for a small OCI image manifest and return its bytes (not pushed)."""
    ld = c.push_blob(repo, layer)
    if config is None:
        cfg = canonical({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [ld]}})
        config = {"mediaType": OCI_CONFIG, "digest": c.push_blob(repo, cfg), "size": len(cfg)}
    man = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [{"mediaType": OCI_LAYER, "digest": ld, "size": len(layer)}],
    }
    if artifact_type:
        man["artifactType"] = artifact_type
    if annotations:
        man["annotations"] = annotations
    if subject:
        man["subject"] = subject
    return canonical(man)


# ---------------------------------------------------------------- uploads


def test_chunked_upload_several_patches(c):
    repo = "proto/chunked"
    data = rand_bytes(3 * 1024 * 1024 + 12345, seed=1)
    digest = sha256(data)
    r = c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    expect(r, 202)
    loc = abs_location(c.base, r)
    # A fresh session must report where it is before any data arrives.
    st = c.request("GET", loc)
    expect(st, 204)
    assert st.headers.get("Location"), describe(st)

    chunk = 1024 * 1024
    off = 0
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces[:-1]:
        r = patch(c, loc, piece, off)
        expect(r, 202)
        off += len(piece)
        assert r.headers.get("Range") == f"0-{off - 1}", describe(r)
        loc = abs_location(c.base, r)
        # Upload status between chunks.
        st = c.request("GET", loc)
        expect(st, 204)
        assert st.headers.get("Range") == f"0-{off - 1}", describe(st)
        loc = abs_location(c.base, st)

    # The final chunk rides in the closing PUT (allowed by the spec).
    last = pieces[-1]
    r = c.request(
        "PUT",
        with_query(loc, digest=digest),
        data=last,
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{off}-{off + len(last) - 1}",
            "Content-Length": str(len(last)),
        },
    )
    expect(r, 201)
    assert r.headers.get("Location"), describe(r)
    blob_url = abs_location(c.base, r)
    g = c.request("GET", blob_url)
    expect(g, 200)
    assert g.content == data
    g = c.get_blob(repo, digest)
    expect(g, 200)
    assert sha256(g.content) == digest
    assert g.headers.get("Docker-Content-Digest") in (None, digest), describe(g)


def test_chunked_upload_patches_then_empty_put(c):
    repo = "proto/chunked2"
    data = rand_bytes(5 * 100_000 + 7, seed=2)
    digest = c.push_blob_chunked(repo, data, 100_000)
    g = c.get_blob(repo, digest)
    expect(g, 200)
    assert g.content == data


def test_out_of_order_chunk_is_416(c):
    repo = "proto/ooo"
    data = rand_bytes(300, seed=3)
    loc = c.start_upload(repo)
    r = patch(c, loc, data[:100], 0)
    expect(r, 202)
    loc = abs_location(c.base, r)
    # Skip bytes 100..199: the registry must refuse.
    r = patch(c, loc, data[200:], 200)
    assert r.status_code == 416, describe(r)
    # Re-sending an already-received range is out of order too.
    r = patch(c, loc, data[:100], 0)
    assert r.status_code == 416, describe(r)
    # The session survives and still reports the accepted prefix.
    st = c.request("GET", loc)
    expect(st, 204)
    assert st.headers.get("Range") == "0-99", describe(st)
    loc = abs_location(c.base, st)
    r = patch(c, loc, data[100:200], 100)
    expect(r, 202)
    assert r.headers.get("Range") == "0-199", describe(r)
    loc = abs_location(c.base, r)
    # A final chunk in the closing PUT must be in order too.
    r = c.request("PUT", with_query(loc, digest=sha256(data)), data=data[250:],
                  headers={"Content-Type": "application/octet-stream",
                           "Content-Range": "250-299", "Content-Length": "50"})
    assert r.status_code == 416, describe(r)
    assert not c.blob_exists(repo, sha256(data))
    r = c.request("PUT", with_query(loc, digest=sha256(data)), data=data[200:],
                  headers={"Content-Type": "application/octet-stream",
                           "Content-Range": "200-299", "Content-Length": "100"})
    expect(r, 201)
    assert c.get_blob(repo, sha256(data)).content == data


def test_cancel_upload(c):
    repo = "proto/cancel"
    loc = c.start_upload(repo)
    r = patch(c, loc, b"x" * 1000, 0)
    expect(r, 202)
    loc = abs_location(c.base, r)
    r = c.request("DELETE", loc)
    expect(r, 204)
    r = c.request("GET", loc)
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    r = patch(c, loc, b"y" * 10, 1000)
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    assert not c.blob_exists(repo, sha256(b"x" * 1000))


def test_unknown_upload_id_is_404(c):
    repo = "proto/unknown-upload"
    c.push_blob(repo, b"make the repository exist")
    bogus = f"/v2/{repo}/blobs/uploads/{uuid.uuid4()}"
    assert_error(c.request("GET", bogus), 404, "BLOB_UPLOAD_UNKNOWN")
    r = c.request("PATCH", bogus, data=b"abc",
                  headers={"Content-Type": "application/octet-stream", "Content-Range": "0-2"})
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    r = c.request("PUT", with_query(bogus, digest=sha256(b"abc")), data=b"abc",
                  headers={"Content-Type": "application/octet-stream"})
    assert_error(r, 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(c.request("DELETE", bogus), 404, "BLOB_UPLOAD_UNKNOWN")


def test_single_post_with_digest(c):
    repo = "proto/single-post"
    data = rand_bytes(200_000, seed=4)
    digest = sha256(data)
    r = c.request(
        "POST",
        with_query(f"/v2/{repo}/blobs/uploads/", digest=digest),
        data=data,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
    )
    expect(r, 201)
    assert r.headers.get("Location"), describe(r)
    g = c.request("GET", abs_location(c.base, r))
    expect(g, 200)
    assert g.content == data
    h = c.head(f"/v2/{repo}/blobs/{digest}")
    expect(h, 200)


def test_single_post_with_wrong_digest(c):
    repo = "proto/single-post-bad"
    data = rand_bytes(1000, seed=5)
    wrong = sha256(b"something else")
    r = c.request(
        "POST",
        with_query(f"/v2/{repo}/blobs/uploads/", digest=wrong),
        data=data,
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(data))},
    )
    assert_error(r, 400, "DIGEST_INVALID")
    assert not c.blob_exists(repo, wrong)
    assert not c.blob_exists(repo, sha256(data))


def test_put_with_wrong_digest(c):
    repo = "proto/wrong-digest"
    data = rand_bytes(5000, seed=6)
    wrong = sha256(b"not the data")
    loc = c.start_upload(repo)
    r = c.request("PUT", with_query(loc, digest=wrong), data=data,
                  headers={"Content-Type": "application/octet-stream",
                           "Content-Length": str(len(data))})
    assert_error(r, 400, "DIGEST_INVALID")
    assert not c.blob_exists(repo, wrong)
    assert not c.blob_exists(repo, sha256(data))
    assert c.get_blob(repo, wrong).status_code == 404
    # A correct upload afterwards works.
    d = c.push_blob(repo, data)
    assert c.get_blob(repo, d).content == data


def test_put_with_malformed_digest(c):
    repo = "proto/bad-digest-syntax"
    loc = c.start_upload(repo)
    r = c.request("PUT", with_query(loc, digest="sha256:nothex"), data=b"abc",
                  headers={"Content-Type": "application/octet-stream"})
    assert_error(r, 400, "DIGEST_INVALID")


# ---------------------------------------------------------------- mounts


def test_cross_repo_mount(c):
    data = rand_bytes(50_000, seed=7)
    digest = c.push_blob("proto/mount-src", data)
    r = c.request("POST", with_query("/v2/proto/mount-dst/blobs/uploads/",
                                     mount=digest, **{"from": "proto/mount-src"}),
                  headers={"Content-Length": "0"})
    expect(r, 201)
    assert r.headers.get("Location"), describe(r)
    assert r.headers.get("Docker-Content-Digest") in (None, digest), describe(r)
    h = c.head(f"/v2/proto/mount-dst/blobs/{digest}")
    expect(h, 200)
    assert int(h.headers["Content-Length"]) == len(data)
    assert c.get_blob("proto/mount-dst", digest).content == data
    # The source keeps its copy.
    assert c.get_blob("proto/mount-src", digest).content == data


def test_mount_that_cannot_be_done_starts_upload(c):
    c.push_blob("proto/mount-src2", b"some other blob")
    missing = sha256(b"this blob was never pushed anywhere")
    r = c.request("POST", with_query("/v2/proto/mount-dst2/blobs/uploads/",
                                     mount=missing, **{"from": "proto/mount-src2"}),
                  headers={"Content-Length": "0"})
    expect(r, 202)
    loc = abs_location(c.base, r)
    # The session is a normal upload session.
    data = b"this blob was never pushed anywhere"
    r = c.request("PUT", with_query(loc, digest=missing), data=data,
                  headers={"Content-Type": "application/octet-stream"})
    expect(r, 201)
    assert c.get_blob("proto/mount-dst2", missing).content == data
    # Mount from a repository that does not exist: also a plain upload session.
    other = sha256(b"other")
    r = c.request("POST", with_query("/v2/proto/mount-dst3/blobs/uploads/",
                                     mount=other, **{"from": "proto/never-existed"}),
                  headers={"Content-Length": "0"})
    expect(r, 202)
    assert r.headers.get("Location"), describe(r)


# ---------------------------------------------------------------- blob reads


def test_blob_range_reads(c):
    repo = "proto/range"
    data = rand_bytes(100_000, seed=8)
    digest = c.push_blob(repo, data)
    path = f"/v2/{repo}/blobs/{digest}"
    cases = [
        ("bytes=0-0", 0, 0),
        ("bytes=10-99", 10, 99),
        ("bytes=99990-99999", 99990, 99999),
        ("bytes=50000-", 50000, 99999),
        ("bytes=-100", 99900, 99999),
    ]
    for hdr, start, end in cases:
        r = c.get(path, headers={"Range": hdr})
        assert r.status_code == 206, f"Range {hdr}\n" + describe(r)
        assert r.headers.get("Content-Range") == f"bytes {start}-{end}/{len(data)}", describe(r)
        assert int(r.headers["Content-Length"]) == end - start + 1, describe(r)
        assert r.content == data[start:end + 1], f"Range {hdr}: wrong bytes"
    # A range past the end is unsatisfiable.
    # (The body is not read: only the status matters here.)
    with c.get(path, headers={"Range": "bytes=200000-300000"}, stream=True) as r:
        assert r.status_code == 416, (
            f"GET Range: bytes=200000-300000 -> {r.status_code} {dict(r.headers)}")
        assert r.headers.get("Content-Range") in (None, f"bytes */{len(data)}"), dict(r.headers)
    # Without Range: the whole blob.
    r = c.get(path)
    expect(r, 200)
    assert r.content == data


def test_head_blob(c):
    repo = "proto/head"
    data = rand_bytes(12345, seed=9)
    digest = c.push_blob(repo, data)
    h = c.head(f"/v2/{repo}/blobs/{digest}")
    expect(h, 200)
    assert int(h.headers["Content-Length"]) == len(data), describe(h)
    assert h.headers.get("Docker-Content-Digest") in (None, digest), describe(h)
    assert h.content == b""
    missing = sha256(b"missing")
    h = c.head(f"/v2/{repo}/blobs/{missing}")
    assert h.status_code == 404, describe(h)
    assert_error(c.get_blob(repo, missing), 404, "BLOB_UNKNOWN")
    # A blob pushed to one repository is not visible through another.
    c.push_blob("proto/head-other", b"unrelated")
    assert c.head(f"/v2/proto/head-other/blobs/{digest}").status_code == 404


# ---------------------------------------------------------------- manifests


def test_manifest_roundtrip_headers(c):
    repo = "proto/manifest"
    body = simple_manifest(c, repo)
    digest = sha256(body)
    r = c.put_manifest(repo, "v1", body)
    expect(r, 201)
    assert r.headers.get("Location"), describe(r)
    assert r.headers.get("Docker-Content-Digest") == digest, describe(r)
    for ref in ("v1", digest):
        g = c.get_manifest(repo, ref)
        expect(g, 200)
        assert g.content == body, "manifest must be stored byte-for-byte"
        assert g.headers.get("Content-Type", "").split(";")[0] == OCI_MANIFEST, describe(g)
        assert g.headers.get("Docker-Content-Digest") == digest, describe(g)
        h = c.head(f"/v2/{repo}/manifests/{ref}", headers={"Accept": OCI_MANIFEST})
        expect(h, 200)
        assert int(h.headers["Content-Length"]) == len(body), describe(h)
        assert h.headers.get("Docker-Content-Digest") == digest, describe(h)
    assert_error(c.get_manifest(repo, "nope"), 404, "MANIFEST_UNKNOWN")
    assert c.head(f"/v2/{repo}/manifests/nope").status_code == 404
    assert c.get_manifest("proto/no-such-repo", "v1").status_code == 404


def test_manifest_without_media_type_uses_content_type(c):
    """Like helm: no mediaType field; the type comes from the PUT's Content-Type."""
    repo = "proto/no-mediatype"
    man = json.loads(simple_manifest(c, repo))
    del man["mediaType"]
    body = canonical(man)
    r = c.put_manifest(repo, "1.0.0", body, OCI_MANIFEST)
    expect(r, 201)
    g = c.get_manifest(repo, "1.0.0")
    expect(g, 200)
    assert g.content == body
    assert g.headers.get("Content-Type", "").split(";")[0] == OCI_MANIFEST, describe(g)


def test_push_manifest_by_digest(c):
    repo = "proto/by-digest"
    body = simple_manifest(c, repo)
    digest = sha256(body)
    r = c.put_manifest(repo, digest, body)
    expect(r, 201)
    assert r.headers.get("Docker-Content-Digest") == digest, describe(r)
    assert c.get_manifest(repo, digest).content == body


def test_manifest_missing_blob(c):
    repo = "proto/missing-blob"
    man = json.loads(simple_manifest(c, repo))
    # Missing layer.
    bad = dict(man, layers=[{"mediaType": OCI_LAYER, "digest": sha256(b"nope"), "size": 4}])
    r = c.put_manifest(repo, "bad1", canonical(bad))
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    # Missing config.
    bad = dict(man, config={"mediaType": OCI_CONFIG, "digest": sha256(b"nocfg"), "size": 5})
    r = c.put_manifest(repo, "bad2", canonical(bad))
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    for tag in ("bad1", "bad2"):
        assert c.get_manifest(repo, tag).status_code == 404


def test_manifest_malformed_json(c):
    repo = "proto/malformed"
    c.push_blob(repo, b"exists")
    for body in (b"{not json", b"", b"[]", b'{"schemaVersion": 2, "layers": "nope"}'):
        r = c.put_manifest(repo, "bad", body)
        assert_error(r, 400, "MANIFEST_INVALID")
    assert c.get_manifest(repo, "bad").status_code == 404


def test_manifest_size_limit(c):
    repo = "proto/big-manifest"
    man = json.loads(simple_manifest(c, repo))
    limit = 4 * 1024 * 1024

    def padded(total):
        m = dict(man, annotations={"pad": ""})
        base = len(canonical(m))
        m["annotations"]["pad"] = "x" * (total - base)
        b = canonical(m)
        assert len(b) == total
        return b

    # The spec says registries should accept manifests of at least 4 MiB.
    ok = padded(limit)
    r = c.put_manifest(repo, "exactly-4mib", ok)
    expect(r, 201)
    assert c.get_manifest(repo, "exactly-4mib").content == ok
    too_big = padded(limit + 1)
    r = c.put_manifest(repo, "too-big", too_big)
    assert r.status_code == 413, describe(r)
    assert c.get_manifest(repo, "too-big").status_code == 404


# ---------------------------------------------------------------- names


BAD_NAMES = [
    pytest.param("../x", id="dotdot"),
    pytest.param("A", id="uppercase"),
    pytest.param("a" * 100 + "/" + "b" * 100 + "/" + "c" * 98, id="300-chars"),
    pytest.param("a//b", id="empty-component"),
    pytest.param("a-", id="trailing-separator"),
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_repository_name(registry, c, name):
    if name.startswith("a" * 100):
        assert len(name) == 300
    # POST to start an upload.
    st, hd, body = raw_request(registry, "POST", f"/v2/{name}/blobs/uploads/")
    assert_raw_error(st, hd, body, 400, "NAME_INVALID", f"POST /v2/{name}/blobs/uploads/")
    # PUT a manifest (its blobs exist in a valid repository; the name is what's wrong).
    man = simple_manifest(c, "proto/valid")
    st, hd, body = raw_request(registry, "PUT", f"/v2/{name}/manifests/latest", man,
                               {"Content-Type": OCI_MANIFEST})
    assert_raw_error(st, hd, body, 400, "NAME_INVALID", f"PUT /v2/{name}/manifests/latest")
    # Nothing leaked into the catalog.
    r = c.get("/v2/_catalog")
    if r.status_code == 200:
        assert name not in r.json().get("repositories", [])


def test_valid_unusual_names(c):
    # Names that match the spec's grammar must work.
    for name in ("a", "a.b_c__d--e/f0", "x/y/z/w"):
        d = c.push_blob(name, b"hello")
        assert c.get_blob(name, d).content == b"hello"


# ---------------------------------------------------------------- listing


def test_tag_list_pagination(c):
    repo = "proto/tags"
    body = simple_manifest(c, repo)
    tags = sorted(["v1", "v2", "v3", "latest", "alpha", "beta", "rc1"])
    for t in tags:
        expect(c.put_manifest(repo, t, body), 201)
    r = c.get(f"/v2/{repo}/tags/list")
    expect(r, 200)
    assert r.json() == {"name": repo, "tags": tags}

    # n + last, explicitly.
    r = c.get(f"/v2/{repo}/tags/list?n=3")
    expect(r, 200)
    assert r.json()["tags"] == tags[:3]
    assert "next" in r.links, "Link rel=next expected when more tags exist\n" + describe(r)
    r = c.get(f"/v2/{repo}/tags/list?n=3&last={tags[2]}")
    expect(r, 200)
    assert r.json()["tags"] == tags[3:6]
    r = c.get(f"/v2/{repo}/tags/list?last={tags[4]}")
    expect(r, 200)
    assert r.json()["tags"] == tags[5:]
    r = c.get(f"/v2/{repo}/tags/list?n=100")
    assert r.json()["tags"] == tags
    assert "next" not in r.links, describe(r)
    r = c.get(f"/v2/{repo}/tags/list?n=0")
    expect(r, 200)
    assert (r.json().get("tags") or []) == []
    assert "next" not in r.links, "n=0 MUST NOT have a Link header\n" + describe(r)

    # Follow Link headers.
    seen, url, pages = [], c.url(f"/v2/{repo}/tags/list?n=2"), 0
    while url and pages < 20:
        r = c.request("GET", url)
        expect(r, 200)
        page = r.json()["tags"] or []
        assert len(page) <= 2
        seen += page
        pages += 1
        nxt = r.links.get("next", {}).get("url")
        url = urljoin(c.base + "/", nxt) if nxt else None
    assert seen == tags
    assert pages in (4, 5)


def test_catalog_pagination(c):
    repos = sorted(["cat/a", "cat/b", "cat/c", "cat/d", "cat/e"])
    for repo in repos:
        body = simple_manifest(c, repo)
        expect(c.put_manifest(repo, "t", body), 201)
    r = c.get("/v2/_catalog")
    expect(r, 200)
    assert r.json()["repositories"] == repos
    r = c.get("/v2/_catalog?n=2")
    expect(r, 200)
    assert r.json()["repositories"] == repos[:2]
    assert "next" in r.links, describe(r)
    r = c.get(f"/v2/_catalog?n=2&last={repos[1]}")
    assert r.json()["repositories"] == repos[2:4]
    seen, url, pages = [], c.url("/v2/_catalog?n=2"), 0
    while url and pages < 20:
        r = c.request("GET", url)
        expect(r, 200)
        page = r.json()["repositories"] or []
        assert len(page) <= 2
        seen += page
        pages += 1
        nxt = r.links.get("next", {}).get("url")
        url = urljoin(c.base + "/", nxt) if nxt else None
    assert seen == repos


# ---------------------------------------------------------------- referrers


def test_referrers(c):
    repo = "proto/referrers"
    subject_body = simple_manifest(c, repo, layer=b"the subject")
    subj_digest, subj_size = c.push_manifest(repo, "app", subject_body)
    subject = {"mediaType": OCI_MANIFEST, "digest": subj_digest, "size": subj_size}
    empty = c.ensure_empty_config(repo)

    sbom = simple_manifest(c, repo, layer=b'{"sbom": true}', config=empty,
                           artifact_type="application/vnd.example.sbom.v1",
                           annotations={"org.example.kind": "sbom"}, subject=subject)
    r = c.put_manifest(repo, sha256(sbom), sbom)
    expect(r, 201)
    assert r.headers.get("OCI-Subject") == subj_digest, describe(r)

    # No artifactType: the config mediaType stands in for it.
    sig_cfg = b'{"sig": 1}'
    sig_config = {"mediaType": "application/vnd.example.signature.config.v1+json",
                  "digest": c.push_blob(repo, sig_cfg), "size": len(sig_cfg)}
    sig = simple_manifest(c, repo, layer=b"signature bytes", config=sig_config,
                          annotations={"org.example.kind": "sig"}, subject=subject)
    r = c.put_manifest(repo, sha256(sig), sig)
    expect(r, 201)
    assert r.headers.get("OCI-Subject") == subj_digest, describe(r)

    # An index can be a referrer too (pushed by tag this time).
    idx = canonical({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "artifactType": "application/vnd.example.bundle.v1",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(sbom), "size": len(sbom)}],
        "subject": subject,
    })
    r = c.put_manifest(repo, "bundle", idx, OCI_INDEX)
    expect(r, 201)
    assert r.headers.get("OCI-Subject") == subj_digest, describe(r)

    # An index without artifactType: its descriptor must omit artifactType.
    idx2 = canonical({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(sbom), "size": len(sbom)}],
        "annotations": {"org.example.kind": "plain-index"},
        "subject": subject,
    })
    r = c.put_manifest(repo, sha256(idx2), idx2, OCI_INDEX)
    expect(r, 201)
    assert r.headers.get("OCI-Subject") == subj_digest, describe(r)

    # A manifest without a subject is not a referrer of anything.
    other = simple_manifest(c, repo, layer=b"unrelated")
    c.push_manifest(repo, "other", other)

    r = c.get(f"/v2/{repo}/referrers/{subj_digest}")
    expect(r, 200)
    assert r.headers.get("Content-Type", "").split(";")[0] == OCI_INDEX, describe(r)
    doc = r.json()
    assert doc["schemaVersion"] == 2
    assert doc.get("mediaType") == OCI_INDEX
    got = {m["digest"]: m for m in doc["manifests"]}
    assert set(got) == {sha256(sbom), sha256(sig), sha256(idx), sha256(idx2)}, doc
    assert got[sha256(sbom)] == {
        "mediaType": OCI_MANIFEST, "digest": sha256(sbom), "size": len(sbom),
        "artifactType": "application/vnd.example.sbom.v1",
        "annotations": {"org.example.kind": "sbom"},
    }
    assert got[sha256(sig)]["artifactType"] == "application/vnd.example.signature.config.v1+json"
    assert got[sha256(sig)]["annotations"] == {"org.example.kind": "sig"}
    assert got[sha256(sig)]["size"] == len(sig)
    assert got[sha256(idx)]["mediaType"] == OCI_INDEX
    assert got[sha256(idx)]["artifactType"] == "application/vnd.example.bundle.v1"
    assert got[sha256(idx2)]["mediaType"] == OCI_INDEX
    assert "artifactType" not in got[sha256(idx2)], got[sha256(idx2)]
    assert got[sha256(idx2)]["annotations"] == {"org.example.kind": "plain-index"}

    # Filter.
    r = c.get(f"/v2/{repo}/referrers/{subj_digest}",
              params={"artifactType": "application/vnd.example.sbom.v1"})
    expect(r, 200)
    assert r.headers.get("OCI-Filters-Applied") == "artifactType", describe(r)
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(sbom)]
    r = c.get(f"/v2/{repo}/referrers/{subj_digest}",
              params={"artifactType": "application/vnd.example.none"})
    expect(r, 200)
    assert r.json()["manifests"] == []

    # No referrers: 200 with an empty list, never 404 (even for an unknown digest).
    for d in (sha256(other), sha256(b"never pushed")):
        r = c.get(f"/v2/{repo}/referrers/{d}")
        expect(r, 200)
        assert r.headers.get("Content-Type", "").split(";")[0] == OCI_INDEX, describe(r)
        assert r.json()["manifests"] == []
    # Invalid digest syntax: 400.
    r = c.get(f"/v2/{repo}/referrers/sha256:zzz")
    assert r.status_code == 400, describe(r)

    # Deleting a referrer removes it from the list.
    expect(c.delete(f"/v2/{repo}/manifests/{sha256(sig)}"), 202)
    r = c.get(f"/v2/{repo}/referrers/{subj_digest}")
    assert {m["digest"] for m in r.json()["manifests"]} == {
        sha256(sbom), sha256(idx), sha256(idx2)}


def test_referrer_pushed_before_subject(c):
    """A manifest whose subject does not exist (yet) must be accepted."""
    repo = "proto/referrers-early"
    subject_body = simple_manifest(c, repo, layer=b"later subject")
    subj_digest = sha256(subject_body)
    subject = {"mediaType": OCI_MANIFEST, "digest": subj_digest, "size": len(subject_body)}
    empty = c.ensure_empty_config(repo)
    art = simple_manifest(c, repo, layer=b"early", config=empty,
                          artifact_type="application/vnd.example.early", subject=subject)
    r = c.put_manifest(repo, sha256(art), art)
    expect(r, 201)
    assert r.headers.get("OCI-Subject") == subj_digest, describe(r)
    r = c.get(f"/v2/{repo}/referrers/{subj_digest}")
    expect(r, 200)
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(art)]
    c.push_manifest(repo, "subject", subject_body)
    r = c.get(f"/v2/{repo}/referrers/{subj_digest}")
    assert [m["digest"] for m in r.json()["manifests"]] == [sha256(art)]


# ---------------------------------------------------------------- deletes


def test_delete_tag_keeps_manifest(c):
    repo = "proto/del-tag"
    body = simple_manifest(c, repo)
    digest, _ = c.push_manifest(repo, "keep", body)
    c.push_manifest(repo, "drop", body)
    r = c.delete(f"/v2/{repo}/manifests/drop")
    expect(r, 202)
    assert_error(c.get_manifest(repo, "drop"), 404, "MANIFEST_UNKNOWN")
    g = c.get_manifest(repo, digest)
    expect(g, 200)
    assert g.content == body
    assert c.get_manifest(repo, "keep").content == body
    assert c.get(f"/v2/{repo}/tags/list").json()["tags"] == ["keep"]
    # Deleting it again: it is gone.
    assert c.delete(f"/v2/{repo}/manifests/drop").status_code == 404


def test_delete_manifest_by_digest(c):
    repo = "proto/del-manifest"
    body = simple_manifest(c, repo)
    digest, _ = c.push_manifest(repo, "t1", body)
    c.push_manifest(repo, "t2", body)
    r = c.delete(f"/v2/{repo}/manifests/{digest}")
    expect(r, 202)
    assert_error(c.get_manifest(repo, digest), 404, "MANIFEST_UNKNOWN")
    # Tags that pointed at it are gone too.
    for t in ("t1", "t2"):
        assert c.get_manifest(repo, t).status_code == 404
    assert c.head(f"/v2/{repo}/manifests/{digest}").status_code == 404
    assert c.delete(f"/v2/{repo}/manifests/{digest}").status_code == 404
    assert c.delete(f"/v2/proto/no-such-repo/manifests/{digest}").status_code == 404


def test_delete_blob(c):
    repo = "proto/del-blob"
    data = rand_bytes(4096, seed=10)
    digest = c.push_blob(repo, data)
    c.push_blob("proto/del-blob-other", data)
    r = c.delete(f"/v2/{repo}/blobs/{digest}")
    expect(r, 202)
    assert c.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
    assert_error(c.get_blob(repo, digest), 404, "BLOB_UNKNOWN")
    assert c.delete(f"/v2/{repo}/blobs/{digest}").status_code == 404
    # Another repository's link to the same content is untouched.
    assert c.get_blob("proto/del-blob-other", digest).content == data
    # Re-pushing works.
    c.push_blob(repo, data)
    assert c.get_blob(repo, digest).content == data
