"""The pull-through cache across nodes: three `kura serve` nodes on one
PostgreSQL database and one S3 bucket, one Distribution upstream. A burst of
cold pulls spread over every node fetches each blob from the upstream once:
the single flight is the cluster's, through the database.

Run under scripts/with-postgres-s3 (skipped without it, unless
KURA_REQUIRE_MULTINODE=1).
"""
import concurrent.futures

import pytest
import requests

from images import Layout, make_rng, random_image
from test_multinode import Cluster, _MISSING, _REQUIRED, _WHY
from upstream_util import Distribution

pytestmark = pytest.mark.skipif(bool(_MISSING) and not _REQUIRED, reason=_WHY)


def test_a_cold_burst_over_three_nodes_fetches_each_blob_once(tmp_path):
    upstream = Distribution(tmp_path / "upstream").start()
    cluster = Cluster(tmp_path / "cluster", "ptc").start()
    try:
        src = Layout(tmp_path / "src")
        img, _ = random_image(src, make_rng(), "v1", nlayers=3, nfiles=2, min_size=1 << 20, max_size=3 << 20)
        from test_pull_through import seed  # the same skopeo copy as the embedded tests
        seed(upstream, src, "v1", "library/burst:v1")
        cluster.nodes[0].ecr().create_pull_through_cache_rule(ecrRepositoryPrefix="up",
                                                              upstreamRegistryUrl=upstream.url)
        want = {d: src.blob(d) for d, _ in src.walk(img["digest"])}

        def pull(i):
            node = cluster.nodes[i % len(cluster.nodes)]
            s = requests.Session()
            s.auth = node.auth
            r = s.get("%s/v2/up/library/burst/manifests/v1" % node.url, timeout=120,
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert r.status_code == 200, "%s: %s" % (node.host, r.text)
            m = r.json()
            got = {img["digest"]: r.content}
            for d in [m["config"]["digest"]] + [layer["digest"] for layer in m["layers"]]:
                b = s.get("%s/v2/up/library/burst/blobs/%s" % (node.url, d), timeout=120)
                assert b.status_code == 200, "%s: %s" % (node.host, b.text)
                got[d] = b.content
            return got

        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            results = list(pool.map(pull, range(30)))
        for got in results:
            assert got == want
        fetched = {}
        for _, digest, status in upstream.requests("GET", "blobs", "library/burst"):
            if status == 200:
                fetched[digest] = fetched.get(digest, 0) + 1
        assert set(fetched) == set(want) - {img["digest"]}, cluster.logs()
        assert all(n == 1 for n in fetched.values()), "upstream blob fetches: %s%s" % (fetched, cluster.logs())
        manifests = [r for r in upstream.requests("GET", "manifests", "library/burst") if r[2] == 200]
        assert len(manifests) == 1, manifests
    finally:
        cluster.stop()
        upstream.stop()
