"""Helpers for the boto3 tests of Kura's ECR API (test_ecr_boto3.py).

* `client(reg)`: a boto3 ECR client like `reg.ecr()`, but built on the
  authoritative ECR model (the newest botocore data that .ci/install-deps.sh
  unpacks, when present, else botocore's
  own) and with a hook that checks every raw response before botocore parses
  it: the body is JSON, a success body conforms to the operation's output
  shape (no unknown members, required members present, strings/enums/patterns,
  integers, booleans, timestamps as JSON numbers), an error body carries
  `__type` and `message` with the same name in `X-Amzn-ErrorType`, and every
  response carries `x-amzn-RequestId`. The last raw response is kept in
  `client.kura_raw`.
* `raw_call(reg, op, body, ...)`: a SigV4-signed (or unsigned) POST made with
  `requests`, for what botocore cannot send (unknown targets, bad JSON, bad
  signatures, huge bodies).
* Image helpers that push through the ECR layer API: `upload_blob`,
  `push_image`, `manifest_for`, `index_for`.
"""
import base64
import gzip
import hashlib
import json
import os
import re

import boto3
import botocore.session
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

# The newest botocore ECR model, unpacked by .ci/install-deps.sh (the aws CLI
# pins an older botocore); KURA_ECR_MODEL_DIR overrides, else botocore's own.
MODEL_DIR = os.environ.get("KURA_ECR_MODEL_DIR", "/var/cache/kura-ci/botocore-model/botocore/data")
MODEL_PATH = os.path.join(MODEL_DIR, "ecr", "2015-09-21", "service-2.json.gz")
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921"

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# Errors any AWS JSON service may answer, whatever the operation's model lists.
COMMON_ERRORS = {
    "AccessDeniedException",
    "IncompleteSignatureException",
    "InvalidSignatureException",
    "MissingAuthenticationTokenException",
    "UnrecognizedClientException",
    "SerializationException",
    "UnknownOperationException",
    "ThrottlingException",
    "ExpiredTokenException",
    "RequestEntityTooLargeException",
    "ValidationException",
    "InvalidParameterException",
}


def _load_model():
    if os.path.exists(MODEL_PATH):
        with gzip.open(MODEL_PATH) as f:
            return json.load(f)
    s = botocore.session.get_session()
    return s.get_component("data_loader").load_service_model("ecr", "service-2")


MODEL = _load_model()
SHAPES = MODEL["shapes"]
OPERATIONS = MODEL["operations"]
EXCEPTIONS = {k for k, v in SHAPES.items() if v.get("exception")}
_PATTERNS = {}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _pattern(shape_name):
    if shape_name not in _PATTERNS:
        p = SHAPES[shape_name].get("pattern")
        try:
            _PATTERNS[shape_name] = re.compile(p) if p else None
        except re.error:
            _PATTERNS[shape_name] = None
    return _PATTERNS[shape_name]


def check_shape(shape_name, value, path="output"):
    """Problems (strings) with `value` (parsed JSON) against model shape `shape_name`."""
    shape = SHAPES[shape_name]
    t = shape["type"]
    out = []
    if t == "structure":
        if not isinstance(value, dict):
            return [f"{path}: expected an object ({shape_name}), got {value!r:.80}"]
        members = shape.get("members", {})
        for k, v in value.items():
            if k not in members:
                out.append(f"{path}.{k}: not a member of {shape_name}")
            elif v is not None:
                out += check_shape(members[k]["shape"], v, f"{path}.{k}")
        for r in shape.get("required", []):
            if value.get(r) is None:
                out.append(f"{path}.{r}: required member of {shape_name} missing")
    elif t == "list":
        if not isinstance(value, list):
            return [f"{path}: expected a list ({shape_name}), got {value!r:.80}"]
        for i, item in enumerate(value):
            out += check_shape(shape["member"]["shape"], item, f"{path}[{i}]")
    elif t == "map":
        if not isinstance(value, dict):
            return [f"{path}: expected a map ({shape_name}), got {value!r:.80}"]
        for k, v in value.items():
            out += check_shape(shape["key"]["shape"], k, f"{path}<key>")
            out += check_shape(shape["value"]["shape"], v, f"{path}[{k}]")
    elif t == "string":
        if not isinstance(value, str):
            return [f"{path}: expected a string ({shape_name}), got {value!r:.80}"]
        if "enum" in shape and value not in shape["enum"]:
            out.append(f"{path}: {value!r} not in enum {shape_name} {shape['enum']}")
        if "min" in shape and len(value) < shape["min"]:
            out.append(f"{path}: {value!r} shorter than {shape['min']}")
        if "max" in shape and len(value) > shape["max"]:
            out.append(f"{path}: {len(value)} chars, longer than {shape['max']}")
        pat = _pattern(shape_name)
        if pat is not None and not pat.fullmatch(value):
            out.append(f"{path}: {value!r} does not match {shape_name} pattern {pat.pattern!r}")
    elif t in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            return [f"{path}: expected an integer ({shape_name}), got {value!r}"]
        if "min" in shape and value < shape["min"]:
            out.append(f"{path}: {value} < min {shape['min']}")
        if "max" in shape and value > shape["max"]:
            out.append(f"{path}: {value} > max {shape['max']}")
    elif t in ("double", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(f"{path}: expected a number ({shape_name}), got {value!r}")
    elif t == "boolean":
        if not isinstance(value, bool):
            out.append(f"{path}: expected a boolean ({shape_name}), got {value!r}")
    elif t == "timestamp":
        # awsJson 1.1 sends timestamps as epoch seconds: JSON numbers.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(f"{path}: timestamp must be a JSON number ({shape_name}), got {value!r}")
    elif t == "blob":
        if not isinstance(value, str):
            out.append(f"{path}: blob must be base64 text, got {value!r:.80}")
        else:
            try:
                base64.b64decode(value, validate=True)
            except Exception:
                out.append(f"{path}: blob is not base64")
    return out


def check_error_response(status, headers, body, operation=None):
    """Problems with a raw error answer (status >= 300)."""
    problems = []
    if not 400 <= status < 600:
        problems.append(f"error status {status}")
    try:
        doc = json.loads(body)
    except Exception:
        return [f"error body is not JSON: {body[:200]!r}"]
    if not isinstance(doc, dict):
        return [f"error body is not an object: {doc!r:.200}"]
    kind = doc.get("__type")
    if not isinstance(kind, str) or not kind:
        problems.append(f"no __type in error body {doc!r:.200}")
    if not isinstance(doc.get("message"), str):
        problems.append(f"no message in error body {doc!r:.200}")
    hdr = {k.lower(): v for k, v in headers.items()}.get("x-amzn-errortype", "")
    if hdr.split(":")[0] != kind:
        problems.append(f"X-Amzn-ErrorType {hdr!r} != __type {kind!r}")
    if operation is not None and isinstance(kind, str):
        allowed = {e["shape"] for e in OPERATIONS[operation].get("errors", [])} | COMMON_ERRORS
        # Kura's answer for writes of features it does not have yet (ops/later.rs).
        allowed.add("UnsupportedOperationException")
        if kind not in allowed:
            problems.append(f"{operation} answered {kind}, not among its modeled errors")
    if status >= 500:
        problems.append(f"server error {status}: {doc!r:.300}")
    return problems


class ResponseCheckFailed(AssertionError):
    pass


def _hook(client):
    def before_parse(operation_model, response_dict, **kw):
        op = operation_model.name
        status = response_dict["status_code"]
        headers = dict(response_dict["headers"])
        body = response_dict["body"]
        client.kura_raw = {"operation": op, "status": status, "headers": headers, "body": body}
        problems = []
        lower = {k.lower(): v for k, v in headers.items()}
        if not lower.get("x-amzn-requestid"):
            problems.append("no x-amzn-RequestId header")
        if status >= 300:
            problems += check_error_response(status, headers, body, op)
        else:
            try:
                doc = json.loads(body) if body.strip() else {}
            except Exception:
                problems.append(f"body is not JSON: {body[:200]!r}")
                doc = None
            if doc is not None:
                out_shape = OPERATIONS[op].get("output", {}).get("shape")
                if out_shape:
                    problems += check_shape(out_shape, doc)
                elif doc:
                    problems.append(f"{op} has no output shape but answered {doc!r:.200}")
        if problems:
            raise ResponseCheckFailed(f"{op}: " + "; ".join(problems) + f"\nbody: {body[:1000]!r}")

    return before_parse


def client(reg, validate_params=True, model=True, secret_key=None):
    """A boto3 ECR client for `reg` (root key, or `secret_key` instead of its secret)
    that checks every raw response."""
    bs = botocore.session.get_session()
    if model and os.path.exists(MODEL_PATH):
        bs.get_component("data_loader").search_paths.insert(0, MODEL_DIR)
    session = boto3.session.Session(botocore_session=bs)
    c = session.client(
        "ecr",
        endpoint_url=reg.url,
        region_name=reg.region,
        aws_access_key_id=reg.access_key,
        aws_secret_access_key=secret_key or reg.secret_key,
        config=Config(retries={"max_attempts": 1}, parameter_validation=validate_params),
    )
    c.kura_raw = None
    c.meta.events.register("before-parse.ecr.*", _hook(c))
    return c


def raw_call(reg, target, body, *, access_key=None, secret_key=None, region=None, sign=True,
             headers=None, target_prefix=TARGET_PREFIX, service="ecr"):
    """POST one API call with requests; `target` is the operation name (or any string)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    h = {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": f"{target_prefix}.{target}" if target_prefix else target,
    }
    h.update(headers or {})
    if sign:
        req = AWSRequest(method="POST", url=reg.url + "/", data=body, headers=h)
        creds = Credentials(access_key or reg.access_key, secret_key or reg.secret_key)
        SigV4Auth(creds, service, region or reg.region).add_auth(req)
        h = dict(req.headers.items())
    return requests.post(reg.url + "/", data=body, headers=h, timeout=60)


def upload_blob(c, repo, data: bytes, part_size=None) -> str:
    """Push one blob through InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload."""
    digest = sha256(data)
    up = c.initiate_layer_upload(repositoryName=repo)
    uid = up["uploadId"]
    size = part_size or max(len(data), 1)
    for start in range(0, len(data), size):
        part = data[start:start + size]
        r = c.upload_layer_part(repositoryName=repo, uploadId=uid, partFirstByte=start,
                                partLastByte=start + len(part) - 1, layerPartBlob=part)
        assert r["lastByteReceived"] == start + len(part) - 1, r
        assert r["uploadId"] == uid
    done = c.complete_layer_upload(repositoryName=repo, uploadId=uid, layerDigests=[digest])
    assert done["layerDigest"] == digest, done
    return digest


def manifest_for(config: bytes, layers, *, docker=False, config_type=None, artifact_type=None,
                 subject=None, annotations=None):
    """A manifest (dict) over blobs `config` and `layers` (bytes)."""
    m = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST if docker else OCI_MANIFEST,
        "config": {
            "mediaType": config_type or (DOCKER_CONFIG if docker else OCI_CONFIG),
            "digest": sha256(config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": DOCKER_LAYER if docker else OCI_LAYER, "digest": sha256(l), "size": len(l)}
            for l in layers
        ],
    }
    if artifact_type:
        m["artifactType"] = artifact_type
    if subject:
        m["subject"] = subject
    if annotations:
        m["annotations"] = annotations
    return m


def index_for(children, *, docker=False):
    """An index over (manifest_text, media_type) children."""
    return {
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST if docker else OCI_INDEX,
        "manifests": [
            {"mediaType": mt, "digest": sha256(text.encode()), "size": len(text.encode()),
             "platform": {"architecture": arch, "os": "linux"}}
            for (text, mt), arch in zip(children, ["amd64", "arm64", "s390x", "ppc64le"])
        ],
    }


class Image:
    def __init__(self, manifest, digest, config, layers, response):
        self.manifest = manifest  # text, byte-exact as pushed
        self.digest = digest
        self.config = config
        self.layers = layers
        self.response = response


def push_image(c, repo, tag=None, *, seed="x", layer_sizes=(1000,), docker=False, part_size=None,
               config=None, layers=None, **manifest_kw) -> Image:
    """Upload a config and layers with the layer API, then PutImage a manifest over them."""
    if config is None:
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": seed}).encode()
    if layers is None:
        layers = [(seed + str(i)).encode() * (n // (len(seed) + len(str(i))) + 1) for i, n in enumerate(layer_sizes)]
        layers = [l[:n] for l, n in zip(layers, layer_sizes)]
    existing = {
        l["layerDigest"]
        for l in c.batch_check_layer_availability(
            repositoryName=repo, layerDigests=[sha256(b) for b in [config] + layers]
        )["layers"]
    }
    for blob in [config] + layers:
        if sha256(blob) not in existing:
            upload_blob(c, repo, blob, part_size=part_size)
            existing.add(sha256(blob))
    text = json.dumps(manifest_for(config, layers, docker=docker, **manifest_kw))
    kw = {"imageTag": tag} if tag else {}
    r = c.put_image(repositoryName=repo, imageManifest=text, **kw)
    return Image(text, sha256(text.encode()), config, layers, r)
