#!/usr/bin/env python3
"""Regenerate the SigV4 fixtures in tests/fixtures/ with botocore's signers.

Each fixture is a request exactly as it would reach the server (method, raw
path, raw query, headers as sent, body), the credentials it was signed with,
and the signing time, so `tests/sigv4_fixtures.rs` can verify it with `now`
set to that time.

    python3 -m pip install botocore
    python3 crates/kura-auth/tests/gen_fixtures.py

The output is deterministic for a given botocore version (the clock is
pinned), so rerunning it only changes files when botocore signs differently.
"""

import datetime
import json
import os
from unittest import mock
from urllib.parse import urlsplit

import botocore
import botocore.auth
from botocore.auth import S3SigV4QueryAuth, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures")

ENDPOINT = "http://127.0.0.1:5000"
ACCESS_KEY = "AKIAKURAEXAMPLE00001"
SECRET_KEY = "kUrA/sEcReT+kEy0123456789EXAMPLEabcdefgh"
# Shaped like a real STS session token: base64 with '/', '+' and '='.
SESSION_TOKEN = (
    "FwoGZXIvYXdzEKuRa//////////wEaDKuRaExAmPlEtOkEn+ab/cd"
    "ZaQ1w2E3r4T5y6U7i8O9p0==")
REGION = "us-east-1"
NOW = datetime.datetime(2026, 1, 15, 10, 20, 30,
                        tzinfo=datetime.timezone.utc)
USER_AGENT = "aws-cli/2 botocore/" + botocore.__version__


def sign(name, description, *, method, url, service, headers=None,
         body=b"", params=None, token=None, presign_expires=None,
         query_signer=SigV4QueryAuth):
    creds = Credentials(ACCESS_KEY, SECRET_KEY, token)
    req = AWSRequest(method=method, url=url, headers=dict(headers or {}),
                     data=body, params=dict(params or {}))
    if presign_expires is None:
        signer = SigV4Auth(creds, service, REGION)
    else:
        signer = query_signer(creds, service, REGION,
                              expires=presign_expires)
    with mock.patch.object(botocore.auth, "get_current_datetime",
                           return_value=NOW):
        signer.add_auth(req)
    prepared = req.prepare()
    parts = urlsplit(prepared.url)
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    # What an HTTP client puts on the wire besides the signed headers: Host
    # (botocore signs it from the URL but leaves it to the client), a
    # User-Agent (never signed) and the Content-Length.
    wire = [("Host", parts.netloc)]
    wire += [(k, v) for k, v in prepared.headers.items()]
    if not any(k.lower() == "content-length" for k, _ in wire):
        wire.append(("Content-Length", str(len(body))))
    wire.append(("User-Agent", USER_AGENT))
    fixture = {
        "name": name,
        "description": description,
        "generator": "botocore " + botocore.__version__ + " "
        + type(signer).__name__,
        "method": method,
        "path": parts.path or "/",
        "query": parts.query or None,
        "headers": [[k, v] for k, v in wire],
        "body": body.decode("utf-8"),
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
        "session_token": token,
        "region": REGION,
        "service": service,
        "timestamp": NOW.strftime("%Y%m%dT%H%M%SZ"),
        "presigned_expires": presign_expires,
    }
    path = os.path.join(OUT, name + ".json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(fixture, f, indent=2, ensure_ascii=False)
        f.write("\n")
    print("wrote", os.path.relpath(path))


ECR_HEADERS = {
    "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories",
    "Content-Type": "application/x-amz-json-1.1",
}
ECR_BODY = json.dumps({
    "registryId": "123456789012",
    "repositoryNames": ["team/app", "base"],
    "maxResults": 10,
}).encode("utf-8")
# A path that is already percent-encoded (so AWS's double encoding matters)
# and query values that need encoding: a space (sent as '+' by botocore's
# urlencode, signed as %20), '/', '=', '+', '~', a non-ASCII letter and an
# empty value.
ODD_PATH = ENDPOINT + "/v2/a%3Ab/x"
ODD_PARAMS = {
    "n": "10",
    "last": "a b/c~d",
    "filter": "tag=v1+rc",
    "name": "caf\u00e9",
    "empty": "",
}


def main():
    os.makedirs(OUT, exist_ok=True)
    sign("ecr-describe-repositories",
         "ECR JSON API call signed in the Authorization header",
         method="POST", url=ENDPOINT + "/", service="ecr",
         headers=ECR_HEADERS, body=ECR_BODY)
    sign("ecr-get-authorization-token-session-token",
         "ECR GetAuthorizationToken with temporary credentials "
         "(X-Amz-Security-Token header, signed)",
         method="POST", url=ENDPOINT + "/", service="ecr",
         headers={
             "X-Amz-Target":
                 "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
             "Content-Type": "application/x-amz-json-1.1",
         },
         body=b"{}", token=SESSION_TOKEN)
    sign("get-encoded-path-query",
         "GET with an already-encoded path and query values needing encoding",
         method="GET", url=ODD_PATH, service="ecr", params=ODD_PARAMS)
    sign("presigned-get-encoded-path-query-session-token",
         "Presigned GET (query auth) with session token, encoded path/query",
         method="GET", url=ODD_PATH, service="ecr", params=ODD_PARAMS,
         token=SESSION_TOKEN, presign_expires=300)
    sign("presigned-post-ecr",
         "Presigned ECR POST: botocore moves the JSON body into the query",
         method="POST", url=ENDPOINT + "/", service="ecr",
         headers=ECR_HEADERS, body=ECR_BODY, presign_expires=900)
    # S3's presigner signs UNSIGNED-PAYLOAD (and does not normalise or
    # double-encode the path, so the path here needs neither).
    sign("presigned-unsigned-payload",
         "Presigned GET whose payload hash is UNSIGNED-PAYLOAD",
         method="GET", url=ENDPOINT + "/", service="ecr",
         params={"Action": "DescribeRepositories"}, presign_expires=3600,
         query_signer=S3SigV4QueryAuth)
    sign("sts-get-caller-identity",
         "STS query-protocol call (form body) for the later IAM/STS work",
         method="POST", url=ENDPOINT + "/", service="sts",
         headers={"Content-Type":
                  "application/x-www-form-urlencoded; charset=utf-8"},
         body=b"Action=GetCallerIdentity&Version=2011-06-15")


if __name__ == "__main__":
    main()
