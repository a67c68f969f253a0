"""`kura backup` of a running embedded registry while pushes, deletes and GC
go on, and `kura restore` into a new data directory: every image of the
snapshot pulls byte-exact from the restored registry.

The backup is slowed down per blob (a hidden test knob) so the test can
delete an image and run `kura gc --gc-grace 0s` while the backup holds its
snapshot: without the backup's hold on GC, GC would delete the deleted
image's blobs before the backup copied them and the backup would fail.
"""
import json
import os
import subprocess
import time

from conftest import Registry
from helpers import creds, require_tool, run
from images import Layout, make_rng, random_layer


def kura_bin():
    from conftest import REPO_ROOT

    return os.environ.get("KURA_BIN", os.path.join(REPO_ROOT, "target", "release", "kura"))


def clean_env(extra=None):
    """The environment without the shared-store settings scripts/with-postgres-s3
    exports (kura backup works on the embedded stores), plus `extra`."""
    e = {k: v for k, v in os.environ.items() if k != "KURA_DATABASE_URL" and not k.startswith("KURA_S3_")}
    e.update({"KURA_DISK_RESERVE_MIB": "0", "RUST_LOG": "warn"})
    e.update(extra or {})
    return e


def kura(*args, env=None, check=True, timeout=120):
    """Run the kura CLI; fail the test with its output when it fails (unless `check` is off)."""
    p = subprocess.run([kura_bin(), *map(str, args)], env=clean_env(env), capture_output=True, timeout=timeout)
    if check:
        assert p.returncode == 0, "kura %s failed (exit %d):\n%s\n%s" % (
            " ".join(map(str, args)), p.returncode, p.stdout.decode(errors="replace")[-3000:],
            p.stderr.decode(errors="replace")[-3000:])
    return p


def push(reg, layout, tag, repo):
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds(reg),
         "oci:%s:%s" % (layout.path, tag), "docker://%s/%s:%s" % (reg.host, repo, tag)], registry=reg, timeout=120)


def pull_exact(reg, layout, tag, repo, dst):
    """Pull `repo:tag` into a new OCI layout and compare every blob with the source's."""
    run(["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", creds(reg),
         "docker://%s/%s:%s" % (reg.host, repo, tag), "oci:%s:%s" % (dst, tag)], registry=reg, timeout=120)
    out = Layout(dst)
    desc = layout.resolve(tag)
    n = 0
    for d, _ in layout.walk(desc["digest"]):
        assert out.blob(d) == layout.blob(d), "blob %s of %s:%s differs after backup and restore" % (d, repo, tag)
        n += 1
    return n


def make_images(tmp_path, tags):
    rng = make_rng()
    src = Layout(tmp_path / "src")
    for tag in tags:
        layers = [random_layer(rng, nfiles=2, min_size=4096, max_size=64 * 1024)[0] for _ in range(2)]
        src.add_image(layers, tag=tag)
    return src


def gc_report(reg):
    p = kura("gc", "--data-dir", reg.data_dir, "--gc-grace", "0s", timeout=120)
    return json.loads(p.stdout)


def test_backup_while_pushing_deleting_and_gc_then_restore(registry, tmp_path):
    require_tool("skopeo")
    reg = registry
    src = make_images(tmp_path, ["a", "b", "c", "late"])
    for tag in ("a", "b", "c"):
        push(reg, src, tag, "bk/app-" + tag)

    out = tmp_path / "backup"
    backup = subprocess.Popen(
        [kura_bin(), "backup", "--data-dir", reg.data_dir, "--output", "json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=clean_env({"KURA_BACKUP_BLOB_DELAY_MS": "1000"}),
    )
    # The first progress line: the snapshot is taken and blobs are being copied.
    first = backup.stderr.readline()
    while first.startswith("backup: waiting"):
        first = backup.stderr.readline()
    assert first.startswith("backup: blobs: 1/"), first
    assert "ETA" in first, first
    # Meanwhile: image a is deleted (its blobs become garbage), another is
    # pushed, and GC runs with no grace period.
    reg.ecr().batch_delete_image(repositoryName="bk/app-a", imageIds=[{"imageTag": "a"}])
    push(reg, src, "late", "bk/app-late")
    reports = []
    while backup.poll() is None:
        reports.append(gc_report(reg))
    stdout, stderr = backup.communicate(timeout=60)
    assert backup.returncode == 0, "backup failed:\n%s%s" % (first, stderr)
    assert reports, "the backup ended before GC could run: nothing was tested"
    # GC was held off while the backup copied blobs (it may run once the
    # backup let go, before the process exited).
    assert reports[0]["skipped"], "GC ran while the backup copied blobs: %s" % reports
    summary = json.loads(stdout)
    # 3 images at the snapshot: each a manifest, a config and 2 layers.
    assert summary["manifests"] >= 3 and summary["blobs"] >= 9, summary
    assert "done in" in stderr, stderr
    assert os.stat(out / "master.key").st_mode & 0o077 == 0
    # GC is free again: image a's blobs go now.
    after = gc_report(reg)
    assert not after["skipped"], after
    assert sum(r["blobs_deleted"] for r in reports + [after]) >= 3, (reports, after)

    # A non-empty target is refused, and so is an existing backup directory.
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    p = kura("restore", "--data-dir", busy, out, check=False)
    assert p.returncode != 0 and b"not empty" in p.stderr, p.stderr
    p = kura("backup", "--data-dir", reg.data_dir, out, check=False)
    assert p.returncode != 0 and b"not empty" in p.stderr, p.stderr

    # Restore into a new data directory and serve it on another port.
    reg.stop()
    restored = Registry(str(tmp_path / "restored"))
    os.makedirs(restored.workdir)
    p = kura("restore", "--data-dir", restored.data_dir, "--output", "json", out)
    got = json.loads(p.stdout)
    assert got["blobs"] == summary["blobs"] and got["manifests"] == summary["manifests"], (got, summary)
    restored.start()
    try:
        restored.login()
        for tag in ("a", "b", "c"):
            assert pull_exact(restored, src, tag, "bk/app-" + tag, tmp_path / ("pulled-" + tag)) == 4
        # The restored registry works on: a push and GC.
        push(restored, src, "late", "bk/after-restore")
        assert pull_exact(restored, src, "late", "bk/after-restore", tmp_path / "pulled-late") == 4
    finally:
        restored.stop()


def test_restore_verifies_every_blob(registry, tmp_path):
    require_tool("skopeo")
    reg = registry
    src = make_images(tmp_path, ["v1"])
    push(reg, src, "v1", "bk/verify")
    out = tmp_path / "backup"
    p = kura("backup", "--data-dir", reg.data_dir, out)
    assert p.stdout.startswith(b"backup "), p.stdout
    # Damage one blob of the backup (same size, one byte changed).
    layer = max((os.path.join(d, f) for d, _, fs in os.walk(out / "blobs") for f in fs), key=os.path.getsize)
    with open(layer, "r+b") as f:
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 0xFF]))
    target = tmp_path / "restored"
    p = kura("restore", "--data-dir", target, out, check=False)
    assert p.returncode != 0, p.stdout
    assert b"damaged" in p.stderr, p.stderr
    assert list(target.iterdir()) == [], "a failed restore leaves the directory empty"
    # A backup without backup.json (interrupted) is refused.
    os.remove(out / "backup.json")
    p = kura("restore", "--data-dir", tmp_path / "other", out, check=False)
    assert p.returncode != 0 and b"not a complete Kura backup" in p.stderr, p.stderr
