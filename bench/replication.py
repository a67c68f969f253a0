#!/usr/bin/env python3
"""Replication benchmark: two Kura deployments (us-east-1 -> eu-west-1) on this machine.

    python3 bench/replication.py                       # by hand: 1 GiB large layer
    python3 bench/replication.py --size 256M --small 50 --pushes 200

Measures, in one run:
  1. the source's push throughput (small images, --clients concurrent pushers) with
     replication off (no rule) and on (a prod/ rule to eu-west-1), and how long the
     destination takes to catch up with the burst;
  2. replication lag for --small small images pushed one at a time: from the manifest
     PUT being acknowledged by the source to the manifest being served by the
     destination (it is only served once all its blobs are there), p50/p99;
  3. the same lag for one image with a --size layer (streamed, never held in memory).

Uses the binary in $KURA_BIN (default $CARGO_TARGET_DIR/release/kura, else
target/release/kura) and the e2e harness's helpers (tests/e2e). Not run in CI.
Prints a Markdown table (and writes it to --out if given).
"""
import argparse
import concurrent.futures
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

import requests  # noqa: E402

from blobs_util import Client, canonical, expect, prng_chunks, prng_digest, rand_bytes, sha256, with_query  # noqa: E402
from repl_util import Federation, put_configuration, rule, statuses  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def parse_size(s):
    s = s.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def small_image(c, repo, tag, layer_size):
    """Push a config and one random layer, then the manifest; returns (digest, ack time)."""
    layer = rand_bytes(layer_size)
    cfg = canonical({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex(),
                     "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}})
    c.push_blob(repo, cfg)
    c.push_blob(repo, layer)
    body = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": OCI_CONFIG, "digest": sha256(cfg), "size": len(cfg)},
                      "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}]})
    digest, _ = c.push_manifest(repo, tag, body)
    return digest, time.monotonic()


def wait_visible(s, reg, repo, digest, timeout, interval=0.005):
    """Poll the destination until it serves the manifest; returns the time it did."""
    url = "%s/v2/%s/manifests/%s" % (reg.url, repo, digest)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = s.head(url, headers={"Accept": OCI_MANIFEST}, timeout=30)
        if r.status_code == 200:
            return time.monotonic()
        time.sleep(interval)
    raise RuntimeError("%s@%s not replicated within %ss" % (repo, digest, timeout))


def cpu_s(proc):
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    with open("/proc/%d/stat" % proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def throughput(fed, prefix, n, clients, layer_size):
    """n small images pushed by `clients` threads; returns (images/s, digests, start time);
    sets fed.cpu to the CPU seconds (source, destination) the phase took."""
    cpu0 = (cpu_s(fed.src.proc), cpu_s(fed.dst.proc))
    out = []
    lock = threading.Lock()
    local = threading.local()

    def one(i):
        if not hasattr(local, "c"):
            local.c = Client(fed.src.url, auth=fed.src.auth)
        d, _ = small_image(local.c, "%s/app%d" % (prefix, i % clients), "t%d" % i, layer_size)
        with lock:
            out.append(("%s/app%d" % (prefix, i % clients), d))

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(clients) as ex:
        list(ex.map(one, range(n)))
    took = time.monotonic() - t0
    fed.cpu = (cpu_s(fed.src.proc) - cpu0[0], cpu_s(fed.dst.proc) - cpu0[1], took)
    return n / took, out, t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=100, help="small images for the lag percentiles (100)")
    ap.add_argument("--small-size", default="4K", help="layer size of a small image (4K)")
    ap.add_argument("--size", default="1G", help="the large layer (1G)")
    ap.add_argument("--pushes", type=int, default=300, help="images per throughput phase (300)")
    ap.add_argument("--clients", type=int, default=4, help="concurrent pushers (4)")
    ap.add_argument("--timeout", type=float, default=600, help="longest wait for one replication (s)")
    ap.add_argument("--workdir", help="where the two data directories go (default: a temp dir, removed)")
    ap.add_argument("--out", help="also write the Markdown table here")
    args = ap.parse_args()
    small_size, size = parse_size(args.small_size), parse_size(args.size)

    if not os.environ.get("KURA_BIN"):
        target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
        os.environ["KURA_BIN"] = os.path.join(target, "release", "kura")
    if not os.access(os.environ["KURA_BIN"], os.X_OK):
        sys.exit("no kura binary at %s (cargo build --release -p kura)" % os.environ["KURA_BIN"])
    os.environ.setdefault("RUST_LOG", "warn")
    work = args.workdir or tempfile.mkdtemp(prefix="kura-repl-bench-")
    # The default job poll interval, as an operator would run it (not the tests' fast one).
    fed = Federation(work, src_env={"KURA_JOB_POLL_INTERVAL": "1s"}, dst_env={"KURA_JOB_POLL_INTERVAL": "1s"})
    fed.src.env.pop("KURA_REPLICATION_RETRY_BASE", None)
    fed.start()
    rows = []
    try:
        dst = requests.Session()
        dst.auth = fed.dst.auth

        # 1. Push throughput: replication off; on towards a region with no peer (each push
        # queues a job and writes a status, the job fails at once: the push path's own
        # cost); on towards eu-west-1 (the copies run on this machine too).
        put_configuration(fed.src, [])
        off, _, _ = throughput(fed, "prod/off", args.pushes, args.clients, small_size)
        cpu_off = fed.cpu
        put_configuration(fed.src, [rule("prod/q/", ("ap-south-1", fed.src.account_id))])
        queued, _, _ = throughput(fed, "prod/q", args.pushes, args.clients, small_size)
        cpu_q = fed.cpu
        put_configuration(fed.src, [rule("prod/on/", fed.dst)])
        on, pushed, t0 = throughput(fed, "prod/on", args.pushes, args.clients, small_size)
        t_pushed = time.monotonic()
        cpu_on = fed.cpu
        last = t0
        for repo, d in pushed:
            last = max(last, wait_visible(dst, fed.dst, repo, d, args.timeout, interval=0.05))
        rows.append(("push throughput, replication off (%d images, %d clients)" % (args.pushes, args.clients),
                     "%.1f images/s" % off))
        rows.append(("push throughput, replication queued only (a region without a peer: FAILED at once)",
                     "%.1f images/s (%+.0f%%)" % (queued, (queued / off - 1) * 100)))
        rows.append(("push throughput, replication on (to eu-west-1 on this machine)",
                     "%.1f images/s (%+.0f%%)" % (on, (on / off - 1) * 100)))
        for name, (a, b, took) in (("off", cpu_off), ("queued only", cpu_q), ("on", cpu_on)):
            rows.append(("CPU during the pushes, replication %s" % name,
                         "source %.1f s, destination %.1f s over %.1f s wall (%d cores)" % (
                             a, b, took, os.cpu_count())))
        rows.append(("burst fully replicated after the last push", "%.2f s (all %d in %.2f s from the first)" % (
            max(0.0, last - t_pushed), args.pushes, last - t0)))

        # 2. Lag of small images, one at a time.
        c = Client(fed.src.url, auth=fed.src.auth)
        lags = []
        for i in range(args.small):
            d, acked = small_image(c, "prod/on/lag", "l%d" % i, small_size)
            lags.append(wait_visible(dst, fed.dst, "prod/on/lag", d, args.timeout) - acked)
        rows.append(("lag, small image (%s layer), n=%d" % (args.small_size, args.small),
                     "p50 %.0f ms, p99 %.0f ms, max %.0f ms, mean %.0f ms" % (
                         pct(lags, 50) * 1e3, pct(lags, 99) * 1e3, max(lags) * 1e3,
                         statistics.mean(lags) * 1e3)))

        # 3. One large layer, streamed.
        seed = "bench-%s" % os.urandom(4).hex()
        big = prng_digest(seed, size)
        cfg = canonical({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [big]}})
        c.push_blob("prod/on/large", cfg)
        t_up = time.monotonic()
        loc = c.start_upload("prod/on/large")
        r = c.request("PUT", with_query(loc, digest=big), data=prng_chunks(seed, size),
                      headers={"Content-Type": "application/octet-stream"}, timeout=3600)
        expect(r, 201)
        upload_s = time.monotonic() - t_up
        body = canonical({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                          "config": {"mediaType": OCI_CONFIG, "digest": sha256(cfg), "size": len(cfg)},
                          "layers": [{"mediaType": OCI_LAYER, "digest": big, "size": size}]})
        d, _ = c.push_manifest("prod/on/large", "v1", body)
        acked = time.monotonic()
        lag = wait_visible(dst, fed.dst, "prod/on/large", d, args.timeout, interval=0.05) - acked
        st = statuses(fed.src, "prod/on/large", d)
        rows.append(("lag, one %s layer" % args.size, "%.2f s (%.0f MiB/s); the push itself took %.2f s; status %s" % (
            lag, size / (1 << 20) / lag if lag > 0 else float("inf"), upload_s,
            st[0]["status"] if st else "?")))
        # Check the replica's layer hashes right (outside the timing).
        r = dst.get("%s/v2/prod/on/large/blobs/%s" % (fed.dst.url, big), stream=True, timeout=3600)
        h = hashlib.sha256()
        for piece in r.iter_content(1 << 20):
            h.update(piece)
        assert "sha256:" + h.hexdigest() == big, "the replicated large layer does not hash to its digest"
    finally:
        fed.stop()
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    lines = ["| Replication (us-east-1 -> eu-west-1, one machine) | Result |", "|---|---|"]
    lines += ["| %s | %s |" % r for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
