"""The listener's limits and the trusted-proxy setting, against `kura serve`
with raw sockets and requests.

Guards (each fails on a server without the limits / without the setting):
- a client that sends its request head one byte a second (slowloris) is cut
  off after the header timeout, not held open for as long as it trickles;
- a keep-alive connection with nothing in flight is closed after the idle
  timeout;
- a PATCH whose body stalls mid-way is answered (or closed) after the body
  idle timeout and gives up its upload lease, so a second client resumes
  the upload at once (before, the stalled writer renewed its lease forever
  and every other client got 416);
- X-Forwarded-Proto and X-Forwarded-For are believed only from
  --trusted-proxies: a forged header from an untrusted peer changes neither
  the token realm's scheme nor an aws:SourceIp decision.

The server runs with short timeouts (flags) so the tests stay quick; waits
are bounded, never measured.
"""

import hashlib
import json
import os
import socket
import time

import requests

from conftest import Registry

SHORT = ["--header-timeout", "2s", "--idle-timeout", "3s", "--body-idle-timeout", "2s"]


class FlagRegistry(Registry):
    """The conftest registry, started with extra command-line flags."""

    def __init__(self, workdir, flags):
        super().__init__(workdir)
        self.flags = flags

    def _cmd(self):
        return super()._cmd() + self.flags


def start(tmp_path, flags):
    reg = FlagRegistry(str(tmp_path), flags)
    reg.start()
    return reg


def closed_within(sock, seconds, trickle=None):
    """Wait up to `seconds` for the server to close `sock` (EOF or reset),
    sending one byte of `trickle` a second meanwhile. Returns what was read
    before the close, or None if the connection stayed open."""
    sock.settimeout(1.0)
    got = b""
    deadline = time.time() + seconds
    i = 0
    while time.time() < deadline:
        if trickle is not None and i < len(trickle):
            try:
                sock.sendall(trickle[i:i + 1])
            except OSError:
                return got
            i += 1
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return got
        if not chunk:
            return got
        got += chunk
    return None


def test_slow_request_head_is_cut_off(tmp_path):
    reg = start(tmp_path, SHORT)
    try:
        head = (f"GET /v2/ HTTP/1.1\r\nHost: {reg.host}\r\nUser-Agent: slowloris\r\n"
                "X-Padding: " + "a" * 60 + "\r\n\r\n").encode()
        s = socket.create_connection(("127.0.0.1", reg.port))
        # The head would take ~100 s at a byte a second; the server must hang
        # up long before it is complete.
        got = closed_within(s, 20, trickle=head)
        s.close()
        assert got is not None, "the server kept a trickling connection open for 20 s"
        assert b"HTTP/1.1 401" not in got and b"HTTP/1.1 200" not in got, got
    finally:
        reg.stop()


def test_idle_keep_alive_connection_is_closed(tmp_path):
    reg = start(tmp_path, SHORT)
    try:
        s = socket.create_connection(("127.0.0.1", reg.port))
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {reg.host}\r\n\r\n".encode())
        got = closed_within(s, 20)
        s.close()
        assert got is not None, "an idle keep-alive connection stayed open for 20 s"
        assert got.startswith(b"HTTP/1.1 200"), got
    finally:
        reg.stop()


def token_auth(reg):
    data = reg.ecr().get_authorization_token()["authorizationData"][0]
    return "Basic " + data["authorizationToken"]


def rel(location):
    """A Location header as a path."""
    return location if location.startswith("/") else "/" + location.split("/", 3)[3]


def test_stalled_patch_releases_its_upload_lease(tmp_path):
    reg = start(tmp_path, SHORT)
    try:
        reg.allow_create_on_push()
        auth = token_auth(reg)
        r = requests.post(f"{reg.url}/v2/stall/blobs/uploads/", headers={"Authorization": auth}, timeout=10)
        assert r.status_code == 202, r.text
        path = rel(r.headers["Location"])
        data = os.urandom(1000)

        # Client 1: announces 1000 bytes, sends 100, then stalls.
        s = socket.create_connection(("127.0.0.1", reg.port))
        s.sendall((f"PATCH {path} HTTP/1.1\r\nHost: {reg.host}\r\nAuthorization: {auth}\r\n"
                   "Content-Type: application/octet-stream\r\nContent-Range: 0-999\r\n"
                   "Content-Length: 1000\r\n\r\n").encode() + data[:100])
        got = closed_within(s, 20)
        s.close()
        assert got is not None, "a stalled PATCH was neither answered nor closed within 20 s"
        if got:
            status_line = got.split(b"\r\n", 1)[0]
            assert b" 400 " in status_line, got
            body = got.split(b"\r\n\r\n", 1)[1]
            assert b"BLOB_UPLOAD_INVALID" in body and b"sent no data" in body, got

        # Client 2: the lease is free, the upload resumes from offset 0.
        r = requests.patch(f"{reg.url}{path}", data=data, timeout=10, headers={
            "Authorization": auth, "Content-Type": "application/octet-stream",
            "Content-Range": "0-999"})
        assert r.status_code == 202, (r.status_code, r.text)
        assert r.headers["Range"] == "0-999"
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = requests.put(f"{reg.url}{rel(r.headers['Location'])}", params={"digest": digest},
                         headers={"Authorization": auth}, timeout=10)
        assert r.status_code == 201, r.text
        r = requests.get(f"{reg.url}/v2/stall/blobs/{digest}", headers={"Authorization": auth}, timeout=10)
        assert r.status_code == 200 and r.content == data
    finally:
        reg.stop()


def realm_of(reg, headers):
    r = requests.get(f"{reg.url}/v2/", headers=headers, timeout=10)
    assert r.status_code == 401
    return r.headers["WWW-Authenticate"]


def ip_guarded_repository(reg):
    """A repository whose policy denies everything from outside 203.0.113.0/24."""
    c = reg.ecr()
    c.create_repository(repositoryName="ipguard")
    policy = {"Version": "2012-10-17", "Statement": [{
        "Sid": "office-only", "Effect": "Deny", "Principal": "*", "Action": "ecr:*",
        "Condition": {"NotIpAddress": {"aws:SourceIp": "203.0.113.0/24"}}}]}
    # The policy is set from 127.0.0.1 and applies from then on; the token
    # is fetched first (GetAuthorizationToken is not a repository action).
    auth = token_auth(reg)
    c.set_repository_policy(repositoryName="ipguard", policyText=json.dumps(policy))
    return auth


def test_forwarded_headers_from_untrusted_peers_are_ignored(tmp_path):
    reg = start(tmp_path, [])
    try:
        # A forged scheme does not make the realm https (nor does it matter
        # which scheme: the peer is not a proxy we trust).
        assert 'realm="http://' in realm_of(reg, {"X-Forwarded-Proto": "https"})
        auth = ip_guarded_repository(reg)
        r = requests.get(f"{reg.url}/v2/ipguard/tags/list", timeout=10,
                         headers={"Authorization": auth, "X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 403, r.text
        assert "DENIED" in r.text
    finally:
        reg.stop()


def test_forwarded_headers_from_a_trusted_proxy_are_honoured(tmp_path):
    reg = start(tmp_path, ["--trusted-proxies", "127.0.0.1/32"])
    try:
        assert realm_of(reg, {"X-Forwarded-Proto": "https"}).startswith(f'Bearer realm="https://{reg.host}/token"')
        assert 'realm="http://' in realm_of(reg, {})
        auth = ip_guarded_repository(reg)
        tags = f"{reg.url}/v2/ipguard/tags/list"
        r = requests.get(tags, headers={"Authorization": auth, "X-Forwarded-For": "203.0.113.9"}, timeout=10)
        assert r.status_code == 200, r.text
        # The proxy's own entry counts, not what its client wrote before it.
        r = requests.get(tags, headers={"Authorization": auth,
                                        "X-Forwarded-For": "203.0.113.9, 198.51.100.7"}, timeout=10)
        assert r.status_code == 403, r.text
        r = requests.get(tags, headers={"Authorization": auth}, timeout=10)
        assert r.status_code == 403, r.text
    finally:
        reg.stop()
