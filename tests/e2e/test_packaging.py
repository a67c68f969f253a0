"""Packaging and configuration: the kura.toml file (precedence, errors, the
generated reference in docs/CONFIG.md), the container image scripts/build-image
makes with buildah (run with podman, pushed to and pulled from), the Helm chart
(helm lint / helm template, the rendered objects, its kura.toml accepted by the
binary) and the systemd unit (systemd-analyze verify and security)."""
import json
import os
import re
import resource
import shutil
import subprocess
import time
import urllib.request

import pytest
import yaml

from conftest import REPO_ROOT, Registry, free_port
from helpers import RegistryAPI, container_store, creds, podman_cmd, require_tool, run  # noqa: F401 (container_store is a fixture)
from images import Layout, make_rng, random_image

CHART = os.path.join(REPO_ROOT, "deploy", "helm", "kura")
UNIT = os.path.join(REPO_ROOT, "deploy", "systemd", "kura.service")


def kura_bin():
    return os.environ.get("KURA_BIN", os.path.join(REPO_ROOT, "target", "release", "kura"))


def clean_env(**extra):
    """The environment without any KURA_* setting of the caller's: only the
    test's own reach the process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KURA_")}
    env.update(extra)
    return env


def kura(*args, env=None, check=True, timeout=60):
    p = subprocess.run([kura_bin(), *args], capture_output=True, text=True, timeout=timeout,
                       env=env if env is not None else clean_env())
    if check and p.returncode != 0:
        pytest.fail("kura %s -> exit %d\nstdout: %s\nstderr: %s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return p


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


class Server:
    """`kura serve` started with the given arguments and environment; `port`
    is where the test expects it to listen."""

    def __init__(self, tmp_path, args, env, port):
        self.port = port
        self.log_path = os.path.join(str(tmp_path), "serve-%d.log" % port)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([kura_bin(), *args], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("kura exited early (%d):\n%s" % (self.proc.returncode, self.log()))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port, timeout=1) as r:
                    if r.status == 200:
                        return
            except Exception:
                time.sleep(0.05)
        self.stop()
        pytest.fail("kura did not answer on port %d:\n%s" % (port, self.log()))

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- kura.toml ---------------------------------------------------------------


def test_config_file_values_and_precedence(tmp_path):
    """flags > environment > file > defaults, with a real `kura serve`: the
    file's port, then the environment's, then the flag's is where it listens;
    the file's integer key (disk-reserve-mib) sizes the reserve file."""
    data = tmp_path / "data"
    p_file, p_env, p_flag = free_port(), free_port(), free_port()
    cfg = write(tmp_path / "kura.toml",
                'listen = "127.0.0.1:%d"\ndata-dir = "%s"\ndisk-reserve-mib = 3\ngc-interval = "0s"\n'
                "lifecycle-interval = \"0s\"\n\n[gc]\ndry-run = true\n" % (p_file, data))

    s = Server(tmp_path, ["serve", "--config", cfg], clean_env(), p_file)
    try:
        assert os.path.getsize(data / "space.reserve") == 3 << 20
    finally:
        s.stop()
    # KURA_CONFIG names the file as --config does; the environment beats the file.
    s = Server(tmp_path, ["serve"], clean_env(KURA_CONFIG=cfg, KURA_LISTEN="127.0.0.1:%d" % p_env), p_env)
    s.stop()
    # A flag beats both.
    s = Server(tmp_path, ["serve", "--config", cfg, "--listen", "127.0.0.1:%d" % p_flag],
               clean_env(KURA_LISTEN="127.0.0.1:%d" % p_env), p_flag)
    s.stop()

    # Another command reads the top-level data-dir and its own [gc] table.
    report = json.loads(kura("gc", "--config", cfg).stdout)
    assert report["dry_run"] is True, report
    report = json.loads(kura("--config", cfg, "gc", "--data-dir", str(data)).stdout)
    assert report["dry_run"] is True, report

    # `config check` says where each serve setting comes from.
    out = kura("config", "check", env=clean_env(KURA_CONFIG=cfg, KURA_REGION="eu-west-3",
                                                KURA_DATABASE_URL="postgres://kura:pw1234@db:5432/kura")).stdout
    assert 'listen = "127.0.0.1:%d"  # file' % p_file in out, out
    assert 'region = "eu-west-3"  # env' in out, out
    assert 'database-url = "postgres://kura:***@db:5432/kura"  # env' in out and "pw1234" not in out, out
    assert 'header-timeout = "30s"  # default' in out, out


@pytest.mark.parametrize("text,needle", [
    ("listen = 5000\n", "`listen`"),
    ("max-connections = \"many\"\n", "`max-connections`: expected an integer, found a string"),
    ("max-connections = 0\n", "`max-connections`"),
    ("blob-redirect = \"yes\"\n", "`blob-redirect`: expected a boolean"),
    ("gc-interval = \"soon\"\n", "`gc-interval`"),
    ("no-such-setting = 1\n", "unknown key `no-such-setting`"),
    ("dry-run = true\n", "put it under [gc]"),
    ("[gc]\nlisten = \"127.0.0.1:1\"\n", "unknown key `gc.listen`"),
    ("[push]\nx = 1\n", "unknown table [push]"),
    ("listen = [\n", "not valid TOML"),
])
def test_config_file_errors_name_the_key(tmp_path, text, needle):
    cfg = write(tmp_path / "kura.toml", text)
    p = kura("serve", "--config", cfg, "--data-dir", str(tmp_path / "d"), check=False)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert needle in p.stderr, p.stderr
    assert cfg in p.stderr, p.stderr
    assert "panicked" not in p.stderr
    assert not os.path.exists(tmp_path / "d"), "nothing may start on a bad configuration"


def test_example_config_file_is_valid():
    example = os.path.join(REPO_ROOT, "deploy", "kura.toml.example")
    out = kura("config", "check", "--config", example).stdout
    assert 'listen = "0.0.0.0:5000"  # file' in out, out
    assert 'data-dir = "/var/lib/kura"  # file' in out, out


def test_config_missing_file_is_an_error(tmp_path):
    p = kura("gc", "--config", str(tmp_path / "absent.toml"), check=False)
    assert p.returncode == 2 and "absent.toml" in p.stderr, p.stderr


def test_docs_config_md_is_the_generated_reference():
    generated = kura("config", "reference").stdout
    with open(os.path.join(REPO_ROOT, "docs", "CONFIG.md")) as f:
        committed = f.read()
    assert committed == generated, "docs/CONFIG.md is stale: run `kura config reference > docs/CONFIG.md`"
    # Every serve flag in `--help` is a row of the table.
    flags = set(re.findall(r"^\s+(?:-\w, )?--([a-z0-9-]+)", kura("serve", "--help").stdout, re.M))
    flags -= {"help", "config"}
    rows = set(re.findall(r"^\| `([a-z0-9-]+)` \|", generated, re.M))
    assert flags and flags <= rows, sorted(flags - rows)


# --- container image -----------------------------------------------------------


def test_container_image_builds_runs_and_serves(tmp_path, container_store):
    """scripts/build-image with buildah (FROM scratch), then podman runs it as
    uid 65532 with the data volume on a host directory; an image pushed with
    skopeo pulls back byte-exact; SIGTERM stops it with exit 0."""
    require_tool("buildah", "podman", "skopeo", "runc")
    store = container_store()
    storage = "--root %s --runroot %s --storage-driver vfs" % (os.path.join(store, "root"), os.path.join(store, "run"))
    tag = "localhost/kura-e2e-image:%d" % os.getpid()
    out = run(["bash", os.path.join(REPO_ROOT, "scripts", "build-image"), "--binary", kura_bin(), "--tag", tag],
              env={"BUILDAH_ARGS": storage}, timeout=300)
    assert ("built %s" % tag).encode() in out.stdout, out.stdout

    b = ["buildah", *storage.split()]
    info = json.loads(run(b + ["inspect", "--type", "image", tag]).stdout)
    cfg = info["OCIv1"]["config"]
    assert cfg["User"] == "65532:65532"
    assert cfg["Entrypoint"] == ["/usr/local/bin/kura", "serve"]
    assert "/data" in cfg["Volumes"]
    assert any(p.startswith("5000") for p in cfg["ExposedPorts"])
    assert len(info["OCIv1"]["rootfs"]["diff_ids"]) == 1

    # Exactly: the binary, the libraries ldd names, the CA bundle, passwd/group/nsswitch.
    ctr = run(b + ["from", tag]).stdout.decode().strip()
    try:
        mnt = run(b + ["mount", ctr]).stdout.decode().strip()
        files = set()
        for d, _, names in os.walk(mnt):
            for n in names:
                files.add(os.path.relpath(os.path.join(d, n), mnt))
        libs = set(re.findall(r"(/\S+) \(0x", subprocess.run(["ldd", kura_bin()], capture_output=True,
                                                             text=True).stdout))
        expected = {"usr/local/bin/kura", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "etc/group",
                    "etc/nsswitch.conf"} | {lib.lstrip("/") for lib in libs}
        assert files == expected, (sorted(files - expected), sorted(expected - files))
        with open(os.path.join(mnt, "etc", "passwd")) as f:
            assert "kura:x:65532:65532:" in f.read()
        st = os.stat(os.path.join(mnt, "data"))
        assert (st.st_uid, st.st_gid) == (65532, 65532)
    finally:
        run(b + ["umount", ctr], check=False)
        run(b + ["rm", ctr], check=False)

    # Run it with runc and modest rlimits: the CI sandbox (no CAP_SYS_RESOURCE,
    # a hybrid cgroup hierarchy) refuses podman's default rlimits, and crun's
    # cgroup setup; lower limits are always allowed.
    reg = Registry(str(tmp_path))
    data = tmp_path / "volume"
    data.mkdir()
    os.chown(data, 65532, 65532)
    nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[0], 8192)
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[0], 4096)
    p = podman_cmd(store)
    name = "kura-e2e-%d" % os.getpid()
    run(p + ["run", "-d", "--name", name, "--runtime", "runc", "--network", "host",
             "--ulimit", "nofile=%d:%d" % (nofile, nofile), "--ulimit", "nproc=%d:%d" % (nproc, nproc),
             "-v", "%s:/data" % data,
             "-e", "KURA_LISTEN=%s" % reg.host, "-e", "KURA_DISK_RESERVE_MIB=1",
             "-e", "KURA_ACCOUNT_ID=%s" % reg.account_id, "-e", "KURA_ROOT_ACCESS_KEY_ID=%s" % reg.access_key,
             "-e", "KURA_ROOT_SECRET_ACCESS_KEY=%s" % reg.secret_key, tag], timeout=120)
    try:
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(reg.url + "/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except Exception:
                if time.time() > deadline:
                    logs = run(p + ["logs", name], check=False)
                    pytest.fail("the container did not answer: %s" % (logs.stdout + logs.stderr).decode()[-3000:])
                time.sleep(0.2)
        pid = int(run(p + ["inspect", "--format", "{{.State.Pid}}", name]).stdout.decode().strip())
        with open("/proc/%d/status" % pid) as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        assert uids == ["65532"] * 4, uids
        # The data directory is the volume, written as the kura user.
        assert os.stat(data / "meta.db").st_uid == 65532

        reg.login()
        reg.allow_create_on_push()
        layout = Layout(str(tmp_path / "src"))
        desc, _ = random_image(layout, make_rng(), "v1", nlayers=2, max_size=64 * 1024)
        run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds(reg),
             "oci:%s:v1" % layout.path, "docker://%s/pkg/app:v1" % reg.host])
        tree = RegistryAPI(reg).check_tree("pkg/app", "v1")
        assert desc["digest"] in tree
        for digest, body in tree.items():
            assert layout.blob(digest) == body
    finally:
        run(p + ["stop", "--time", "20", name], check=False, timeout=60)
        code = run(p + ["inspect", "--format", "{{.State.ExitCode}}", name], check=False).stdout.decode().strip()
        run(p + ["rm", "-f", name], check=False)
        run(b + ["rmi", "-f", tag], check=False)
    assert code == "0", "kura in the container stopped with %s on SIGTERM" % code


# --- Helm chart ----------------------------------------------------------------


def helm_objects(*args):
    out = run(["helm", "template", "kura", CHART, *args]).stdout.decode()
    objs = [o for o in yaml.safe_load_all(out) if o]
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_probes(c):
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] == "http"
    assert c["ports"][0] == {"name": "http", "containerPort": 5000, "protocol": "TCP"}


def check_toml_with_kura(tmp_path, objs, name):
    """The rendered kura.toml is accepted by the real binary; returns `config check`'s output."""
    toml_text = objs[("ConfigMap", "kura")]["data"]["kura.toml"]
    cfg = write(tmp_path / name, toml_text)
    return kura("config", "check", "--config", cfg).stdout


def test_helm_chart_embedded_and_scaled(tmp_path):
    require_tool("helm")
    for values in ([], ["-f", os.path.join(CHART, "ci", "embedded-values.yaml")],
                   ["-f", os.path.join(CHART, "ci", "scaled-values.yaml")]):
        run(["helm", "lint", "--strict", CHART, *values])

    # Embedded: one pod, Recreate, the data directory on a PVC.
    objs = helm_objects("-f", os.path.join(CHART, "ci", "embedded-values.yaml"))
    dep = objs[("Deployment", "kura")]
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsNonRoot"] is True
    c = pod["containers"][0]
    check_probes(c)
    env = env_of(c)
    assert env["KURA_CONFIG"]["value"] == "/etc/kura/kura.toml"
    assert "KURA_DATABASE_URL" not in env
    vols = {v["name"]: v for v in pod["volumes"]}
    pvc = objs[("PersistentVolumeClaim", "kura-data")]
    assert vols["data"]["persistentVolumeClaim"]["claimName"] == "kura-data"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert pvc["spec"]["storageClassName"] == "fast"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["data"] == "/data" and mounts["config"] == "/etc/kura/kura.toml"
    assert objs[("Service", "kura")]["spec"]["ports"][0]["port"] == 5000
    out = check_toml_with_kura(tmp_path, objs, "embedded.toml")
    assert 'listen = "0.0.0.0:5000"  # file' in out, out
    assert 'data-dir = "/data"  # file' in out, out
    assert 'gc-interval = "6h"  # file' in out, out
    assert 'max-connections = "2048"  # file' in out, out
    assert 'audit-data-reads = "true"  # file' in out, out
    assert ('peer-region = ["eu-west-1=http://kura.eu-west-1.internal:5000", '
            '"ap-south-1=http://kura.ap-south-1.internal:5000"]  # file') in out, out

    # Scaled: N pods, PostgreSQL + S3 settings, secrets by reference, no PVC.
    objs = helm_objects("-f", os.path.join(CHART, "ci", "scaled-values.yaml"))
    dep = objs[("Deployment", "kura")]
    assert dep["spec"]["replicas"] == 4
    assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert not [k for k in objs if k[0] == "PersistentVolumeClaim"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    check_probes(c)
    env = env_of(c)
    assert env["KURA_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "kura-db", "key": "database-url"}
    assert env["KURA_S3_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "kura-s3"
    assert env["KURA_S3_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "kura-s3", "key": "secret-access-key"}
    assert env["KURA_ROOT_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "kura-bootstrap"
    vols = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in vols["data"]
    assert vols["master-key"]["secret"]["secretName"] == "kura-master-key"
    out = check_toml_with_kura(tmp_path, objs, "scaled.toml")
    for line in ('s3-bucket = "kura-blobs"  # file', 's3-prefix = "prod/"  # file', 's3-region = "eu-west-1"  # file',
                 's3-endpoint = "https://s3.example.internal"  # file', 's3-virtual-hosted = "false"  # file',
                 'master-key-file = "/etc/kura/master/master.key"  # file', 'database-max-connections = "8"  # file',
                 'blob-redirect = "true"  # file'):
        assert line in out, (line, out)
    # A changed configuration rolls the pods (the ConfigMap's checksum is on the template).
    other = helm_objects("-f", os.path.join(CHART, "ci", "scaled-values.yaml"), "--set", "config.gc-interval=2h")
    a = dep["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    b = other[("Deployment", "kura")]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert a != b

    # A config value the chart cannot render as a kura.toml key fails with a message.
    bad = write(tmp_path / "bad-values.yaml", "config:\n  max-connections: 1.5\n")
    p = subprocess.run(["helm", "template", "kura", CHART, "-f", bad], capture_output=True, text=True)
    assert p.returncode != 0 and "must be integers" in p.stderr, p.stderr

    # Scaled mode without its settings fails with a message.
    p = subprocess.run(["helm", "template", "kura", CHART, "--set", "mode=scaled"], capture_output=True, text=True)
    assert p.returncode != 0 and "database.existingSecret" in p.stderr, p.stderr
    p = subprocess.run(["helm", "template", "kura", CHART, "--set", "mode=cluster"], capture_output=True, text=True)
    assert p.returncode != 0 and "embedded or scaled" in p.stderr, p.stderr


# --- systemd -------------------------------------------------------------------


def test_systemd_unit_verifies_and_is_hardened(tmp_path):
    require_tool("systemd-analyze")
    with open(UNIT) as f:
        text = f.read()
    assert "ExecStart=/usr/local/bin/kura serve --config" in text
    # verify checks that ExecStart's binary exists: point it at the one under test.
    unit = write(tmp_path / "kura.service", text.replace("/usr/local/bin/kura", kura_bin()))
    p = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "kura.service" not in p.stderr, p.stderr  # no warning about the unit itself
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", unit], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r"Overall exposure level for kura.service: ([0-9.]+) (\w+)", p.stdout)
    assert m, p.stdout[-2000:]
    assert float(m.group(1)) <= 2.0 and m.group(2) == "OK", m.group(0)
    for setting in ("DynamicUser=yes", "StateDirectory=kura", "ProtectSystem=strict", "NoNewPrivileges=yes"):
        assert setting in text
