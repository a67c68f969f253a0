"""Generate OCI image layouts with random content, and read them back.

Everything is written by hand (no container tool involved) so the tests know
the exact bytes and digests a registry must hand back:

    layout = Layout(tmp_path / "src")
    img = layout.add_image([random_layer(rng), random_layer(rng)], tag="v1")
    idx = layout.add_index([layout.add_image(..., arch="amd64"),
                            layout.add_image(..., arch="arm64")], tag="multi")

Layers are uncompressed tars (application/vnd.oci.image.layer.v1.tar), so a
layer's digest is also its diff_id.
"""
import gzip
import hashlib
import io
import json
import os
import random
import tarfile

OCI_LAYOUT = "application/vnd.oci.image.layout.v1"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (MT_INDEX, DOCKER_LIST)
REF_NAME = "org.opencontainers.image.ref.name"


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def make_rng(seed=None):
    """A random.Random; seeded from os.urandom unless a seed is given."""
    return random.Random(seed if seed is not None else int.from_bytes(os.urandom(8), "big"))


def random_bytes(rng, n):
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def make_tar(files, dirs=(), whiteouts=(), opaque_dirs=()):
    """An uncompressed tar. files: {path: bytes}; dirs: extra directory paths;
    whiteouts: paths to mark deleted (.wh.NAME); opaque_dirs: dirs whose lower
    content is hidden (.wh..wh..opq). Parent directories are added as needed."""
    buf = io.BytesIO()
    all_dirs = set(dirs) | set(opaque_dirs)
    for p in list(files) + list(whiteouts) + list(all_dirs):
        parts = p.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            all_dirs.add("/".join(parts[:i]))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d in sorted(all_dirs):
            ti = tarfile.TarInfo(d.strip("/"))
            ti.type = tarfile.DIRTYPE
            ti.mode = 0o755
            ti.mtime = 1700000000
            tf.addfile(ti)
        entries = {p.strip("/"): data for p, data in files.items()}
        for w in whiteouts:
            head, _, name = w.strip("/").rpartition("/")
            entries[(head + "/" if head else "") + ".wh." + name] = b""
        for d in opaque_dirs:
            entries[d.strip("/") + "/.wh..wh..opq"] = b""
        for path in sorted(entries):
            data = entries[path]
            ti = tarfile.TarInfo(path)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = 1700000000
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def random_layer(rng, nfiles=3, min_size=1024, max_size=256 * 1024, prefix=None):
    """An uncompressed tar layer of random files. Returns (tar_bytes, {path: bytes})."""
    prefix = prefix or "data-%08x" % rng.getrandbits(32)
    files = {}
    for i in range(nfiles):
        files["%s/file-%d-%08x.bin" % (prefix, i, rng.getrandbits(32))] = random_bytes(
            rng, rng.randint(min_size, max_size)
        )
    return make_tar(files), files


def tar_members(data):
    """{path: bytes or None for dirs} of a tar (gzip is detected)."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    # Some writers (umoci 0.4.7's `insert`) end the stream without the last
    # entry's padding and the end-of-archive blocks; Go's reader accepts that.
    data = data + b"\0" * (-len(data) % 512) + b"\0" * 1024
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf.getmembers():
            name = m.name
            while name.startswith("./"):
                name = name[2:]
            name = name.lstrip("/").rstrip("/") or "."
            out[name] = tf.extractfile(m).read() if m.isfile() else None
    return out


class Layout:
    """An OCI image layout directory (created if needed)."""

    def __init__(self, path):
        self.path = str(path)
        if not self.path:
            raise ValueError("Layout needs a directory path")
        self.blob_dir = os.path.join(self.path, "blobs", "sha256")
        os.makedirs(self.blob_dir, exist_ok=True)
        if not os.path.exists(os.path.join(self.path, "oci-layout")):
            with open(os.path.join(self.path, "oci-layout"), "w") as f:
                json.dump({"imageLayoutVersion": "1.0.0"}, f)
        if not os.path.exists(os.path.join(self.path, "index.json")):
            self._write_index({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []})

    # -- reading -------------------------------------------------------------
    def index(self):
        with open(os.path.join(self.path, "index.json"), "rb") as f:
            return json.load(f)

    def blob_path(self, digest):
        algo, hexd = digest.split(":", 1)
        return os.path.join(self.path, "blobs", algo, hexd)

    def blob(self, digest):
        with open(self.blob_path(digest), "rb") as f:
            data = f.read()
        assert sha256_digest(data) == digest, "layout blob %s is corrupt" % digest
        return data

    def json_blob(self, digest):
        return json.loads(self.blob(digest))

    def resolve(self, tag):
        """The index.json descriptor whose ref.name is tag."""
        for d in self.index()["manifests"]:
            if d.get("annotations", {}).get(REF_NAME) == tag:
                return d
        raise KeyError("tag %r not in %s" % (tag, self.path))

    def walk(self, digest):
        """All descriptors reachable from a manifest or index digest, the root
        first: a list of (digest, mediaType)."""
        out = []
        doc = self.json_blob(digest)
        mt = doc.get("mediaType")
        out.append((digest, mt))
        if mt in INDEX_TYPES or "manifests" in doc:
            for d in doc["manifests"]:
                out.extend(self.walk(d["digest"]))
        else:
            out.append((doc["config"]["digest"], doc["config"]["mediaType"]))
            for layer in doc["layers"]:
                out.append((layer["digest"], layer["mediaType"]))
        return out

    # -- writing -------------------------------------------------------------
    def _write_index(self, idx):
        tmp = os.path.join(self.path, "index.json.tmp")
        with open(tmp, "wb") as f:
            f.write(json.dumps(idx, indent=2).encode())
        os.replace(tmp, os.path.join(self.path, "index.json"))

    def add_blob(self, data, media_type=None):
        digest = sha256_digest(data)
        p = self.blob_path(digest)
        if not os.path.exists(p):
            with open(p, "wb") as f:
                f.write(data)
        d = {"digest": digest, "size": len(data)}
        if media_type:
            d = {"mediaType": media_type, **d}
        return d

    def tag(self, desc, tag):
        idx = self.index()
        idx["manifests"] = [
            d for d in idx["manifests"] if d.get("annotations", {}).get(REF_NAME) != tag
        ]
        entry = {k: v for k, v in desc.items() if k in ("mediaType", "digest", "size")}
        entry["annotations"] = {REF_NAME: tag}
        idx["manifests"].append(entry)
        self._write_index(idx)

    def add_image(self, layers, arch="amd64", os_="linux", tag=None, annotations=None):
        """layers: list of uncompressed tar bytes (or (bytes, files) tuples).
        Returns the manifest descriptor (with platform)."""
        layers = [l[0] if isinstance(l, tuple) else l for l in layers]
        layer_descs = [self.add_blob(l, MT_LAYER_TAR) for l in layers]
        config = {
            "architecture": arch,
            "os": os_,
            "config": {"Labels": {"kura.e2e.nonce": os.urandom(8).hex()}},
            "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in layer_descs]},
            "history": [{"created_by": "kura e2e images.py"} for _ in layer_descs],
        }
        config_desc = self.add_blob(canonical_json(config), MT_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": config_desc,
            "layers": layer_descs,
        }
        if annotations:
            manifest["annotations"] = annotations
        desc = self.add_blob(json.dumps(manifest, indent=3).encode(), MT_MANIFEST)
        desc["platform"] = {"architecture": arch, "os": os_}
        if tag:
            self.tag(desc, tag)
        return desc

    def add_index(self, manifest_descs, tag=None):
        index = {
            "schemaVersion": 2,
            "mediaType": MT_INDEX,
            "manifests": [
                {k: d[k] for k in ("mediaType", "digest", "size", "platform") if k in d}
                for d in manifest_descs
            ],
        }
        desc = self.add_blob(json.dumps(index, indent=2).encode(), MT_INDEX)
        if tag:
            self.tag(desc, tag)
        return desc


def random_image(layout, rng, tag, nlayers=2, arch="amd64", **kw):
    """Add an image of nlayers random layers; returns (manifest_desc, {path: bytes})."""
    files = {}
    layers = []
    for _ in range(nlayers):
        tar, f = random_layer(rng, **kw)
        layers.append(tar)
        files.update(f)
    return layout.add_image(layers, arch=arch, tag=tag), files


def random_multiarch(layout, rng, tag, arches=("amd64", "arm64")):
    """An index of one random image per architecture; returns (index_desc, [manifest_descs])."""
    descs = [random_image(layout, rng, tag=None, arch=a)[0] for a in arches]
    return layout.add_index(descs, tag=tag), descs
