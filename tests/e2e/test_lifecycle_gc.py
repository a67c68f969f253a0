"""Lifecycle policies and garbage collection, end to end.

1. With the real `aws` CLI: an IMMUTABLE repository gets images pushed by
   skopeo, a lifecycle policy, an asynchronous preview (filters, pagination),
   then `kura lifecycle run` while the server is up. The run must expire
   exactly what the preview listed, tag immutability notwithstanding, and a
   second run must expire nothing.
2. `kura gc`: the default grace keeps blobs uploaded a moment ago; a dry run
   with `--gc-grace 0s` counts the expired images' blobs and deletes nothing;
   the real run deletes what the dry run counted; every surviving image still
   pulls completely.
3. With boto3: PutLifecyclePolicy refuses invalid policies with a reason, and
   the not-found errors of Get/Delete/GetPreview.
"""
import json
import os
import subprocess
import time

import pytest
import requests
from botocore.exceptions import ClientError

from helpers import ACCEPT, creds, require_tool, run
from images import Layout, make_rng, random_layer, sha256_digest

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no ECR API and no kura subcommands",
)

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
REPO = "lc/app"


def kura_bin():
    return os.environ.get("KURA_BIN", os.path.join(REPO_ROOT, "target", "release", "kura"))


# ---------------------------------------------------------------- helpers


class Aws:
    """`aws ecr ...` against the registry, JSON output."""

    def __init__(self, registry):
        self.registry = registry
        self.env = registry.aws_env()

    def __call__(self, *args, expect_error=None):
        argv = ["aws", "ecr", *args, "--endpoint-url", self.registry.url, "--output", "json"]
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=120)
        what = "aws ecr %s -> exit %d\nstdout: %s\nstderr: %s\n--- registry log ---\n%s" % (
            " ".join(args), p.returncode, p.stdout[-3000:], p.stderr[-3000:],
            self.registry.log()[-3000:])
        if expect_error:
            assert p.returncode != 0 and "(%s)" % expect_error in p.stderr, "expected %s\n%s" % (
                expect_error, what)
            return p.stderr
        assert p.returncode == 0, what
        return json.loads(p.stdout) if p.stdout.strip() else None


def kura(registry, *args):
    """Run `kura <args>` on the registry's data directory while the server runs
    (same environment as the server, RUST_LOG included); returns its JSON report."""
    env = registry.aws_env()
    env.setdefault("RUST_LOG", "info")
    # Only the flags given here may tune the run.
    for k in ("KURA_GC_GRACE", "KURA_UPLOAD_MAX_AGE", "KURA_DATA_DIR", "KURA_LOG_FORMAT"):
        env.pop(k, None)
    argv = [kura_bin(), *args, "--data-dir", registry.data_dir]
    p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, "%s -> exit %d\nstdout: %s\nstderr: %s\n--- registry log ---\n%s" % (
        " ".join(argv), p.returncode, p.stdout, p.stderr[-3000:], registry.log()[-3000:])
    try:
        return json.loads(p.stdout)
    except ValueError:
        pytest.fail("%s printed no JSON report on stdout:\n%s\nstderr:\n%s" % (
            " ".join(argv), p.stdout, p.stderr[-3000:]))


def blob_files(registry):
    """{relative path: size} of every file in the blob store's blobs/ tree."""
    root = os.path.join(registry.data_dir, "blobs", "blobs")
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = os.path.getsize(p)
    return out


def blob_digests_on_disk(registry):
    """The digests the blob store holds files for (`sha256/ab/<hex>/<upload>`)."""
    return {"sha256:" + rel.split(os.sep)[2] for rel in blob_files(registry)}


def skopeo_push(registry, layout, src_tag, dest_ref):
    run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
         "--dest-creds", creds(registry), "oci:%s:%s" % (layout.path, src_tag),
         "docker://%s/%s" % (registry.host, dest_ref)], registry=registry)


def skopeo_pull_and_verify(registry, ref, dest_dir, want_digest):
    """Pull `REPO<ref>` into an OCI layout and check every blob's sha256."""
    run(["skopeo", "copy", "--preserve-digests", "--src-tls-verify=false",
         "--src-creds", creds(registry), "docker://%s/%s%s" % (registry.host, REPO, ref),
         "oci:%s:pulled" % dest_dir], registry=registry)
    out = Layout(dest_dir)
    desc = out.resolve("pulled")
    assert desc["digest"] == want_digest, (ref, desc)
    walked = out.walk(desc["digest"])
    for digest, _ in walked:
        out.blob(digest)  # asserts sha256(content) == digest
    return [d for d, _ in walked]


def policy_text(rules):
    return json.dumps({"rules": rules}, indent=2)


# The policy of test 1. Pushed in this order: release-1..3, dev-1..2, two untagged.
#   rule 1 keeps the newest release-* image: release-1 and release-2 expire;
#   rule 2 keeps the newest untagged image: the older untagged one expires;
#   rule 3 ("any", applied last) keeps the 3 newest images of the repository,
#     counting the ones rules 1 and 2 selected (both untagged and dev-2 are the
#     newest three) but unable to expire them: only dev-1 expires.
POLICY = [
    {"rulePriority": 1, "description": "keep the newest release",
     "selection": {"tagStatus": "tagged", "tagPatternList": ["release-*"],
                   "countType": "imageCountMoreThan", "countNumber": 1},
     "action": {"type": "expire"}},
    {"rulePriority": 2, "description": "keep one untagged image",
     "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan", "countNumber": 1},
     "action": {"type": "expire"}},
    {"rulePriority": 3, "description": "keep the newest 3 images",
     "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 3},
     "action": {"type": "expire"}},
]
EXPECTED_RULE = {"release-1": 1, "release-2": 1, "untagged-1": 2, "dev-1": 3}
SURVIVORS = ["release-3", "dev-2", "untagged-2"]
PUSH_ORDER = ["release-1", "release-2", "release-3", "dev-1", "dev-2", "untagged-1", "untagged-2"]


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws", "skopeo")


# ---------------------------------------------------------------- 1 + 2


def test_lifecycle_preview_run_then_gc(registry, tmp_path):
    reg = registry
    aws = Aws(reg)
    ecr = reg.ecr()

    out = aws("create-repository", "--repository-name", REPO, "--image-tag-mutability", "IMMUTABLE")
    assert out["repository"]["imageTagMutability"] == "IMMUTABLE"

    # -- images: a shared base layer plus one layer of its own each.
    rng = make_rng()
    src = Layout(tmp_path / "src")
    base = random_layer(rng, nfiles=2, min_size=2048, max_size=16384)[0]
    images = {}  # name -> {"digest", "blobs": [config, own layer]}
    for name in PUSH_ORDER:
        own = random_layer(rng, nfiles=2, min_size=1024, max_size=8192)[0]
        desc = src.add_image([base, own], tag=name)
        manifest = src.json_blob(desc["digest"])
        images[name] = {
            "digest": desc["digest"],
            "blobs": [manifest["config"]["digest"], manifest["layers"][1]["digest"]],
            "sizes": [manifest["config"]["size"], manifest["layers"][1]["size"]],
        }
    base_digest = sha256_digest(base)
    for name in PUSH_ORDER:
        if name.startswith("untagged"):
            # Pushed by digest: the image never has a tag.
            skopeo_push(reg, src, name, "%s@%s" % (REPO, images[name]["digest"]))
        else:
            skopeo_push(reg, src, name, "%s:%s" % (REPO, name))
        time.sleep(0.05)  # distinct push times

    by_digest = {v["digest"]: k for k, v in images.items()}
    described = {d["imageDigest"]: d for d in aws("describe-images", "--repository-name", REPO)["imageDetails"]}
    assert set(described) == set(by_digest), described
    for digest, d in described.items():
        name = by_digest[digest]
        want_tags = [] if name.startswith("untagged") else [name]
        assert sorted(d.get("imageTags", [])) == want_tags, d
    pushed = [described[images[n]["digest"]]["imagePushedAt"] for n in PUSH_ORDER]
    assert pushed == sorted(pushed) and len(set(pushed)) == len(pushed), (
        "push times must follow the push order: %s" % list(zip(PUSH_ORDER, pushed)))

    # -- the policy, from a file.
    policy_file = tmp_path / "policy.json"
    text = policy_text(POLICY)
    policy_file.write_text(text)
    out = aws("put-lifecycle-policy", "--repository-name", REPO,
              "--lifecycle-policy-text", "file://%s" % policy_file)
    assert out["repositoryName"] == REPO and out["registryId"] == reg.account_id
    assert json.loads(out["lifecyclePolicyText"]) == {"rules": POLICY}
    got = aws("get-lifecycle-policy", "--repository-name", REPO)
    assert got["repositoryName"] == REPO and got["registryId"] == reg.account_id
    assert json.loads(got["lifecyclePolicyText"]) == {"rules": POLICY}

    # -- the preview.
    aws("get-lifecycle-policy-preview", "--repository-name", REPO,
        expect_error="LifecyclePolicyPreviewNotFoundException")
    started = aws("start-lifecycle-policy-preview", "--repository-name", REPO)
    assert started["status"] == "IN_PROGRESS", started
    assert started["repositoryName"] == REPO
    assert json.loads(started["lifecyclePolicyText"]) == {"rules": POLICY}
    deadline = time.time() + 20
    while True:
        preview = aws("get-lifecycle-policy-preview", "--repository-name", REPO)
        if preview["status"] != "IN_PROGRESS":
            break
        assert time.time() < deadline, "the preview is still IN_PROGRESS: %s" % preview
        time.sleep(0.2)
    assert preview["status"] == "COMPLETE", preview
    assert json.loads(preview["lifecyclePolicyText"]) == {"rules": POLICY}
    results = preview["previewResults"]
    assert preview["summary"]["expiringImageTotalCount"] == len(EXPECTED_RULE) == len(results), preview
    got_rules = {}
    for r in results:
        name = by_digest[r["imageDigest"]]
        got_rules[name] = r["appliedRulePriority"]
        assert r["action"] == {"type": "EXPIRE"}, r
        want_tags = [] if name.startswith("untagged") else [name]
        assert sorted(r.get("imageTags", [])) == want_tags, r
        assert r["imagePushedAt"] == described[r["imageDigest"]]["imagePushedAt"], (r, described[r["imageDigest"]])
    assert got_rules == EXPECTED_RULE, results
    expiring = {r["imageDigest"] for r in results}

    # Only tagged images.
    tagged = aws("get-lifecycle-policy-preview", "--repository-name", REPO,
                 "--filter", "tagStatus=TAGGED")
    assert {by_digest[r["imageDigest"]] for r in tagged["previewResults"]} == {
        "release-1", "release-2", "dev-1"}, tagged
    assert all(r["imageTags"] for r in tagged["previewResults"])
    assert tagged["summary"]["expiringImageTotalCount"] == len(EXPECTED_RULE), tagged
    untagged = aws("get-lifecycle-policy-preview", "--repository-name", REPO,
                   "--filter", "tagStatus=UNTAGGED")
    assert [by_digest[r["imageDigest"]] for r in untagged["previewResults"]] == ["untagged-1"], untagged
    assert untagged["previewResults"][0].get("imageTags", []) == []
    # One result a page.
    pages, token = [], None
    for _ in range(10):
        args = ["get-lifecycle-policy-preview", "--repository-name", REPO,
                "--max-results", "1", "--no-paginate"]
        if token:
            args += ["--next-token", token]
        page = aws(*args)
        assert page["status"] == "COMPLETE"
        assert len(page["previewResults"]) <= 1, page
        pages.extend(page["previewResults"])
        token = page.get("nextToken")
        if not token:
            break
    assert token is None, "pagination did not end"
    assert len(pages) == len(results), pages
    assert sorted(json.dumps(p, sort_keys=True) for p in pages) == sorted(
        json.dumps(r, sort_keys=True) for r in results)
    assert len({p["imageDigest"] for p in pages}) == len(pages), "a page repeated a result: %s" % pages

    # Nothing expired yet.
    assert len(aws("describe-images", "--repository-name", REPO)["imageDetails"]) == len(PUSH_ORDER)

    # -- the real run, while the server is up.
    files_before_run = blob_files(reg)
    t0 = time.time()
    report = kura(reg, "lifecycle", "run")
    t1 = time.time()
    assert report == {"skipped": False, "repositories": 1, "expired": len(EXPECTED_RULE),
                      "transitioned": 0, "kept_referenced": 0, "invalid_policies": 0}, report
    left = {d["imageDigest"]: d for d in aws("describe-images", "--repository-name", REPO)["imageDetails"]}
    assert set(left) == set(described) - expiring, "the run expired something other than the preview"
    assert {by_digest[d] for d in left} == set(SURVIVORS)
    for digest, d in left.items():
        name = by_digest[digest]
        assert sorted(d.get("imageTags", [])) == ([] if name.startswith("untagged") else [name]), d
    repo = aws("describe-repositories", "--repository-names", REPO)["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    listed = aws("list-images", "--repository-name", REPO)["imageIds"]
    assert {i["imageDigest"] for i in listed} == set(left), listed
    # The data plane agrees: expired manifests are gone, by tag and by digest.
    s = requests.Session()
    s.auth = reg.auth
    for name in EXPECTED_RULE:
        refs = [images[name]["digest"]] + ([] if name.startswith("untagged") else [name])
        for ref in refs:
            r = s.get("%s/v2/%s/manifests/%s" % (reg.url, REPO, ref), headers={"Accept": ACCEPT}, timeout=30)
            assert r.status_code == 404, (name, ref, r.status_code, r.text)
    tags = s.get("%s/v2/%s/tags/list" % (reg.url, REPO), timeout=30).json().get("tags") or []
    assert sorted(tags) == ["dev-2", "release-3"], tags
    # Expiry deletes no bytes by itself.
    assert blob_files(reg) == files_before_run

    got = aws("get-lifecycle-policy", "--repository-name", REPO)
    assert "lastEvaluatedAt" in got, got
    assert t0 - 2 <= got["lastEvaluatedAt"] <= t1 + 2, (t0, got["lastEvaluatedAt"], t1)

    # Each expiry left a PolicyExecutionEvent record on the audit trail:
    # CloudTrail's service event, its details in serviceEventDetails.
    p = subprocess.run([kura_bin(), "audit", "--data-dir", reg.data_dir, "--account", reg.account_id,
                        "--event-name", "PolicyExecutionEvent"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    events = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    expiries = [e for e in events if e["eventName"] == "PolicyExecutionEvent"]
    assert sorted(e["serviceEventDetails"]["imageDigest"] for e in expiries) == sorted(expiring), events
    for e in expiries:
        assert e["eventType"] == "AwsServiceEvent" and e["eventSource"] == "ecr.amazonaws.com"
        assert e["recipientAccountId"] == reg.account_id
        d = e["serviceEventDetails"]
        assert d["repositoryName"] == REPO
        assert d["actionType"] == "EXPIRE" and d["result"] == "SUCCESS"
        assert d["appliedRulePriority"] == EXPECTED_RULE[by_digest[d["imageDigest"]]]

    # Idempotent.
    again = kura(reg, "lifecycle", "run")
    assert again == {"skipped": False, "repositories": 1, "expired": 0, "transitioned": 0,
                     "kept_referenced": 0, "invalid_policies": 0}, again
    assert set(d["imageDigest"] for d in ecr.describe_images(repositoryName=REPO)["imageDetails"]) == set(left)

    # ------------------------------------------------------------ GC
    # The blobs only the expired images used: their configs and own layers.
    garbage = {}
    for name in EXPECTED_RULE:
        garbage.update(zip(images[name]["blobs"], images[name]["sizes"]))
    keep = {base_digest}
    for name in SURVIVORS:
        keep.update(images[name]["blobs"])
    on_disk = blob_digests_on_disk(reg)
    assert set(garbage) | keep == on_disk, "unexpected blob files: %s" % (on_disk ^ (set(garbage) | keep))

    # The default grace (1 h) collects nothing pushed a moment ago, dry or not.
    files = blob_files(reg)
    dflt_dry = kura(reg, "gc", "--dry-run")
    assert dflt_dry["dry_run"] is True and dflt_dry["blobs_deleted"] == 0 and dflt_dry["bytes_freed"] == 0, dflt_dry
    dflt = kura(reg, "gc")
    assert dflt["dry_run"] is False and dflt["skipped"] is False, dflt
    assert dflt["blobs_deleted"] == 0 and dflt["bytes_freed"] == 0 and dflt["links_removed"] == 0, dflt
    assert blob_files(reg) == files

    # Dry run without grace: counts, deletes nothing.
    dry = kura(reg, "gc", "--dry-run", "--gc-grace", "0s")
    assert dry["dry_run"] is True and dry["skipped"] is False, dry
    assert dry["blobs_deleted"] > 0 and dry["bytes_freed"] > 0, dry
    assert dry["blobs_deleted"] == len(garbage), (dry, garbage)
    assert dry["bytes_freed"] == sum(garbage.values()), (dry, garbage)
    assert dry["uploads_purged"] == 0 and dry["store_deletes"] == 0, dry
    assert blob_files(reg) == files, "a dry run deleted files"
    assert len(aws("describe-images", "--repository-name", REPO)["imageDetails"]) == len(SURVIVORS)

    # The real run deletes what the dry run counted.
    real = kura(reg, "gc", "--gc-grace", "0s")
    assert real["dry_run"] is False and real["skipped"] is False, real
    for k in ("uploads_purged", "links_removed", "blobs_deleted", "bytes_freed"):
        assert real[k] == dry[k], "gc reported %s=%s, the dry run %s\ndry: %s\nreal: %s" % (
            k, real[k], dry[k], dry, real)
    assert real["store_delete_failures"] == 0, real
    assert real["store_deletes"] >= real["blobs_deleted"], real
    after = blob_files(reg)
    assert len(after) == len(files) - len(garbage), (len(files), len(after), len(garbage))
    assert blob_digests_on_disk(reg) == keep
    # An expired image's own layer is gone from the data plane too.
    for name in EXPECTED_RULE:
        layer = images[name]["blobs"][1]
        r = s.get("%s/v2/%s/blobs/%s" % (reg.url, REPO, layer), timeout=30)
        assert r.status_code == 404, (name, layer, r.status_code)

    # Nothing left to collect.
    dry2 = kura(reg, "gc", "--dry-run", "--gc-grace", "0s")
    assert dry2["blobs_deleted"] == 0 and dry2["bytes_freed"] == 0 and dry2["links_removed"] == 0, dry2
    assert blob_files(reg) == after

    # Every survivor pulls completely, bytes verified.
    for name in SURVIVORS:
        ref = "@" + images[name]["digest"] if name.startswith("untagged") else ":" + name
        pulled = skopeo_pull_and_verify(reg, ref, str(tmp_path / ("pull-" + name)), images[name]["digest"])
        assert set(images[name]["blobs"]) | {base_digest} <= set(pulled), pulled
    # ... and the registry still has them.
    assert {by_digest[d["imageDigest"]] for d in
            ecr.describe_images(repositoryName=REPO)["imageDetails"]} == set(SURVIVORS)


# ---------------------------------------------------------------- 3


def _rule(priority, **selection):
    action = selection.pop("action", {"type": "expire"})
    return {"rulePriority": priority, "selection": selection, "action": action}


VALID_RULE = dict(tagStatus="untagged", countType="imageCountMoreThan", countNumber=5)

INVALID = [
    ("duplicate rulePriority",
     policy_text([_rule(1, **VALID_RULE),
                  _rule(1, tagStatus="tagged", tagPrefixList=["v"], countType="imageCountMoreThan", countNumber=1)]),
     ["rulePriority"]),
    ("tagStatus any not applied last",
     policy_text([_rule(1, tagStatus="any", countType="imageCountMoreThan", countNumber=3),
                  _rule(2, tagStatus="tagged", tagPrefixList=["v"], countType="imageCountMoreThan", countNumber=1)]),
     ["any"]),
    ("tagged without tagPrefixList or tagPatternList",
     policy_text([_rule(1, tagStatus="tagged", countType="imageCountMoreThan", countNumber=1)]),
     ["tagPrefixList", "tagPatternList"]),
    ("countUnit with imageCountMoreThan",
     policy_text([_rule(1, tagStatus="untagged", countType="imageCountMoreThan", countUnit="days",
                        countNumber=1)]),
     ["countUnit"]),
    ("sinceImagePushed without countUnit",
     policy_text([_rule(1, tagStatus="untagged", countType="sinceImagePushed", countNumber=7)]),
     ["countUnit"]),
    ("five wildcards in a pattern",
     policy_text([_rule(1, tagStatus="tagged", tagPatternList=["a*b*c*d*e*f"],
                        countType="imageCountMoreThan", countNumber=1)]),
     ["wildcard"]),
    ("action type delete",
     policy_text([_rule(1, action={"type": "delete"}, **VALID_RULE)]),
     ["expire"]),
    # (botocore refuses texts under 100 characters before sending them)
    ("malformed JSON",
     policy_text([_rule(1, **VALID_RULE)]).rstrip().rstrip("}"),
     ["JSON"]),
]


def _error(excinfo):
    err = excinfo.value.response["Error"]
    return err["Code"], err.get("Message", "")


def test_lifecycle_policy_validation_and_not_found(registry):
    ecr = registry.ecr()
    repo = "lc/validate"
    ecr.create_repository(repositoryName=repo, imageTagMutability="IMMUTABLE")

    # No policy yet.
    for call in (ecr.get_lifecycle_policy, ecr.delete_lifecycle_policy):
        with pytest.raises(ClientError) as e:
            call(repositoryName=repo)
        code, msg = _error(e)
        assert code == "LifecyclePolicyNotFoundException", (call, code, msg)
        assert repo in msg, msg
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert _error(e)[0] == "LifecyclePolicyPreviewNotFoundException", _error(e)
    # A preview of the stored policy needs one.
    with pytest.raises(ClientError) as e:
        ecr.start_lifecycle_policy_preview(repositoryName=repo)
    assert _error(e)[0] == "LifecyclePolicyNotFoundException", _error(e)

    # Invalid policies, each refused with its reason.
    for what, text, words in INVALID:
        with pytest.raises(ClientError) as e:
            ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)
        code, msg = _error(e)
        assert code == "InvalidParameterException", (what, code, msg)
        for w in words:
            assert w.lower() in msg.lower(), "%s: the message gives no reason (%r missing): %s" % (what, w, msg)
        # A preview of the same text is refused the same way.
        with pytest.raises(ClientError) as e:
            ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=text)
        assert _error(e)[0] == "InvalidParameterException", (what, _error(e))
    # Nothing was stored.
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy(repositoryName=repo)
    assert _error(e)[0] == "LifecyclePolicyNotFoundException"
    with pytest.raises(ClientError) as e:
        ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert _error(e)[0] == "LifecyclePolicyPreviewNotFoundException", _error(e)

    # A valid policy; an invalid one does not replace it.
    good = policy_text([_rule(1, **VALID_RULE)])
    out = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=good)
    assert out["lifecyclePolicyText"] == good
    with pytest.raises(ClientError) as e:
        ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=INVALID[0][1])
    assert _error(e)[0] == "InvalidParameterException"
    got = ecr.get_lifecycle_policy(repositoryName=repo)
    assert got["lifecyclePolicyText"] == good and got["repositoryName"] == repo
    assert got["registryId"] == registry.account_id

    # Delete returns it; afterwards it is gone.
    deleted = ecr.delete_lifecycle_policy(repositoryName=repo)
    assert deleted["lifecyclePolicyText"] == good and deleted["repositoryName"] == repo
    for call in (ecr.get_lifecycle_policy, ecr.delete_lifecycle_policy):
        with pytest.raises(ClientError) as e:
            call(repositoryName=repo)
        assert _error(e)[0] == "LifecyclePolicyNotFoundException", (call, _error(e))

    # A repository that does not exist.
    with pytest.raises(ClientError) as e:
        ecr.put_lifecycle_policy(repositoryName="lc/missing", lifecyclePolicyText=good)
    assert _error(e)[0] == "RepositoryNotFoundException", _error(e)


# ---------------------------------------------------------------- manifest lists


def test_images_an_index_lists_are_kept_by_preview_and_run_alike(registry, tmp_path):
    """AWS: an image a manifest list references cannot expire before the list.
    The preview must show exactly what the run then does."""
    from images import random_multiarch

    reg = registry
    aws = Aws(reg)
    layout = Layout(str(tmp_path / "idx"))
    random_multiarch(layout, make_rng(), "multi")
    run(["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", "--dest-creds", creds(reg),
         "oci:%s:multi" % layout.path, "docker://%s/p/idx:multi" % reg.host], registry=reg)
    images = aws("describe-images", "--repository-name", "p/idx")["imageDetails"]
    assert sum(1 for i in images if not i.get("imageTags")) == 2, images
    policy = policy_text([{"rulePriority": 1, "description": "keep one untagged image",
                           "selection": {"tagStatus": "untagged", "countType": "imageCountMoreThan",
                                         "countNumber": 1},
                           "action": {"type": "expire"}}])
    aws("put-lifecycle-policy", "--repository-name", "p/idx", "--lifecycle-policy-text", policy)
    aws("start-lifecycle-policy-preview", "--repository-name", "p/idx")
    deadline = time.time() + 30
    while True:
        preview = aws("get-lifecycle-policy-preview", "--repository-name", "p/idx")
        if preview["status"] != "IN_PROGRESS" or time.time() > deadline:
            break
        time.sleep(0.2)
    assert preview["status"] == "COMPLETE", preview
    assert preview.get("previewResults", []) == [], preview
    assert preview["summary"]["expiringImageTotalCount"] == 0, preview
    report = kura(reg, "lifecycle", "run")
    assert report["expired"] == 0 and report["kept_referenced"] == 1, report
    after = aws("describe-images", "--repository-name", "p/idx")["imageDetails"]
    assert len(after) == len(images)
