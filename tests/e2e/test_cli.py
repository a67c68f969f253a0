"""The command line: `kura --version` with the commit, `--output json|table`,
exit codes, and progress on stderr (plain lines off a terminal, a bar on one).

Most commands run on a data directory without a server; the ones that need
jobs or images use the `registry` fixture.
"""
import io
import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import threading
import time
import zipfile

import pytest

from conftest import REPO_ROOT

VERSION_RE = re.compile(r"^kura (\d+\.\d+\.\d+) \(commit ([0-9a-f]{12}|unknown)\)$")


def kura_bin():
    return os.environ.get("KURA_BIN", os.path.join(REPO_ROOT, "target", "release", "kura"))


def kura(*args, env=None, timeout=120, stdin=subprocess.DEVNULL):
    # Embedded storage unless the test says otherwise (scripts/with-postgres-s3 exports these).
    full = {k: v for k, v in os.environ.items() if not (k == "KURA_DATABASE_URL" or k.startswith("KURA_S3_"))}
    full.update({"KURA_DISK_RESERVE_MIB": "0", **(env or {})})
    try:
        return subprocess.run([kura_bin(), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                              env=full, stdin=stdin)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail("kura %s did not finish in %ss; stderr:\n%s" % (" ".join(map(str, args)), timeout, err[-4000:]))


def ok(p):
    assert p.returncode == 0, "exit %d\nstdout:\n%s\nstderr:\n%s" % (p.returncode, p.stdout, p.stderr)
    return p


def osv(i):
    return {
        "schema_version": "1.6.0",
        "id": "KURA-CLI-%04d" % i,
        "modified": "2024-01-01T00:00:00Z",
        "summary": "test advisory %d" % i,
        "affected": [{
            "package": {"ecosystem": "PyPI", "name": "kura-cli-pkg-%d" % i},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0.%d" % i}]}],
        }],
    }


def osv_zip(path, n):
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            z.writestr("KURA-CLI-%04d.json" % i, json.dumps(osv(i)))
    return path


def table(text):
    """A table's lines split into cells (two or more spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines() if line.strip()]


# -- --version ---------------------------------------------------------------


def test_version_names_the_commit():
    p = ok(kura("--version"))
    m = VERSION_RE.match(p.stdout.strip())
    assert m, "kura --version printed %r" % p.stdout
    commit = m.group(2)
    if shutil.which("git") and os.path.exists(os.path.join(REPO_ROOT, ".git")):
        # Built in this checkout: the commit is one of this repository's.
        assert commit != "unknown", "git is there but the build recorded no commit"
        r = subprocess.run(["git", "-C", REPO_ROOT, "cat-file", "-e", commit + "^{commit}"], capture_output=True)
        assert r.returncode == 0, "%s is not a commit of this repository" % commit
    with open(os.path.join(REPO_ROOT, "crates", "kura", "Cargo.toml")) as f:
        manifest = f.read()
    if "version.workspace" in manifest:
        with open(os.path.join(REPO_ROOT, "Cargo.toml")) as f:
            manifest = f.read()
    assert 'version = "%s"' % m.group(1) in manifest


# -- exit codes --------------------------------------------------------------


def test_exit_codes(tmp_path):
    data = tmp_path / "data"
    # 2: usage, from clap and from a value checked after parsing.
    p = kura("gc", "--no-such-flag", "--data-dir", data)
    assert p.returncode == 2, p.stderr
    p = kura("gc", "--output", "yaml", "--data-dir", data)
    assert p.returncode == 2 and "yaml" in p.stderr, p.stderr
    p = kura("jobs", "list", "--state", "bogus", "--data-dir", data)
    assert p.returncode == 2 and "unknown job state" in p.stderr, p.stderr
    # 3: not found.
    p = kura("jobs", "retry", "999999", "--data-dir", data)
    assert p.returncode == 3 and "no job 999999" in p.stderr, p.stderr
    p = kura("vulndb", "import", tmp_path / "missing.json", "--data-dir", data)
    assert p.returncode == 3 and "missing.json" in p.stderr, p.stderr
    assert re.search(r"^vulndb import: .*, stopped$", p.stderr, re.M), p.stderr
    # 4: unavailable: the "database" hangs up on every connection.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        stop = threading.Event()

        def hang_up():
            while not stop.is_set():
                try:
                    c, _ = s.accept()
                    c.close()
                except OSError:
                    return

        t = threading.Thread(target=hang_up, daemon=True)
        t.start()
        url = "postgres://kura@127.0.0.1:%d/kura?sslmode=disable" % s.getsockname()[1]
        p = kura("gc", "--data-dir", data, env={"KURA_DATABASE_URL": url}, timeout=60)
        stop.set()
    assert p.returncode == 4, "exit %d: %s" % (p.returncode, p.stderr)
    # 4: the listen address is taken.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        p = kura("serve", "--listen", "127.0.0.1:%d" % s.getsockname()[1], "--data-dir", data,
                 "--gc-interval", "0s", "--lifecycle-interval", "0s")
    assert p.returncode == 4 and "binding" in p.stderr, "exit %d: %s" % (p.returncode, p.stderr)
    # 0, and 1 for anything else (here: a data directory that is a file).
    ok(kura("gc", "--data-dir", data))
    (tmp_path / "file").write_text("not a directory")
    p = kura("gc", "--data-dir", tmp_path / "file")
    assert p.returncode == 1 and p.stderr.startswith("Error: "), p.stderr


def test_jobs_retry_conflict_and_table(registry):
    data = registry.data_dir
    deadline = time.time() + 60
    while True:
        listed = [json.loads(l) for l in ok(kura("jobs", "list", "--data-dir", data)).stdout.splitlines()]
        if listed:
            break
        assert time.time() < deadline, "no job was enqueued"
        time.sleep(0.5)
    job = listed[0]
    p = kura("jobs", "retry", job["id"], "--data-dir", data)
    if job["state"] != "dead":
        assert p.returncode == 5 and "not dead" in p.stderr, p.stderr

    p = ok(kura("jobs", "list", "--output", "table", "--data-dir", data))
    rows = table(p.stdout)
    assert rows[0][:3] == ["ID", "KIND", "STATE"], rows[0]
    # Rows by id; each row's kind is the JSON's (the list may have grown in between).
    again = {j["id"]: j for j in map(json.loads, ok(kura("jobs", "list", "--data-dir", data)).stdout.splitlines())}
    for row in rows[1:]:
        j = again.get(int(row[0]))
        if j is not None:
            assert row[1] == j["kind"], (row, j)
    assert int(rows[1][0]) == listed[0]["id"]


# -- --output ----------------------------------------------------------------


def test_output_json_and_table_agree(registry, tmp_path):
    data = registry.data_dir
    usage = json.loads(ok(kura("usage", "--output", "json", "--data-dir", data)).stdout)
    rows = dict((r[0], r[1]) for r in table(ok(kura("usage", "--output", "table", "--data-dir", data)).stdout)[1:])
    assert rows["standard.images"] == str(usage["standard"]["images"])
    assert rows["archive.bytes"] == str(usage["archive"]["bytes"])
    assert rows["account"] == "-"

    gc = json.loads(ok(kura("gc", "--dry-run", "--data-dir", data)).stdout)
    assert gc["dry_run"] is True
    rows = dict((r[0], r[1]) for r in table(ok(kura("gc", "--dry-run", "--output", "table",
                                                    "--data-dir", data)).stdout)[1:])
    assert set(rows) == set(gc), rows
    assert rows["dry_run"] == "true"

    life = json.loads(ok(kura("lifecycle", "run", "--output", "json", "--data-dir", data)).stdout)
    rows = table(ok(kura("lifecycle", "run", "--output", "table", "--data-dir", data)).stdout)
    assert rows[0] == ["FIELD", "VALUE"]
    assert {r[0].split(".")[0] for r in rows[1:]} == set(life)

    src = osv_zip(tmp_path / "osv.zip", 5)
    imported = json.loads(ok(kura("vulndb", "import", src, "--data-dir", data)).stdout)
    assert imported["advisories"] == 5 and imported["origin"].endswith("osv.zip"), imported
    listed = [json.loads(l) for l in ok(kura("vulndb", "list", "--data-dir", data)).stdout.splitlines()]
    assert imported["id"] in [r["id"] for r in listed]
    rows = table(ok(kura("vulndb", "list", "--output", "table", "--data-dir", data)).stdout)
    assert rows[0][:2] == ["ID", "ORIGIN"]
    assert [int(r[0]) for r in rows[1:]] == [r["id"] for r in listed]
    # The environment sets the default.
    p = ok(kura("usage", "--data-dir", data, env={"KURA_OUTPUT": "table"}))
    assert p.stdout.startswith("FIELD"), p.stdout


# -- progress ----------------------------------------------------------------

LINE_RE = re.compile(r"^vulndb import: (\d+)/(\d+) documents \((\d+)%\), (\d+) advisories, \S+ elapsed(, ETA \S+|, done)?$")


def test_progress_lines_off_a_terminal(tmp_path):
    n = 40
    src = osv_zip(tmp_path / "osv.zip", n)
    p = ok(kura("vulndb", "import", src, "--data-dir", tmp_path / "data", env={"KURA_PROGRESS_EVERY": "0s"}))
    assert json.loads(p.stdout)["advisories"] == n  # stdout: the report only
    lines = [l for l in p.stderr.splitlines() if l.startswith("vulndb import:")]
    parsed = [LINE_RE.match(l) for l in lines]
    assert all(parsed), "unexpected progress lines: %s" % [l for l, m in zip(lines, parsed) if not m]
    done = [int(m.group(1)) for m in parsed]
    assert done == sorted(done) and done[-1] == n, done
    assert all(int(m.group(2)) == n for m in parsed)
    assert any((m.group(5) or "").startswith(", ETA") for m in parsed[:-1]), lines
    assert parsed[-1].group(5) == ", done" and parsed[-1].group(3) == "100"
    assert "\x1b[" not in p.stderr, "escape sequences off a terminal"

    # Default interval (10s): a quick import prints only the last line.
    p = ok(kura("vulndb", "import", src, "--data-dir", tmp_path / "data2"))
    lines = [l for l in p.stderr.splitlines() if l.startswith("vulndb import:")]
    assert len(lines) == 1 and lines[0].endswith(", done"), lines

    p = ok(kura("gc", "--data-dir", tmp_path / "data", env={"KURA_PROGRESS_EVERY": "0s"}))
    steps = re.findall(r"^gc: (\d)/6 steps \(\d+%\), step (\d): ", p.stderr, re.M)
    assert [int(s) for _, s in steps] == sorted(int(s) for _, s in steps), steps
    assert {int(s) for _, s in steps} == {1, 2, 3, 4, 5, 6}, p.stderr
    assert re.search(r"^gc: 6/6 steps \(100%\), .*, done$", p.stderr, re.M), p.stderr
    json.loads(p.stdout)


def test_progress_bar_on_a_terminal(tmp_path):
    """stderr on a pseudo-terminal: indicatif draws the bar (with ETA) there;
    stdout (a pipe) still carries only the JSON report."""
    n = 30
    src = osv_zip(tmp_path / "osv.zip", n)
    master, slave = pty.openpty()
    env = {**os.environ, "KURA_DISK_RESERVE_MIB": "0", "TERM": "xterm"}
    proc = subprocess.Popen([kura_bin(), "vulndb", "import", str(src), "--data-dir", str(tmp_path / "data")],
                            stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    seen = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=60)
    os.close(master)
    assert proc.returncode == 0, seen.decode(errors="replace")
    assert json.loads(out)["advisories"] == n
    text = seen.decode(errors="replace")
    assert "vulndb import" in text and "ETA" in text and "%d/%d documents" % (n, n) in text, text
    assert "=" in text, "no bar drawn: %r" % text
