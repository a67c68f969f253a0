"""The pull-through cache with real upstreams and real clients.

The upstream is Debian's `docker-registry` (Distribution 2.8), open or behind
htpasswd Basic auth, with its access log: every test counts what Kura fetched
from it. A rule maps the prefix `up` to it; skopeo, podman, containerd's ctr
and a docker daemon pull `<kura>/up/library/<name>` and get the upstream's
image, byte for byte, fetched once.
"""
import concurrent.futures
import json
import os
import shutil
import subprocess
import time

import pytest
import requests

from conftest import Registry
from dockerd_util import dockerd  # noqa: F401 (fixture)
from helpers import RegistryAPI, creds, require_tool, run
from images import Layout, make_rng, random_image, random_multiarch
from test_ctr import containerd  # noqa: F401 (fixture)
from upstream_util import Distribution

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no ECR API",
)

AWS_V2 = "/usr/bin/aws"


@pytest.fixture
def upstream(tmp_path):
    u = Distribution(tmp_path / "upstream").start()
    yield u
    u.stop()


def start_kura(tmp_path, refresh="24h", **env):
    reg = Registry(str(tmp_path / "kura"), env={"KURA_PULL_THROUGH_REFRESH": refresh,
                                                "KURA_PULL_THROUGH_RESPONSE_TIMEOUT": "5s", "KURA_PULL_THROUGH_IDLE_TIMEOUT": "5s", **env})
    os.makedirs(reg.workdir, exist_ok=True)
    reg.start()
    reg.login()
    return reg


@pytest.fixture
def kura(tmp_path):
    reg = start_kura(tmp_path)
    yield reg
    reg.stop()


def seed(upstream, layout, tag, name, *extra):
    """skopeo copies an image from an OCI layout to the upstream."""
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false", *extra,
         "oci:%s:%s" % (layout.path, tag), "docker://%s/%s" % (upstream.host, name)])


def rule(reg, upstream, prefix="up", **kw):
    return reg.ecr().create_pull_through_cache_rule(
        ecrRepositoryPrefix=prefix, upstreamRegistryUrl=upstream.url, **kw)


def blob_gets(upstream, name):
    """How many times each blob of `name` was fetched from the upstream (200s)."""
    counts = {}
    for repo, digest, status in upstream.requests("GET", "blobs", name):
        if status == 200:
            counts[digest] = counts.get(digest, 0) + 1
    return counts


def test_clients_pull_through_the_cache(kura, upstream, containerd, dockerd, tmp_path):  # noqa: F811
    require_tool("skopeo", "podman")
    src = Layout(tmp_path / "src")
    img, _ = random_image(src, make_rng(), "v1", nlayers=3)
    idx, children = random_multiarch(src, make_rng(), "multi")
    seed(upstream, src, "v1", "library/app:v1")
    seed(upstream, src, "multi", "library/multi:v1", "--all")
    # The aws CLI v2 (v1 would fetch the http:// URL as a parameter file).
    p = subprocess.run([AWS_V2, "ecr", "create-pull-through-cache-rule", "--ecr-repository-prefix", "up",
                        "--upstream-registry-url", upstream.url, "--endpoint-url", kura.url, "--output", "json"],
                       env=kura.aws_env(), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["upstreamRegistryUrl"] == upstream.url

    # skopeo: the first pull fetches the image (and creates the repository).
    ref = "%s/up/library/app:v1" % kura.host
    run(["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", creds(kura),
         "docker://" + ref, "oci:%s:v1" % (tmp_path / "out")], registry=kura)
    out = Layout(tmp_path / "out")
    assert out.resolve("v1")["digest"] == img["digest"]
    for d, _ in src.walk(img["digest"]):
        assert out.blob(d) == src.blob(d)
    repos = kura.ecr().describe_repositories(repositoryNames=["up/library/app"])["repositories"]
    assert repos[0]["repositoryName"] == "up/library/app"
    details = kura.ecr().describe_images(repositoryName="up/library/app")["imageDetails"]
    assert [(d["imageDigest"], d.get("imageTags")) for d in details] == [(img["digest"], ["v1"])]

    # podman, ctr and docker pull the cached image: nothing more from upstream.
    store = tmp_path / "podman"
    run(["podman", "--root", store / "root", "--runroot", "/tmp/kura-ptc-podman-run-%d" % os.getpid(),
         "--storage-driver", "vfs", "pull", "--tls-verify=false", "--creds", creds(kura), ref], registry=kura)
    run(containerd.ctr("images", "pull", "--plain-http", "--user", creds(kura), "--snapshotter", "native", ref),
        registry=kura)
    dockerd("login", "--username", "AWS", "--password-stdin", kura.host, input=kura.token)
    pulled = dockerd("pull", ref).stdout
    assert img["digest"] in pulled
    fetched = blob_gets(upstream, "library/app")
    assert set(fetched) == {d for d, _ in src.walk(img["digest"]) if d != img["digest"]}
    assert all(n == 1 for n in fetched.values()), fetched

    # An index: ctr pulls every platform through the cache; each child comes from upstream once.
    mref = "%s/up/library/multi:v1" % kura.host
    run(containerd.ctr("images", "pull", "--plain-http", "--user", creds(kura), "--all-platforms",
                       "--snapshotter", "native", mref), registry=kura)
    api = RegistryAPI(kura)
    body, digest, _ = api.manifest_bytes("up/library/multi", "v1")
    assert digest == idx["digest"] and body == src.blob(idx["digest"])
    for c in children:
        assert api.manifest_bytes("up/library/multi", c["digest"])[1] == c["digest"]
    assert all(n == 1 for n in blob_gets(upstream, "library/multi").values())
    dockerd("rmi", "-f", ref)
    shutil.rmtree("/tmp/kura-ptc-podman-run-%d" % os.getpid(), ignore_errors=True)


def test_a_burst_of_cold_pulls_fetches_each_blob_once(kura, upstream, tmp_path):
    src = Layout(tmp_path / "src")
    img, _ = random_image(src, make_rng(), "v1", nlayers=3, nfiles=2, min_size=2 << 20, max_size=4 << 20)
    seed(upstream, src, "v1", "library/burst:v1")
    rule(kura, upstream)
    want = {d: src.blob(d) for d, _ in src.walk(img["digest"])}

    def pull(_):
        s = requests.Session()
        s.auth = kura.auth
        r = s.get("%s/v2/up/library/burst/manifests/v1" % kura.url, timeout=120,
                  headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status_code == 200, r.text
        m = r.json()
        got = {img["digest"]: r.content}
        for d in [m["config"]["digest"]] + [layer["digest"] for layer in m["layers"]]:
            b = s.get("%s/v2/up/library/burst/blobs/%s" % (kura.url, d), timeout=120)
            assert b.status_code == 200, b.text
            got[d] = b.content
        return got

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(pull, range(50)))
    for got in results:
        assert got == want
    fetched = blob_gets(upstream, "library/burst")
    assert set(fetched) == set(want) - {img["digest"]}
    assert all(n == 1 for n in fetched.values()), "upstream blob fetches: %s" % fetched
    manifests = [r for r in upstream.requests("GET", "manifests", "library/burst") if r[2] == 200]
    assert len(manifests) == 1, manifests


def test_tag_refresh_and_an_upstream_that_goes_away(upstream, tmp_path):
    kura = start_kura(tmp_path, refresh="3s")
    try:
        src = Layout(tmp_path / "src")
        one, _ = random_image(src, make_rng(), "one")
        two, _ = random_image(src, make_rng(), "two")
        seed(upstream, src, "one", "library/moving:v1")
        rule(kura, upstream)
        api = RegistryAPI(kura)
        assert api.manifest_bytes("up/library/moving", "v1")[1] == one["digest"]
        moved_at = time.monotonic()
        # The tag moves upstream; within the refresh interval Kura keeps serving what it has.
        seed(upstream, src, "two", "library/moving:v1")
        served = api.manifest_bytes("up/library/moving", "v1")[1]
        if time.monotonic() - moved_at < 2.5:
            assert served == one["digest"]
        # After the interval the tag is checked again (a HEAD) and the new image fetched.
        deadline = time.monotonic() + 60
        while api.manifest_bytes("up/library/moving", "v1")[1] != two["digest"]:
            assert time.monotonic() < deadline, "the moved tag was never picked up\n" + kura.log()
            time.sleep(0.5)
        heads = [r for r in upstream.requests("HEAD", "manifests", "library/moving")]
        assert heads, "the refresh did not start with a HEAD"
        api.check_tree("up/library/moving", "v1")

        # The upstream goes away: the cached tag is still served (stale), an uncached image fails clearly.
        upstream.stop()
        time.sleep(3.5)
        assert api.manifest_bytes("up/library/moving", "v1")[1] == two["digest"]
        assert "stale" in kura.full_log().lower()
        r = requests.get("%s/v2/up/library/never/manifests/v1" % kura.url, auth=kura.auth, timeout=60)
        assert r.status_code in (502, 503, 504), r.text
        err = r.json()["errors"][0]
        assert upstream.host in err["message"] or "upstream" in err["message"].lower(), err
        p = run(["skopeo", "inspect", "--tls-verify=false", "--creds", creds(kura),
                 "docker://%s/up/library/never:v1" % kura.host], check=False)
        # skopeo shows the status only (the message is checked above).
        stderr = p.stderr.decode(errors="replace") if isinstance(p.stderr, bytes) else p.stderr
        assert p.returncode != 0 and r.status_code == int(stderr.split("HTTP status: ")[1][:3]), stderr
    finally:
        kura.stop()


def test_a_corrupted_upstream_blob_is_refused_and_nothing_is_cached(kura, upstream, tmp_path):
    src = Layout(tmp_path / "src")
    img, _ = random_image(src, make_rng(), "v1", nlayers=1)
    seed(upstream, src, "v1", "library/bad:v1")
    rule(kura, upstream)
    manifest = json.loads(src.blob(img["digest"]))
    layer = manifest["layers"][0]["digest"]
    path = upstream.blob_path(layer)
    good = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(bytes(b ^ 0xFF for b in good[:64]) + good[64:])
    api = RegistryAPI(kura)
    assert api.manifest_bytes("up/library/bad", "v1")[1] == img["digest"]
    # The digest is only known to be wrong at the end: the client gets an error or a cut body, never
    # the upstream's bytes as the blob.
    try:
        r = requests.get("%s/v2/up/library/bad/blobs/%s" % (kura.url, layer), auth=kura.auth, timeout=60)
        assert r.status_code != 200, "the corrupted blob was served whole"
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
        pass  # cut off before the end (or, when the download failed first, before the headers)
    # Nothing of it was stored: the repository does not have the layer.
    check = kura.ecr().batch_check_layer_availability(repositoryName="up/library/bad", layerDigests=[layer])
    assert [f["failureCode"] for f in check["failures"]] == ["MissingLayerDigest"], check
    # Repaired upstream: the next pull gets the right bytes.
    with open(path, "wb") as f:
        f.write(good)
    r = requests.get("%s/v2/up/library/bad/blobs/%s" % (kura.url, layer), auth=kura.auth, timeout=60)
    assert r.status_code == 200 and r.content == good


def test_basic_auth_upstream_with_a_secrets_manager_credential(tmp_path):
    require_tool("htpasswd")
    hashed = subprocess.run(["htpasswd", "-nbB", "puller", "s3cret-pass"], capture_output=True, text=True,
                            check=True).stdout.strip().split(":", 1)[1]
    upstream = Distribution(tmp_path / "upstream", htpasswd=[("puller", hashed)]).start()
    kura = start_kura(tmp_path)
    try:
        src = Layout(tmp_path / "src")
        img, _ = random_image(src, make_rng(), "v1")
        seed(upstream, src, "v1", "team/app:v1", "--dest-creds", "puller:s3cret-pass")
        env = dict(kura.aws_env(), AWS_ENDPOINT_URL_SECRETS_MANAGER=kura.url)
        out = subprocess.run(["aws", "secretsmanager", "create-secret", "--name", "ecr-pullthroughcache/up",
                              "--secret-string", json.dumps({"username": "puller", "accessToken": "s3cret-pass"}),
                              "--endpoint-url", kura.url, "--output", "json"],
                             env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        good_arn = json.loads(out.stdout)["ARN"]
        import boto3

        sm = boto3.client("secretsmanager", endpoint_url=kura.url, region_name=kura.region,
                          aws_access_key_id=kura.access_key, aws_secret_access_key=kura.secret_key)
        bad_arn = sm.create_secret(Name="ecr-pullthroughcache/wrong",
                                   SecretString=json.dumps({"username": "puller", "accessToken": "nope"}))["ARN"]
        ecr = kura.ecr()
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="up", upstreamRegistryUrl=upstream.url,
                                           credentialArn=good_arn)
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="wrong", upstreamRegistryUrl=upstream.url,
                                           credentialArn=bad_arn)
        ok = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="up")
        assert ok["isValid"] is True, ok
        bad = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="wrong")
        assert bad["isValid"] is False and bad.get("failure"), bad
        run(["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", creds(kura),
             "docker://%s/up/team/app:v1" % kura.host, "oci:%s:v1" % (tmp_path / "out")], registry=kura)
        assert Layout(tmp_path / "out").resolve("v1")["digest"] == img["digest"]
        p = run(["skopeo", "inspect", "--tls-verify=false", "--creds", creds(kura),
                 "docker://%s/wrong/team/app:v1" % kura.host], check=False)
        assert p.returncode != 0
        # The secret's value is in neither the server's log nor the upstream's.
        assert "s3cret-pass" not in kura.full_log() and "s3cret-pass" not in upstream.log()
    finally:
        kura.stop()
        upstream.stop()


def test_another_kura_as_an_ecr_upstream(tmp_path):
    """ECR to ECR: the upstream is another Kura; the secret holds an access key of the upstream's
    account, which the cache trades for a registry token (GetAuthorizationToken)."""
    import boto3

    origin = Registry(str(tmp_path / "origin"))
    os.makedirs(origin.workdir, exist_ok=True)
    origin.start()
    kura = start_kura(tmp_path)
    try:
        origin.allow_create_on_push()
        origin.login()
        src = Layout(tmp_path / "src")
        img, _ = random_image(src, make_rng(), "v1")
        run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds(origin),
             "oci:%s:v1" % src.path, "docker://%s/team/base:v1" % origin.host], registry=origin)
        sm = boto3.client("secretsmanager", endpoint_url=kura.url, region_name=kura.region,
                          aws_access_key_id=kura.access_key, aws_secret_access_key=kura.secret_key)
        arn = sm.create_secret(Name="ecr-pullthroughcache/origin", SecretString=json.dumps(
            {"username": origin.access_key, "accessToken": origin.secret_key}))["ARN"]
        ecr = kura.ecr()
        out = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="origin", upstreamRegistryUrl=origin.url,
                                                 upstreamRegistry="ecr", credentialArn=arn)
        assert out["upstreamRegistry"] == "ecr"
        assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="origin")["isValid"] is True
        run(["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", creds(kura),
             "docker://%s/origin/team/base:v1" % kura.host, "oci:%s:v1" % (tmp_path / "out")], registry=kura)
        out = Layout(tmp_path / "out")
        assert out.resolve("v1")["digest"] == img["digest"]
        for d, _ in src.walk(img["digest"]):
            assert out.blob(d) == src.blob(d)
        # The origin saw the cache's pulls as its root's (ImagePulled by the key's owner).
        assert origin.ecr().describe_images(repositoryName="team/base")["imageDetails"][0].get("lastRecordedPullTime")
    finally:
        kura.stop()
        origin.stop()


def test_a_cached_image_counts_as_pushed(tmp_path, upstream):
    """The first pull creates the repository from a PULL_THROUGH_CACHE template, scan on push
    scans the cached image, and EventBridge gets ECR's pull-through cache and push events."""
    from test_events import Events, Receiver

    kura = start_kura(tmp_path, KURA_EVENTS_RETRY_BASE="200ms", KURA_JOB_POLL_INTERVAL="200ms")
    receiver = Receiver().start()
    try:
        src = Layout(tmp_path / "src")
        img, _ = random_image(src, make_rng(), "v1")
        seed(upstream, src, "v1", "library/scanned:v1")
        ecr = kura.ecr()
        ecr.create_repository_creation_template(
            prefix="up", appliedFor=["PULL_THROUGH_CACHE"], imageTagMutability="IMMUTABLE",
            resourceTags=[{"Key": "team", "Value": "cache"}], description="cached images")
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[{
            "scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": [{"filter": "up/*", "filterType": "WILDCARD"}]}])
        ev = Events(kura)
        ev("put-rule", "--name", "cache", "--event-pattern", json.dumps(
            {"source": ["aws.ecr"], "detail-type": ["ECR Pull Through Cache Action", "ECR Image Action"]}))
        conn = ev("create-connection", "--name", "recv", "--authorization-type", "API_KEY", "--auth-parameters",
                  json.dumps({"ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "k"}}))
        dest = ev("create-api-destination", "--cli-input-json", json.dumps({
            "Name": "recv", "ConnectionArn": conn["ConnectionArn"], "InvocationEndpoint": receiver.url,
            "HttpMethod": "POST"}))
        ev("put-targets", "--rule", "cache", "--targets", json.dumps([{"Id": "r", "Arn": dest["ApiDestinationArn"]}]))
        rule(kura, upstream)

        api = RegistryAPI(kura)
        assert api.manifest_bytes("up/library/scanned", "v1")[1] == img["digest"]
        repo = ecr.describe_repositories(repositoryNames=["up/library/scanned"])["repositories"][0]
        assert repo["imageTagMutability"] == "IMMUTABLE"
        tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
        assert {"Key": "team", "Value": "cache"} in tags

        deadline = time.time() + 60
        while True:
            try:
                f = ecr.describe_image_scan_findings(repositoryName="up/library/scanned",
                                                     imageId={"imageDigest": img["digest"]})
            except ecr.exceptions.ScanNotFoundException:
                # The push is announced (and the scan queued) once the layers are stored.
                assert time.time() < deadline, "never scanned\n" + kura.log()
                time.sleep(0.3)
                continue
            # Random files, no OS: the scan reads every layer (fetched from the upstream) and
            # finds nothing it supports.
            if f["imageScanStatus"]["status"] == "UNSUPPORTED_IMAGE":
                break
            assert f["imageScanStatus"]["status"] in ("IN_PROGRESS", "PENDING"), f
            assert time.time() < deadline, f
            time.sleep(0.3)

        evs = receiver.wait_for(lambda evs: {"ECR Pull Through Cache Action", "ECR Image Action"}
                                <= {e["detail-type"] for e in evs})
        cache = [e for e in evs if e["detail-type"] == "ECR Pull Through Cache Action"][0]
        assert cache["detail"]["sync-status"] == "SUCCESS", cache
        assert cache["detail"]["ecr-repository-prefix"] == "up"
        assert cache["detail"]["repository-name"] == "up/library/scanned"
        assert cache["detail"]["image-digest"] == img["digest"]
        push = [e for e in evs if e["detail-type"] == "ECR Image Action"][0]
        assert push["detail"]["action-type"] == "PUSH" and push["detail"]["image-digest"] == img["digest"]

        # The audit trail has the import, as a service event of the repository's account.
        import boto3
        trail = boto3.client("cloudtrail", endpoint_url=kura.url, region_name=kura.region,
                             aws_access_key_id=kura.access_key, aws_secret_access_key=kura.secret_key)
        found = trail.lookup_events(LookupAttributes=[{"AttributeKey": "EventName",
                                                       "AttributeValue": "BatchImportUpstreamImage"}])["Events"]
        assert found, "no BatchImportUpstreamImage record"
        record = json.loads(found[0]["CloudTrailEvent"])
        assert record["eventType"] == "AwsServiceEvent"
        detail = record["serviceEventDetails"]
        assert (detail["repositoryName"], detail["syncStatus"], detail["imageDigest"]) == (
            "up/library/scanned", "SUCCESS", img["digest"]), record
    finally:
        receiver.stop()
        kura.stop()


def test_importing_from_the_upstream_needs_its_own_permission(kura, upstream, tmp_path):
    """ECR's permissions: reading a cached image needs ecr:BatchGetImage; bringing one in from the
    upstream also needs ecr:BatchImportUpstreamImage, and creating the repository ecr:CreateRepository."""
    from test_access import new_user, policy, registry_password, root_creds

    src = Layout(tmp_path / "src")
    one, _ = random_image(src, make_rng(), "one")
    two, _ = random_image(src, make_rng(), "two")
    seed(upstream, src, "one", "library/guarded:one")
    seed(upstream, src, "two", "library/guarded:two")
    rule(kura, upstream)
    read = {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:BatchGetImage",
                                          "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            "Resource": "*"}
    reader = new_user(kura, root_creds(kura), "reader", inline=policy(read))
    importer = new_user(kura, root_creds(kura), "importer", inline=policy(
        read, {"Effect": "Allow", "Action": "ecr:BatchImportUpstreamImage", "Resource": "*"}))

    def get(creds, ref):
        token = registry_password(kura, creds)
        return requests.get("%s/v2/up/library/guarded/manifests/%s" % (kura.url, ref), auth=("AWS", token),
                            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=60)

    # A reader cannot make Kura import, nor create the repository: nothing reaches the upstream.
    r = get(reader, "one")
    assert r.status_code == 403 and "ecr:BatchImportUpstreamImage" in r.text, r.text
    # The importer may import but not create the repository.
    r = get(importer, "one")
    assert r.status_code == 403 and "ecr:CreateRepository" in r.text, r.text
    assert not [x for x in upstream.requests("GET", "manifests", "library/guarded") if x[2] == 200]
    assert "up/library/guarded" not in [r["repositoryName"] for r in
                                        kura.ecr().describe_repositories()["repositories"]]
    # The root's pull creates the repository and caches `one`; the reader reads it from the cache.
    assert RegistryAPI(kura).manifest_bytes("up/library/guarded", "one")[1] == one["digest"]
    r = get(reader, "one")
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == one["digest"]
    # A tag not cached yet: the reader is refused, the importer brings it in.
    r = get(reader, "two")
    assert r.status_code == 403 and "ecr:BatchImportUpstreamImage" in r.text, r.text
    r = get(importer, "two")
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == two["digest"], r.text
    # ECR's "pull through cache" registry-policy statement grants both to the reader.
    seed(upstream, src, "one", "library/other:v1")
    r = requests.get("%s/v2/up/library/other/manifests/v1" % kura.url,
                     auth=("AWS", registry_password(kura, reader)), timeout=60)
    assert r.status_code == 403, r.text
    kura.ecr().put_registry_policy(policyText=json.dumps(policy({
        "Sid": "PullThroughCache", "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::%s:user/reader" % kura.account_id},
        "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"],
        "Resource": "arn:aws:ecr:%s:%s:repository/up/*" % (kura.region, kura.account_id)})))
    r = requests.get("%s/v2/up/library/other/manifests/v1" % kura.url, auth=("AWS", registry_password(kura, reader)),
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=60)
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == one["digest"], r.text


def test_a_large_layer_streams_through_the_cache_in_constant_memory(kura, upstream):
    """384 MiB pulled cold by four clients at once: every client gets the right bytes, the upstream
    serves it once, and Kura's resident memory stays far below the layer's size (the tee spools to
    disk, nothing holds the blob in memory)."""
    import hashlib

    from blobs_util import canonical, prng_chunks, prng_digest, sha256

    size = 384 << 20
    seed_name = "ptc-large-%s" % os.urandom(4).hex()
    layer = prng_digest(seed_name, size)
    s = requests.Session()
    r = s.post("%s/v2/library/large/blobs/uploads/" % upstream.url)
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else upstream.url + loc
    r = s.put("%s%sdigest=%s" % (loc, "&" if "?" in loc else "?", layer), data=prng_chunks(seed_name, size),
              headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    cfg = canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}})
    r = s.post("%s/v2/library/large/blobs/uploads/" % upstream.url)
    loc = r.headers["Location"]
    loc = loc if loc.startswith("http") else upstream.url + loc
    assert s.put("%s%sdigest=%s" % (loc, "&" if "?" in loc else "?", sha256(cfg)), data=cfg).status_code == 201
    manifest = canonical({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": sha256(cfg), "size": len(cfg)},
                          "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                      "digest": layer, "size": size}]})
    r = s.put("%s/v2/library/large/manifests/v1" % upstream.url, data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    rule(kura, upstream)
    r = requests.get("%s/v2/up/library/large/manifests/v1" % kura.url, auth=kura.auth, timeout=60,
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, r.text

    def pull(_):
        h = hashlib.sha256()
        with requests.get("%s/v2/up/library/large/blobs/%s" % (kura.url, layer), auth=kura.auth,
                          stream=True, timeout=300) as b:
            assert b.status_code == 200, b.text
            for piece in b.iter_content(1 << 20):
                h.update(piece)
        return "sha256:" + h.hexdigest()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(pull, range(4))) == [layer] * 4
    gets = [x for x in upstream.requests("GET", "blobs", "library/large") if x[1] == layer and x[2] == 200]
    assert len(gets) == 1, gets
    peak = kura.peak_rss_kib()
    assert peak is not None and peak < 160 * 1024, "peak RSS %d KiB for a %d MiB layer" % (peak, size >> 20)


def test_a_cached_image_replicates_to_another_region(upstream, tmp_path):
    """Replication applies to cached repositories: the cache's push (announced once the layers
    are stored) replicates the image, byte-exact, to another region."""
    from repl_util import Federation, put_configuration, wait_complete
    from repl_util import rule as repl_rule

    fed = Federation(tmp_path / "fed").start()
    try:
        src = Layout(tmp_path / "src")
        img, _ = random_image(src, make_rng(), "v1")
        seed(upstream, src, "v1", "library/travels:v1")
        rule(fed.src, upstream)
        put_configuration(fed.src, [repl_rule("up/", fed.dst)])
        api = RegistryAPI(fed.src)
        assert api.manifest_bytes("up/library/travels", "v1")[1] == img["digest"]
        wait_complete(fed.src, "up/library/travels", "v1", fed.dst, logs=fed.logs)
        dst = RegistryAPI(fed.dst)
        body, digest, _ = dst.manifest_bytes("up/library/travels", "v1")
        assert digest == img["digest"] and body == src.blob(img["digest"])
        served = dst.check_tree("up/library/travels", "v1")
        for d, _ in src.walk(img["digest"]):
            assert served[d] == src.blob(d)
    finally:
        fed.stop()


def test_kill9_mid_fetch_then_the_next_pull_completes(kura, upstream):
    """kill -9 while a layer streams through the cache: after a restart the next pull fetches it
    again and gets the right bytes; the half-written fetch left nothing visible."""
    import hashlib

    from blobs_util import canonical, prng_chunks, prng_digest, sha256

    size = 256 << 20
    seed_name = "ptc-kill-%s" % os.urandom(4).hex()
    layer = prng_digest(seed_name, size)
    s = requests.Session()

    def upload(data, digest):
        r = s.post("%s/v2/library/crash/blobs/uploads/" % upstream.url)
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
        loc = loc if loc.startswith("http") else upstream.url + loc
        r = s.put("%s%sdigest=%s" % (loc, "&" if "?" in loc else "?", digest), data=data,
                  headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text

    upload(prng_chunks(seed_name, size), layer)
    cfg = canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [layer]}})
    upload(cfg, sha256(cfg))
    manifest = canonical({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                          "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                     "digest": sha256(cfg), "size": len(cfg)},
                          "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                      "digest": layer, "size": size}]})
    r = s.put("%s/v2/library/crash/manifests/v1" % upstream.url, data=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 201, r.text
    rule(kura, upstream)
    r = requests.get("%s/v2/up/library/crash/manifests/v1" % kura.url, auth=kura.auth, timeout=60,
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200, r.text
    # Read the first 8 MiB of the layer as it streams, then kill -9 the server.
    with requests.get("%s/v2/up/library/crash/blobs/%s" % (kura.url, layer), auth=kura.auth,
                      stream=True, timeout=120) as b:
        got = 0
        for piece in b.iter_content(1 << 20):
            got += len(piece)
            if got >= 8 << 20:
                break
        kura.kill9()
    kura.start()
    kura.login()
    check = kura.ecr().batch_check_layer_availability(repositoryName="up/library/crash", layerDigests=[layer])
    if check["failures"]:
        assert [f["failureCode"] for f in check["failures"]] == ["MissingLayerDigest"], check
    h = hashlib.sha256()
    with requests.get("%s/v2/up/library/crash/blobs/%s" % (kura.url, layer), auth=kura.auth,
                      stream=True, timeout=180) as b:
        assert b.status_code == 200, b.text
        for piece in b.iter_content(1 << 20):
            h.update(piece)
    assert "sha256:" + h.hexdigest() == layer
    assert kura.ecr().batch_check_layer_availability(repositoryName="up/library/crash",
                                                     layerDigests=[layer])["failures"] == []
