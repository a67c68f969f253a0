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
echo "== cargo test"
cargo test --release --workspace
echo "== cargo build (binary and benchmarks)"
cargo build --release -p kura
cargo bench --workspace --no-run

echo "== end-to-end tests with real clients"
export KURA_BIN="$PWD/target/release/kura"
python3 -m pytest tests/e2e -v -p no:cacheprovider "$@"
