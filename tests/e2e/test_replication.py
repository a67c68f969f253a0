"""Replication across regions and accounts, end to end with the aws CLI, boto3 and skopeo.

Two deployments on this machine (see repl_util.Federation): us-east-1 (the source) and
eu-west-1, each its own `kura serve` with its own data directory, the same account and
federation key, each naming the other as a peer region. And two accounts in one
deployment for cross-account replication.

1. A PREFIX_MATCH `prod/` rule: a skopeo push to prod/api is COMPLETE in eu-west-1 and
   pullable there byte for byte; a push to dev/x is not replicated.
2. A multi-arch index (children and index, by tag and digest); a cosign-style referrer
   pushed after its subject shows in the destination's referrers API.
3. A tag move on a MUTABLE repository replicates; an IMMUTABLE destination tag pointing
   at another image is FAILED / IMAGE_TAG_IMMUTABLE and the destination is unchanged.
4. The destination repository comes from a creation template with appliedFor REPLICATION
   (a CREATE_ON_PUSH-only template is not used: ECR's defaults).
5. Cross-account: REPLICATION_PERMISSION_DENIED without the destination's registry
   policy, COMPLETE after put-registry-policy and a new push.
6. The destination down: IN_PROGRESS (DESTINATION_UNAVAILABLE) while it is, COMPLETE
   once it is back. kill -9 of the source right after a 200 MiB layer's push: COMPLETE
   after the restart, and the manifest is never visible before its blobs.
7. A destination with another federation key: not COMPLETE, nothing arrives.
8. describe-registry echoes the configuration; the source as its own destination is
   InvalidParameterException; a region without a peer is FAILED DESTINATION_REGION_UNKNOWN.
"""
import hashlib
import json
import os
import re
import threading
import time

import pytest
import requests

from blobs_util import Client, expect, prng_chunks, prng_digest, with_query
from conftest import ACCOUNT_ID
from helpers import RegistryAPI, creds, require_tool, run
from images import MT_MANIFEST, Layout, canonical_json, make_rng, random_image, random_multiarch
from repl_util import (
    DST_REGION,
    SRC_REGION,
    WAIT_S,
    Federation,
    aws_ecr,
    manifest_visible,
    put_configuration,
    rule,
    statuses,
    wait_complete,
    wait_status,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no replication",
)

OTHER_ACCOUNT = "210987654321"
MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws", "skopeo")


@pytest.fixture
def fed(tmp_path):
    f = Federation(tmp_path / "fed").start()
    yield f
    f.stop()


def push(reg, layout, tag, dest, *extra):
    return run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
                "--dest-creds", creds(reg), *extra,
                "oci:%s:%s" % (layout.path, tag), "docker://%s/%s" % (reg.host, dest)], registry=reg)


def pull(reg, src, path, tag, *extra):
    run(["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", creds(reg),
         *extra, "docker://%s/%s" % (reg.host, src), "oci:%s:%s" % (path, tag)], registry=reg)
    return Layout(path)


def assert_replica(fed, layout, repo, tag, digest, tmp_path):
    """The destination serves the image as pushed: manifest (or index) byte-exact by
    tag and by digest, every blob, and skopeo pulls it back with the same digests."""
    api = RegistryAPI(fed.dst)
    body, got, _ = api.manifest_bytes(repo, tag)
    assert got == digest, "destination %s:%s is %s, pushed %s%s" % (repo, tag, got, digest, fed.logs())
    assert body == layout.blob(digest)
    served = api.check_tree(repo, digest)
    for d, _ in layout.walk(digest):
        assert served[d] == layout.blob(d), "destination blob %s differs" % d
    is_index = "manifests" in json.loads(body)
    pulled = pull(fed.dst, "%s:%s" % (repo, tag), tmp_path / ("pulled-" + repo.replace("/", "-")), tag,
                  *(["--all"] if is_index else []))
    assert pulled.resolve(tag)["digest"] == digest
    for d, _ in layout.walk(digest):
        assert pulled.blob(d) == layout.blob(d)


def repo_absent(reg, name, ecr=None):
    ecr = ecr or reg.ecr()
    with pytest.raises(ecr.exceptions.RepositoryNotFoundException):
        ecr.describe_repositories(repositoryNames=[name])


# --------------------------------------------------------------------------- 1


def test_prefix_rule_replicates_prod_and_not_dev(fed, tmp_path):
    out = put_configuration(fed.src, [rule("prod/", fed.dst)])
    assert out["replicationConfiguration"]["rules"][0]["destinations"] == [
        {"region": DST_REGION, "registryId": ACCOUNT_ID}]
    layout = Layout(tmp_path / "src")
    dev, _ = random_image(layout, make_rng(), "dev")
    img, _ = random_image(layout, make_rng(), "v1")

    # dev/x first: by the time prod/api is complete, dev/x would have been queued before it.
    push(fed.src, layout, "dev", "dev/x:v1")
    push(fed.src, layout, "v1", "prod/api:v1")
    st = wait_complete(fed.src, "prod/api", "v1", fed.dst, logs=fed.logs)
    assert "failureCode" not in st or not st["failureCode"], st
    assert_replica(fed, layout, "prod/api", "v1", img["digest"], tmp_path)

    # The aws CLI shows the same status, by tag and by digest.
    for ident in ("imageTag=v1", "imageDigest=" + img["digest"]):
        got = aws_ecr(fed.src, "describe-image-replication-status", "--repository-name", "prod/api",
                      "--image-id", ident)
        assert got["repositoryName"] == "prod/api"
        assert got["replicationStatuses"] == [
            {"region": DST_REGION, "registryId": ACCOUNT_ID, "status": "COMPLETE"}], got

    # The destination repository was created with ECR's defaults (no template there).
    repo = fed.dst.ecr().describe_repositories(repositoryNames=["prod/api"])["repositories"][0]
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"
    details = fed.dst.ecr().describe_images(repositoryName="prod/api")["imageDetails"]
    assert [(d["imageDigest"], d.get("imageTags")) for d in details] == [(img["digest"], ["v1"])]

    # dev/x matches no rule: no status, and nothing in the destination.
    assert statuses(fed.src, "dev/x", "v1") == []
    repo_absent(fed.dst, "dev/x")


def test_multiarch_index_replicates_with_its_children(fed, tmp_path):
    put_configuration(fed.src, [rule("prod/", fed.dst)])
    layout = Layout(tmp_path / "src")
    idx, children = random_multiarch(layout, make_rng(), "multi", arches=("amd64", "arm64", "s390x"))
    push(fed.src, layout, "multi", "prod/multi:v1", "--all")
    wait_complete(fed.src, "prod/multi", idx["digest"], fed.dst, logs=fed.logs)
    wait_complete(fed.src, "prod/multi", "v1", fed.dst, logs=fed.logs)

    api = RegistryAPI(fed.dst)
    for ref in ("v1", idx["digest"]):
        body, got, ctype = api.manifest_bytes("prod/multi", ref)
        assert got == idx["digest"] and body == layout.blob(idx["digest"])
    served = api.check_tree("prod/multi", "v1")
    for child in children:
        body, got, _ = api.manifest_bytes("prod/multi", child["digest"])
        assert body == layout.blob(child["digest"])
    for d, _ in layout.walk(idx["digest"]):
        assert served[d] == layout.blob(d)
    pulled = pull(fed.dst, "prod/multi:v1", tmp_path / "pulled", "v1", "--all")
    assert pulled.resolve("v1")["digest"] == idx["digest"]
    for d, _ in layout.walk(idx["digest"]):
        assert pulled.blob(d) == layout.blob(d)


def test_cosign_style_referrer_pushed_later_reaches_the_destination(fed, tmp_path):
    put_configuration(fed.src, [rule("prod/", fed.dst)])
    layout = Layout(tmp_path / "src")
    img, _ = random_image(layout, make_rng(), "v1")
    push(fed.src, layout, "v1", "prod/signed:v1")
    wait_complete(fed.src, "prod/signed", "v1", fed.dst, logs=fed.logs)

    # A signature as cosign pushes one with the referrers API: an artifact manifest
    # (empty config, one payload layer) whose subject is the image, pushed by digest.
    c = Client(fed.src.url, auth=fed.src.auth)
    empty = c.ensure_empty_config("prod/signed")
    payload = json.dumps({"critical": {"image": {"docker-manifest-digest": img["digest"]},
                                       "type": "cosign container image signature"}}).encode()
    layer = c.push_blob("prod/signed", payload)
    sig = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": empty,
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "digest": layer,
                    "size": len(payload), "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="}}],
        "subject": {"mediaType": MT_MANIFEST, "digest": img["digest"], "size": img["size"]},
    }
    body = canonical_json(sig)
    sig_digest, _ = c.push_manifest("prod/signed", "sha256:" + hashlib.sha256(body).hexdigest(), body)

    dst = Client(fed.dst.url, auth=fed.dst.auth)
    deadline = time.time() + WAIT_S
    found = []
    while time.time() < deadline:
        r = dst.get("/v2/prod/signed/referrers/%s" % img["digest"])
        expect(r, 200)
        found = r.json().get("manifests") or []
        if any(m["digest"] == sig_digest for m in found):
            break
        time.sleep(0.2)
    mine = [m for m in found if m["digest"] == sig_digest]
    assert mine, "the signature never appeared in the destination's referrers: %r%s" % (found, fed.logs())
    assert mine[0]["artifactType"] == sig["artifactType"]
    assert mine[0]["size"] == len(body)
    r = dst.get_manifest("prod/signed", sig_digest)
    expect(r, 200)
    assert r.content == body
    assert dst.get_blob("prod/signed", layer).content == payload
    # Filtering by artifactType works on the replica too.
    r = dst.get("/v2/prod/signed/referrers/%s?artifactType=application/vnd.example.none" % img["digest"])
    assert [m["digest"] for m in (r.json().get("manifests") or [])] == []


# --------------------------------------------------------------------------- tags


def test_tag_move_on_a_mutable_repository_replicates(fed, tmp_path):
    put_configuration(fed.src, [rule("prod/", fed.dst)])
    layout = Layout(tmp_path / "src")
    a, _ = random_image(layout, make_rng(), "a")
    b, _ = random_image(layout, make_rng(), "b")
    push(fed.src, layout, "a", "prod/app:latest")
    wait_complete(fed.src, "prod/app", a["digest"], fed.dst, logs=fed.logs)
    assert RegistryAPI(fed.dst).manifest_bytes("prod/app", "latest")[1] == a["digest"]

    push(fed.src, layout, "b", "prod/app:latest")
    wait_complete(fed.src, "prod/app", b["digest"], fed.dst, logs=fed.logs)
    assert_replica(fed, layout, "prod/app", "latest", b["digest"], tmp_path)
    # The old image stays (deletes and untags are not replicated), untagged as in the source.
    details = {d["imageDigest"]: d.get("imageTags") for d in
               fed.dst.ecr().describe_images(repositoryName="prod/app")["imageDetails"]}
    assert details == {a["digest"]: None, b["digest"]: ["latest"]}, details

    # A tag move back to an image the destination already has: only the tag changes.
    push(fed.src, layout, "a", "prod/app:latest")
    deadline = time.time() + WAIT_S
    while time.time() < deadline:
        if RegistryAPI(fed.dst).manifest_bytes("prod/app", "latest")[1] == a["digest"]:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the tag move back to %s never replicated%s" % (a["digest"], fed.logs()))
    wait_complete(fed.src, "prod/app", a["digest"], fed.dst, logs=fed.logs)


def test_immutable_destination_tag_conflict_fails_and_leaves_it(fed, tmp_path):
    put_configuration(fed.src, [rule("prod/", fed.dst)])
    layout = Layout(tmp_path / "src")
    theirs, _ = random_image(layout, make_rng(), "theirs")
    ours, _ = random_image(layout, make_rng(), "ours")
    # The destination already has prod/locked:v1, IMMUTABLE, pointing at another image.
    fed.dst.ecr().create_repository(repositoryName="prod/locked", imageTagMutability="IMMUTABLE")
    push(fed.dst, layout, "theirs", "prod/locked:v1")

    push(fed.src, layout, "ours", "prod/locked:v1")
    st = wait_status(fed.src, "prod/locked", "v1", fed.dst, lambda s: s["status"] != "IN_PROGRESS",
                     logs=fed.logs, what="settled")
    assert st["status"] == "FAILED" and st.get("failureCode") == "IMAGE_TAG_IMMUTABLE", (st, fed.logs())
    got = aws_ecr(fed.src, "describe-image-replication-status", "--repository-name", "prod/locked",
                  "--image-id", "imageTag=v1")["replicationStatuses"]
    assert got == [{"region": DST_REGION, "registryId": ACCOUNT_ID, "status": "FAILED",
                    "failureCode": "IMAGE_TAG_IMMUTABLE"}], got
    # The destination is unchanged: v1 is still theirs, our image is not there at all.
    assert RegistryAPI(fed.dst).manifest_bytes("prod/locked", "v1")[1] == theirs["digest"]
    details = fed.dst.ecr().describe_images(repositoryName="prod/locked")["imageDetails"]
    assert [(d["imageDigest"], d.get("imageTags")) for d in details] == [(theirs["digest"], ["v1"])]

    # The same image as the destination's under that tag is no conflict.
    push(fed.src, layout, "theirs", "prod/locked:v1")
    wait_complete(fed.src, "prod/locked", theirs["digest"], fed.dst, logs=fed.logs)
    assert RegistryAPI(fed.dst).manifest_bytes("prod/locked", "v1")[1] == theirs["digest"]


def test_destination_repository_from_a_replication_template(fed, tmp_path):
    put_configuration(fed.src, [rule("prod/", fed.dst)])
    ecr = fed.dst.ecr()
    ecr.create_repository_creation_template(
        prefix="prod/tmpl", appliedFor=["REPLICATION"], imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "team", "Value": "replicated"}], description="e2e: replicas")
    # A template for pushes only does not apply to replication.
    ecr.create_repository_creation_template(
        prefix="prod/onpush", appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE",
        description="e2e: pushes only")
    layout = Layout(tmp_path / "src")
    img, _ = random_image(layout, make_rng(), "v1")
    push(fed.src, layout, "v1", "prod/tmpl/app:v1")
    push(fed.src, layout, "v1", "prod/onpush/app:v1")
    wait_complete(fed.src, "prod/tmpl/app", "v1", fed.dst, logs=fed.logs)
    wait_complete(fed.src, "prod/onpush/app", "v1", fed.dst, logs=fed.logs)

    tmpl = ecr.describe_repositories(repositoryNames=["prod/tmpl/app"])["repositories"][0]
    assert tmpl["imageTagMutability"] == "IMMUTABLE", tmpl
    tags = ecr.list_tags_for_resource(resourceArn=tmpl["repositoryArn"])["tags"]
    assert {"Key": "team", "Value": "replicated"} in tags, tags
    assert tmpl["repositoryArn"] == "arn:aws:ecr:%s:%s:repository/prod/tmpl/app" % (DST_REGION, ACCOUNT_ID)
    plain = ecr.describe_repositories(repositoryNames=["prod/onpush/app"])["repositories"][0]
    assert plain["imageTagMutability"] == "MUTABLE", plain
    for repo in ("prod/tmpl/app", "prod/onpush/app"):
        assert RegistryAPI(fed.dst).manifest_bytes(repo, "v1")[1] == img["digest"]


# --------------------------------------------------------------------------- accounts


def test_cross_account_needs_the_destination_registry_policy(registry, tmp_path):
    reg = registry
    out = run([reg._cmd()[0], "account", "create", "--data-dir", reg.data_dir, "--id", OTHER_ACCOUNT],
              registry=reg)
    other = json.loads(out.stdout)
    b = {"key": other["accessKeyId"], "secret": other["secretAccessKey"]}
    import boto3
    from botocore.config import Config

    ecr_b = boto3.client("ecr", endpoint_url=reg.url, region_name=reg.region, aws_access_key_id=b["key"],
                         aws_secret_access_key=b["secret"], config=Config(retries={"max_attempts": 1}))

    put_configuration(reg, [rule("prod/", (SRC_REGION, OTHER_ACCOUNT))])
    layout = Layout(tmp_path / "src")
    img, _ = random_image(layout, make_rng(), "v1")
    push(reg, layout, "v1", "prod/app:v1")
    dest = (SRC_REGION, OTHER_ACCOUNT)
    st = wait_status(reg, "prod/app", "v1", dest, lambda s: s["status"] != "IN_PROGRESS", what="settled")
    assert st["status"] == "FAILED" and st.get("failureCode") == "REPLICATION_PERMISSION_DENIED", st
    repo_absent(reg, "prod/app", ecr=ecr_b)

    # Account B lets account A's root replicate into it and create repositories.
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "ReplicationFromA", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT_ID},
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": "arn:aws:ecr:%s:%s:repository/*" % (SRC_REGION, OTHER_ACCOUNT)}]}
    aws_ecr(reg, "put-registry-policy", "--policy-text", json.dumps(policy), creds=b)

    # Pushing again (the same image, one more tag) replicates it.
    push(reg, layout, "v1", "prod/app:v2")
    wait_complete(reg, "prod/app", img["digest"], dest)
    got = ecr_b.batch_get_image(repositoryName="prod/app", imageIds=[{"imageTag": "v2"}],
                                acceptedMediaTypes=[MT_MANIFEST])
    assert not got["failures"], got
    assert got["images"][0]["imageManifest"].encode() == layout.blob(img["digest"])
    details = ecr_b.describe_images(repositoryName="prod/app")["imageDetails"]
    assert len(details) == 1 and details[0]["imageDigest"] == img["digest"]
    assert set(details[0]["imageTags"]) == {"v1", "v2"}, details
    blobs = [d for d, _ in layout.walk(img["digest"])[1:]]
    avail = ecr_b.batch_check_layer_availability(repositoryName="prod/app", layerDigests=blobs)
    assert not avail["failures"] and {l["layerAvailability"] for l in avail["layers"]} == {"AVAILABLE"}, avail
    repo = ecr_b.describe_repositories(repositoryNames=["prod/app"])["repositories"][0]
    assert repo["registryId"] == OTHER_ACCOUNT


# --------------------------------------------------------------------------- failures


def test_destination_down_then_up(fed, tmp_path):
    put_configuration(fed.src, [rule("prod/", fed.dst)])
    layout = Layout(tmp_path / "src")
    img, _ = random_image(layout, make_rng(), "v1")
    fed.dst.stop()
    push(fed.src, layout, "v1", "prod/api:v1")
    st = wait_status(fed.src, "prod/api", "v1", fed.dst, lambda s: s.get("failureCode"), logs=fed.logs,
                     what="IN_PROGRESS with a failureCode")
    assert st["status"] == "IN_PROGRESS" and st["failureCode"] == "DESTINATION_UNAVAILABLE", st
    time.sleep(1)  # a few more retries against the closed port
    assert statuses(fed.src, "prod/api", "v1")[0]["status"] == "IN_PROGRESS"

    fed.dst.start()
    st = wait_complete(fed.src, "prod/api", "v1", fed.dst, logs=fed.logs)
    assert not st.get("failureCode"), st
    assert_replica(fed, layout, "prod/api", "v1", img["digest"], tmp_path)


class Watcher(threading.Thread):
    """Polls the destination for a manifest; whenever it is visible, every blob it
    names must be there, whole. Records what it saw."""

    def __init__(self, reg, repo, digest, blobs):
        super().__init__(daemon=True)
        self.reg, self.repo, self.digest, self.blobs = reg, repo, digest, blobs
        self.stop_ev = threading.Event()
        self.half = []
        self.seen_at = None
        self.polls = 0

    def run(self):
        s = requests.Session()
        while not self.stop_ev.is_set():
            try:
                visible = manifest_visible(self.reg, self.repo, self.digest, session=s)
            except requests.RequestException:
                visible = False
            self.polls += 1
            if visible:
                if self.seen_at is None:
                    self.seen_at = time.time()
                for d, size in self.blobs:
                    r = s.head("%s/v2/%s/blobs/%s" % (self.reg.url, self.repo, d), auth=self.reg.auth,
                               timeout=30)
                    if r.status_code != 200 or int(r.headers.get("Content-Length", -1)) != size:
                        self.half.append((d, r.status_code, r.headers.get("Content-Length")))
            time.sleep(0.05)


def push_large(c, repo, seed, size):
    """A config and one `size`-byte pseudo-random layer, streamed; returns
    (manifest bytes, layer digest, [(blob digest, size)]). The manifest is not pushed."""
    big = prng_digest(seed, size)
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [big]}})
    config_digest = c.push_blob(repo, config)
    loc = c.start_upload(repo)
    r = c.request("PUT", with_query(loc, digest=big), data=prng_chunks(seed, size),
                  headers={"Content-Type": "application/octet-stream"}, timeout=300)
    expect(r, 201)
    manifest = canonical_json({
        "schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": big, "size": size}],
    })
    return manifest, big, [(config_digest, len(config)), (big, size)]


def assert_large_replica(fed, repo, tag, manifest, big, size):
    """The destination serves the manifest byte-exact and the layer hashes to its digest."""
    body, got, _ = RegistryAPI(fed.dst).manifest_bytes(repo, tag)
    assert got == "sha256:" + hashlib.sha256(manifest).hexdigest() and body == manifest
    r = requests.get("%s/v2/%s/blobs/%s" % (fed.dst.url, repo, big), auth=fed.dst.auth, stream=True,
                     timeout=120)
    expect(r, 200)
    h = hashlib.sha256()
    n = 0
    for piece in r.iter_content(1 << 20):
        h.update(piece)
        n += len(piece)
    assert ("sha256:" + h.hexdigest(), n) == (big, size)


def test_kill9_of_the_source_mid_transfer(fed, tmp_path):
    put_configuration(fed.src, [rule("prod/", fed.dst)])
    size = 200 * MIB
    c = Client(fed.src.url, auth=fed.src.auth)
    repo = "prod/big"
    manifest, big, blobs = push_large(c, repo, "repl-kill9-%s" % os.urandom(4).hex(), size)
    watcher = Watcher(fed.dst, repo, "sha256:" + hashlib.sha256(manifest).hexdigest(), blobs)
    watcher.start()
    digest, _ = c.push_manifest(repo, "v1", manifest)
    # The push is acknowledged: the replication is queued durably. Kill the source as
    # soon as the destination has started receiving the layer (or after 3 s at most).
    killed_mid = wait_for_upload_in(fed.dst.data_dir, MIB, timeout=3)
    fed.src.kill9()
    print("killed the source", "mid-transfer (an upload was open in the destination)" if killed_mid
          else "without seeing an upload open in the destination")
    time.sleep(0.5)
    fed.src.start()
    fed.src.login()
    try:
        wait_complete(fed.src, repo, digest, fed.dst, logs=fed.logs, timeout=120)
        assert_large_replica(fed, repo, "v1", manifest, big, size)
    finally:
        watcher.stop_ev.set()
        watcher.join(timeout=30)
    assert watcher.polls > 0 and watcher.seen_at is not None
    assert watcher.half == [], "the manifest was visible before its blobs: %r" % watcher.half[:5]
    # Exactly once in effect: one image in the destination, tagged v1.
    details = fed.dst.ecr().describe_images(repositoryName=repo)["imageDetails"]
    assert [(d["imageDigest"], d.get("imageTags")) for d in details] == [(digest, ["v1"])], details


RESUMES = re.compile(r"replication resumes a layer digest=\"?(sha256:[0-9a-f]{64})\"? offset=(\d+)")


@pytest.mark.xfail(strict=True, reason="engine: a layer goes in one PATCH; a cut PATCH does not advance "
                   "the destination's upload, so the resumed offset is 0 (see /work/notes/e2e.md)")
def test_kill9_mid_layer_resumes_where_the_destination_stopped(fed, tmp_path):
    """The issue: 'an interrupted layer resumes, it does not restart from zero'. The source
    is killed once the destination's upload holds 48 MiB of a 128 MiB layer; after the
    restart the job must resume it past zero (the job logs the offset it resumes at)."""
    put_configuration(fed.src, [rule("prod/", fed.dst)])
    size = 128 * MIB
    c = Client(fed.src.url, auth=fed.src.auth)
    manifest, big, _ = push_large(c, "prod/resume", "repl-resume-%s" % os.urandom(4).hex(), size)
    c.push_manifest("prod/resume", "v1", manifest)
    caught = wait_for_upload_in(fed.dst.data_dir, 48 * MIB, timeout=10)
    fed.src.kill9()
    if not caught:
        pytest.skip("the transfer finished or never started before the kill: nothing to resume")
    fed.src.start()
    wait_complete(fed.src, "prod/resume", "v1", fed.dst, logs=fed.logs, timeout=120)
    assert_large_replica(fed, "prod/resume", "v1", manifest, big, size)
    offsets = [int(o) for d, o in RESUMES.findall(open(fed.src.log_path, errors="replace").read()) if d == big]
    assert offsets, "the job did not resume the layer's upload after the restart" + fed.logs()
    assert offsets[0] > 0, "the layer was sent again from offset 0 (resumed at %r)" % offsets


def wait_for_upload_in(data_dir, least, timeout):
    """True once a file of at least `least` bytes is under the uploads of a data dir."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for root, _, files in os.walk(data_dir):
            if "upload" not in root:
                continue
            for f in files:
                try:
                    if os.path.getsize(os.path.join(root, f)) >= least:
                        return True
                except OSError:
                    pass
        time.sleep(0.005)
    return False


def test_wrong_federation_key_is_refused(tmp_path):
    fed = Federation(tmp_path / "fed", dst_key=os.urandom(32).hex()).start()
    try:
        put_configuration(fed.src, [rule("prod/", fed.dst)])
        layout = Layout(tmp_path / "src")
        random_image(layout, make_rng(), "v1")
        push(fed.src, layout, "v1", "prod/api:v1")
        st = wait_status(fed.src, "prod/api", "v1", fed.dst,
                         lambda s: s["status"] == "FAILED" or s.get("failureCode"), logs=fed.logs,
                         what="FAILED or a failureCode")
        assert st["status"] != "COMPLETE" and st.get("failureCode"), st
        time.sleep(1)
        assert statuses(fed.src, "prod/api", "v1")[0]["status"] != "COMPLETE"
        repo_absent(fed.dst, "prod/api")
        print("wrong key:", st)
    finally:
        fed.stop()


# --------------------------------------------------------------------------- configuration


def test_describe_registry_echo_and_validation(fed, tmp_path):
    before = aws_ecr(fed.src, "describe-registry")
    assert before["registryId"] == ACCOUNT_ID
    assert before["replicationConfiguration"] == {"rules": []}, before

    rules = [rule("prod/", fed.dst, (SRC_REGION, OTHER_ACCOUNT)), rule("far/", ("ap-south-1", ACCOUNT_ID))]
    put_configuration(fed.src, rules)
    assert aws_ecr(fed.src, "describe-registry")["replicationConfiguration"] == {"rules": rules}
    # boto3 sees the same.
    assert fed.src.ecr().describe_registry()["replicationConfiguration"] == {"rules": rules}

    # The source itself as a destination is refused, and the configuration stays.
    err = put_configuration(fed.src, [rule("prod/", fed.src)], expect_error="InvalidParameterException")
    assert "PutReplicationConfiguration" in err
    assert aws_ecr(fed.src, "describe-registry")["replicationConfiguration"] == {"rules": rules}

    # A region this deployment has no peer for: FAILED, DESTINATION_REGION_UNKNOWN.
    layout = Layout(tmp_path / "src")
    random_image(layout, make_rng(), "v1")
    push(fed.src, layout, "v1", "far/away:v1")
    st = wait_status(fed.src, "far/away", "v1", ("ap-south-1", ACCOUNT_ID), lambda s: s["status"] != "IN_PROGRESS",
                     logs=fed.logs, what="settled")
    assert st["status"] == "FAILED" and st["failureCode"] == "DESTINATION_REGION_UNKNOWN", st

    # An empty configuration turns replication off.
    put_configuration(fed.src, [])
    assert aws_ecr(fed.src, "describe-registry")["replicationConfiguration"] == {"rules": []}
    push(fed.src, layout, "v1", "prod/late:v1")
    assert statuses(fed.src, "prod/late", "v1") == []
