#!/usr/bin/env bash
# Kura's whole test run, from a fresh Debian 12 machine: installs the real
# clients the tests use (skip with KURA_SKIP_INSTALL=1), checks formatting and
# lints, runs the Rust tests (unit, router, store suites), then the end-to-end
# tests with real clients against the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${KURA_SKIP_INSTALL:-0}" != 1 ]; then
    bash .ci/install-deps.sh
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --release --workspace --all-targets -- -D warnings
# A real Debian root filesystem for the scanner's inventory test (about a minute). Needs root
# and the Debian mirror; without them that one test says it is skipped.
if [ -z "${KURA_TEST_DEBOOTSTRAP_DIR:-}" ] && [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null \
    && [ "${KURA_SKIP_DEBOOTSTRAP:-0}" != 1 ]; then
    echo "== debootstrap --variant=minbase bookworm (scanner inventory test)"
    root="$(mktemp -d /tmp/kura-bookworm.XXXXXX)"
    if timeout 900 debootstrap --variant=minbase bookworm "$root" "${KURA_DEBIAN_MIRROR:-http://deb.debian.org/debian}" \
        >"$root.log" 2>&1; then
        export KURA_TEST_DEBOOTSTRAP_DIR="$root"
    else
        echo "WARNING: debootstrap failed (see $root.log); the real-rootfs scanner test will be skipped"
        tail -5 "$root.log" || true
    fi
fi

echo "== cargo test"
cargo test --release --workspace
# The metadata and blob store suites again, against a throwaway PostgreSQL and
# S3 server (scripts/with-postgres-s3 starts and stops both); KURA_REQUIRE_*
# makes a suite fail instead of skipping when it cannot reach them. The
# router, ECR API, IAM, public and GC tests run again too, each test on a fresh
# PostgreSQL database (KURA_TEST_DATABASE_URL).
echo "== cargo test: store suites on PostgreSQL and S3; registry, ECR, GC, job and event delivery tests on PostgreSQL"
scripts/with-postgres-s3 env KURA_REQUIRE_PG=1 KURA_REQUIRE_S3=1 \
    cargo test --release -p kura-store --test meta --test blobstore --test jobs --test events --test replication \
    -p kura-registry --test router --test events -p kura-ecr --tests -p kura-gc --test gc --test archive \
    -p kura-jobs -p kura-events -p kura-audit -p kura-replication
echo "== cargo build (binary and benchmarks)"
cargo build --release -p kura
cargo bench --workspace --no-run

echo "== end-to-end tests with real clients"
# Registries of other accounts are addressed as <account>.dkr.<host>, as on
# ECR; the cross-account test needs these names to reach 127.0.0.1.
if [ "$(id -u)" = 0 ] && [ -w /etc/hosts ] && ! grep -q "123456789012.dkr.localhost" /etc/hosts; then
    echo "127.0.0.1 123456789012.dkr.localhost 210987654321.dkr.localhost" >> /etc/hosts
fi
export KURA_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/kura"
# Three nodes sharing one PostgreSQL database and one S3 bucket; replication between
# two deployments each on its own database and bucket prefix.
echo "== end-to-end: three nodes on PostgreSQL and S3; one node on S3; replication, the pull-through cache and kura migrate on PostgreSQL and S3"
scripts/with-postgres-s3 env KURA_REQUIRE_MULTINODE=1 KURA_REQUIRE_S3=1 \
    python3 -m pytest tests/e2e/test_multinode.py tests/e2e/test_s3.py tests/e2e/test_replication_pg_s3.py \
    tests/e2e/test_pull_through_pg_s3.py tests/e2e/test_migrate_pg_s3.py tests/e2e/test_metrics_pg_s3.py \
    -v -p no:cacheprovider -o tmp_path_retention_policy=failed
# A passed test's temporary directory (its registries' data) is deleted when it ends
# (tmp_path_retention_policy=failed), so the run's disk use stays at about one test's
# (a few GiB at most) instead of growing by every registry started; failed tests keep theirs.
# Everything else runs embedded (SQLite and the filesystem): conftest.py drops
# KURA_DATABASE_URL and KURA_S3_* from the servers it starts.
echo "== end-to-end: embedded"
python3 -m pytest tests/e2e -v -p no:cacheprovider -o tmp_path_retention_policy=failed --ignore=tests/e2e/test_multinode.py \
    --ignore=tests/e2e/test_s3.py --ignore=tests/e2e/test_replication_pg_s3.py --ignore=tests/e2e/test_pull_through_pg_s3.py \
    --ignore=tests/e2e/test_migrate_pg_s3.py --ignore=tests/e2e/test_metrics_pg_s3.py "$@"
