#!/usr/bin/env python3
"""Make an upgrade fixture: a data directory written by an OLDER kura binary.

    scripts/make-upgrade-fixture.py --kura /path/to/old/kura --commit <sha> \
        --out tests/fixtures/upgrade/v05

starts the given binary on a fresh data directory (127.0.0.1, a free port, a
known account and root key), creates two repositories through the ECR API,
pushes small images through the distribution API (tar+gzip layers of a few
KiB, a shared layer, a Docker v2 manifest, an OCI index), sets a repository
policy, a lifecycle policy and tag immutability, stops the server (SIGTERM, so
SQLite checkpoints its WAL) and writes

    <out>.tar.gz   the data directory (meta.db, master.key, blobs/)
    <out>.json     what was stored: commit, schema version, every tag's
                   manifest digest, every blob digest, the policies

tests/e2e/test_upgrade.py starts today's kura on each fixture and checks that
the schema is upgraded and everything in <out>.json is still there, byte for
byte. Only the public APIs are used, so any old commit with the ECR API works.

Very old builds lack some features (the first ones answer SetRepositoryPolicy
with UnsupportedOperationException). What a build refuses is not stored, so
<out>.json records it as absent (a null policy, no index tag, the tag
mutability DescribeRepositories reports) and lists the refusal under
"unsupported"; policies and mutability are recorded as the old build reads
them back, never as the script meant to set them.
"""
import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

ACCOUNT_ID = "123456789012"
ACCESS_KEY_ID = "AKIAKURAUPGRADE00001"
SECRET_ACCESS_KEY = "kuraUpgradeFixtureSecret/0123456789abcdef"
REGION = "us-east-1"

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

REPO_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Sid": "UpgradeFixturePull",
            "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT_ID},
            "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
        }
    ],
}
LIFECYCLE_POLICY = {
    "rules": [
        {
            "rulePriority": 1,
            "description": "upgrade fixture: expire untagged images after ten years",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 3650,
            },
            "action": {"type": "expire"},
        }
    ]
}


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def layer(rng, name, nfiles=2, size=1500):
    """(gzip bytes, diff_id): a reproducible tar+gzip of a few small files."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(nfiles):
            data = rng.getrandbits(8 * size).to_bytes(size, "little")
            info = tarfile.TarInfo("%s/file%d.bin" % (name, i))
            info.size = len(data)
            info.mtime = 1700000000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = raw.getvalue()
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw)
    return out.getvalue(), sha256(raw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Old:
    def __init__(self, binary, data_dir, log_path):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        env = {k: v for k, v in os.environ.items() if not (k == "KURA_DATABASE_URL" or k.startswith("KURA_S3_"))}
        env.update({
            "RUST_LOG": "info",
            "KURA_ACCOUNT_ID": ACCOUNT_ID,
            "KURA_ROOT_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "KURA_ROOT_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "KURA_REGION": REGION,
            # Small data directories: no 64 MiB space reserve file (older versions ignore it).
            "KURA_DISK_RESERVE_MIB": "0",
        })
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:%d" % self.port, "--data-dir", data_dir],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )
        deadline = time.time() + 60
        while True:
            if self.proc.poll() is not None:
                sys.exit("kura exited early; see %s" % log_path)
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                if time.time() > deadline:
                    sys.exit("kura did not start; see %s" % log_path)
                time.sleep(0.1)
        self.ecr = boto3.client(
            "ecr", endpoint_url=self.url, region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(retries={"max_attempts": 1}),
        )
        auth = self.ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
        user, token = base64.b64decode(auth).decode().split(":", 1)
        self.http = requests.Session()
        self.http.auth = (user, token)

    def put_blob(self, repo, data):
        digest = sha256(data)
        if self.http.head("%s/v2/%s/blobs/%s" % (self.url, repo, digest)).status_code == 200:
            return digest
        r = self.http.post("%s/v2/%s/blobs/uploads/" % (self.url, repo))
        assert r.status_code == 202, (r.status_code, r.text)
        loc = r.headers["Location"]
        if loc.startswith("/"):
            loc = self.url + loc
        r = self.http.put(loc, params={"digest": digest}, data=data,
                          headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, (r.status_code, r.text)
        return digest

    def put_manifest(self, repo, ref, body, media_type, refused=None):
        r = self.http.put("%s/v2/%s/manifests/%s" % (self.url, repo, ref), data=body,
                          headers={"Content-Type": media_type})
        if refused is not None and r.status_code in (400, 415):
            # This build does not take this kind of manifest: nothing was stored.
            refused.append("PUT manifest %s (%s): %d %s" % (ref, media_type, r.status_code, r.text.strip()[:200]))
            return None
        assert r.status_code == 201, (r.status_code, r.text)
        assert r.headers.get("Docker-Content-Digest") == sha256(body)
        return sha256(body)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.close()


def image(reg, repo, layers, arch="amd64", docker=False):
    """Push layers + config + manifest; returns (manifest bytes, media type, blob digests)."""
    blobs = []
    descs = []
    for data, _ in layers:
        blobs.append(reg.put_blob(repo, data))
        descs.append({"mediaType": DOCKER_LAYER if docker else MT_LAYER, "digest": sha256(data), "size": len(data)})
    config = canonical({
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in layers]},
    })
    blobs.append(reg.put_blob(repo, config))
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else MT_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG if docker else MT_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": descs,
    }
    return canonical(manifest), manifest["mediaType"], blobs


def unsupported_call(unsupported, what, call, **kw):
    """Call an ECR write; True if it took effect, False if this build answers
    UnsupportedOperationException (noted in `unsupported`). Any other error is fatal."""
    try:
        call(**kw)
        return True
    except ClientError as e:
        if e.response["Error"]["Code"] != "UnsupportedOperationException":
            raise
        unsupported.append("%s: %s" % (what, e.response["Error"].get("Message", "")))
        return False


def read_back(reg, repo):
    """The repository policy, lifecycle policy and tag mutability as the old build serves them."""
    ecr = reg.ecr
    try:
        policy = json.loads(ecr.get_repository_policy(repositoryName=repo)["policyText"])
    except ecr.exceptions.RepositoryPolicyNotFoundException:
        policy = None
    try:
        lifecycle = json.loads(ecr.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"])
    except ecr.exceptions.LifecyclePolicyNotFoundException:
        lifecycle = None
    mutability = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]["imageTagMutability"]
    return {"policy": policy, "lifecycle": lifecycle, "tagMutability": mutability}


def populate(reg):
    """Everything the fixture holds; returns the description written to <out>.json."""
    rng = random.Random(20261207)
    stored = {"repositories": {}}
    unsupported = []
    app, base = "upgrade/app", "upgrade/base"
    reg.ecr.create_repository(repositoryName=app)
    reg.ecr.create_repository(repositoryName=base, imageTagMutability="IMMUTABLE")
    shared = layer(rng, "shared")
    tags, blobs, manifests = {}, set(), set()

    # upgrade/app: v1 and latest on one image, v2 sharing a layer, a two-arch index.
    body, mt, b = image(reg, app, [shared, layer(rng, "app1")])
    blobs.update(b)
    d1 = reg.put_manifest(app, "v1", body, mt)
    reg.put_manifest(app, "latest", body, mt)
    tags["v1"] = tags["latest"] = d1
    body, mt, b = image(reg, app, [shared, layer(rng, "app2")])
    blobs.update(b)
    tags["v2"] = reg.put_manifest(app, "v2", body, mt)
    children, child_blobs = [], set()
    for arch in ("amd64", "arm64"):
        body, mt, b = image(reg, app, [layer(rng, "multi-" + arch)], arch=arch)
        child_blobs.update(b)
        d = reg.put_manifest(app, sha256(body), body, mt)
        children.append({"mediaType": mt, "digest": d, "size": len(body),
                         "platform": {"architecture": arch, "os": "linux"}})
    index = canonical({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": children})
    d = reg.put_manifest(app, "multi", index, MT_INDEX, refused=unsupported)
    if d is not None:
        # Only an index that was stored makes its children part of what a tag reaches.
        tags["multi"] = d
        blobs.update(child_blobs)
        manifests.update(c["digest"] for c in children)
    unsupported_call(unsupported, "SetRepositoryPolicy", reg.ecr.set_repository_policy,
                     repositoryName=app, policyText=json.dumps(REPO_POLICY))
    unsupported_call(unsupported, "PutLifecyclePolicy", reg.ecr.put_lifecycle_policy,
                     repositoryName=app, lifecyclePolicyText=json.dumps(LIFECYCLE_POLICY))
    stored["repositories"][app] = {
        "tags": tags, "blobs": sorted(blobs), "manifests": sorted(manifests | set(tags.values())),
        **read_back(reg, app),
    }

    # upgrade/base: a Docker v2 image in an IMMUTABLE repository.
    body, mt, b = image(reg, base, [shared, layer(rng, "base")], docker=True)
    d = reg.put_manifest(base, "1.0", body, mt)
    stored["repositories"][base] = {
        "tags": {"1.0": d}, "blobs": sorted(b), "manifests": [d],
        **read_back(reg, base),
    }
    if unsupported:
        stored["unsupported"] = unsupported
    return stored


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kura", required=True, help="the old kura binary")
    ap.add_argument("--commit", required=True, help="the commit the binary was built from")
    ap.add_argument("--out", required=True, help="output path without extension (e.g. tests/fixtures/upgrade/v05)")
    ap.add_argument("--checkpoint", action="store_true",
                    help="fold the WAL into meta.db after the server stops (what SQLite's last close does); "
                         "for builds whose WAL would make the fixture larger than 200 KiB")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="kura-fixture-")
    try:
        data = os.path.join(work, "data")
        reg = Old(args.kura, data, os.path.join(work, "server.log"))
        try:
            stored = populate(reg)
        finally:
            reg.stop()
        if args.checkpoint:
            db = sqlite3.connect(os.path.join(data, "meta.db"))
            try:
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()
        # Read-only, so closing it checkpoints nothing: the files stay as the old build left them
        # (its WAL included: the upgrade must read that too).
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(data, "meta.db"), uri=True)
        try:
            schema = db.execute("SELECT version FROM schema_version").fetchone()[0]
        finally:
            db.close()
        version = subprocess.run([args.kura, "--version"], capture_output=True, text=True).stdout.strip()
        stored = {"commit": args.commit, "kuraVersion": version, "schemaVersion": schema,
                  "walCheckpointed": args.checkpoint,
                  "account": ACCOUNT_ID, "accessKeyId": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY,
                  **stored}
        # The data directory without what a start makes again (space reserve, upload scratch).
        with tarfile.open(args.out + ".tar.gz", "w:gz", compresslevel=9) as tar:
            def keep(info):
                name = info.name
                if name.startswith("data/blobs/uploads/") or "reserve" in os.path.basename(name):
                    return None
                info.mtime = 1700000000
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                return info
            tar.add(data, arcname="data", filter=keep)
        with open(args.out + ".json", "w") as f:
            json.dump(stored, f, indent=2, sort_keys=True)
            f.write("\n")
        print("%s.tar.gz: schema %d, %d bytes" % (args.out, schema, os.path.getsize(args.out + ".tar.gz")))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
