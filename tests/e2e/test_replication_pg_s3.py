"""Replication between two deployments whose stores are PostgreSQL and S3 (each its own
database and bucket prefix): the same tests as test_replication.py's, run under
scripts/with-postgres-s3 (scripts/test.sh does; skipped elsewhere unless
KURA_REQUIRE_S3=1, which turns the skip into a failure):

    scripts/with-postgres-s3 python3 -m pytest tests/e2e/test_replication_pg_s3.py -v

The tests are imported from test_replication.py; they get this module's `fed`.
"""
import os

import pytest

from helpers import require_tool
from repl_util import Federation, pg_s3_stores
from test_replication import (  # noqa: F401 (collected here with this module's fixture)
    test_destination_down_then_up,
    test_destination_repository_from_a_replication_template,
    test_immutable_destination_tag_conflict_fails_and_leaves_it,
    test_kill9_of_the_source_mid_transfer,
    test_multiarch_index_replicates_with_its_children,
    test_prefix_rule_replicates_prod_and_not_dev,
    test_tag_move_on_a_mutable_repository_replicates,
)

pytestmark = pytest.mark.skipif(
    os.environ.get("KURA_E2E_STANDIN") == "distribution",
    reason="the stand-in registry has no replication",
)


@pytest.fixture(autouse=True)
def _tools():
    require_tool("aws", "skopeo")


@pytest.fixture
def fed(tmp_path):
    f = Federation(tmp_path / "fed", stores=pg_s3_stores()).start()
    yield f
    f.stop()
