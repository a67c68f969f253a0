"""The data directory is private: 0700, and the database (with its WAL and
shared-memory files), the master key, blob and upload files 0600; a data
directory that exists with looser modes is tightened at start-up (and the
server logs it). Before, the directory and database were 0755/0644 under the
usual umask: any local user could read every image and the sealed secrets.
"""
import os
import stat

from blobs_util import Client, expect
from conftest import Registry


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def all_files(root):
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            yield os.path.join(dirpath, d), True
        for f in filenames:
            yield os.path.join(dirpath, f), False


def check_private(data_dir):
    assert mode(data_dir) == 0o700, oct(mode(data_dir))
    seen = set()
    for path, is_dir in all_files(data_dir):
        want = 0o700 if is_dir else 0o600
        assert mode(path) & 0o077 == 0, f"{path} is {oct(mode(path))}"
        if not is_dir:
            assert mode(path) == want, f"{path} is {oct(mode(path))}"
        seen.add(os.path.basename(path))
    return seen


def test_files_are_private_after_a_push(registry):
    c = Client(registry.url, auth=registry.auth)
    c.push_image("modes/app", "v1", seed="modes")
    # An upload in progress has a file too.
    loc = c.start_upload("modes/app")
    r = c.request("PATCH", loc, data=b"x" * 1000, headers={"Content-Type": "application/octet-stream"})
    expect(r, 202)
    seen = check_private(registry.data_dir)
    assert {"meta.db", "master.key"} <= seen, seen
    assert os.listdir(os.path.join(registry.data_dir, "blobs", "uploads")), "an upload file was checked"


def test_a_loose_existing_data_dir_is_tightened_at_start(tmp_path):
    reg = Registry(str(tmp_path))
    reg.start()
    c = None
    try:
        reg.allow_create_on_push()
        reg.login()
        c = Client(reg.url, auth=reg.auth)
        c.push_image("modes/app", "v1", seed="loose")
    finally:
        reg.stop()
    # An older version (or a person) left everything readable.
    for path, is_dir in all_files(reg.data_dir):
        os.chmod(path, 0o755 if is_dir else 0o644)
    os.chmod(reg.data_dir, 0o755)
    reg.start()
    try:
        reg.login()
        c = Client(reg.url, auth=reg.auth)
        expect(c.get("/v2/modes/app/manifests/v1",
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}), 200)
        assert mode(reg.data_dir) == 0o700
        for name in ("meta.db", "master.key"):
            assert mode(os.path.join(reg.data_dir, name)) == 0o600, name
        for d in ("blobs", "blobs/blobs", "blobs/uploads"):
            assert mode(os.path.join(reg.data_dir, d)) == 0o700, d
        assert "tightened the mode" in reg.full_log(), reg.log()
    finally:
        reg.stop()
