#!/usr/bin/env bash
# Kura's benchmarks against the reference registry (CNCF Distribution 2.8,
# Debian's docker-registry), on this machine, in one run.
#
#   bash bench/run.sh            # full run (about 20-30 minutes, ~25 GiB free disk in $TMPDIR)
#   bash bench/run.sh --quick    # smaller, a few minutes
#
# Builds the release binaries, installs docker-registry if it is missing
# (Debian/Ubuntu, as root), runs crates/kura-bench and writes the Markdown
# table to stdout and to BENCHMARKS-latest.md (override with --out FILE).
# Extra arguments go to kura-bench (see `target/release/kura-bench --help`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/docker-registry ]; then
    echo "== installing docker-registry (the reference registry)" >&2
    export DEBIAN_FRONTEND=noninteractive
    # Don't let the package's scripts start its service.
    POLICY_RC=/usr/sbin/policy-rc.d
    REMOVE_POLICY_RC=0
    if [ ! -e "$POLICY_RC" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$POLICY_RC"
        chmod +x "$POLICY_RC"
        REMOVE_POLICY_RC=1
    fi
    trap 'if [ "$REMOVE_POLICY_RC" = 1 ]; then rm -f "$POLICY_RC"; fi' EXIT
    apt-get update
    apt-get install -y --no-install-recommends docker-registry
fi

echo "== cargo build --release -p kura -p kura-bench" >&2
cargo build --release -p kura -p kura-bench

out_args=(--out BENCHMARKS-latest.md)
for a in "$@"; do
    case "$a" in --out|--out=*) out_args=() ;; esac
done

echo "== kura-bench $*" >&2
exec target/release/kura-bench \
    --kura-bin target/release/kura \
    --registry-bin /usr/bin/docker-registry \
    "${out_args[@]}" "$@"
