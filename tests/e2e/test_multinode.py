"""Three `kura serve` nodes sharing one PostgreSQL database and one S3 bucket.

Run under scripts/with-postgres-s3, which starts both and exports
KURA_DATABASE_URL and KURA_S3_* (the module is skipped without them, unless
KURA_REQUIRE_MULTINODE=1, which turns the skip into a failure):

    scripts/with-postgres-s3 python3 -m pytest tests/e2e/test_multinode.py -v

Each node has its own data directory and port; all share the database, the
bucket, the master key file and the root credentials. The module's cluster
gets a database of its own (created with psql when it can) and its own key
prefix in the bucket, so it does not see what other suites left behind.
"""
import base64
import concurrent.futures
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from blobs_util import (
    OCI_CONFIG,
    OCI_LAYER,
    OCI_MANIFEST,
    Client,
    abs_location,
    assert_error,
    canonical,
    describe,
    expect,
    prng_chunks,
    prng_digest,
    rand_bytes,
    sha256,
    stream_digest,
    with_query,
)
from conftest import Registry
from helpers import RegistryAPI, require_tool, run
from images import Layout, make_rng, random_image

MIB = 1024 * 1024
NODES = 3
# How long a resume may wait for the upload that a killed node was writing.
RESUME_WAIT_S = 60

_MISSING = [v for v in ("KURA_DATABASE_URL", "KURA_S3_BUCKET") if not os.environ.get(v)]
_REQUIRED = os.environ.get("KURA_REQUIRE_MULTINODE") == "1"
_WHY = ("multi-node tests need %s (run them under scripts/with-postgres-s3)"
        % " and ".join(_MISSING))

pytestmark = pytest.mark.skipif(bool(_MISSING) and not _REQUIRED, reason=_WHY)

# Settings that select the shared stores; passed to every node.
SHARED_VARS = ("KURA_S3_ENDPOINT", "KURA_S3_BUCKET", "KURA_S3_REGION",
               "KURA_S3_ACCESS_KEY_ID", "KURA_S3_SECRET_ACCESS_KEY")


# ---------------------------------------------------------------- the cluster


def fresh_database(base_url, name):
    """A new, empty database next to `base_url`'s; returns its URL. Without
    psql, the given database itself (shared with whatever else used it)."""
    if shutil.which("psql") is None:
        return base_url
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", base_url,
                        "-c", 'CREATE DATABASE "%s"' % name],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "creating database %s: %s" % (name, p.stderr)
    u = urlsplit(base_url)
    return urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


class Cluster:
    """`nodes`: Registry objects (see conftest) started with the shared stores."""

    def __init__(self, root, label):
        if _MISSING:
            pytest.fail(_WHY + " (KURA_REQUIRE_MULTINODE=1)", pytrace=False)
        self.root = str(root)
        tag = "%s_%s" % (label, uuid.uuid4().hex[:8])
        self.database_url = fresh_database(os.environ["KURA_DATABASE_URL"], "kura_mn_" + tag)
        self.prefix = "mn-%s/" % tag
        self.master_key = os.path.join(self.root, "shared", "master.key")
        os.makedirs(os.path.dirname(self.master_key), exist_ok=True)
        self.env = {v: os.environ[v] for v in SHARED_VARS if os.environ.get(v)}
        self.env.update({
            "KURA_DATABASE_URL": self.database_url,
            "KURA_S3_PREFIX": self.prefix,
            "KURA_MASTER_KEY_FILE": self.master_key,
        })
        self.nodes = []
        for i in range(NODES):
            d = os.path.join(self.root, "node%d" % (i + 1))
            os.makedirs(d)
            self.nodes.append(Registry(d))

    def start(self, together=False):
        """Start every node; `together`: all at once, else the first alone
        (it creates the schema and the account), then the others at once."""
        first = [] if together else [self.nodes[0]]
        for n in first:
            n.start(extra_env=self.env)
        rest = [n for n in self.nodes if n not in first]
        with concurrent.futures.ThreadPoolExecutor(len(rest)) as ex:
            errors = [f.exception() for f in [ex.submit(n.start, self.env) for n in rest]]
        for n, e in zip(rest, errors):
            if e is not None:
                self.stop()
                pytest.fail("node %s did not start: %s" % (n.host, e), pytrace=False)
        # Pushes create their repositories (a template made through one node).
        self.nodes[0].allow_create_on_push()
        for n in self.nodes:
            n.login()  # each node's own registry token (test_token_* mixes them)
        return self

    def stop(self):
        for n in self.nodes:
            n.stop()

    def logs(self):
        return "".join("\n--- %s log (tail) ---\n%s" % (n.host, n.log()[-3000:]) for n in self.nodes)

    def client(self, i):
        n = self.nodes[i]
        return Client(n.url, auth=n.auth)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("multinode"), "m").start()
    # The nodes must really share their metadata: a repository made on one is
    # seen by the others (an old binary would silently run three embedded stores).
    name = "mn/shared-check"
    c.nodes[0].ecr().create_repository(repositoryName=name)
    for n in c.nodes[1:]:
        got = n.ecr().describe_repositories(repositoryNames=[name])["repositories"]
        assert [r["repositoryName"] for r in got] == [name], (
            "nodes do not share metadata: is KURA_BIN built with PostgreSQL support?" + c.logs())
    yield c
    c.stop()


def on(node, url):
    """`url` (an upload Location from any node) addressed to `node`."""
    u = urlsplit(url)
    return urlunsplit(("http", node.host, u.path, u.query, u.fragment))


def patch(c, loc, data, start):
    return c.request("PATCH", loc, data=data, headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": "%d-%d" % (start, start + len(data) - 1),
        "Content-Length": str(len(data)),
    })


def upload_offset(c, loc):
    """GET on the upload URL: the number of bytes the upload holds."""
    r = c.request("GET", loc)
    assert r.status_code == 204, describe(r)
    m = re.fullmatch(r"0-(\d+)", r.headers.get("Range", ""))
    assert m, "upload status without a Range header\n" + describe(r)
    end = int(m.group(1))
    # "0-0" means empty (Kura's, and distribution's, convention), or one byte.
    return 0 if end == 0 else end + 1


def check_blob_everywhere(cluster, repo, digest, size):
    for i, n in enumerate(cluster.nodes):
        c = cluster.client(i)
        h = c.head("/v2/%s/blobs/%s" % (repo, digest))
        assert h.status_code == 200, "node %s: %s" % (n.host, describe(h))
        assert int(h.headers["Content-Length"]) == size, describe(h)
        assert h.headers.get("Docker-Content-Digest") in (None, digest), describe(h)
        with c.get_blob(repo, digest, stream=True, timeout=(10, 300)) as g:
            assert g.status_code == 200, "node %s: %s" % (n.host, describe(g))
            got, length = stream_digest(g)
        assert (got, length) == (digest, size), "node %s served %d bytes hashing to %s" % (
            n.host, length, got)


def bucket_keys(cluster):
    """Keys under the cluster's prefix in the shared bucket."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=os.environ["KURA_S3_ENDPOINT"],
                      region_name=os.environ.get("KURA_S3_REGION", "us-east-1"),
                      aws_access_key_id=os.environ.get("KURA_S3_ACCESS_KEY_ID"),
                      aws_secret_access_key=os.environ.get("KURA_S3_SECRET_ACCESS_KEY"))
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=os.environ["KURA_S3_BUCKET"], Prefix=cluster.prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    return keys


# ---------------------------------------------------------------- (a) one upload, three nodes


def test_chunked_upload_across_nodes(cluster):
    """POST and a PATCH on node 1, a PATCH on node 2, the closing PUT (with
    the last chunk) on node 3; then every node serves the blob."""
    repo = "mn/chunked"
    c1, c2, c3 = (cluster.client(i) for i in range(3))
    n1, n2, n3 = cluster.nodes
    # Odd sizes, one chunk under S3's 5 MiB multipart minimum, one over it.
    pieces = [rand_bytes(700 * 1024 + 3, seed=1), rand_bytes(6 * MIB + 11, seed=2),
              rand_bytes(300 * 1024 + 7, seed=3)]
    data = b"".join(pieces)
    digest = sha256(data)

    loc = c1.start_upload(repo)
    r = expect(patch(c1, on(n1, loc), pieces[0], 0), 202)
    assert r.headers.get("Range") == "0-%d" % (len(pieces[0]) - 1), describe(r)
    loc = abs_location(c1.base, r)

    assert upload_offset(c2, on(n2, loc)) == len(pieces[0])
    r = expect(patch(c2, on(n2, loc), pieces[1], len(pieces[0])), 202)
    done = len(pieces[0]) + len(pieces[1])
    assert r.headers.get("Range") == "0-%d" % (done - 1), describe(r)
    loc = abs_location(c2.base, r)

    assert upload_offset(c3, on(n3, loc)) == done
    r = c3.request("PUT", with_query(on(n3, loc), digest=digest), data=pieces[2], headers={
        "Content-Type": "application/octet-stream",
        "Content-Range": "%d-%d" % (done, len(data) - 1),
        "Content-Length": str(len(pieces[2])),
    })
    expect(r, 201)
    assert r.headers.get("Docker-Content-Digest") in (None, digest), describe(r)
    check_blob_everywhere(cluster, repo, digest, len(data))

    # The session is over on every node.
    for i, n in enumerate(cluster.nodes):
        g = cluster.client(i).request("GET", on(n, loc))
        assert g.status_code == 404, describe(g)

    # The blob lives in the bucket, not in any node's data directory.
    assert bucket_keys(cluster), "nothing under %s in the bucket" % cluster.prefix
    hexd = digest.split(":", 1)[1]
    for n in cluster.nodes:
        for dirpath, _, files in os.walk(n.data_dir):
            assert hexd not in files, "blob stored in %s's data dir: %s" % (n.host, dirpath)


# ---------------------------------------------------------------- (b) push on one, pull on all


def test_push_through_one_node_pulls_through_the_others(cluster, tmp_path):
    require_tool("skopeo")
    n1 = cluster.nodes[0]
    layout = Layout(tmp_path / "src")
    desc, _ = random_image(layout, make_rng(42), tag="v1", nlayers=3)
    repo = "mn/skopeo"
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
         "--dest-creds", "AWS:%s" % n1.token, "oci:%s:v1" % layout.path,
         "docker://%s/%s:v1" % (n1.host, repo)], registry=n1)
    # At once, with no waiting: the other nodes serve the image and its blobs.
    for n in cluster.nodes[1:]:
        tree = RegistryAPI(n).check_tree(repo, "v1")
        assert desc["digest"] in tree
        for digest, _ in layout.walk(desc["digest"]):
            assert tree[digest] == layout.blob(digest)
        out = tmp_path / ("pulled-" + n.host.replace(":", "-"))
        run(["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false",
             "--src-creds", "AWS:%s" % n.token, "docker://%s/%s:v1" % (n.host, repo),
             "oci:%s:v1" % out], registry=n)
        assert Layout(out).resolve("v1")["digest"] == desc["digest"]
        assert "v1" in RegistryAPI(n).tags(repo)


# ---------------------------------------------------------------- (c) immutable tag race


def test_concurrent_pushes_of_one_immutable_tag(cluster):
    repo = "mn/immutable"
    cluster.nodes[1].ecr().create_repository(repositoryName=repo, imageTagMutability="IMMUTABLE")
    c1 = cluster.client(0)
    cfg = canonical({"architecture": "amd64", "os": "linux"})
    layer = rand_bytes(4096, seed=7)
    config = {"mediaType": OCI_CONFIG, "digest": c1.push_blob(repo, cfg), "size": len(cfg)}
    layer_d = {"mediaType": OCI_LAYER, "digest": c1.push_blob(repo, layer), "size": len(layer)}
    bodies = [canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config,
                         "layers": [layer_d], "annotations": {"push": str(i)}})
              for i in range(50)]
    clients = [cluster.client(i % NODES) for i in range(50)]  # one session per pusher
    gate = threading.Barrier(50)

    def push(i):
        gate.wait(30)
        return clients[i].put_manifest(repo, "release", bodies[i])

    with concurrent.futures.ThreadPoolExecutor(50) as ex:
        results = list(ex.map(push, range(50)))
    won = [i for i, r in enumerate(results) if r.status_code == 201]
    statuses = sorted(r.status_code for r in results)
    assert len(won) == 1, "expected exactly one 201, got statuses %s%s" % (statuses, cluster.logs())
    for i, r in enumerate(results):
        if i != won[0]:
            body = assert_error(r, 400, "TAG_INVALID")
            assert any(e.get("detail", {}).get("immutableTag") == "release"
                       for e in body["errors"] if isinstance(e.get("detail"), dict)), describe(r)
    winner = bodies[won[0]]
    for i, n in enumerate(cluster.nodes):
        g = cluster.client(i).get_manifest(repo, "release")
        assert g.status_code == 200, describe(g)
        assert g.content == winner, "node %s: tag points at another manifest" % n.host
        assert g.headers.get("Docker-Content-Digest") == sha256(winner)
    # The ECR view agrees: one image carries the tag.
    images = cluster.nodes[2].ecr().describe_images(repositoryName=repo)["imageDetails"]
    tagged = [d for d in images if "release" in d.get("imageTags", [])]
    assert [d["imageDigest"] for d in tagged] == [sha256(winner)], images


# ---------------------------------------------------------------- (d) kill -9 mid-upload


class StreamingPatch(threading.Thread):
    """One PATCH with a streamed (chunked) body of `size` bytes from `offset`
    of the pseudo-random stream `seed`, sent slowly; `progress` is set once
    `kill_after` bytes went out."""

    def __init__(self, url, auth, seed, offset, size, kill_after):
        super().__init__(daemon=True)
        self.url, self.auth, self.seed = url, auth, seed
        self.offset, self.size, self.kill_after = offset, size, kill_after
        self.sent = 0
        self.progress = threading.Event()
        self.status = None
        self.error = None

    def body(self):
        skip = self.offset
        left = self.size
        for piece in prng_chunks(self.seed, self.offset + self.size, 256 * 1024):
            if skip >= len(piece):
                skip -= len(piece)
                continue
            piece = piece[skip:][:left]
            skip = 0
            left -= len(piece)
            self.sent += len(piece)
            if self.sent >= self.kill_after:
                self.progress.set()
            yield piece
            time.sleep(0.01)

    def run(self):
        try:
            r = requests.patch(self.url, data=self.body(), auth=self.auth, timeout=120,
                               headers={"Content-Type": "application/octet-stream"})
            self.status = r.status_code
        except Exception as e:  # the node died under us: expected
            self.error = e
        finally:
            self.progress.set()


def stream_part(seed, start, end):
    """Bytes [start, end) of the pseudo-random stream `seed`."""
    out = bytearray()
    pos = 0
    for piece in prng_chunks(seed, end):
        if pos + len(piece) > start:
            out += piece[max(0, start - pos):]
        pos += len(piece)
    return bytes(out[: end - start])


def test_kill9_mid_upload_then_resume_on_another_node(cluster, record_property):
    repo = "mn/killed"
    seed = "multinode-kill"
    size = 40 * MIB
    acked = 8 * MIB
    digest = prng_digest(seed, size)
    n1, n2, n3 = cluster.nodes
    c1, c3 = cluster.client(0), cluster.client(2)

    # Node 1: the upload starts and 8 MiB are acknowledged.
    loc = c1.start_upload(repo)
    r = expect(patch(c1, on(n1, loc), stream_part(seed, 0, acked), 0), 202)
    loc = abs_location(c1.base, r)

    # Node 2: a slow streamed PATCH of the rest; node 2 is killed part-way.
    push = StreamingPatch(on(n2, loc), n2.auth, seed, acked, size - acked, kill_after=6 * MIB)
    push.start()
    assert push.progress.wait(120)
    n2.kill9()
    t_kill = time.time()
    push.join(60)
    assert not push.is_alive()
    assert push.status is None, "the streamed PATCH finished before the kill (status %s)" % push.status
    print("\nkilled node 2 after sending %d of %d bytes of its PATCH" % (push.sent, size - acked))

    # Node 3 sees exactly the acknowledged bytes (or everything, had the
    # interrupted PATCH been written in full, which it cannot have been here).
    offset = upload_offset(c3, on(n3, loc))
    assert offset in (acked, acked + push.size), (
        "after kill -9 the upload holds %d bytes; %d were acknowledged and the "
        "interrupted PATCH sent %d more%s" % (offset, acked, push.sent, cluster.logs()))

    # Resume on node 3. The killed node may still hold the upload's write
    # lease: retry (bounded) while the node answers that the upload is busy.
    probe = stream_part(seed, offset, offset + 64 * 1024)
    answers = []
    while True:
        r = patch(c3, on(n3, loc), probe, offset)
        answers.append(r.status_code)
        if r.status_code == 202:
            break
        busy = r.status_code in (409, 416, 423, 429, 503) and (
            r.status_code != 416 or upload_offset(c3, on(n3, loc)) == offset)
        waited = time.time() - t_kill
        assert busy and waited < RESUME_WAIT_S, (
            "could not resume the upload %.0f s after the writing node was killed; "
            "answers %s; last:\n%s%s" % (waited, sorted(set(answers)), describe(r), cluster.logs()))
        time.sleep(1)
    waited = time.time() - t_kill
    record_property("resume_wait_s", round(waited, 1))
    print("resumed on node 3 %.1f s after the kill (%d refusals: %s)"
          % (waited, len(answers) - 1, sorted(set(answers[:-1]))))
    offset += len(probe)
    loc = abs_location(c3.base, r)
    r = expect(patch(c3, on(n3, loc), stream_part(seed, offset, size), offset), 202)
    r = c3.request("PUT", with_query(abs_location(c3.base, r), digest=digest),
                   headers={"Content-Length": "0"}, timeout=(10, 300))
    expect(r, 201)

    # The killed node comes back and serves it too.
    n2.start(extra_env=cluster.env)
    check_blob_everywhere(cluster, repo, digest, size)


# ---------------------------------------------------------------- (e) tokens


def test_token_from_one_node_works_on_the_others(cluster):
    n1 = cluster.nodes[0]
    repo = "mn/token"
    c1 = cluster.client(0)
    digest, _, body = c1.push_image(repo, "t1", seed=5)
    data = n1.ecr().get_authorization_token()["authorizationData"][0]
    user, token = base64.b64decode(data["authorizationToken"]).decode().split(":", 1)
    assert user == "AWS"
    tokens = [token]
    if shutil.which("aws"):
        p = subprocess.run(["aws", "ecr", "get-login-password", "--endpoint-url", n1.url],
                           env=n1.aws_env(), capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        tokens.append(p.stdout.strip())
    for tok in tokens:
        for n in cluster.nodes:
            r = requests.get(n.url + "/v2/", auth=("AWS", tok), timeout=30)
            assert r.status_code == 200, "node %s refused node 1's token: %s" % (n.host, describe(r))
            r = Client(n.url, auth=("AWS", tok)).get_manifest(repo, "t1")
            assert r.status_code == 200 and r.content == body, describe(r)
        # A token is not a password for anything else: a changed one is refused.
        bad = tok[:-4] + ("AAAA" if not tok.endswith("AAAA") else "BBBB")
        r = requests.get(cluster.nodes[2].url + "/v2/", auth=("AWS", bad), timeout=30)
        assert r.status_code == 401, describe(r)


# ---------------------------------------------------------------- start-up


def test_three_nodes_start_together_on_an_empty_database(tmp_path):
    """Nodes started at the same moment on an empty database and bucket agree
    on the schema, the account, the root key and the master key."""
    c = Cluster(tmp_path, "cold")
    try:
        c.start(together=True)
        repo = "mn/cold"
        c.nodes[2].ecr().create_repository(repositoryName=repo)
        digest, _, body = c.client(0).push_image(repo, "v1", seed=9)
        for i, n in enumerate(c.nodes):
            g = c.client(i).get_manifest(repo, "v1")
            assert g.status_code == 200 and g.content == body, describe(g)
            assert n.ecr().describe_registry()["registryId"] == n.account_id
        # One account, and node 3's token works on node 1.
        r = requests.get(c.nodes[0].url + "/v2/", auth=c.nodes[2].auth, timeout=30)
        assert r.status_code == 200, describe(r)
    finally:
        c.stop()
