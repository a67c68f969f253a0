"""Durable jobs end to end: a scan cut off by kill -9 finishes exactly once after a restart,
and the operator view (`kura jobs list`, `kura jobs retry`).

The scan is held running deterministically: the image's layer file in the blob store is
swapped for a FIFO, so the scan job blocks opening it (no writer) until the server is killed.
"""
import io
import json
import os
import subprocess
import tarfile
import time

import pytest

import ecr_util
from conftest import Registry

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no ECR API",
)


def kura(reg, *args, check=True):
    binary = reg._cmd()[0]
    p = subprocess.run([binary, *args, "--data-dir", reg.data_dir], capture_output=True, timeout=60)
    if check and p.returncode != 0:
        raise AssertionError("kura %s failed (%d):\n%s%s" % (" ".join(args), p.returncode,
                                                          p.stdout.decode(), p.stderr.decode()))
    return p


def jobs(reg, *args):
    out = kura(reg, "jobs", "list", *args).stdout.decode()
    return [json.loads(l) for l in out.splitlines() if l.strip()]


def wait_for(what, cond, timeout=60):
    deadline = time.time() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.time() < deadline, "timed out waiting for " + what
        time.sleep(0.2)


def tar_gz(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def blob_file(data_dir, digest):
    hexd = digest.split(":", 1)[1]
    for root, _, files in os.walk(os.path.join(data_dir, "blobs")):
        if os.path.basename(root) == hexd and files:
            return os.path.join(root, files[0])
    raise AssertionError("no blob file for " + digest)


def test_kill9_during_a_scan_job_then_it_completes_once(tmp_path):
    """Guards: a job running when its node is killed is taken again after a restart and
    completes exactly once: one job, done, with two attempts (the first was killed while
    blocked mid-read, so it never finished), nothing dead, and the scan's result readable."""
    reg = Registry(str(tmp_path))
    reg.start()
    try:
        c = reg.ecr()
        c.create_repository(repositoryName="jobs/crash")
        layer = tar_gz({"etc/hello.txt": b"hello from a layer\n"})
        img = ecr_util.push_image(c, "jobs/crash", "v1", layers=[layer])
        layer_digest = ecr_util.sha256(layer)
        path = blob_file(reg.data_dir, layer_digest)
        os.remove(path)
        os.mkfifo(path, 0o600)

        r = c.start_image_scan(repositoryName="jobs/crash", imageId={"imageDigest": img.digest})
        assert r["imageScanStatus"]["status"] == "IN_PROGRESS"
        running = wait_for("the scan job to run", lambda: [
            j for j in jobs(reg, "--kind", "scan") if j["state"] == "running"])
        assert running[0]["payload"]["digest"] == img.digest
        time.sleep(0.3)  # it is blocked on the FIFO, not finished
        reg.kill9()
        os.remove(path)
        with open(path, "wb") as f:
            f.write(layer)
        os.chmod(path, 0o600)
        listed = jobs(reg, "--kind", "scan")
        assert [j["state"] for j in listed] == ["running"], listed

        reg.start()
        c = reg.ecr()

        def finished():
            out = c.describe_image_scan_findings(repositoryName="jobs/crash", imageId={"imageDigest": img.digest})
            return out if out["imageScanStatus"]["status"] != "IN_PROGRESS" else None

        out = wait_for("the scan to finish after the restart", finished)
        assert out["imageScanStatus"]["status"] in ("COMPLETE", "UNSUPPORTED_IMAGE"), out
        done = wait_for("the job to be done", lambda: [j for j in jobs(reg, "--kind", "scan") if j["state"] == "done"])
        all_scans = jobs(reg, "--kind", "scan")
        assert len(all_scans) == 1, all_scans
        assert done[0]["attempts"] == 2, done
        assert done[0]["uniqueKey"].endswith(img.digest)
        assert jobs(reg, "--state", "dead") == []
    finally:
        reg.stop()


def test_scan_on_push_is_one_job_and_operator_view(tmp_path):
    """Guards: a scan on push runs as one `scan` job that ends done; `kura jobs list --state`
    filters and rejects a bad state clearly; `kura jobs retry` refuses a job that is not dead
    and an unknown id with a clear message. (Identical requests sharing one job: the store's
    `enqueue_burst` tests.)"""
    reg = Registry(str(tmp_path))
    reg.start(extra_env={"KURA_LIFECYCLE_INTERVAL": "0s", "KURA_GC_INTERVAL": "0s"})
    try:
        c = reg.ecr()
        c.create_repository(repositoryName="jobs/burst", imageScanningConfiguration={"scanOnPush": True})
        layer = tar_gz({"etc/a.txt": b"a\n"})
        img = ecr_util.push_image(c, "jobs/burst", "v1", layers=[layer])

        def scanned():
            try:
                out = c.describe_image_scan_findings(repositoryName="jobs/burst",
                                                     imageId={"imageDigest": img.digest})
            except c.exceptions.ScanNotFoundException:
                return False  # the push hook has not started it yet
            return out["imageScanStatus"]["status"] != "IN_PROGRESS"

        wait_for("the scan on push", scanned)
        scans = jobs(reg, "--kind", "scan")
        assert len(scans) == 1 and scans[0]["state"] == "done", scans
        assert all(j["state"] == "done" for j in jobs(reg, "--state", "done"))

        bad = kura(reg, "jobs", "list", "--state", "bogus", check=False)
        assert bad.returncode != 0 and b"unknown job state" in bad.stderr
        not_dead = kura(reg, "jobs", "retry", str(scans[0]["id"]), check=False)
        assert not_dead.returncode != 0 and b"not dead" in not_dead.stderr
        missing = kura(reg, "jobs", "retry", "999999", check=False)
        assert missing.returncode != 0 and b"no job 999999" in missing.stderr
    finally:
        reg.stop()


def test_lifecycle_preview_is_a_job(tmp_path):
    """Guards: StartLifecyclePolicyPreview runs as a `lifecycle-preview` job that completes,
    and the preview it stores is the API's answer."""
    reg = Registry(str(tmp_path))
    reg.start()
    try:
        c = reg.ecr()
        c.create_repository(repositoryName="jobs/preview")
        for i in range(3):
            ecr_util.push_image(c, "jobs/preview", None, seed="p%d" % i)
        policy = json.dumps({"rules": [{"rulePriority": 1, "selection": {
            "tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
            "action": {"type": "expire"}}]})
        c.start_lifecycle_policy_preview(repositoryName="jobs/preview", lifecyclePolicyText=policy)

        def complete():
            out = c.get_lifecycle_policy_preview(repositoryName="jobs/preview")
            return out if out["status"] == "COMPLETE" else None

        out = wait_for("the preview", complete)
        assert out["summary"]["expiringImageTotalCount"] == 2
        previews = jobs(reg, "--kind", "lifecycle-preview")
        assert [j["state"] for j in previews] == ["done"], previews
    finally:
        reg.stop()


def test_periodic_lifecycle_runs_as_one_job_per_slot(tmp_path):
    """Guards: `--lifecycle-interval` schedules `lifecycle` jobs (one per interval slot, each
    with its slot's key) that apply the policies: untagged images beyond the newest expire."""
    reg = Registry(str(tmp_path))
    reg.start(extra_env={"KURA_LIFECYCLE_INTERVAL": "1s", "KURA_GC_INTERVAL": "0s"})
    try:
        c = reg.ecr()
        c.create_repository(repositoryName="jobs/expire")
        for i in range(3):
            ecr_util.push_image(c, "jobs/expire", None, seed="e%d" % i)
            time.sleep(0.01)
        c.put_lifecycle_policy(repositoryName="jobs/expire", lifecyclePolicyText=json.dumps({"rules": [{
            "rulePriority": 1, "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan",
                                             "countNumber": 1}, "action": {"type": "expire"}}]}))
        wait_for("the background run to expire two images",
                 lambda: len(c.describe_images(repositoryName="jobs/expire")["imageDetails"]) == 1)
        runs = wait_for("two scheduled runs", lambda: (lambda d: d if len(d) >= 2 else None)(
            [j for j in jobs(reg, "--kind", "lifecycle") if j["state"] == "done"]))
        keys = [j["uniqueKey"] for j in runs]
        assert len(set(keys)) == len(keys), "a slot ran twice: %s" % keys
        assert all(k.startswith("every:lifecycle:1000:") for k in keys), keys
        assert all(j["lane"] == "every:lifecycle" for j in runs)
    finally:
        reg.stop()
