#!/usr/bin/env python3
"""Pull-through cache benchmark: Kura in front of a Distribution 2.8 upstream
(Debian's docker-registry), on this machine.

    python3 bench/pullthrough.py                    # 256 MiB layer, 5 rounds, 100-client burst
    python3 bench/pullthrough.py --size 64M --rounds 3 --burst 50

Each round pushes a fresh image (a config and one --size random layer) to the
upstream and to Kura directly, then measures, alternating the order:
  1. cold pull through Kura (first pull: Kura fetches from the upstream and
     streams to the client while it stores) versus pulling the same image
     directly from the upstream — the ratio's target is <= 1.1;
  2. warm pull through Kura (cached) versus Kura's normal pull of the pushed copy;
  3. after the rounds, a --burst of clients pulling a fresh image cold at once:
     how many times the upstream served each blob (target: once).
The client is raw HTTP (Python requests, streaming, 1 MiB reads) so that no
client's own cost hides the servers'. Prints a Markdown table (and writes it
to --out). Uses $KURA_BIN (default $CARGO_TARGET_DIR/release/kura, else
target/release/kura) and the e2e helpers. Not run in CI.
"""
import argparse
import concurrent.futures
import hashlib
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import requests  # noqa: E402

from blobs_util import Client, canonical, prng_chunks, prng_digest, sha256  # noqa: E402
from conftest import Registry  # noqa: E402
from upstream_util import Distribution  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def parse_size(s):
    s = s.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(float(s[:-1]) * mult[s[-1]]) if s[-1] in mult else int(s)


def push_stream(base, auth, repo, seed, size):
    """Upload a PRNG layer with one streamed PUT (POST, then PUT ?digest=)."""
    digest = prng_digest(seed, size)
    s = requests.Session()
    s.auth = auth
    r = s.post("%s/v2/%s/blobs/uploads/" % (base, repo))
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = base + loc
    sep = "&" if "?" in loc else "?"
    r = s.put("%s%sdigest=%s" % (loc, sep, digest), data=prng_chunks(seed, size),
              headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def push_image(base, auth, repo, tag, seed, size):
    layer = push_stream(base, auth, repo, seed, size)
    c = Client(base, auth=auth)
    cfg = canonical({"architecture": "amd64", "os": "linux", "seed": seed,
                     "rootfs": {"type": "layers", "diff_ids": [layer]}})
    c.push_blob(repo, cfg)
    body = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "digest": sha256(cfg), "size": len(cfg)},
                      "layers": [{"mediaType": OCI_LAYER, "digest": layer, "size": size}]})
    c.push_manifest(repo, tag, body)
    return layer


def pull(base, auth, repo, tag):
    """GET the manifest and every blob, streaming and hashing; returns seconds."""
    t = time.monotonic()
    s = requests.Session()
    s.auth = auth
    r = s.get("%s/v2/%s/manifests/%s" % (base, repo, tag), headers={"Accept": OCI_MANIFEST}, timeout=600)
    assert r.status_code == 200, r.text
    m = r.json()
    for d in [m["config"]["digest"]] + [layer["digest"] for layer in m["layers"]]:
        h = hashlib.sha256()
        with s.get("%s/v2/%s/blobs/%s" % (base, repo, d), stream=True, timeout=600) as b:
            assert b.status_code == 200, b.text
            for piece in b.iter_content(1 << 20):
                h.update(piece)
        assert "sha256:" + h.hexdigest() == d, "bad bytes for %s" % d
    return time.monotonic() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="256M")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--out")
    a = ap.parse_args()
    size = parse_size(a.size)
    work = tempfile.mkdtemp(prefix="kura-bench-ptc-")
    upstream = Distribution(os.path.join(work, "upstream")).start()
    os.makedirs(os.path.join(work, "kura"))
    kura = Registry(os.path.join(work, "kura"))
    kura.start()
    try:
        kura.allow_create_on_push()
        kura.login()
        kura.ecr().create_pull_through_cache_rule(ecrRepositoryPrefix="up", upstreamRegistryUrl=upstream.url)
        cold, direct, warm, local = [], [], [], []
        for i in range(a.rounds):
            seed = "round-%d-%s" % (i, os.urandom(4).hex())
            push_image(upstream.url, None, "bench/img%d" % i, "v1", seed, size)
            push_image(kura.url, kura.auth, "bench/local%d" % i, "v1", seed, size)
            # Alternate which goes first so page-cache warmth does not favour one side.
            if i % 2 == 0:
                direct.append(pull(upstream.url, None, "bench/img%d" % i, "v1"))
                cold.append(pull(kura.url, kura.auth, "up/bench/img%d" % i, "v1"))
            else:
                cold.append(pull(kura.url, kura.auth, "up/bench/img%d" % i, "v1"))
                direct.append(pull(upstream.url, None, "bench/img%d" % i, "v1"))
            if i % 2 == 0:
                warm.append(pull(kura.url, kura.auth, "up/bench/img%d" % i, "v1"))
                local.append(pull(kura.url, kura.auth, "bench/local%d" % i, "v1"))
            else:
                local.append(pull(kura.url, kura.auth, "bench/local%d" % i, "v1"))
                warm.append(pull(kura.url, kura.auth, "up/bench/img%d" % i, "v1"))
            print("round %d: direct %.2fs cold %.2fs | local %.2fs warm %.2fs"
                  % (i, direct[-1], cold[-1], local[-1], warm[-1]), flush=True)

        # The burst: --burst clients pull one fresh image cold at once.
        push_image(upstream.url, None, "bench/burst", "v1", "burst-%s" % os.urandom(4).hex(), size // 4)
        t = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(a.burst) as pool:
            list(pool.map(lambda _: pull(kura.url, kura.auth, "up/bench/burst", "v1"), range(a.burst)))
        burst_s = time.monotonic() - t
        fetches = {}
        for _, d, status in upstream.requests("GET", "blobs", "bench/burst"):
            if status == 200:
                fetches[d] = fetches.get(d, 0) + 1

        med = statistics.median
        rows = [
            ("cold pull through Kura / direct from the upstream (%s layer; median of %d)" % (a.size, a.rounds),
             "%.2f s / %.2f s = **%.2f×**" % (med(cold), med(direct), med(cold) / med(direct))),
            ("warm pull through Kura / Kura's pull of a pushed copy",
             "%.2f s / %.2f s = **%.2f×**" % (med(warm), med(local), med(warm) / med(local))),
            ("%d clients pulling one cold image (%s layer) at once" % (a.burst, parse_label(size // 4)),
             "%.1f s; upstream GETs per blob: %s" % (burst_s, sorted(fetches.values()))),
        ]
        out = "| measure | result |\n|---|---|\n" + "".join("| %s | %s |\n" % r for r in rows)
        print(out)
        if a.out:
            with open(a.out, "w") as f:
                f.write(out)
    finally:
        kura.stop()
        upstream.stop()


def parse_label(n):
    return "%d MiB" % (n >> 20) if n >= 1 << 20 else "%d KiB" % (n >> 10)


if __name__ == "__main__":
    main()
