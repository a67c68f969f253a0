"""Kura over TLS (`kura serve --tls-cert --tls-key`) with real clients.

Each test makes its own PKI with the `openssl` CLI: a root CA, an
intermediate CA, and server certificates the intermediate signs. Kura is
given the leaf followed by the intermediate (a chain, as a public CA hands
it out); clients trust only the root, so every test also checks that the
chain is served. No client runs with verification off: docker reads
certs.d/<host:port>/ca.crt, skopeo/podman --cert-dir, containerd's ctr a
hosts.toml `ca`, helm --ca-file, the aws CLI --ca-bundle/AWS_CA_BUNDLE,
boto3 verify=<ca>, curl --cacert, python's ssl a context with the root.
Each client family also has a negative control (the same command without
the CA fails on the certificate), so a test cannot pass by not verifying.
"""
import base64
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest
import requests

from conftest import Registry, free_port
from helpers import container_store, podman_cmd, require_tool, run  # noqa: F401 (fixture)
from images import Layout, make_rng, random_image


def openssl(*args, cwd=None):
    p = subprocess.run(["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "openssl %s -> %d\n%s" % (" ".join(map(str, args)), p.returncode, p.stderr)
    return p.stdout


class Pki:
    """A root CA and an intermediate CA under `dir`; `server()` and
    `client()` issue leaf certificates (EC P-256) from the intermediate."""

    def __init__(self, dir, name="Kura e2e"):
        require_tool("openssl")
        self.dir = str(dir)
        os.makedirs(self.dir, exist_ok=True)
        self.ca = os.path.join(self.dir, "root.crt")
        self._key("root.key")
        openssl("req", "-x509", "-new", "-key", "root.key", "-out", "root.crt", "-days", "2",
                "-subj", "/CN=%s root CA" % name,
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                "-addext", "subjectKeyIdentifier=hash", cwd=self.dir)
        self._key("inter.key")
        openssl("req", "-new", "-key", "inter.key", "-out", "inter.csr", "-subj", "/CN=%s intermediate CA" % name,
                cwd=self.dir)
        self._sign("inter", "root", 100, "basicConstraints=critical,CA:TRUE,pathlen:0\n"
                   "keyUsage=critical,keyCertSign,cRLSign\n")
        self.intermediate = os.path.join(self.dir, "inter.crt")

    def _key(self, name):
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", name, cwd=self.dir)

    def _sign(self, name, issuer, serial, ext):
        with open(os.path.join(self.dir, name + ".ext"), "w") as f:
            f.write(ext + "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n")
        openssl("x509", "-req", "-in", name + ".csr", "-CA", issuer + ".crt", "-CAkey", issuer + ".key",
                "-set_serial", serial, "-days", "2", "-out", name + ".crt", "-extfile", name + ".ext",
                cwd=self.dir)

    def _leaf(self, name, serial, ext):
        self._key(name + ".key")
        openssl("req", "-new", "-key", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name, cwd=self.dir)
        self._sign(name, "inter", serial, "basicConstraints=critical,CA:FALSE\n"
                   "keyUsage=critical,digitalSignature\n" + ext)
        crt, key = os.path.join(self.dir, name + ".crt"), os.path.join(self.dir, name + ".key")
        return crt, key

    def server(self, name, serial, ips=("127.0.0.1",)):
        """(chain file: leaf + intermediate, key file) for these addresses and localhost."""
        sans = ",".join(["DNS:localhost"] + ["IP:" + ip for ip in ips])
        crt, key = self._leaf(name, serial, "extendedKeyUsage=serverAuth\nsubjectAltName=%s\n" % sans)
        chain = os.path.join(self.dir, name + ".chain.pem")
        with open(chain, "w") as out:
            for part in (crt, self.intermediate):
                out.write(open(part).read())
        return chain, key

    def client(self, name, serial):
        """(chain file: leaf + intermediate, key file) of a client certificate."""
        crt, key = self._leaf(name, serial, "extendedKeyUsage=clientAuth\n")
        chain = os.path.join(self.dir, name + ".chain.pem")
        with open(chain, "w") as out:
            for part in (crt, self.intermediate):
                out.write(open(part).read())
        return chain, key


class TlsRegistry(Registry):
    """A Kura serving HTTPS with a chain from `pki`; `url` is https://host.
    `client_cert`: (cert, key) this harness presents (mTLS)."""

    def __init__(self, workdir, pki, ip="127.0.0.1", serial=0x1001, args=(), client_cert=None):
        os.makedirs(workdir, exist_ok=True)
        self.pki = pki
        self.cert_file = os.path.join(workdir, "tls.crt")
        self.key_file = os.path.join(workdir, "tls.key")
        chain, key = pki.server("server-%x" % serial, serial, ips=(ip,))
        shutil.copy(chain, self.cert_file)
        shutil.copy(key, self.key_file)
        super().__init__(workdir, args=["--tls-cert", self.cert_file, "--tls-key", self.key_file, *args])
        self.host = "%s:%d" % (ip, self.port)
        self.url = "https://" + self.host
        self.ca = pki.ca
        self.client_cert = client_cert

    def ssl_context(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        if self.client_cert:
            ctx.load_cert_chain(*self.client_cert)
        return ctx

    def start(self, extra_env=None):
        # The readiness probe of Registry.start goes through urllib's global opener.
        urllib.request.install_opener(urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.ssl_context())))
        try:
            return super().start(extra_env)
        finally:
            urllib.request.install_opener(None)

    def ecr(self, **kw):
        kw.setdefault("verify", self.ca)
        return super().ecr(**kw)

    def aws_env(self):
        env = super().aws_env()
        env["AWS_CA_BUNDLE"] = self.ca
        return env


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path / "pki")


@pytest.fixture
def tls_registry(tmp_path, pki):
    reg = TlsRegistry(str(tmp_path / "kura"), pki)
    reg.start()
    reg.allow_create_on_push()
    reg.login()
    yield reg
    reg.stop()


def host_ip():
    """A non-loopback IPv4 address of this machine, or None. docker treats
    every registry on 127.0.0.0/8 as insecure (it would skip verification),
    so the docker test serves on this address."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def peer_serial(reg, alpn=None):
    """The serial number of the certificate a new connection is shown."""
    ctx = reg.ssl_context()
    if alpn:
        ctx.set_alpn_protocols(alpn)
    host, port = reg.host.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as s:
            return int(s.getpeercert()["serialNumber"], 16), s.selected_alpn_protocol()


def curl(reg, *args, cacert=True):
    cmd = ["curl", "-sS", "--max-time", "20"]
    if cacert:
        cmd += ["--cacert", reg.ca]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)


def oci_image(tmp_path, tag="v1"):
    src = Layout(tmp_path / ("src-" + tag))
    desc, _ = random_image(src, make_rng(), tag, nlayers=2)
    return src, desc


# --- the protocol: ALPN, chain, URLs -------------------------------------------------


def test_http2_by_alpn_chain_and_https_urls(tls_registry, tmp_path):
    reg = tls_registry
    require_tool("curl")
    # ALPN: h2 when the client offers it, HTTP/1.1 otherwise; the chain verifies against the root.
    serial, proto = peer_serial(reg, alpn=["h2", "http/1.1"])
    assert (serial, proto) == (0x1001, "h2")
    assert peer_serial(reg, alpn=["http/1.1"])[1] == "http/1.1"
    for flag, version in (("--http2", "2"), ("--http1.1", "1.1")):
        p = curl(reg, flag, "-o", "/dev/null", "-D", "-", "-w", "version=%{http_version}\n", reg.url + "/v2/")
        assert p.returncode == 0, p.stderr
        assert "version=%s" % version in p.stdout, p.stdout
        # The token challenge's realm is https: the client came over TLS.
        assert 'realm="https://%s/token"' % reg.host in p.stdout, p.stdout
    # Without the root, curl refuses the certificate; cleartext on the TLS port gets no HTTP answer.
    p = curl(reg, reg.url + "/v2/", cacert=False)
    assert p.returncode == 60, (p.returncode, p.stderr)
    p = curl(reg, "-o", "/dev/null", "-w", "%{http_code}", "http://%s/v2/" % reg.host)
    assert p.stdout != "401", p.stdout

    # The ECR API hands out https URLs: the proxy endpoint and a layer's download URL.
    data = reg.ecr().get_authorization_token()["authorizationData"][0]
    assert data["proxyEndpoint"] == reg.url
    src, desc = oci_image(tmp_path)
    manifest = json.loads(src.blob(desc["digest"]))
    layer = manifest["layers"][0]["digest"]
    push_blob(reg, "tls/urls", src.blob(layer), layer)
    url = reg.ecr().get_download_url_for_layer(repositoryName="tls/urls", layerDigest=layer)["downloadUrl"]
    assert url.startswith("https://%s/v2/tls/urls/blobs/%s?" % (reg.host, layer)), url
    r = requests.get(url, verify=reg.ca)
    assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == layer.split(":")[1]


def push_blob(reg, repo, data, digest):
    # verify= on each call: a Session's verify loses to REQUESTS_CA_BUNDLE.
    r = requests.post("%s/v2/%s/blobs/uploads/" % (reg.url, repo), auth=reg.auth, verify=reg.ca)
    assert r.status_code == 202, (r.status_code, r.text)
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = reg.url + loc
    r = requests.put(loc + ("&" if "?" in loc else "?") + "digest=" + digest, data=data, auth=reg.auth,
                     verify=reg.ca, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, (r.status_code, r.text)


# --- clients ------------------------------------------------------------------------


def cert_dir(reg, tmp_path):
    """A directory holding only the root CA as ca.crt (skopeo/podman --cert-dir)."""
    d = tmp_path / "certs"
    d.mkdir(exist_ok=True)
    shutil.copy(reg.ca, d / "ca.crt")
    return str(d)


def test_skopeo_and_podman_verify_the_chain(tls_registry, tmp_path, container_store):
    reg = tls_registry
    require_tool("skopeo", "podman")
    certs = cert_dir(reg, tmp_path)
    src, desc = oci_image(tmp_path)
    ref = "docker://%s/tls/skopeo:v1" % reg.host
    # No CA: the push fails on the certificate, nothing else.
    p = run(["skopeo", "copy", "--dest-creds", "AWS:" + reg.token, "oci:%s:v1" % src.path, ref],
            registry=reg, check=False)
    assert p.returncode != 0 and b"certificate signed by unknown authority" in p.stderr, p.stderr
    run(["skopeo", "copy", "--preserve-digests", "--dest-cert-dir", certs, "--dest-creds", "AWS:" + reg.token,
         "oci:%s:v1" % src.path, ref], registry=reg)
    out = json.loads(run(["skopeo", "inspect", "--raw", "--cert-dir", certs, "--creds", "AWS:" + reg.token, ref],
                         registry=reg).stdout)
    assert out == json.loads(src.blob(desc["digest"]))

    # podman: log in and pull with the CA directory (the same layout as /etc/containers/certs.d/<host>/).
    p = podman_cmd(container_store())
    auth = str(tmp_path / "auth.json")
    out = run(p + ["login", "--authfile", auth, "--cert-dir", certs, "--username", "AWS", "--password-stdin",
                   reg.host], registry=reg, input=reg.token.encode())
    assert b"Login Succeeded" in out.stdout + out.stderr
    run(p + ["pull", "--authfile", auth, "--cert-dir", certs, "%s/tls/skopeo:v1" % reg.host], registry=reg)
    ids = run(p + ["images", "--format", "{{.Digest}}", "%s/tls/skopeo:v1" % reg.host]).stdout.decode().split()
    assert desc["digest"] in ids
    # podman push of the pulled image to a new repository, then skopeo sees it.
    run(p + ["push", "--authfile", auth, "--cert-dir", certs, "%s/tls/skopeo:v1" % reg.host,
             "%s/tls/podman:v2" % reg.host], registry=reg)
    run(["skopeo", "inspect", "--cert-dir", certs, "--creds", "AWS:" + reg.token,
         "docker://%s/tls/podman:v2" % reg.host], registry=reg)


def test_aws_cli_and_boto3(tls_registry):
    reg = tls_registry
    require_tool("aws")
    import boto3
    from botocore.config import Config
    from botocore.exceptions import SSLError

    env = reg.aws_env()
    cli = ["aws", "ecr", "--endpoint-url", reg.url, "--output", "json"]
    # AWS_CA_BUNDLE (set by aws_env) and --ca-bundle.
    out = run(cli + ["create-repository", "--repository-name", "tls/cli"], env=env, registry=reg)
    assert json.loads(out.stdout)["repository"]["repositoryName"] == "tls/cli"
    no_bundle = {k: v for k, v in env.items() if k != "AWS_CA_BUNDLE"}
    out = run(cli + ["--ca-bundle", reg.ca, "describe-repositories"], env=no_bundle, registry=reg)
    assert "tls/cli" in [r["repositoryName"] for r in json.loads(out.stdout)["repositories"]]
    p = run(cli + ["describe-repositories"], env=no_bundle, registry=reg, check=False)
    assert p.returncode != 0 and b"CERTIFICATE_VERIFY_FAILED" in p.stderr, p.stderr
    password = run(cli + ["get-login-password"], env=env, registry=reg).stdout.decode().strip()
    r = requests.get(reg.url + "/v2/", auth=("AWS", password), verify=reg.ca)
    assert r.status_code == 200, r.text

    # boto3 with verify=<root>; without it, an SSL error.
    assert reg.ecr().describe_repositories(repositoryNames=["tls/cli"])["repositories"][0]["repositoryName"] == "tls/cli"
    plain = boto3.client("ecr", endpoint_url=reg.url, region_name=reg.region, aws_access_key_id=reg.access_key,
                         aws_secret_access_key=reg.secret_key, config=Config(retries={"max_attempts": 1}))
    with pytest.raises(SSLError):
        plain.describe_repositories()


def test_containerd_ctr_with_a_hosts_dir(tls_registry, tmp_path):
    from test_ctr import Containerd

    reg = tls_registry
    require_tool("containerd", "ctr", "skopeo")
    certs = cert_dir(reg, tmp_path)
    src, desc = oci_image(tmp_path)
    run(["skopeo", "copy", "--preserve-digests", "--dest-cert-dir", certs, "--dest-creds", "AWS:" + reg.token,
         "oci:%s:v1" % src.path, "docker://%s/tls/ctr:v1" % reg.host], registry=reg)
    def hosts_dir(name, ca_line):
        d = tmp_path / name
        (d / reg.host).mkdir(parents=True)
        (d / reg.host / "hosts.toml").write_text(
            'server = "%s"\n\n[host."%s"]\n  capabilities = ["pull", "resolve", "push"]\n%s'
            % (reg.url, reg.url, ca_line))
        return d

    hosts = hosts_dir("hosts", '  ca = "%s"\n' % reg.ca)
    no_ca = hosts_dir("hosts-no-ca", "")
    c = Containerd()
    try:
        ref = "%s/tls/ctr:v1" % reg.host
        p = run(c.ctr("images", "pull", "--hosts-dir", str(no_ca), "--user", "AWS:" + reg.token, ref),
                registry=reg, check=False)
        assert p.returncode != 0 and b"certificate signed by unknown authority" in p.stdout + p.stderr, p
        run(c.ctr("images", "pull", "--hosts-dir", str(hosts), "--user", "AWS:" + reg.token, ref), registry=reg)
        listed = run(c.ctr("images", "ls")).stdout.decode()
        assert desc["digest"] in listed, listed
        run(c.ctr("images", "tag", ref, "%s/tls/ctr2:v1" % reg.host))
        run(c.ctr("images", "push", "--hosts-dir", str(hosts), "--user", "AWS:" + reg.token,
                  "%s/tls/ctr2:v1" % reg.host), registry=reg)
    finally:
        c.stop()
    r = requests.head("%s/v2/tls/ctr2/manifests/v1" % reg.url, auth=reg.auth, verify=reg.ca,
                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == desc["digest"]


def test_helm_with_ca_file(tls_registry, tmp_path):
    reg = tls_registry
    require_tool("helm")
    home = tmp_path / "helm-home"
    env = dict(os.environ)
    env.update({"HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
                "HELM_DATA_HOME": str(home / "data"), "HELM_REGISTRY_CONFIG": str(home / "registry.json")})

    def helm(*args, check=True, input=None):
        p = subprocess.run(["helm", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120, input=input)
        if check:
            assert p.returncode == 0, "helm %s -> %d\n%s%s" % (" ".join(args), p.returncode, p.stdout, p.stderr)
        return p

    p = helm("registry", "login", reg.host, "--username", "AWS", "--password-stdin", input=reg.token, check=False)
    assert p.returncode != 0 and "certificate signed by unknown authority" in p.stderr, p.stderr
    p = helm("registry", "login", reg.host, "--username", "AWS", "--password-stdin", "--ca-file", reg.ca,
             input=reg.token)
    assert "Login Succeeded" in p.stdout + p.stderr
    helm("create", "tlschart")
    helm("package", "tlschart", "--version", "0.3.0", "-d", str(tmp_path / "pkg"))
    tgz = tmp_path / "pkg" / "tlschart-0.3.0.tgz"
    p = helm("push", str(tgz), "oci://%s/tls/charts" % reg.host, "--ca-file", reg.ca)
    pushed = [line for line in (p.stdout + p.stderr).splitlines() if line.startswith("Digest:")]
    assert pushed, p.stdout + p.stderr
    (tmp_path / "pulled").mkdir()
    helm("pull", "oci://%s/tls/charts/tlschart" % reg.host, "--version", "0.3.0", "--ca-file", reg.ca,
         "-d", str(tmp_path / "pulled"))
    assert (tmp_path / "pulled" / "tlschart-0.3.0.tgz").read_bytes() == tgz.read_bytes()


def test_docker_daemon_with_certs_d(tmp_path, pki):
    from dockerd_util import Dockerd

    ip = host_ip()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address: docker skips verification for 127.0.0.0/8 registries")
    reg = TlsRegistry(str(tmp_path / "kura"), pki, ip=ip)
    reg.start()
    certs_d = "/etc/docker/certs.d/" + reg.host
    d = Dockerd()
    try:
        reg.allow_create_on_push()
        reg.login()
        d.start()
        login = ["login", "--username", "AWS", "--password-stdin", reg.host]
        p = d(*login, input=reg.token, check=False)
        assert p.returncode != 0 and "certificate signed by unknown authority" in p.stderr, p.stdout + p.stderr
        os.makedirs(certs_d, exist_ok=True)
        shutil.copy(reg.ca, os.path.join(certs_d, "ca.crt"))
        p = d(*login, input=reg.token)
        assert "Login Succeeded" in p.stdout
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "hello.txt").write_bytes(os.urandom(50_000))
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
        remote = "%s/tls/docker:v1" % reg.host
        d("build", "-t", remote, str(ctx))
        out = d("push", remote).stdout
        digest = out.split("digest: ")[1].split()[0]
        d("rmi", remote)
        assert digest in d("pull", remote).stdout
        r = requests.head("%s/v2/tls/docker/manifests/v1" % reg.url, auth=reg.auth, verify=reg.ca,
                          headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        assert r.headers.get("Docker-Content-Digest") == digest
    finally:
        d.stop()
        shutil.rmtree(certs_d, ignore_errors=True)
        reg.stop()


# --- certificate reload -------------------------------------------------------------


def replace(reg, chain, key):
    """Swap the served files as a deploy tool would: write beside, then rename."""
    for src, dst in ((key, reg.key_file), (chain, reg.cert_file)):
        tmp = dst + ".new"
        shutil.copy(src, tmp)
        os.replace(tmp, dst)


class Load:
    """Clients hammering the registry from threads until stopped: new TLS
    connections (recording the certificate serial each was shown and the
    status of a GET /v2/ on it) and one keep-alive connection reused all
    along. Every failure is kept."""

    def __init__(self, reg, threads=3):
        self.reg = reg
        self.stop = threading.Event()
        self.serials = []
        self.failures = []
        self.requests = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.fresh, daemon=True) for _ in range(threads)]
        self.threads.append(threading.Thread(target=self.keepalive, daemon=True))
        host, port = reg.host.rsplit(":", 1)
        self.addr = (host, int(port))
        self.keepalive_socks = set()

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def fresh(self):
        ctx = self.reg.ssl_context()
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPSConnection(*self.addr, context=ctx, timeout=20)
                conn.request("GET", "/v2/")
                resp = conn.getresponse()
                resp.read()
                serial = int(conn.sock.getpeercert()["serialNumber"], 16)
                conn.close()
                with self.lock:
                    self.requests += 1
                    self.serials.append(serial)
                    if resp.status != 401:
                        self.failures.append("status %d" % resp.status)
            except Exception as e:  # every error is a failed request
                with self.lock:
                    self.failures.append(repr(e))

    def keepalive(self):
        conn = http.client.HTTPSConnection(*self.addr, context=self.reg.ssl_context(), timeout=20)
        while not self.stop.is_set():
            try:
                conn.request("GET", "/healthz")
                resp = conn.getresponse()
                resp.read()
                with self.lock:
                    self.requests += 1
                    self.keepalive_socks.add(id(conn.sock))
                    if resp.status != 200:
                        self.failures.append("keep-alive status %d" % resp.status)
            except Exception as e:
                with self.lock:
                    self.failures.append("keep-alive: " + repr(e))
                return
            time.sleep(0.02)
        conn.close()

    def last_serials(self, n):
        with self.lock:
            return self.serials[-n:]

    def wait_for(self, serial, timeout=30):
        """Until the last 5 new connections were all shown `serial`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            last = self.last_serials(5)
            if len(last) == 5 and all(s == serial for s in last):
                return
            time.sleep(0.1)
        raise AssertionError("connections never settled on serial %x: %s\n%s" % (
            serial, [hex(s) for s in self.last_serials(20)], self.reg.log()))


def test_reload_under_load_on_sighup_and_file_change(tmp_path, pki):
    # The file check runs every second here; SIGHUP reloads at once.
    reg = TlsRegistry(str(tmp_path / "kura"), pki, args=["--tls-reload-interval", "1s"])
    reg.start()
    try:
        with Load(reg) as load:
            load.wait_for(0x1001)
            # 1. New pair + SIGHUP.
            replace(reg, *pki.server("second", 0x2002))
            reg.proc.send_signal(signal.SIGHUP)
            load.wait_for(0x2002)
            # 2. A bad pair (a key that is not the certificate's): refused, the current one stays.
            chain3, _ = pki.server("third", 0x3003)
            _, other_key = pki.server("other", 0x3004)
            replace(reg, chain3, other_key)
            reg.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 20
            while "does not belong to the certificate" not in reg.full_log() and time.time() < deadline:
                time.sleep(0.1)
            assert "does not belong to the certificate" in reg.full_log(), reg.log()
            before = len(load.last_serials(10**9))
            while len(load.last_serials(10**9)) < before + 10:
                time.sleep(0.05)
            assert set(load.last_serials(10)) == {0x2002}
            # 3. A good pair and no signal: the file check picks it up.
            replace(reg, *pki.server("fourth", 0x4004))
            load.wait_for(0x4004)
        assert reg.proc.poll() is None, reg.log()
        assert load.failures == [], load.failures[:10]
        seen = set(load.serials)
        assert {0x1001, 0x2002, 0x4004} <= seen and 0x3003 not in seen and 0x3004 not in seen
        # The keep-alive connection opened before the first reload served throughout, on one socket.
        assert len(load.keepalive_socks) == 1
        assert load.requests > 50, load.requests
    finally:
        reg.stop()


# --- mTLS ---------------------------------------------------------------------------


def test_mtls_refuses_clients_without_a_trusted_certificate(tmp_path, pki):
    require_tool("curl")
    clients = Pki(tmp_path / "client-pki", name="Kura clients")
    good = clients.client("alice", 0x51)
    elsewhere = Pki(tmp_path / "other-pki", name="Elsewhere")
    stranger = elsewhere.client("mallory", 0x52)
    ca_file = str(tmp_path / "client-ca.pem")
    shutil.copy(clients.ca, ca_file)
    reg = TlsRegistry(str(tmp_path / "kura"), pki, args=["--tls-client-ca", ca_file], client_cert=good)
    reg.start()  # the readiness probe presents `good`
    try:
        url = reg.url + "/v2/"
        ok = curl(reg, "-o", "/dev/null", "-w", "%{http_code}", "--cert", good[0], "--key", good[1], url)
        assert ok.returncode == 0 and ok.stdout == "401", (ok.stdout, ok.stderr)
        h2 = curl(reg, "--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                  "--cert", good[0], "--key", good[1], url)
        assert h2.returncode == 0 and h2.stdout == "2 401", (h2.stdout, h2.stderr)
        # Refused: no certificate; one from another CA; the right leaf without the
        # intermediate the CA file lacks (the client must send its chain).
        leaf_only = os.path.join(clients.dir, "alice.crt")
        for extra in ([], ["--cert", stranger[0], "--key", stranger[1]], ["--cert", leaf_only, "--key", good[1]]):
            p = curl(reg, "-o", "/dev/null", "-w", "%{http_code}", *extra, url)
            assert p.returncode != 0 and p.stdout in ("", "000"), (extra, p.returncode, p.stdout, p.stderr)
        # python: the handshake (or the first read) fails without a certificate.
        ctx = ssl.create_default_context(cafile=reg.ca)
        host, port = reg.host.rsplit(":", 1)
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=10)
            conn.request("GET", "/v2/")
            conn.getresponse()
        assert reg.proc.poll() is None

        # The CA file is reloaded too: trust "Elsewhere" instead, SIGHUP.
        shutil.copy(elsewhere.ca, ca_file + ".new")
        os.replace(ca_file + ".new", ca_file)
        reg.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 20
        while True:
            p = curl(reg, "-o", "/dev/null", "-w", "%{http_code}", "--cert", stranger[0], "--key", stranger[1], url)
            if p.returncode == 0:
                break
            assert time.time() < deadline, reg.log()
            time.sleep(0.2)
        assert p.stdout == "401"
        p = curl(reg, "-o", "/dev/null", "-w", "%{http_code}", "--cert", good[0], "--key", good[1], url)
        assert p.returncode != 0, (p.stdout, p.stderr)
    finally:
        reg.stop()


# --- configuration errors and warnings ----------------------------------------------


def kura_serve(tmp_path, *args, timeout=30, extra_env=None):
    binary = os.environ.get("KURA_BIN", os.path.join(os.path.dirname(__file__), "..", "..",
                                                     "target", "release", "kura"))
    env = dict(os.environ, KURA_DISK_RESERVE_MIB="1", RUST_BACKTRACE="0")
    for var in ("KURA_TLS_CERT", "KURA_TLS_KEY", "KURA_TLS_CLIENT_CA"):
        env.pop(var, None)
    env.update(extra_env or {})
    return subprocess.run([binary, "serve", "--data-dir", str(tmp_path / "data"), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_bad_certificate_files_stop_the_start_with_a_clear_error(tmp_path, pki):
    chain, key = pki.server("srv", 0x77)
    _, other_key = pki.server("other", 0x78)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = str(tmp_path / "missing.pem")
    listen = ["--listen", "127.0.0.1:%d" % free_port()]
    cases = [
        (["--tls-cert", missing, "--tls-key", key], [missing, "cannot read it"]),
        (["--tls-cert", str(garbage), "--tls-key", key], [str(garbage), "no PEM block with a certificate"]),
        (["--tls-cert", chain, "--tls-key", str(garbage)], [str(garbage), "no PEM block with a private key"]),
        (["--tls-cert", key, "--tls-key", key], [key, "no PEM block with a certificate"]),
        (["--tls-cert", chain, "--tls-key", other_key], [other_key, "does not belong to the certificate", chain]),
        (["--tls-cert", chain], ["--tls-cert needs --tls-key"]),
        (["--tls-key", key], ["--tls-key needs --tls-cert"]),
        (["--tls-client-ca", pki.ca], ["--tls-client-ca needs --tls-cert"]),
        (["--tls-cert", chain, "--tls-key", key, "--tls-client-ca", str(garbage)],
         [str(garbage), "no PEM block with a certificate"]),
    ]
    for args, words in cases:
        p = kura_serve(tmp_path, *listen, *args)
        assert p.returncode == 1, (args, p.returncode, p.stderr[-2000:])
        for w in words:
            assert w in p.stderr, (args, w, p.stderr[-2000:])
        assert "panicked" not in p.stderr
    # The same through the environment.
    p = kura_serve(tmp_path, *listen, extra_env={"KURA_TLS_CERT": chain, "KURA_TLS_KEY": other_key})
    assert p.returncode == 1 and "does not belong to the certificate" in p.stderr, p.stderr[-2000:]


def test_plain_http_off_loopback_warns(tmp_path):
    ip = host_ip()
    if ip is None:
        pytest.skip("no non-loopback IPv4 address to listen on")
    os.makedirs(tmp_path / "plain")
    os.makedirs(tmp_path / "loop")
    plain = Registry(str(tmp_path / "plain"))
    plain.host = "%s:%d" % (ip, plain.port)
    plain.url = "http://" + plain.host
    plain.start()
    plain.stop()
    assert "serving plain HTTP on a non-loopback address" in plain.full_log(), plain.log()
    loop = Registry(str(tmp_path / "loop"))
    loop.start()
    loop.stop()
    assert "plain HTTP" not in loop.full_log()


def test_tls_with_trusted_proxies_stays_https(tmp_path, pki):
    """With --trusted-proxies, a trusted peer's X-Forwarded-Proto can add
    https but never take it away from a connection that is TLS itself."""
    reg = TlsRegistry(str(tmp_path / "kura"), pki, args=["--trusted-proxies", "127.0.0.1"])
    reg.start()
    try:
        r = requests.get(reg.url + "/v2/", verify=reg.ca, headers={"X-Forwarded-Proto": "http",
                                                                   "X-Forwarded-For": "203.0.113.7"})
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"].startswith('Bearer realm="https://%s/token"' % reg.host)
        assert "plain HTTP" not in reg.full_log()
    finally:
        reg.stop()


def test_a_silent_client_is_dropped_after_the_header_timeout(tmp_path, pki):
    """The TLS handshake is bounded by --header-timeout: a client that
    connects and sends nothing does not keep its connection slot."""
    reg = TlsRegistry(str(tmp_path / "kura"), pki, args=["--header-timeout", "1s", "--max-connections", "2"])
    reg.start()
    try:
        host, port = reg.host.rsplit(":", 1)
        silent = [socket.create_connection((host, int(port)), timeout=20) for _ in range(2)]
        for s in silent:
            assert s.recv(1) == b""  # closed by the server, not by our 20 s timeout
            s.close()
        # Both slots are free again: a real client is served.
        assert peer_serial(reg)[0] == 0x1001
        assert requests.get(reg.url + "/healthz", verify=reg.ca, timeout=20).status_code == 200
    finally:
        reg.stop()


def test_rsa_pkcs1_and_ec_sec1_keys_are_served(tmp_path, pki):
    """The key formats the README promises besides PKCS#8: an RSA key in
    PKCS#1 (`BEGIN RSA PRIVATE KEY`) and an EC key in SEC1 (`BEGIN EC PRIVATE KEY`)."""
    d = pki.dir
    openssl("genrsa", "-traditional", "-out", "rsa.key", "2048", cwd=d)
    chain_ec, key_ec = pki.server("ecsec1", 0x5151)
    openssl("ec", "-in", key_ec, "-out", "ec.sec1.key", cwd=d)
    openssl("req", "-new", "-key", "rsa.key", "-out", "rsa.csr", "-subj", "/CN=rsa", cwd=d)
    pki._sign("rsa", "inter", 0x5252, "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,"
              "keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
    chain_rsa = os.path.join(d, "rsa.chain.pem")
    with open(chain_rsa, "w") as out:
        out.write(open(os.path.join(d, "rsa.crt")).read() + open(pki.intermediate).read())
    for chain, key, marker, serial in ((chain_rsa, os.path.join(d, "rsa.key"), "BEGIN RSA PRIVATE KEY", 0x5252),
                                       (chain_ec, os.path.join(d, "ec.sec1.key"), "BEGIN EC PRIVATE KEY", 0x5151)):
        assert marker in open(key).read()
        reg = TlsRegistry(str(tmp_path / ("kura-%x" % serial)), pki)
        shutil.copy(chain, reg.cert_file)
        shutil.copy(key, reg.key_file)
        reg.start()
        try:
            assert peer_serial(reg)[0] == serial
        finally:
            reg.stop()


def test_a_kubernetes_style_symlink_swap_is_picked_up(tmp_path, pki):
    """A mounted Secret: tls.crt -> ..data/tls.crt, ..data -> a timestamped
    directory; an update points ..data at a new directory (one rename) and
    leaves the files' own paths alone."""
    reg = TlsRegistry(str(tmp_path / "kura"), pki, args=["--tls-reload-interval", "1s"])
    mount = tmp_path / "secret"
    mount.mkdir()
    for name, serial in (("v1", 0x6001), ("v2", 0x6002)):
        chain, key = pki.server("k8s-" + name, serial)
        (mount / name).mkdir()
        shutil.copy(chain, mount / name / "tls.crt")
        shutil.copy(key, mount / name / "tls.key")
    os.symlink("v1", mount / "..data")
    for f in ("tls.crt", "tls.key"):
        os.symlink(os.path.join("..data", f), mount / f)
    reg.args[reg.args.index(reg.cert_file)] = str(mount / "tls.crt")
    reg.args[reg.args.index(reg.key_file)] = str(mount / "tls.key")
    reg.start()
    try:
        assert peer_serial(reg)[0] == 0x6001
        os.symlink("v2", mount / "..data_tmp")
        os.replace(mount / "..data_tmp", mount / "..data")
        deadline = time.time() + 30
        while peer_serial(reg)[0] != 0x6002:
            assert time.time() < deadline, reg.log()
            time.sleep(0.2)
        assert "reloaded the TLS certificate" in reg.full_log()
    finally:
        reg.stop()
