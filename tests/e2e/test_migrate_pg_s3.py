"""`kura migrate`: an embedded registry (images, an IAM user with a key and a
policy, a repository policy, a lifecycle policy, resource tags) copied to
PostgreSQL + S3, killed with SIGKILL part-way through the blobs, run again
(it resumes and verifies), then served from PostgreSQL + S3: every image
pulls byte-exact and the metadata is all there.

Needs PostgreSQL and S3 (scripts/with-postgres-s3 sets KURA_DATABASE_URL and
KURA_S3_*); skipped without them unless KURA_REQUIRE_PG=1 / KURA_REQUIRE_S3=1.
Each test makes its own database (psql) and bucket prefix.
"""
import json
import os
import shutil
import signal
import subprocess
import uuid
from urllib.parse import urlsplit, urlunsplit

import boto3
import pytest
from botocore.config import Config

from conftest import Registry, free_port
from helpers import require_tool
from test_backup import clean_env, kura, kura_bin, make_images, pull_exact, push

_MISSING = [v for v in ("KURA_DATABASE_URL", "KURA_S3_BUCKET", "KURA_S3_ENDPOINT") if not os.environ.get(v)]
_REQUIRED = os.environ.get("KURA_REQUIRE_PG") == "1" or os.environ.get("KURA_REQUIRE_S3") == "1"
_WHY = "the migration test needs %s (run it under scripts/with-postgres-s3)" % " and ".join(_MISSING)

pytestmark = pytest.mark.skipif(bool(_MISSING) and not _REQUIRED, reason=_WHY)

S3_VARS = ("KURA_S3_ENDPOINT", "KURA_S3_BUCKET", "KURA_S3_REGION", "KURA_S3_ACCESS_KEY_ID", "KURA_S3_SECRET_ACCESS_KEY")
READ_ONLY = "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"
REPO_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "pull", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                   "Action": ["ecr:BatchGetImage"]}],
}
LIFECYCLE = {
    "rules": [{"rulePriority": 1, "description": "old untagged", "selection": {
        "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 30},
        "action": {"type": "expire"}}],
}


def fresh_database(base_url, name):
    require_tool("psql")
    p = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", base_url,
                        "-c", 'CREATE DATABASE "%s"' % name], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "creating database %s: %s" % (name, p.stderr)
    u = urlsplit(base_url)
    return urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def iam(reg, key=None, secret=None):
    return boto3.client("iam", endpoint_url=reg.url, region_name=reg.region,
                        aws_access_key_id=key or reg.access_key, aws_secret_access_key=secret or reg.secret_key,
                        config=Config(retries={"max_attempts": 1}))


def client(reg, service):
    return boto3.client(service, endpoint_url=reg.url, region_name=reg.region,
                        aws_access_key_id=reg.access_key, aws_secret_access_key=reg.secret_key,
                        config=Config(retries={"max_attempts": 1}))


def test_migrate_embedded_to_postgres_s3_resumes_after_kill9(registry, tmp_path):
    if _MISSING:
        pytest.fail(_WHY + " (KURA_REQUIRE_PG/S3=1)", pytrace=False)
    require_tool("skopeo")
    reg = registry
    tags = ["m1", "m2", "m3"]
    src = make_images(tmp_path, tags)
    for tag in tags:
        push(reg, src, tag, "mig/app-" + tag)
    ecr = reg.ecr()
    ecr.set_repository_policy(repositoryName="mig/app-m1", policyText=json.dumps(REPO_POLICY))
    ecr.put_lifecycle_policy(repositoryName="mig/app-m2", lifecyclePolicyText=json.dumps(LIFECYCLE))
    arn = ecr.describe_repositories(repositoryNames=["mig/app-m3"])["repositories"][0]["repositoryArn"]
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "team", "Value": "platform"}])
    i = iam(reg)
    i.create_user(UserName="puller")
    i.attach_user_policy(UserName="puller", PolicyArn=READ_ONLY)
    key = i.create_access_key(UserName="puller")["AccessKey"]
    client(reg, "secretsmanager").create_secret(Name="mig/db-password", SecretString="s3cr3t-value")
    client(reg, "events").put_rule(Name="on-push", EventPattern=json.dumps({"source": ["aws.ecr"]}))

    db = fresh_database(os.environ["KURA_DATABASE_URL"], "kura_migrate_%s" % uuid.uuid4().hex[:10])
    env = {v: os.environ[v] for v in S3_VARS if os.environ.get(v)}
    env["KURA_S3_PREFIX"] = "migrate-%s" % uuid.uuid4().hex
    env.pop("KURA_DATABASE_URL", None)
    args = ["migrate", "--data-dir", reg.data_dir, "--to", db, "--output", "json"]

    # The source must be stopped: a running server holds the data directory.
    p = kura(*args, env=env, check=False)
    assert p.returncode != 0 and b"stop it first" in p.stderr, p.stderr
    reg.stop()

    # Killed with SIGKILL while blobs are being copied.
    full = clean_env({**env, "KURA_MIGRATE_BLOB_DELAY_MS": "700"})
    m = subprocess.Popen([kura_bin(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full)
    lines = []
    while True:
        line = m.stderr.readline()
        assert line, "migrate ended before copying blobs: %s %s" % (lines, m.communicate())
        lines.append(line)
        if line.startswith("migrate: blobs: ") and not line.startswith("migrate: blobs: 0/"):
            break
    # Meanwhile the source stays read-only: a server does not start on it.
    try:
        p = subprocess.run([kura_bin(), "serve", "--listen", "127.0.0.1:%d" % free_port(), "--data-dir", reg.data_dir],
                           env=clean_env(), capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        m.kill()
        pytest.fail("kura serve started on a data directory being migrated")
    assert p.returncode != 0 and b"kura migrate is copying" in p.stderr, p.stderr
    m.send_signal(signal.SIGKILL)
    m.wait()
    # A server refuses the lock no more once the migration is gone; the
    # interrupted target is not usable yet, but the run resumes.
    p = kura(*args, env=env, timeout=300)
    summary = json.loads(p.stdout)
    assert summary["resumed"] and summary["verified"], summary
    assert 0 < summary["blobsCopied"] < summary["blobs"], summary
    assert summary["blobs"] >= 9 and summary["tables"]["manifests"] == 3, summary
    assert b"resuming" in p.stderr and b"ETA" in b"".join(l.encode() for l in lines) + p.stderr

    # Run again: nothing left to copy, verified again.
    again = json.loads(kura(*args, env=env, timeout=300).stdout)
    assert again["blobsCopied"] == 0 and again["verified"], again

    # Another source into the same (now non-empty) database is refused.
    other = tmp_path / "other-data"
    shutil.copytree(reg.data_dir, other)
    os.remove(other / "migrate-state.json")
    p = kura("migrate", "--data-dir", other, "--to", db, env=env, check=False)
    assert p.returncode != 0 and b"already holds data" in p.stderr, p.stderr

    # Serve from PostgreSQL + S3 with the source's master key, on a new, empty data directory.
    node = Registry(str(tmp_path / "node"), env={**env, "KURA_DATABASE_URL": db,
                                                  "KURA_MASTER_KEY_FILE": os.path.join(reg.data_dir, "master.key")})
    os.makedirs(node.workdir)
    node.start()
    try:
        node.login()
        for tag in tags:
            assert pull_exact(node, src, tag, "mig/app-" + tag, tmp_path / ("pulled-" + tag)) == 4
        assert not os.path.exists(os.path.join(node.data_dir, "blobs", "blobs")) or not any(
            fs for _, _, fs in os.walk(os.path.join(node.data_dir, "blobs", "blobs"))), "blobs come from S3"
        ecr = node.ecr()
        got = json.loads(ecr.get_repository_policy(repositoryName="mig/app-m1")["policyText"])
        assert got["Statement"][0]["Sid"] == "pull"
        got = json.loads(ecr.get_lifecycle_policy(repositoryName="mig/app-m2")["lifecyclePolicyText"])
        assert got["rules"][0]["description"] == "old untagged"
        assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "team", "Value": "platform"}]
        users = [u["UserName"] for u in iam(node).list_users()["Users"]]
        assert "puller" in users
        # Secrets Manager values (sealed with the master key) and EventBridge rules.
        got = client(node, "secretsmanager").get_secret_value(SecretId="mig/db-password")
        assert got["SecretString"] == "s3cr3t-value"
        rules = client(node, "events").list_rules()["Rules"]
        assert [r["Name"] for r in rules] == ["on-push"], rules
        # The user's access key (its secret sealed with the master key) still signs requests.
        as_user = boto3.client("ecr", endpoint_url=node.url, region_name=node.region,
                               aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                               config=Config(retries={"max_attempts": 1}))
        names = {r["repositoryName"] for r in as_user.describe_repositories()["repositories"]}
        assert {"mig/app-m1", "mig/app-m2", "mig/app-m3"} <= names
        # The new deployment takes pushes (identity columns continue past the copied ids).
        push(node, src, "m1", "mig/new-repo")
        assert pull_exact(node, src, "m1", "mig/new-repo", tmp_path / "pulled-new") == 4
    finally:
        node.stop()
