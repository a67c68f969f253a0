"""The archive storage class end to end, with the real aws CLI and boto3
against `kura serve`: UpdateImageStorageClass both ways, imageStatus and its
filters in DescribeImages/ListImages (answers checked against botocore's
model by ecr_util.client), an archived image refused by BatchGetImage and on
/v2/ (OCI error JSON), the restore as a durable job that survives a kill -9
of the server (ACTIVATING until it runs), then pullable again; and a lifecycle
`transition` rule applied by `kura lifecycle run`.
"""
import json
import subprocess
import time

import pytest
import requests
from botocore.exceptions import ClientError

import ecr_util
from conftest import Registry
from ecr_util import push_image
from test_lifecycle_gc import kura

REPO = "team/app"
OCI_ACCEPT = ",".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


def aws(reg, *args, expect_error=None):
    """`aws ecr <args>` (the CLI v1 the e2e image installs) as the root key."""
    p = subprocess.run(["aws", "ecr", *args, "--endpoint-url", reg.url, "--output", "json"],
                       env=reg.aws_env(), capture_output=True, text=True, timeout=120)
    what = "aws ecr %s -> exit %d\nstdout: %s\nstderr: %s\n--- registry log ---\n%s" % (
        " ".join(args), p.returncode, p.stdout[-2000:], p.stderr[-2000:], reg.log()[-3000:])
    if expect_error:
        assert p.returncode != 0, what
        assert "(%s)" % expect_error in p.stderr, what
        return p.stderr
    assert p.returncode == 0, what
    return json.loads(p.stdout) if p.stdout.strip() else None


def manifest_get(reg, ref, method="GET"):
    return requests.request(method, f"{reg.url}/v2/{REPO}/manifests/{ref}", auth=reg.auth,
                            headers={"Accept": OCI_ACCEPT}, timeout=30)


def status_of(ecr, digest):
    d = ecr.describe_images(repositoryName=REPO, imageIds=[{"imageDigest": digest}])
    return d["imageDetails"][0]["imageStatus"]


@pytest.fixture
def reg(tmp_path):
    # Restores take at least 3 s here, so ACTIVATING can be seen (and the
    # server killed while the job waits).
    r = Registry(str(tmp_path), env={"KURA_ARCHIVE_RESTORE_DELAY": "3s"})
    r.start()
    r.login()
    yield r
    r.stop()


def test_archive_restore_and_lifecycle_transition(reg):
    ecr = ecr_util.client(reg)
    ecr.create_repository(repositoryName=REPO)
    cold = push_image(ecr, REPO, "cold", seed="cold")
    hot = push_image(ecr, REPO, "hot", seed="hot")
    assert manifest_get(reg, "cold").status_code == 200

    # Archive with the aws CLI, by tag.
    out = aws(reg, "update-image-storage-class", "--repository-name", REPO,
              "--image-id", "imageTag=cold", "--target-storage-class", "ARCHIVE")
    assert out["imageStatus"] == "ARCHIVED", out
    assert out["imageId"] == {"imageDigest": cold.digest, "imageTag": "cold"}, out
    assert out["registryId"] == reg.account_id and out["repositoryName"] == REPO

    # Listed with its status (ACTIVE only by default, as ECR).
    default = ecr.describe_images(repositoryName=REPO)["imageDetails"]
    assert [d["imageDigest"] for d in default] == [hot.digest]
    archived = ecr.describe_images(repositoryName=REPO, filter={"imageStatus": "ARCHIVED"})["imageDetails"]
    assert [d["imageDigest"] for d in archived] == [cold.digest]
    assert archived[0]["imageStatus"] == "ARCHIVED"
    assert archived[0]["lastArchivedAt"].timestamp() > time.time() - 300
    # Metered apart: `kura usage` counts the archived image's bytes in the archive class.
    usage = kura(reg, "usage", "--account", reg.account_id)
    size = archived[0]["imageSizeInBytes"]
    assert usage["archive"] == {"images": 1, "bytes": size}, usage
    assert usage["standard"]["images"] == 1 and usage["standard"]["bytes"] > 0, usage
    anyst = ecr.describe_images(repositoryName=REPO, filter={"imageStatus": "ANY"})["imageDetails"]
    assert {d["imageDigest"]: d["imageStatus"] for d in anyst} == {cold.digest: "ARCHIVED", hot.digest: "ACTIVE"}
    listed = aws(reg, "list-images", "--repository-name", REPO, "--filter", "imageStatus=ARCHIVED")
    assert listed["imageIds"] == [{"imageDigest": cold.digest, "imageTag": "cold"}], listed

    # Not pullable: BatchGetImage reports it, /v2/ answers the OCI error JSON.
    got = ecr.batch_get_image(repositoryName=REPO, imageIds=[{"imageTag": "cold"}])
    assert got["images"] == []
    assert got["failures"][0]["failureCode"] == "ImageInaccessible", got
    for ref in ("cold", cold.digest):
        r = manifest_get(reg, ref)
        assert r.status_code == 404, (ref, r.status_code, r.text)
        err = r.json()["errors"][0]
        assert err["code"] == "MANIFEST_UNKNOWN" and "archived" in err["message"], err
        assert err["detail"] == {"digest": cold.digest, "imageStatus": "ARCHIVED"}, err
        assert manifest_get(reg, ref, "HEAD").status_code == 404
    with pytest.raises(ClientError) as ei:
        ecr.start_image_scan(repositoryName=REPO, imageId={"imageDigest": cold.digest})
    assert ei.value.response["Error"]["Code"] == "ImageArchivedException"

    # Restore with boto3: ACTIVATING, a durable job; kill -9 the server before
    # it runs, start it again, and the job still brings the image back.
    r = ecr.update_image_storage_class(repositoryName=REPO, imageId={"imageDigest": cold.digest},
                                       targetStorageClass="STANDARD")
    assert r["imageStatus"] == "ACTIVATING", r
    assert status_of(ecr, cold.digest) == "ACTIVATING"
    assert manifest_get(reg, "cold").status_code == 404
    reg.kill9()
    reg.start()
    reg.login()
    ecr = ecr_util.client(reg)
    deadline = time.time() + 60
    while status_of(ecr, cold.digest) != "ACTIVE":
        assert time.time() < deadline, reg.log()[-3000:]
        time.sleep(0.2)
    detail = ecr.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "cold"}])["imageDetails"][0]
    assert detail["lastActivatedAt"] >= detail["lastArchivedAt"]
    r = manifest_get(reg, "cold")
    assert r.status_code == 200 and r.text == cold.manifest
    # Attack: another account's registry id is denied; a malformed class is refused.
    with pytest.raises(ClientError) as ei:
        ecr.update_image_storage_class(registryId="210987654321", repositoryName=REPO,
                                       imageId={"imageDigest": cold.digest}, targetStorageClass="ARCHIVE")
    assert ei.value.response["Error"]["Code"] in ("AccessDeniedException", "RepositoryNotFoundException")
    aws(reg, "update-image-storage-class", "--repository-name", REPO, "--image-id",
        f"imageTag=hot,imageDigest={cold.digest}", "--target-storage-class", "ARCHIVE",
        expect_error="InvalidParameterException")
    assert status_of(ecr, hot.digest) == "ACTIVE" and status_of(ecr, cold.digest) == "ACTIVE"

    # Lifecycle: keep the newest standard image, archive the rest.
    policy = json.dumps({"rules": [{
        "rulePriority": 1, "description": "archive all but the newest",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
        "action": {"type": "transition", "targetStorageClass": "archive"}}]})
    ecr.put_lifecycle_policy(repositoryName=REPO, lifecyclePolicyText=policy)
    report = kura(reg, "lifecycle", "run")
    assert report["transitioned"] == 1 and report["expired"] == 0, report
    assert status_of(ecr, cold.digest) == "ARCHIVED"
    assert status_of(ecr, hot.digest) == "ACTIVE"
    assert manifest_get(reg, "hot").status_code == 200
