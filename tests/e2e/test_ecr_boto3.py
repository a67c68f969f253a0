"""Kura's ECR API through boto3: every implemented operation, success and error.

Every call goes through `ecr_util.client`, which checks each raw answer
against the authoritative botocore ECR model before botocore parses it (see
ecr_util.py). Images are built with the ECR layer API itself
(InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload, then PutImage).
"""
import base64
import datetime
import json
import os
import re
import time
import uuid
from contextlib import contextmanager

import botocore.auth
import pytest
import requests
from botocore.exceptions import ClientError

from ecr_util import (
    DOCKER_CONFIG,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    index_for,
    push_image,
    raw_call,
    sha256,
    upload_blob,
)
import ecr_util

ZERO_DIGEST = "sha256:" + "0" * 64


@contextmanager
def raises(code, status=400):
    """Expect botocore to raise ClientError `code` with HTTP `status`."""
    with pytest.raises(ClientError) as ei:
        yield ei
    r = ei.value.response
    assert r["Error"]["Code"] == code, r
    assert r["ResponseMetadata"]["HTTPStatusCode"] == status, r
    assert r["ResponseMetadata"]["RequestId"], r
    assert r["Error"]["Message"], r


def ok(resp):
    md = resp["ResponseMetadata"]
    assert md["HTTPStatusCode"] == 200, md
    assert md["RequestId"], md
    return resp


def aware(dt):
    assert isinstance(dt, datetime.datetime), dt
    assert dt.tzinfo is not None, dt
    return dt


def recent(dt, slack=120):
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((aware(dt) - now).total_seconds()) < slack, (dt, now)
    return dt


def raw_json(c):
    return json.loads(c.kura_raw["body"])


def arn(reg, name):
    return f"arn:aws:ecr:{reg.region}:{reg.account_id}:repository/{name}"


@pytest.fixture
def reg(bare_registry):
    return bare_registry


@pytest.fixture
def ecr(reg):
    return ecr_util.client(reg)


@pytest.fixture
def ecr_noval(reg):
    """No client-side validation: lets through what botocore would refuse."""
    return ecr_util.client(reg, validate_params=False)


# --------------------------------------------------------------------------
# Repositories


def test_create_repository_defaults_and_shapes(reg, ecr):
    r = ok(ecr.create_repository(repositoryName="team/app"))
    repo = r["repository"]
    assert repo["repositoryName"] == "team/app"
    assert repo["registryId"] == reg.account_id
    assert repo["repositoryArn"] == f"arn:aws:ecr:us-east-1:123456789012:repository/team/app"
    assert repo["repositoryUri"] == f"{reg.host}/team/app"
    recent(repo["createdAt"])
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"
    assert "kmsKey" not in repo["encryptionConfiguration"]
    # On the wire the timestamp is a JSON number (epoch seconds).
    wire = raw_json(ecr)["repository"]["createdAt"]
    assert isinstance(wire, (int, float)) and not isinstance(wire, bool)
    assert abs(wire - repo["createdAt"].timestamp()) < 0.01
    assert ecr.kura_raw["headers"].get("Content-Type", ecr.kura_raw["headers"].get("content-type")) \
        == "application/x-amz-json-1.1"
    # The conftest client (installed botocore model) sees the same repository.
    plain = reg.ecr().describe_repositories(repositoryNames=["team/app"])
    assert plain["repositories"][0]["repositoryArn"] == repo["repositoryArn"]
    assert plain["ResponseMetadata"]["RequestId"]


def test_create_repository_with_every_option(reg, ecr):
    kms = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    filters = [{"filterType": "WILDCARD", "filter": "latest*"}, {"filterType": "WILDCARD", "filter": "dev-*"}]
    r = ok(ecr.create_repository(
        repositoryName="svc/api",
        tags=[{"Key": "team", "Value": "core"}, {"Key": "env", "Value": "prod"}],
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=filters,
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": kms},
    ))["repository"]
    assert r["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert r["imageTagMutabilityExclusionFilters"] == filters
    assert r["imageScanningConfiguration"] == {"scanOnPush": True}
    assert r["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": kms}
    d = ok(ecr.describe_repositories(repositoryNames=["svc/api"]))["repositories"]
    assert len(d) == 1 and d[0] == r
    tags = ok(ecr.list_tags_for_resource(resourceArn=arn(reg, "svc/api")))["tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("env", "prod"), ("team", "core")]
    # IMMUTABLE (no exclusions) and MUTABLE_WITH_EXCLUSION are accepted too.
    r2 = ok(ecr.create_repository(repositoryName="svc/locked", imageTagMutability="IMMUTABLE"))["repository"]
    assert r2["imageTagMutability"] == "IMMUTABLE"
    assert "imageTagMutabilityExclusionFilters" not in r2


def test_create_repository_errors(reg, ecr, ecr_noval):
    ok(ecr.create_repository(repositoryName="dup"))
    with raises("RepositoryAlreadyExistsException"):
        ecr.create_repository(repositoryName="dup")
    for bad in ["UPPER", "a..b", "-lead", "trail/", "x" * 300, "a"]:
        with raises("InvalidParameterException"):
            ecr_noval.create_repository(repositoryName=bad)
    with raises("InvalidParameterException"):
        ecr_noval.create_repository()  # repositoryName missing
    with raises("InvalidParameterException"):
        ecr.create_repository(
            repositoryName="mut", imageTagMutability="MUTABLE",
            imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest"}],
        )
    with raises("InvalidParameterException"):
        ecr.create_repository(repositoryName="excl", imageTagMutability="IMMUTABLE_WITH_EXCLUSION")
    with raises("InvalidParameterException"):
        ecr_noval.create_repository(repositoryName="enum", imageTagMutability="SOMETIMES")
    with raises("InvalidParameterException"):
        ecr.create_repository(repositoryName="aeskms",
                              encryptionConfiguration={"encryptionType": "AES256", "kmsKey": "k"})
    with raises("InvalidTagParameterException"):
        ecr.create_repository(repositoryName="awstag", tags=[{"Key": "aws:reserved", "Value": "x"}])
    with raises("TooManyTagsException"):
        ecr.create_repository(repositoryName="manytags",
                              tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    with raises("SerializationException"):
        ecr_noval.create_repository(repositoryName=5)
    # None of the failed calls created anything.
    names = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    assert names == ["dup"]
    # 50 tags is fine.
    ok(ecr.create_repository(repositoryName="fiftytags", tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)]))


def test_describe_repositories_and_pagination(reg, ecr):
    names = [f"proj/r{i}" for i in range(7)]
    for n in names:
        ecr.create_repository(repositoryName=n)
    r = ok(ecr.describe_repositories(repositoryNames=["proj/r3", "proj/r1"]))["repositories"]
    assert sorted(x["repositoryName"] for x in r) == ["proj/r1", "proj/r3"]
    for x in r:
        assert x["repositoryUri"] == f"{reg.host}/{x['repositoryName']}"
        assert x["repositoryArn"] == f"arn:aws:ecr:us-east-1:123456789012:repository/{x['repositoryName']}"
        assert re.fullmatch(r"arn:aws:ecr:us-east-1:\d{12}:repository/.+", x["repositoryArn"])
        aware(x["createdAt"])
    with raises("RepositoryNotFoundException"):
        ecr.describe_repositories(repositoryNames=["proj/r1", "proj/nope"])
    with raises("InvalidParameterException"):
        ecr.describe_repositories(repositoryNames=["proj/r1"], maxResults=2)
    # Manual paging.
    seen, token, pages = [], None, 0
    while True:
        kw = {"nextToken": token} if token else {}
        page = ok(ecr.describe_repositories(maxResults=3, **kw))
        assert len(page["repositories"]) <= 3
        seen += [x["repositoryName"] for x in page["repositories"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == sorted(names) and len(seen) == len(set(seen))
    # botocore's paginator.
    pag = ecr.get_paginator("describe_repositories")
    got = [x["repositoryName"] for p in pag.paginate(PaginationConfig={"PageSize": 2})
           for x in p["repositories"]]
    assert sorted(got) == sorted(names) and len(got) == 7
    full = pag.paginate().build_full_result()
    assert sorted(x["repositoryName"] for x in full["repositories"]) == sorted(names)
    with raises("InvalidParameterException"):
        ecr.describe_repositories(nextToken="!!!not-a-token!!!")
    with raises("InvalidParameterException"):
        ecr_util.client(reg, validate_params=False).describe_repositories(maxResults=0)


def test_delete_repository(reg, ecr):
    ecr.create_repository(repositoryName="full", tags=[{"Key": "a", "Value": "b"}])
    push_image(ecr, "full", "v1")
    with raises("RepositoryNotEmptyException"):
        ecr.delete_repository(repositoryName="full")
    assert ecr.describe_repositories(repositoryNames=["full"])["repositories"]
    r = ok(ecr.delete_repository(repositoryName="full", force=True))["repository"]
    assert r["repositoryName"] == "full"
    assert r["repositoryArn"] == arn(reg, "full")
    aware(r["createdAt"])
    with raises("RepositoryNotFoundException"):
        ecr.describe_repositories(repositoryNames=["full"])
    with raises("RepositoryNotFoundException"):
        ecr.delete_repository(repositoryName="full")
    with raises("RepositoryNotFoundException"):
        ecr.list_images(repositoryName="full")
    # An empty repository goes without force.
    ecr.create_repository(repositoryName="empty")
    ok(ecr.delete_repository(repositoryName="empty"))
    # A repository created again under the old name starts clean.
    ecr.create_repository(repositoryName="full")
    assert ecr.list_tags_for_resource(resourceArn=arn(reg, "full"))["tags"] == []
    assert ecr.list_images(repositoryName="full")["imageIds"] == []


# --------------------------------------------------------------------------
# Layer uploads


def test_layer_upload_multipart(reg, ecr):
    ecr.create_repository(repositoryName="layers")
    up = ok(ecr.initiate_layer_upload(repositoryName="layers"))
    assert re.fullmatch(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
                        up["uploadId"]), up
    assert isinstance(up["partSize"], int) and up["partSize"] > 0
    data = bytes(range(256)) * 40  # 10240 bytes in 3 parts
    uid = up["uploadId"]
    parts = [(0, 4095), (4096, 8191), (8192, 10239)]
    for first, last in parts:
        r = ok(ecr.upload_layer_part(repositoryName="layers", uploadId=uid, partFirstByte=first,
                                     partLastByte=last, layerPartBlob=data[first:last + 1]))
        assert r["lastByteReceived"] == last
        assert r["uploadId"] == uid
        assert r["repositoryName"] == "layers" and r["registryId"] == reg.account_id
    done = ok(ecr.complete_layer_upload(repositoryName="layers", uploadId=uid, layerDigests=[sha256(data)]))
    assert done == {**done, "layerDigest": sha256(data), "uploadId": uid, "repositoryName": "layers",
                    "registryId": reg.account_id}
    avail = ecr.batch_check_layer_availability(repositoryName="layers", layerDigests=[sha256(data)])
    assert avail["layers"] == [{"layerDigest": sha256(data), "layerAvailability": "AVAILABLE",
                                "layerSize": len(data)}]
    assert avail["failures"] == []
    # The helper with small parts gives the same result.
    blob = b"helper" * 3000
    assert upload_blob(ecr, "layers", blob, part_size=7000) == sha256(blob)


def test_layer_upload_errors(reg, ecr):
    ecr.create_repository(repositoryName="up")
    data = b"0123456789" * 100
    # Out-of-order part.
    uid = ecr.initiate_layer_upload(repositoryName="up")["uploadId"]
    with raises("InvalidLayerPartException"):
        ecr.upload_layer_part(repositoryName="up", uploadId=uid, partFirstByte=500, partLastByte=999,
                              layerPartBlob=data[500:])
    # The upload survives: parts in order still complete it.
    ecr.upload_layer_part(repositoryName="up", uploadId=uid, partFirstByte=0, partLastByte=499,
                          layerPartBlob=data[:500])
    with raises("InvalidLayerPartException"):  # overlaps what was received
        ecr.upload_layer_part(repositoryName="up", uploadId=uid, partFirstByte=100, partLastByte=599,
                              layerPartBlob=data[100:600])
    with raises("InvalidLayerPartException"):  # byte range does not describe the blob
        ecr.upload_layer_part(repositoryName="up", uploadId=uid, partFirstByte=500, partLastByte=600,
                              layerPartBlob=data[500:])
    ecr.upload_layer_part(repositoryName="up", uploadId=uid, partFirstByte=500, partLastByte=999,
                          layerPartBlob=data[500:])
    assert ecr.complete_layer_upload(repositoryName="up", uploadId=uid,
                                     layerDigests=[sha256(data)])["layerDigest"] == sha256(data)
    # The completed upload is gone.
    with raises("UploadNotFoundException"):
        ecr.upload_layer_part(repositoryName="up", uploadId=uid, partFirstByte=1000, partLastByte=1000,
                              layerPartBlob=b"x")
    # Unknown upload id.
    unknown = str(uuid.uuid4())
    with raises("UploadNotFoundException"):
        ecr.upload_layer_part(repositoryName="up", uploadId=unknown, partFirstByte=0, partLastByte=0,
                              layerPartBlob=b"x")
    with raises("UploadNotFoundException"):
        ecr.complete_layer_upload(repositoryName="up", uploadId=unknown, layerDigests=[sha256(b"x")])
    # Wrong digest at completion: nothing is stored.
    other = b"other-bytes" * 50
    uid = ecr.initiate_layer_upload(repositoryName="up")["uploadId"]
    ecr.upload_layer_part(repositoryName="up", uploadId=uid, partFirstByte=0, partLastByte=len(other) - 1,
                          layerPartBlob=other)
    with raises("InvalidLayerException"):
        ecr.complete_layer_upload(repositoryName="up", uploadId=uid, layerDigests=[ZERO_DIGEST])
    miss = ecr.batch_check_layer_availability(repositoryName="up", layerDigests=[sha256(other), ZERO_DIGEST])
    assert miss["layers"] == []
    assert {f["layerDigest"] for f in miss["failures"]} == {sha256(other), ZERO_DIGEST}
    # Completing an upload of a layer that is already there.
    uid = ecr.initiate_layer_upload(repositoryName="up")["uploadId"]
    ecr.upload_layer_part(repositoryName="up", uploadId=uid, partFirstByte=0, partLastByte=len(data) - 1,
                          layerPartBlob=data)
    with raises("LayerAlreadyExistsException"):
        ecr.complete_layer_upload(repositoryName="up", uploadId=uid, layerDigests=[sha256(data)])
    # Empty upload.
    uid = ecr.initiate_layer_upload(repositoryName="up")["uploadId"]
    with raises("EmptyUploadException"):
        ecr.complete_layer_upload(repositoryName="up", uploadId=uid, layerDigests=[sha256(b"")])
    # Unknown repository.
    for call in (
        lambda: ecr.initiate_layer_upload(repositoryName="nope"),
        lambda: ecr.upload_layer_part(repositoryName="nope", uploadId=unknown, partFirstByte=0,
                                      partLastByte=0, layerPartBlob=b"x"),
        lambda: ecr.complete_layer_upload(repositoryName="nope", uploadId=unknown, layerDigests=[ZERO_DIGEST]),
        lambda: ecr.batch_check_layer_availability(repositoryName="nope", layerDigests=[ZERO_DIGEST]),
    ):
        with raises("RepositoryNotFoundException"):
            call()


def test_batch_check_layer_availability(reg, ecr):
    ecr.create_repository(repositoryName="chk")
    ecr.create_repository(repositoryName="other")
    blob = b"layer-bytes" * 77
    upload_blob(ecr, "chk", blob)
    r = ok(ecr.batch_check_layer_availability(repositoryName="chk",
                                              layerDigests=[sha256(blob), ZERO_DIGEST, "not-a-digest"]))
    assert r["layers"] == [{"layerDigest": sha256(blob), "layerAvailability": "AVAILABLE", "layerSize": len(blob)}]
    f = {x["layerDigest"]: x for x in r["failures"]}
    assert f[ZERO_DIGEST]["failureCode"] == "MissingLayerDigest"
    assert f[ZERO_DIGEST]["failureReason"]
    assert f["not-a-digest"]["failureCode"] == "InvalidLayerDigest"
    # A blob uploaded to one repository is not available in another.
    r = ecr.batch_check_layer_availability(repositoryName="other", layerDigests=[sha256(blob)])
    assert r["layers"] == [] and r["failures"][0]["failureCode"] == "MissingLayerDigest"


# --------------------------------------------------------------------------
# PutImage


def test_put_image(reg, ecr):
    ecr.create_repository(repositoryName="img")
    img = push_image(ecr, "img", "v1", docker=True, layer_sizes=(1500, 300))
    r = ok(img.response)["image"]
    assert r["registryId"] == reg.account_id and r["repositoryName"] == "img"
    assert r["imageId"] == {"imageDigest": img.digest, "imageTag": "v1"}
    assert r["imageManifest"] == img.manifest
    assert r["imageManifestMediaType"] == DOCKER_MANIFEST
    # The same manifest and tag again.
    with raises("ImageAlreadyExistsException"):
        ecr.put_image(repositoryName="img", imageManifest=img.manifest, imageTag="v1")
    # The same manifest under a second tag.
    r2 = ok(ecr.put_image(repositoryName="img", imageManifest=img.manifest, imageTag="v2"))["image"]
    assert r2["imageId"] == {"imageDigest": img.digest, "imageTag": "v2"}
    d = ecr.describe_images(repositoryName="img", imageIds=[{"imageDigest": img.digest}])["imageDetails"]
    assert sorted(d[0]["imageTags"]) == ["v1", "v2"]
    # With the right imageDigest and manifest media type.
    img2 = push_image(ecr, "img", None, seed="second")
    assert "imageTag" not in img2.response["image"]["imageId"]
    r3 = ok(ecr.put_image(repositoryName="img", imageManifest=img2.manifest, imageTag="v3",
                          imageDigest=img2.digest, imageManifestMediaType=OCI_MANIFEST))["image"]
    assert r3["imageId"] == {"imageDigest": img2.digest, "imageTag": "v3"}
    # An untagged manifest pushed again.
    with raises("ImageAlreadyExistsException"):
        ecr.put_image(repositoryName="img", imageManifest=img2.manifest)
    # Digest mismatch.
    with raises("ImageDigestDoesNotMatchException"):
        ecr.put_image(repositoryName="img", imageManifest=img2.manifest, imageTag="v4", imageDigest=img.digest)
    # A layer that was never uploaded.
    m = json.loads(img.manifest)
    m["layers"].append({"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "digest": ZERO_DIGEST, "size": 10})
    with raises("LayersNotFoundException"):
        ecr.put_image(repositoryName="img", imageManifest=json.dumps(m), imageTag="broken")
    # An index referencing a manifest that is not there.
    idx = index_for([(img.manifest, DOCKER_MANIFEST), ('{"schemaVersion":2}', OCI_MANIFEST)])
    idx["mediaType"] = OCI_INDEX
    with raises("ReferencedImagesNotFoundException"):
        ecr.put_image(repositoryName="img", imageManifest=json.dumps(idx), imageTag="multi")
    # Not a manifest at all.
    with raises("InvalidParameterException"):
        ecr.put_image(repositoryName="img", imageManifest="{not json", imageTag="junk")
    # Nothing of the failed pushes is visible.
    tags = {i.get("imageTag") for i in ecr.list_images(repositoryName="img")["imageIds"]}
    assert tags == {"v1", "v2", "v3"}
    with raises("RepositoryNotFoundException"):
        ecr.put_image(repositoryName="nope", imageManifest=img.manifest, imageTag="v1")


def test_put_image_index(reg, ecr):
    ecr.create_repository(repositoryName="multi")
    small = push_image(ecr, "multi", None, seed="amd", layer_sizes=(1000,))
    big = push_image(ecr, "multi", None, seed="arm", layer_sizes=(3000, 2000))
    idx = json.dumps(index_for([(small.manifest, OCI_MANIFEST), (big.manifest, OCI_MANIFEST)]))
    r = ok(ecr.put_image(repositoryName="multi", imageManifest=idx, imageTag="latest"))["image"]
    assert r["imageManifestMediaType"] == OCI_INDEX
    assert r["imageId"] == {"imageDigest": sha256(idx.encode()), "imageTag": "latest"}
    d = ecr.describe_images(repositoryName="multi", imageIds=[{"imageTag": "latest"}])["imageDetails"][0]
    assert d["imageManifestMediaType"] == OCI_INDEX
    sizes = {}
    for im in (small, big):
        sizes[im.digest] = ecr.describe_images(
            repositoryName="multi", imageIds=[{"imageDigest": im.digest}])["imageDetails"][0]["imageSizeInBytes"]
    # A child of an index cannot be deleted while the index lists it.
    r = ecr.batch_delete_image(repositoryName="multi", imageIds=[{"imageDigest": small.digest}])
    assert r["imageIds"] == []
    assert r["failures"][0]["failureCode"] == "ImageReferencedByManifestList"
    # ECR: "If the image is a manifest list, this will be the max size of all manifests in the list."
    assert d["imageSizeInBytes"] == max(sizes.values()), (d["imageSizeInBytes"], sizes)


def test_tag_immutability(reg, ecr):
    ecr.create_repository(repositoryName="locked", imageTagMutability="IMMUTABLE")
    a = push_image(ecr, "locked", "v1", seed="a")
    b = push_image(ecr, "locked", "v2", seed="b")
    with raises("ImageTagAlreadyExistsException"):
        ecr.put_image(repositoryName="locked", imageManifest=b.manifest, imageTag="v1")
    # A new tag on an existing image is fine.
    ok(ecr.put_image(repositoryName="locked", imageManifest=a.manifest, imageTag="v1-alias"))
    assert ecr.batch_get_image(repositoryName="locked", imageIds=[{"imageTag": "v1"}])["images"][0][
        "imageId"]["imageDigest"] == a.digest
    # Switch to MUTABLE: the tag moves.
    r = ok(ecr.put_image_tag_mutability(repositoryName="locked", imageTagMutability="MUTABLE"))
    assert r["imageTagMutability"] == "MUTABLE" and r["repositoryName"] == "locked"
    assert r["registryId"] == reg.account_id
    ok(ecr.put_image(repositoryName="locked", imageManifest=b.manifest, imageTag="v1"))
    assert ecr.describe_images(repositoryName="locked", imageIds=[{"imageTag": "v1"}])["imageDetails"][0][
        "imageDigest"] == b.digest
    with raises("RepositoryNotFoundException"):
        ecr.put_image_tag_mutability(repositoryName="nope", imageTagMutability="MUTABLE")

    # IMMUTABLE_WITH_EXCLUSION: tags matching "latest*" may move, others may not.
    ecr.create_repository(repositoryName="excl", imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                          imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest*"}])
    x = push_image(ecr, "excl", "latest", seed="x")
    ecr.put_image(repositoryName="excl", imageManifest=x.manifest, imageTag="latest-dev")
    ecr.put_image(repositoryName="excl", imageManifest=x.manifest, imageTag="v1")
    y = push_image(ecr, "excl", "latest", seed="y")  # moves "latest"
    ok(ecr.put_image(repositoryName="excl", imageManifest=y.manifest, imageTag="latest-dev"))
    with raises("ImageTagAlreadyExistsException"):
        ecr.put_image(repositoryName="excl", imageManifest=y.manifest, imageTag="v1")
    got = {i["imageTag"]: i["imageDigest"] for i in ecr.list_images(repositoryName="excl",
                                                                      filter={"tagStatus": "TAGGED"})["imageIds"]}
    assert got == {"latest": y.digest, "latest-dev": y.digest, "v1": x.digest}

    # PutImageTagMutability with exclusion filters, reflected by DescribeRepositories.
    filters = [{"filterType": "WILDCARD", "filter": "snap-*"}]
    r = ok(ecr.put_image_tag_mutability(repositoryName="locked", imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
                                        imageTagMutabilityExclusionFilters=filters))
    assert r["imageTagMutabilityExclusionFilters"] == filters
    repo = ecr.describe_repositories(repositoryNames=["locked"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert repo["imageTagMutabilityExclusionFilters"] == filters
    with raises("InvalidParameterException"):
        ecr.put_image_tag_mutability(repositoryName="locked", imageTagMutability="MUTABLE",
                                     imageTagMutabilityExclusionFilters=filters)
    with raises("InvalidParameterException"):
        ecr.put_image_tag_mutability(repositoryName="locked", imageTagMutability="IMMUTABLE_WITH_EXCLUSION")
    # Back to plain IMMUTABLE: the filters are gone.
    ecr.put_image_tag_mutability(repositoryName="locked", imageTagMutability="IMMUTABLE")
    repo = ecr.describe_repositories(repositoryNames=["locked"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert "imageTagMutabilityExclusionFilters" not in repo


# --------------------------------------------------------------------------
# Reading images


def test_list_images(reg, ecr):
    ecr.create_repository(repositoryName="list")
    a = push_image(ecr, "list", "a1", seed="a")
    b = push_image(ecr, "list", "b1", seed="b")
    for t in ("b2", "b3"):
        ecr.put_image(repositoryName="list", imageManifest=b.manifest, imageTag=t)
    c = push_image(ecr, "list", None, seed="c")
    d = push_image(ecr, "list", "d1", seed="d")
    every = {(a.digest, "a1"), (b.digest, "b1"), (b.digest, "b2"), (b.digest, "b3"), (c.digest, None),
             (d.digest, "d1")}

    def ids(resp):
        return {(i["imageDigest"], i.get("imageTag")) for i in resp["imageIds"]}

    assert ids(ok(ecr.list_images(repositoryName="list"))) == every
    assert ids(ecr.list_images(repositoryName="list", filter={"tagStatus": "ANY"})) == every
    assert ids(ecr.list_images(repositoryName="list", filter={"tagStatus": "TAGGED"})) == {
        x for x in every if x[1]}
    assert ids(ecr.list_images(repositoryName="list", filter={"tagStatus": "UNTAGGED"})) == {(c.digest, None)}
    # Paging by hand: no page holds more than maxResults image ids; together they are all.
    pages, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = ok(ecr.list_images(repositoryName="list", maxResults=2, **kw))
        pages.append([(i["imageDigest"], i.get("imageTag")) for i in page["imageIds"]])
        token = page.get("nextToken")
        if not token or len(pages) > 10:
            break
    got = [x for p in pages for x in p]
    assert set(got) == every and len(got) == len(every)
    pag = ecr.get_paginator("list_images")
    got = [(i["imageDigest"], i.get("imageTag"))
           for p in pag.paginate(repositoryName="list", PaginationConfig={"PageSize": 1}) for i in p["imageIds"]]
    assert set(got) == every and len(got) == len(every)
    with raises("RepositoryNotFoundException"):
        ecr.list_images(repositoryName="nope")
    with raises("InvalidParameterException"):
        ecr.list_images(repositoryName="list", nextToken="%%%")
    # maxResults bounds the number of image ids in a page (an image with three tags is three results).
    assert all(len(p) <= 2 for p in pages), pages


def test_describe_images(reg, ecr):
    ecr.create_repository(repositoryName="desc")
    img = push_image(ecr, "desc", "v1", docker=True, layer_sizes=(1234, 4321))
    art = push_image(ecr, "desc", "art", seed="art", config=b"{}", config_type="application/vnd.example.cfg+json")
    un = push_image(ecr, "desc", None, seed="untagged")
    by_tag = ok(ecr.describe_images(repositoryName="desc", imageIds=[{"imageTag": "v1"}]))["imageDetails"]
    by_digest = ecr.describe_images(repositoryName="desc", imageIds=[{"imageDigest": img.digest}])["imageDetails"]
    both = ecr.describe_images(repositoryName="desc",
                               imageIds=[{"imageTag": "v1", "imageDigest": img.digest}])["imageDetails"]
    assert by_tag == by_digest == both and len(by_tag) == 1
    d = by_tag[0]
    assert d["registryId"] == reg.account_id and d["repositoryName"] == "desc"
    assert d["imageDigest"] == img.digest
    assert d["imageTags"] == ["v1"]
    layers = sum(len(l) for l in img.layers)
    assert layers <= d["imageSizeInBytes"] <= layers + len(img.config), d["imageSizeInBytes"]
    assert isinstance(d["imageSizeInBytes"], int)
    recent(d["imagePushedAt"])
    assert d["imageManifestMediaType"] == DOCKER_MANIFEST
    assert d["artifactMediaType"] == DOCKER_CONFIG
    assert "lastRecordedPullTime" not in d
    assert d.get("imageStatus", "ACTIVE") == "ACTIVE"
    a = ecr.describe_images(repositoryName="desc", imageIds=[{"imageTag": "art"}])["imageDetails"][0]
    assert a["artifactMediaType"] == "application/vnd.example.cfg+json"
    assert a["imageManifestMediaType"] == OCI_MANIFEST
    # Errors.
    with raises("ImageNotFoundException"):
        ecr.describe_images(repositoryName="desc", imageIds=[{"imageTag": "nope"}])
    with raises("ImageNotFoundException"):
        ecr.describe_images(repositoryName="desc", imageIds=[{"imageDigest": ZERO_DIGEST}])
    with raises("RepositoryNotFoundException"):
        ecr.describe_images(repositoryName="nope")
    # Filter and listing.
    everything = ok(ecr.describe_images(repositoryName="desc"))["imageDetails"]
    assert {x["imageDigest"] for x in everything} == {img.digest, art.digest, un.digest}
    untagged = ecr.describe_images(repositoryName="desc", filter={"tagStatus": "UNTAGGED"})["imageDetails"]
    assert [x["imageDigest"] for x in untagged] == [un.digest]
    assert "imageTags" not in untagged[0] or untagged[0]["imageTags"] == []
    tagged = ecr.describe_images(repositoryName="desc", filter={"tagStatus": "TAGGED"})["imageDetails"]
    assert {x["imageDigest"] for x in tagged} == {img.digest, art.digest}
    # Pagination.
    got, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = ecr.describe_images(repositoryName="desc", maxResults=1, **kw)
        assert len(page["imageDetails"]) <= 1
        got += [x["imageDigest"] for x in page["imageDetails"]]
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(got) == sorted({img.digest, art.digest, un.digest})
    pag = ecr.get_paginator("describe_images")
    got = [x["imageDigest"] for p in pag.paginate(repositoryName="desc", PaginationConfig={"PageSize": 2})
           for x in p["imageDetails"]]
    assert sorted(got) == sorted({img.digest, art.digest, un.digest})


def test_batch_get_image(reg, ecr):
    ecr.create_repository(repositoryName="get")
    a = push_image(ecr, "get", "a", seed="a", docker=True)
    b = push_image(ecr, "get", "b", seed="b")
    r = ok(ecr.batch_get_image(repositoryName="get", imageIds=[
        {"imageTag": "a"},
        {"imageDigest": b.digest},
        {"imageTag": "missing"},
        {"imageDigest": ZERO_DIGEST},
        {"imageTag": "a", "imageDigest": b.digest},
    ]))
    imgs = r["images"]
    assert len(imgs) == 2
    assert imgs[0]["imageId"] == {"imageDigest": a.digest, "imageTag": "a"}
    assert imgs[0]["imageManifest"] == a.manifest
    assert imgs[0]["imageManifestMediaType"] == DOCKER_MANIFEST
    assert imgs[0]["registryId"] == reg.account_id and imgs[0]["repositoryName"] == "get"
    assert imgs[1]["imageId"]["imageDigest"] == b.digest
    assert imgs[1]["imageManifest"] == b.manifest
    assert imgs[1]["imageManifestMediaType"] == OCI_MANIFEST
    f = r["failures"]
    assert [x["failureCode"] for x in f] == ["ImageNotFound", "ImageNotFound", "ImageTagDoesNotMatchDigest"]
    assert f[0]["imageId"] == {"imageTag": "missing"}
    assert f[1]["imageId"] == {"imageDigest": ZERO_DIGEST}
    assert all(x["failureReason"] for x in f)
    # acceptedMediaTypes that include the image's type.
    r = ok(ecr.batch_get_image(repositoryName="get", imageIds=[{"imageTag": "a"}],
                               acceptedMediaTypes=[DOCKER_MANIFEST, OCI_MANIFEST]))
    assert r["images"][0]["imageManifestMediaType"] == DOCKER_MANIFEST and r["failures"] == []
    with raises("RepositoryNotFoundException"):
        ecr.batch_get_image(repositoryName="nope", imageIds=[{"imageTag": "a"}])


def test_batch_get_image_unaccepted_media_type(reg, ecr):
    """An image whose type is not accepted: the answer must still fit the model
    (a failure's failureCode is one of ImageFailureCode's values)."""
    ecr.create_repository(repositoryName="acc")
    b = push_image(ecr, "acc", "b", seed="b")
    r = ok(ecr.batch_get_image(repositoryName="acc", imageIds=[{"imageTag": "b"}],
                               acceptedMediaTypes=[DOCKER_LIST]))
    assert len(r["images"]) + len(r["failures"]) == 1
    for img in r["images"]:
        assert img["imageManifest"] == b.manifest


def test_batch_delete_image(reg, ecr):
    ecr.create_repository(repositoryName="del")
    x = push_image(ecr, "del", "t1", seed="x")
    ecr.put_image(repositoryName="del", imageManifest=x.manifest, imageTag="t2")
    y = push_image(ecr, "del", "y1", seed="y")
    ecr.put_image(repositoryName="del", imageManifest=y.manifest, imageTag="y2")
    z = push_image(ecr, "del", None, seed="z")
    # By tag: only that tag goes.
    r = ok(ecr.batch_delete_image(repositoryName="del", imageIds=[{"imageTag": "t1"}]))
    assert r["imageIds"] == [{"imageDigest": x.digest, "imageTag": "t1"}] and r["failures"] == []
    d = ecr.describe_images(repositoryName="del", imageIds=[{"imageDigest": x.digest}])["imageDetails"][0]
    assert d["imageTags"] == ["t2"]
    # The last tag takes the image with it.
    r = ecr.batch_delete_image(repositoryName="del", imageIds=[{"imageTag": "t2"}])
    assert r["imageIds"] == [{"imageDigest": x.digest, "imageTag": "t2"}]
    with raises("ImageNotFoundException"):
        ecr.describe_images(repositoryName="del", imageIds=[{"imageDigest": x.digest}])
    # By digest: the image and all its tags; unknown ones are failures.
    r = ecr.batch_delete_image(repositoryName="del", imageIds=[
        {"imageDigest": y.digest}, {"imageDigest": z.digest}, {"imageTag": "ghost"}, {"imageDigest": ZERO_DIGEST},
    ])
    assert sorted((i["imageDigest"], i.get("imageTag") or "") for i in r["imageIds"]) == sorted(
        [(y.digest, "y1"), (y.digest, "y2"), (z.digest, "")])
    assert [(f["imageId"], f["failureCode"]) for f in r["failures"]] == [
        ({"imageTag": "ghost"}, "ImageNotFound"), ({"imageDigest": ZERO_DIGEST}, "ImageNotFound")]
    assert ecr.list_images(repositoryName="del")["imageIds"] == []
    with raises("RepositoryNotFoundException"):
        ecr.batch_delete_image(repositoryName="nope", imageIds=[{"imageTag": "a"}])


def _wait_for_pull_time(ecr, repo, digest, timeout=5.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        d = ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": digest}])["imageDetails"][0]
        if "lastRecordedPullTime" in d:
            return d["lastRecordedPullTime"]
        time.sleep(0.1)
    raise AssertionError(f"no lastRecordedPullTime for {digest} after {timeout}s")


def test_last_recorded_pull_time(reg, ecr):
    ecr.create_repository(repositoryName="pulls")
    a = push_image(ecr, "pulls", "a", seed="a")
    b = push_image(ecr, "pulls", "b", seed="b")
    for im in (a, b):
        d = ecr.describe_images(repositoryName="pulls", imageIds=[{"imageDigest": im.digest}])["imageDetails"][0]
        assert "lastRecordedPullTime" not in d
    ecr.batch_get_image(repositoryName="pulls", imageIds=[{"imageTag": "a"}])
    recent(_wait_for_pull_time(ecr, "pulls", a.digest))
    # A pull on the registry API counts too.
    token = reg.login()
    r = requests.get(f"{reg.url}/v2/pulls/manifests/b", auth=("AWS", token),
                     headers={"Accept": OCI_MANIFEST}, timeout=10)
    assert r.status_code == 200 and r.content == b.manifest.encode()
    recent(_wait_for_pull_time(ecr, "pulls", b.digest))


# --------------------------------------------------------------------------
# Downloads and tokens


def test_get_download_url_for_layer(reg, ecr):
    ecr.create_repository(repositoryName="dl")
    img = push_image(ecr, "dl", "v1", layer_sizes=(5000, 100))
    layer = img.layers[0]
    r = ok(ecr.get_download_url_for_layer(repositoryName="dl", layerDigest=sha256(layer)))
    assert r["layerDigest"] == sha256(layer)
    got = requests.get(r["downloadUrl"], timeout=10)
    assert got.status_code == 200
    assert got.content == layer
    # The URL is for that blob only.
    other = r["downloadUrl"].replace(sha256(layer), sha256(img.layers[1]))
    assert requests.get(other, timeout=10).status_code in (401, 403)
    with raises("LayersNotFoundException"):
        ecr.get_download_url_for_layer(repositoryName="dl", layerDigest=ZERO_DIGEST)
    with raises("RepositoryNotFoundException"):
        ecr.get_download_url_for_layer(repositoryName="nope", layerDigest=sha256(layer))


def test_get_authorization_token(reg, ecr):
    r = ok(ecr.get_authorization_token())
    data = r["authorizationData"]
    assert len(data) == 1
    d = data[0]
    raw = base64.b64decode(d["authorizationToken"]).decode()
    user, token = raw.split(":", 1)
    assert user == "AWS"
    assert token and ":" not in token
    exp = aware(d["expiresAt"])
    ahead = (exp - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
    assert 12 * 3600 - 300 < ahead <= 12 * 3600 + 60, ahead
    assert d["proxyEndpoint"] == "http://" + reg.host
    assert isinstance(raw_json(ecr)["authorizationData"][0]["expiresAt"], (int, float))
    v2 = requests.get(f"{reg.url}/v2/", auth=("AWS", token), timeout=10)
    assert v2.status_code == 200, v2.text
    assert requests.get(f"{reg.url}/v2/", timeout=10).status_code == 401
    assert requests.get(f"{reg.url}/v2/", auth=("AWS", token[:-4] + "AAAA"), timeout=10).status_code == 401
    assert requests.get(f"{reg.url}/v2/", auth=("bob", token), timeout=10).status_code == 401
    # The conftest helper gets a working token as well; registryIds of the own account work.
    assert requests.get(f"{reg.url}/v2/", auth=("AWS", reg.login()), timeout=10).status_code == 200
    r = ecr.get_authorization_token(registryIds=[reg.account_id])
    assert r["authorizationData"][0]["proxyEndpoint"] == "http://" + reg.host


# --------------------------------------------------------------------------
# Repository settings and tags


def test_put_image_scanning_configuration(reg, ecr):
    ecr.create_repository(repositoryName="scan")
    r = ok(ecr.put_image_scanning_configuration(repositoryName="scan",
                                                imageScanningConfiguration={"scanOnPush": True}))
    assert r == {**r, "registryId": reg.account_id, "repositoryName": "scan",
                 "imageScanningConfiguration": {"scanOnPush": True}}
    repo = ecr.describe_repositories(repositoryNames=["scan"])["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    ecr.put_image_scanning_configuration(repositoryName="scan", imageScanningConfiguration={"scanOnPush": False})
    repo = ecr.describe_repositories(repositoryNames=["scan"])["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    with raises("RepositoryNotFoundException"):
        ecr.put_image_scanning_configuration(repositoryName="nope", imageScanningConfiguration={"scanOnPush": True})


def test_resource_tags(reg, ecr):
    ecr.create_repository(repositoryName="tagged", tags=[{"Key": "a", "Value": "1"}])
    res = arn(reg, "tagged")
    assert ok(ecr.tag_resource(resourceArn=res, tags=[{"Key": "b", "Value": "2"}, {"Key": "a", "Value": "9"}]))
    tags = ok(ecr.list_tags_for_resource(resourceArn=res))["tags"]
    assert sorted((t["Key"], t["Value"]) for t in tags) == [("a", "9"), ("b", "2")]
    ok(ecr.untag_resource(resourceArn=res, tagKeys=["a", "not-there"]))
    assert ecr.list_tags_for_resource(resourceArn=res)["tags"] == [{"Key": "b", "Value": "2"}]
    with raises("InvalidTagParameterException"):
        ecr.tag_resource(resourceArn=res, tags=[{"Key": "aws:x", "Value": "y"}])
    with raises("TooManyTagsException"):
        ecr.tag_resource(resourceArn=res, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    assert ecr.list_tags_for_resource(resourceArn=res)["tags"] == [{"Key": "b", "Value": "2"}]
    for bad in ["not-an-arn", "arn:aws:s3:::bucket", f"arn:aws:ecr:eu-west-1:{reg.account_id}:repository/tagged",
                f"arn:aws:ecr:us-east-1:{reg.account_id}:user/tagged"]:
        with raises("InvalidParameterException"):
            ecr.list_tags_for_resource(resourceArn=bad)
        with raises("InvalidParameterException"):
            ecr.tag_resource(resourceArn=bad, tags=[{"Key": "k", "Value": "v"}])
        with raises("InvalidParameterException"):
            ecr.untag_resource(resourceArn=bad, tagKeys=["k"])
    missing = arn(reg, "missing")
    with raises("RepositoryNotFoundException"):
        ecr.list_tags_for_resource(resourceArn=missing)
    with raises("RepositoryNotFoundException"):
        ecr.tag_resource(resourceArn=missing, tags=[{"Key": "k", "Value": "v"}])
    with raises("RepositoryNotFoundException"):
        ecr.untag_resource(resourceArn=missing, tagKeys=["k"])


def test_describe_registry(reg, ecr):
    r = ok(ecr.describe_registry())
    assert r["registryId"] == reg.account_id
    assert r["replicationConfiguration"] == {"rules": []}


# --------------------------------------------------------------------------
# Creation templates, account settings, referrers


def test_repository_creation_templates(reg, ecr):
    r = ok(ecr.create_repository_creation_template(
        prefix="prod", description="production", appliedFor=["CREATE_ON_PUSH"], imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "env", "Value": "prod"}],
        encryptionConfiguration={"encryptionType": "AES256"},
    ))
    assert r["registryId"] == reg.account_id
    t = r["repositoryCreationTemplate"]
    assert t["prefix"] == "prod" and t["description"] == "production"
    assert t["appliedFor"] == ["CREATE_ON_PUSH"] and t["imageTagMutability"] == "IMMUTABLE"
    assert t["resourceTags"] == [{"Key": "env", "Value": "prod"}]
    assert t["encryptionConfiguration"]["encryptionType"] == "AES256"
    recent(t["createdAt"])
    recent(t["updatedAt"])
    created = t["createdAt"]
    with raises("TemplateAlreadyExistsException"):
        ecr.create_repository_creation_template(prefix="prod", appliedFor=["REPLICATION"])
    with raises("InvalidParameterException"):
        ecr.create_repository_creation_template(
            prefix="bad", appliedFor=["CREATE_ON_PUSH"], imageTagMutability="MUTABLE",
            imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "x"}])
    # Defaults of a minimal template.
    m = ok(ecr.create_repository_creation_template(prefix="ROOT", appliedFor=["REPLICATION"]))[
        "repositoryCreationTemplate"]
    assert m["prefix"] == "ROOT" and m["imageTagMutability"] == "MUTABLE"
    # Describe by prefix.
    d = ok(ecr.describe_repository_creation_templates(prefixes=["prod"]))
    assert d["registryId"] == reg.account_id
    assert [x["prefix"] for x in d["repositoryCreationTemplates"]] == ["prod"]
    assert d["repositoryCreationTemplates"][0]["description"] == "production"
    # Update.
    time.sleep(1.1)
    u = ok(ecr.update_repository_creation_template(prefix="prod", description="changed",
                                                   appliedFor=["CREATE_ON_PUSH", "REPLICATION"]))
    ut = u["repositoryCreationTemplate"]
    assert ut["description"] == "changed" and sorted(ut["appliedFor"]) == ["CREATE_ON_PUSH", "REPLICATION"]
    assert ut["imageTagMutability"] == "IMMUTABLE"  # untouched members stay
    assert ut["createdAt"] == created
    assert ut["updatedAt"] > created
    with raises("TemplateNotFoundException"):
        ecr.update_repository_creation_template(prefix="nothere", description="x")
    # The template applies on push: the registry API creates prod/app with its settings.
    token = reg.login()
    cfg = b'{"os":"linux"}'
    up = requests.post(f"{reg.url}/v2/prod/app/blobs/uploads/?digest={sha256(cfg)}", data=cfg,
                       auth=("AWS", token), headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert up.status_code == 201, up.text
    repo = ecr.describe_repositories(repositoryNames=["prod/app"])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    tags = ecr.list_tags_for_resource(resourceArn=arn(reg, "prod/app"))["tags"]
    assert tags == [{"Key": "env", "Value": "prod"}]
    # Pagination over several templates.
    for p in ("a1", "b2", "c3", "d4"):
        ecr.create_repository_creation_template(prefix=p, appliedFor=["REPLICATION"])
    every = {"ROOT", "prod", "a1", "b2", "c3", "d4"}
    got, token, pages = [], None, 0
    while True:
        kw = {"nextToken": token} if token else {}
        page = ok(ecr.describe_repository_creation_templates(maxResults=2, **kw))
        assert len(page["repositoryCreationTemplates"]) <= 2
        got += [x["prefix"] for x in page["repositoryCreationTemplates"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(got) == sorted(every) and pages == 3
    pag = ecr.get_paginator("describe_repository_creation_templates")
    got = [x["prefix"] for p in pag.paginate(PaginationConfig={"PageSize": 4}) for x in p["repositoryCreationTemplates"]]
    assert sorted(got) == sorted(every)
    # Delete.
    dl = ok(ecr.delete_repository_creation_template(prefix="prod"))
    assert dl["registryId"] == reg.account_id
    assert dl["repositoryCreationTemplate"]["prefix"] == "prod"
    assert dl["repositoryCreationTemplate"]["description"] == "changed"
    with raises("TemplateNotFoundException"):
        ecr.delete_repository_creation_template(prefix="prod")
    left = ecr.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert sorted(x["prefix"] for x in left) == sorted(every - {"prod"})


def test_account_settings(reg, ecr):
    r = ok(ecr.get_account_setting(name="BASIC_SCAN_TYPE_VERSION"))
    assert r == {**r, "name": "BASIC_SCAN_TYPE_VERSION", "value": "AWS_NATIVE"}
    assert ecr.get_account_setting(name="REGISTRY_POLICY_SCOPE")["value"] == "V2"
    assert ecr.get_account_setting(name="BLOB_MOUNTING")["value"] in ("ENABLED", "DISABLED")
    flipped = {"ENABLED": "DISABLED", "DISABLED": "ENABLED"}[ecr.get_account_setting(name="BLOB_MOUNTING")["value"]]
    p = ok(ecr.put_account_setting(name="BLOB_MOUNTING", value=flipped))
    assert p["name"] == "BLOB_MOUNTING" and p["value"] == flipped
    assert ecr.get_account_setting(name="BLOB_MOUNTING")["value"] == flipped
    ok(ecr.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V2"))
    assert ecr.get_account_setting(name="REGISTRY_POLICY_SCOPE")["value"] == "V2"
    with raises("ValidationException"):
        ecr.put_account_setting(name="BLOB_MOUNTING", value="SOMETIMES")
    with raises("ValidationException"):
        ecr.get_account_setting(name="NO_SUCH_SETTING")
    with raises("ValidationException"):
        ecr.put_account_setting(name="NO_SUCH_SETTING", value="x")
    assert ecr.get_account_setting(name="BLOB_MOUNTING")["value"] == flipped


def test_list_image_referrers(reg, ecr):
    ecr.create_repository(repositoryName="refs")
    subj = push_image(ecr, "refs", "v1", seed="subject")
    subject = {"mediaType": OCI_MANIFEST, "digest": subj.digest, "size": len(subj.manifest.encode())}
    sbom = push_image(ecr, "refs", None, config=b"{}", config_type=OCI_EMPTY, layers=[b'{"sbom": true}'],
                      artifact_type="application/vnd.example.sbom.v1+json", subject=subject,
                      annotations={"org.example.kind": "sbom"})
    sig = push_image(ecr, "refs", None, config=b"{}", config_type=OCI_EMPTY, layers=[b"signature-bytes"],
                     artifact_type="application/vnd.example.sig.v1", subject=subject)
    r = ok(ecr.list_image_referrers(repositoryName="refs", subjectId={"imageDigest": subj.digest}))
    refs = {x["digest"]: x for x in r["referrers"]}
    assert set(refs) == {sbom.digest, sig.digest}
    s = refs[sbom.digest]
    assert s["mediaType"] == OCI_MANIFEST
    assert s["artifactType"] == "application/vnd.example.sbom.v1+json"
    assert s["size"] == len(sbom.manifest.encode())
    assert s["annotations"] == {"org.example.kind": "sbom"}
    assert s.get("artifactStatus", "ACTIVE") == "ACTIVE"
    f = ecr.list_image_referrers(repositoryName="refs", subjectId={"imageDigest": subj.digest},
                                 filter={"artifactTypes": ["application/vnd.example.sig.v1"]})
    assert [x["digest"] for x in f["referrers"]] == [sig.digest]
    # Pagination.
    got, token = [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = ecr.list_image_referrers(repositoryName="refs", subjectId={"imageDigest": subj.digest},
                                        maxResults=1, **kw)
        assert len(page["referrers"]) <= 1
        got += [x["digest"] for x in page["referrers"]]
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(got) == sorted([sbom.digest, sig.digest])
    # DescribeImages knows the subject and the artifact type.
    d = ecr.describe_images(repositoryName="refs", imageIds=[{"imageDigest": sbom.digest}])["imageDetails"][0]
    assert d["subjectManifestDigest"] == subj.digest
    assert d["artifactMediaType"] == "application/vnd.example.sbom.v1+json"
    # No referrers.
    assert ecr.list_image_referrers(repositoryName="refs", subjectId={"imageDigest": sig.digest})["referrers"] == []
    with raises("RepositoryNotFoundException"):
        ecr.list_image_referrers(repositoryName="nope", subjectId={"imageDigest": subj.digest})


# --------------------------------------------------------------------------
# Operations of later features (not built in model/ecr-ops.json; ops/later.rs answers)


def test_later_operations(reg, ecr):
    ecr.create_repository(repositoryName="later")
    img = push_image(ecr, "later", "v1")
    acct = reg.account_id
    rn = {"repositoryName": "later"}
    image = {"imageId": {"imageTag": "v1"}}
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    lifecycle = json.dumps({"rules": [{"rulePriority": 1, "description": "expire untagged images",
                                       "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                                     "countUnit": "days", "countNumber": 14},
                                       "action": {"type": "expire"}}]})
    backfill = str(uuid.uuid4())
    principal = f"arn:aws:iam::{acct}:role/ci"
    # (operation, input, expected error code | None for a successful empty answer)
    cases = [
        ("SetRepositoryPolicy", {**rn, "policyText": policy}, "UnsupportedOperationException"),
        ("GetRepositoryPolicy", rn, "RepositoryPolicyNotFoundException"),
        ("DeleteRepositoryPolicy", rn, "RepositoryPolicyNotFoundException"),
        ("PutRegistryPolicy", {"policyText": policy}, "UnsupportedOperationException"),
        ("GetRegistryPolicy", {}, "RegistryPolicyNotFoundException"),
        ("DeleteRegistryPolicy", {}, "RegistryPolicyNotFoundException"),
        ("PutLifecyclePolicy", {**rn, "lifecyclePolicyText": lifecycle}, "UnsupportedOperationException"),
        ("GetLifecyclePolicy", rn, "LifecyclePolicyNotFoundException"),
        ("DeleteLifecyclePolicy", rn, "LifecyclePolicyNotFoundException"),
        ("StartLifecyclePolicyPreview", rn, "LifecyclePolicyNotFoundException"),
        ("GetLifecyclePolicyPreview", rn, "LifecyclePolicyPreviewNotFoundException"),
        ("PutReplicationConfiguration",
         {"replicationConfiguration": {"rules": [{"destinations": [{"region": "us-west-2", "registryId": acct}]}]}},
         "UnsupportedOperationException"),
        ("DescribeImageReplicationStatus", {**rn, **image}, None),
        ("StartReplicationBackfill", {"destination": {"region": "us-west-2", "registryId": acct}},
         "UnsupportedOperationException"),
        ("StopReplicationBackfill", {"replicationBackfillId": backfill}, "ReplicationBackfillNotFoundException"),
        ("DescribeReplicationBackfillResults", {"replicationBackfillId": backfill},
         "ReplicationBackfillNotFoundException"),
        ("ListReplicationBackfills", {}, None),
        ("CreatePullThroughCacheRule", {"ecrRepositoryPrefix": "hub", "upstreamRegistryUrl": "registry-1.docker.io"},
         "UnsupportedOperationException"),
        ("DescribePullThroughCacheRules", {}, None),
        ("DescribePullThroughCacheRules", {"ecrRepositoryPrefixes": ["hub"]}, "PullThroughCacheRuleNotFoundException"),
        ("UpdatePullThroughCacheRule", {"ecrRepositoryPrefix": "hub"}, "PullThroughCacheRuleNotFoundException"),
        ("DeletePullThroughCacheRule", {"ecrRepositoryPrefix": "hub"}, "PullThroughCacheRuleNotFoundException"),
        ("ValidatePullThroughCacheRule", {"ecrRepositoryPrefix": "hub"}, "PullThroughCacheRuleNotFoundException"),
        ("PutSigningConfiguration",
         {"signingConfiguration": {"rules": [
             {"signingProfileArn": f"arn:aws:signer:us-east-1:{acct}:/signing-profiles/prof_1"}]}},
         "UnsupportedOperationException"),
        ("GetSigningConfiguration", {}, "SigningConfigurationNotFoundException"),
        ("DeleteSigningConfiguration", {}, "SigningConfigurationNotFoundException"),
        ("DescribeImageSigningStatus", {**rn, **image}, None),
        ("RegisterPullTimeUpdateExclusion", {"principalArn": principal}, "UnsupportedOperationException"),
        ("DeregisterPullTimeUpdateExclusion", {"principalArn": principal}, "ExclusionNotFoundException"),
        ("ListPullTimeUpdateExclusions", {}, None),
    ]
    # The operations the operation table marks not built (ops/later.rs answers them); each
    # needs a case here.
    # Operations that have since been implemented for real are tested on their own.
    later = later_operations()
    if not later:
        # Every operation is built now: the last ones to leave the "later" list answer for real.
        assert ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"] == []
        moved = ecr.update_image_storage_class(repositoryName="later", imageId={"imageTag": "v1"},
                                               targetStorageClass="ARCHIVE")
        assert moved["imageStatus"] == "ARCHIVED" and moved["imageId"]["imageDigest"] == img.digest
    assert later <= {c[0] for c in cases}, f"no case for {later - {c[0] for c in cases}}"
    # An older botocore (without .ci/install-deps.sh's newest model) may lack an
    # operation: that is the client's gap, not the server's.
    if os.path.exists(ecr_util.MODEL_PATH):
        assert later <= set(ecr_util.OPERATIONS), later - set(ecr_util.OPERATIONS)
    later &= set(ecr_util.OPERATIONS)
    results = {}
    problems = []
    for op, params, code in cases:
        if op not in later:
            continue
        method = getattr(ecr, re.sub(r"(?<!^)(?=[A-Z])", "_", op).lower())
        try:
            resp = method(**params)
        except ClientError as e:
            got = e.response["Error"]["Code"]
            status = e.response["ResponseMetadata"]["HTTPStatusCode"]
            if got != code or status != 400:
                problems.append(f"{op}: {status} {got}, expected {code}")
            continue
        except ecr_util.ResponseCheckFailed as e:
            problems.append(f"{op}: {e}")
            continue
        if code is not None:
            problems.append(f"{op}: succeeded, expected {code}")
        results[op] = resp
    assert not problems, "\n".join(problems)
    if "DescribeImageReplicationStatus" in results:
        rs = results["DescribeImageReplicationStatus"]
        assert rs["replicationStatuses"] == [] and rs["imageId"]["imageDigest"] == img.digest
    if "DescribeImageSigningStatus" in results:
        ss = results["DescribeImageSigningStatus"]
        assert ss["signingStatuses"] == [] and ss["imageId"]["imageDigest"] == img.digest
    for op, key in [("ListReplicationBackfills", "backfills"), ("DescribePullThroughCacheRules", "pullThroughCacheRules"),
                    ("ListPullTimeUpdateExclusions", "pullTimeUpdateExclusions")]:
        if op in results:
            assert results[op].get(key, []) == [], (op, results[op])
    # Repository- and image-scoped ones check what they name first.
    scoped = [
        ("GetRepositoryPolicy", lambda: ecr.get_repository_policy(repositoryName="ghost"),
         "RepositoryNotFoundException"),
        ("DescribeImageScanFindings",
         lambda: ecr.describe_image_scan_findings(repositoryName="later", imageId={"imageTag": "nope"}),
         "ImageNotFoundException"),
        ("DescribeImageReplicationStatus",
         lambda: ecr.describe_image_replication_status(repositoryName="later", imageId={"imageDigest": ZERO_DIGEST}),
         "ImageNotFoundException"),
        ("DescribeImageSigningStatus",
         lambda: ecr.describe_image_signing_status(repositoryName="ghost", imageId={"imageTag": "v1"}),
         "RepositoryNotFoundException"),
    ]
    for op, call, code in scoped:
        if op in later:
            with raises(code):
                call()


def later_operations():
    """Operation names the generated operation table marks as not built: the `not_built`
    map of crates/kura-ecr/model/ecr-ops.json (from which src/optable.rs is generated)."""
    import os
    from conftest import REPO_ROOT
    with open(os.path.join(REPO_ROOT, "crates", "kura-ecr", "model", "ecr-ops.json")) as f:
        return set(json.load(f).get("not_built", {}))


def test_lifecycle_policy(reg, ecr):
    ecr.create_repository(repositoryName="lc")
    with raises("LifecyclePolicyNotFoundException"):
        ecr.get_lifecycle_policy(repositoryName="lc")
    with raises("LifecyclePolicyNotFoundException"):
        ecr.delete_lifecycle_policy(repositoryName="lc")
    with raises("LifecyclePolicyPreviewNotFoundException"):
        ecr.get_lifecycle_policy_preview(repositoryName="lc")
    with raises("LifecyclePolicyNotFoundException"):
        ecr.start_lifecycle_policy_preview(repositoryName="lc")
    with raises("RepositoryNotFoundException"):
        ecr.get_lifecycle_policy(repositoryName="ghost")
    kept = push_image(ecr, "lc", "keep", seed="keep")
    olds = []
    for i in range(3):
        olds.append(push_image(ecr, "lc", None, seed=f"old{i}"))
        time.sleep(0.02)
    policy = json.dumps({"rules": [{
        "rulePriority": 1, "description": "keep one untagged image",
        "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "expire"}}]})
    r = ok(ecr.put_lifecycle_policy(repositoryName="lc", lifecyclePolicyText=policy))
    assert r["registryId"] == reg.account_id and r["repositoryName"] == "lc"
    assert json.loads(r["lifecyclePolicyText"]) == json.loads(policy)
    g = ok(ecr.get_lifecycle_policy(repositoryName="lc"))
    assert json.loads(g["lifecyclePolicyText"]) == json.loads(policy)
    if "lastEvaluatedAt" in g:
        aware(g["lastEvaluatedAt"])
    bad = json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "sometimes"},
                                 "action": {"type": "expire"}, "description": "x" * 80}]})
    with raises("InvalidParameterException"):
        ecr.put_lifecycle_policy(repositoryName="lc", lifecyclePolicyText=bad)
    # Preview: the two older untagged images would expire; nothing is deleted.
    s = ok(ecr.start_lifecycle_policy_preview(repositoryName="lc"))
    assert s["status"] in ("IN_PROGRESS", "COMPLETE") and s["repositoryName"] == "lc"
    deadline = time.time() + 5
    while True:
        p = ok(ecr.get_lifecycle_policy_preview(repositoryName="lc"))
        if p["status"] != "IN_PROGRESS" or time.time() > deadline:
            break
        time.sleep(0.1)
    assert p["status"] == "COMPLETE", p
    expiring = {x["imageDigest"] for x in p["previewResults"]}
    assert expiring == {olds[0].digest, olds[1].digest}, (expiring, [o.digest for o in olds])
    assert p["summary"]["expiringImageTotalCount"] == 2
    for x in p["previewResults"]:
        assert x["action"]["type"] == "EXPIRE" and x["appliedRulePriority"] == 1
        aware(x["imagePushedAt"])
    assert {i["imageDigest"] for i in ecr.list_images(repositoryName="lc")["imageIds"]} == {
        kept.digest, *(o.digest for o in olds)}
    d = ok(ecr.delete_lifecycle_policy(repositoryName="lc"))
    assert json.loads(d["lifecyclePolicyText"]) == json.loads(policy)
    with raises("LifecyclePolicyNotFoundException"):
        ecr.get_lifecycle_policy(repositoryName="lc")


# --------------------------------------------------------------------------
# The wire: raw requests


def assert_raw_error(resp, status, kind):
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    body = resp.json()
    assert body.get("__type") == kind, body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert resp.headers.get("X-Amzn-ErrorType", "").split(":")[0] == kind, dict(resp.headers)
    assert resp.headers.get("x-amzn-RequestId"), dict(resp.headers)
    assert resp.headers.get("Content-Type", "").startswith("application/x-amz-json-1.1")


def test_raw_success_is_awsjson(reg, ecr):
    ecr.create_repository(repositoryName="raw")
    r = raw_call(reg, "DescribeRepositories", {})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/x-amz-json-1.1"
    assert r.headers.get("x-amzn-RequestId")
    repo = r.json()["repositories"][0]
    assert isinstance(repo["createdAt"], (int, float)) and not isinstance(repo["createdAt"], bool)
    assert not ecr_util.check_shape("DescribeRepositoriesResponse", r.json())
    # An empty body is an empty input.
    r = raw_call(reg, "DescribeRegistry", b"")
    assert r.status_code == 200, r.text
    # Two calls get two request ids.
    ids = {raw_call(reg, "DescribeRegistry", {}).headers["x-amzn-RequestId"] for _ in range(2)}
    assert len(ids) == 2


def test_raw_protocol_errors(reg):
    assert_raw_error(raw_call(reg, "NoSuchOperation", {}), 400, "UnknownOperationException")
    assert_raw_error(raw_call(reg, "DescribeRepositories", {}, target_prefix="SomethingElse_V1"), 400,
                     "UnknownOperationException")
    assert_raw_error(raw_call(reg, "DescribeRepositories", b'{"repositoryNames": ['), 400,
                     "SerializationException")
    assert_raw_error(raw_call(reg, "DescribeRepositories", b"[1, 2]"), 400, "SerializationException")
    assert_raw_error(raw_call(reg, "DescribeRepositories", {"maxResults": "ten"}), 400, "SerializationException")


def _signed_then_tampered(reg, monkeypatch):
    from botocore.awsrequest import AWSRequest
    from botocore.auth import SigV4Auth
    from botocore.credentials import Credentials
    signed = AWSRequest(method="POST", url=reg.url + "/", data=b"{}", headers={
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"})
    SigV4Auth(Credentials(reg.access_key, reg.secret_key), "ecr", reg.region).add_auth(signed)
    return requests.post(reg.url + "/", data=b'{"maxResults": 5}', headers=dict(signed.headers.items()), timeout=10)


def _minutes_ago(minutes):
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=minutes)


def _signed_in_the_past(reg, monkeypatch):
    past = _minutes_ago(20)
    with monkeypatch.context() as m:
        m.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: past)
        r = raw_call(reg, "DescribeRepositories", {})
    assert r.request.headers["X-Amz-Date"] == past.strftime("%Y%m%dT%H%M%SZ")
    return r


AUTH_CASES = {
    "wrong-secret": (lambda reg, mp: raw_call(reg, "DescribeRepositories", {}, secret_key="x" * 40),
                     "InvalidSignatureException"),
    "unknown-access-key": (lambda reg, mp: raw_call(reg, "DescribeRepositories", {},
                                                    access_key="AKIAUNKNOWNKEY000000"),
                           "UnrecognizedClientException"),
    "no-auth": (lambda reg, mp: raw_call(reg, "DescribeRepositories", {}, sign=False),
                "MissingAuthenticationTokenException"),
    "wrong-region": (lambda reg, mp: raw_call(reg, "DescribeRepositories", {}, region="eu-west-1"),
                     "InvalidSignatureException"),
    "wrong-service": (lambda reg, mp: raw_call(reg, "DescribeRepositories", {}, service="s3"),
                      "InvalidSignatureException"),
    "body-changed-after-signing": (_signed_then_tampered, "InvalidSignatureException"),
    "signed-20-minutes-ago": (_signed_in_the_past, "InvalidSignatureException"),
}


@pytest.mark.parametrize("case", sorted(AUTH_CASES))
def test_raw_authentication_errors(reg, monkeypatch, case):
    call, kind = AUTH_CASES[case]
    # ECR (a JSON-protocol service) answers authentication failures with 400.
    assert_raw_error(call(reg, monkeypatch), 400, kind)
    # Nothing was done and the server is fine.
    assert raw_call(reg, "DescribeRepositories", {}).json() == {"repositories": []}


def test_boto3_authentication_errors(reg, monkeypatch):
    past = _minutes_ago(20)
    with monkeypatch.context() as m:
        m.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: past)
        with raises("InvalidSignatureException"):
            ecr_util.client(reg).describe_repositories()
    with raises("InvalidSignatureException"):
        ecr_util.client(reg, secret_key="y" * 40).describe_repositories()
    # Five minutes of skew is tolerated (SigV4 allows 15).
    near = _minutes_ago(5)
    with monkeypatch.context() as m:
        m.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: near)
        ok(ecr_util.client(reg).describe_repositories())


def test_raw_body_too_large(reg):
    body = b'{"repositoryName": "' + b"a" * (30 * 1024 * 1024 + 16) + b'"}'
    try:
        r = raw_call(reg, "CreateRepository", body)
    except requests.exceptions.ConnectionError as e:  # pragma: no cover - diagnostic
        pytest.fail(f"server dropped the connection instead of answering 413: {e}")
    assert_raw_error(r, 413, r.json().get("__type"))
    assert r.json()["__type"]
    # The server is still fine afterwards.
    assert raw_call(reg, "DescribeRegistry", {}).status_code == 200
