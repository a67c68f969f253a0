"""Pull-through cache rules with real clients: boto3 (every response checked
against botocore's newest ECR model) and the aws CLI, against a real upstream
(Debian's docker-registry, Distribution 2.8) that ValidatePullThroughCacheRule
really contacts.
"""
import json
import os
import subprocess
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

import ecr_util
from conftest import free_port
from helpers import require_tool

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no ECR API",
)


@pytest.fixture
def upstream(tmp_path):
    """An open docker-registry on 127.0.0.1; yields its address, stopped afterwards."""
    require_tool("docker-registry")
    port = free_port()
    cfg = tmp_path / "upstream.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n"
        "http:\n  addr: 127.0.0.1:%d\n" % (tmp_path / "upstream-data", port)
    )
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while True:
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/v2/" % port, timeout=1):
                break
        except Exception:
            assert time.time() < deadline, "docker-registry did not start"
            time.sleep(0.05)
    yield proc, "127.0.0.1:%d" % port
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=10)


def code(e):
    return e.response["Error"]["Code"]


def test_rules_with_boto3_and_a_real_upstream(bare_registry, upstream):
    proc, addr = upstream
    ecr = ecr_util.client(bare_registry)
    url = "http://" + addr
    out = ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="mirror", upstreamRegistryUrl=url)
    assert out["ecrRepositoryPrefix"] == "mirror" and out["upstreamRegistryUrl"] == url
    assert out["registryId"] == bare_registry.account_id
    assert "upstreamRegistry" not in out  # a registry ECR does not know by name
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="ecr-public", upstreamRegistryUrl="public.ecr.aws")

    rules = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert [r["ecrRepositoryPrefix"] for r in rules] == ["ecr-public", "mirror"]
    assert rules[0]["upstreamRegistry"] == "ecr-public"
    pages = list(ecr.get_paginator("describe_pull_through_cache_rules").paginate(PaginationConfig={"PageSize": 1}))
    assert [p["pullThroughCacheRules"][0]["ecrRepositoryPrefix"] for p in pages] == ["ecr-public", "mirror"]

    v = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="mirror")
    assert v["isValid"] is True and "failure" not in v, v
    # The upstream goes away: validation says so, naming it.
    proc.terminate()
    proc.wait(timeout=10)
    v = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="mirror")
    assert v["isValid"] is False and addr in v["failure"], v

    # ECR's errors.
    with pytest.raises(ClientError) as e:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="mirror/", upstreamRegistryUrl=url)
    assert code(e.value) == "PullThroughCacheRuleAlreadyExistsException"
    with pytest.raises(ClientError) as e:
        ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="hub", upstreamRegistryUrl="registry-1.docker.io")
    assert code(e.value) == "InvalidParameterException"
    with pytest.raises(ClientError) as e:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix="hub", upstreamRegistryUrl="registry-1.docker.io",
            credentialArn="arn:aws:secretsmanager:%s:%s:secret:ecr-pullthroughcache/none-AbCdEf"
            % (bare_registry.region, bare_registry.account_id))
    assert code(e.value) in ("SecretNotFoundException", "UnableToAccessSecretException")
    with pytest.raises(ClientError) as e:
        ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["nope"])
    assert code(e.value) == "PullThroughCacheRuleNotFoundException"

    out = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="mirror")
    assert out["upstreamRegistryUrl"] == url
    with pytest.raises(ClientError) as e:
        ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="mirror")
    assert code(e.value) == "PullThroughCacheRuleNotFoundException"


def test_rules_with_the_aws_cli(bare_registry, upstream):
    require_tool("aws")
    _, addr = upstream
    env = bare_registry.aws_env()
    # The aws CLI v1 fetches parameters that look like http(s) URLs and sends
    # the body instead; an http:// upstream URL needs this setting.
    with open(env["AWS_CONFIG_FILE"], "a") as f:
        f.write("[default]\ncli_follow_urlparam = false\n")

    def aws(*args):
        return subprocess.run(["aws", "ecr", *args, "--endpoint-url", bare_registry.url, "--output", "json"],
                              env=env, capture_output=True, text=True, timeout=120)

    p = aws("create-pull-through-cache-rule", "--ecr-repository-prefix", "cli",
            "--upstream-registry-url", "http://" + addr)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["ecrRepositoryPrefix"] == "cli"
    p = aws("validate-pull-through-cache-rule", "--ecr-repository-prefix", "cli")
    assert p.returncode == 0 and json.loads(p.stdout)["isValid"] is True, p.stdout + p.stderr
    p = aws("describe-pull-through-cache-rules", "--ecr-repository-prefixes", "cli")
    assert p.returncode == 0 and json.loads(p.stdout)["pullThroughCacheRules"][0]["upstreamRegistryUrl"] == "http://" + addr
    p = aws("create-pull-through-cache-rule", "--ecr-repository-prefix", "gh", "--upstream-registry-url", "ghcr.io")
    assert p.returncode != 0 and "(InvalidParameterException)" in p.stderr, p.stderr
    p = aws("delete-pull-through-cache-rule", "--ecr-repository-prefix", "cli")
    assert p.returncode == 0, p.stderr
    p = aws("delete-pull-through-cache-rule", "--ecr-repository-prefix", "cli")
    assert p.returncode != 0 and "(PullThroughCacheRuleNotFoundException)" in p.stderr, p.stderr
