#!/usr/bin/env bash
# Installs what xdpos needs to build, test and benchmark on Debian 12, as root. Idempotent: it
# installs only what is missing, so a second run does nothing but check.
set -euo pipefail

PACKAGES=(
  # build: the XDP programs (clang, BPF headers), the vendored libbpf (libelf, zlib, make)
  build-essential clang llvm libbpf-dev libelf-dev zlib1g-dev pkg-config make linux-libc-dev
  # the namespace rig and kernel peers
  iproute2 ethtool iputils-ping procps nftables
  # real peers of the services: the stock iperf3 and sockperf clients; curl and wrk for HTTP
  iperf3 sockperf curl wrk
  # the deployment checks: systemd-analyze (the unit), a virtualenv for kubernetes-validate (the
  # Kubernetes manifests, below); promtool comes with prometheus (next)
  systemd python3-venv
  # observability: promtool (metrics lint, rule tests) and the prometheus server the dashboard
  # test scrapes xdpos with
  prometheus
  # benchmarks: DPDK testpmd (af_xdp driver) for side-by-side runs, a font for the plots
  dpdk dpdk-dev fonts-dejavu-core
  # inspection
  bpftool
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs packages, and xdpos needs CAP_NET_ADMIN/CAP_BPF)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Rust toolchain pinned in rust-toolchain.toml (rustup installs it on first use).
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing rustup"
    apt-get install -y -qq curl ca-certificates >/dev/null
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
cd "$(dirname "$0")/.."
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
# Fetch every crate now, so later steps need no network (fuzz/ is a workspace of its own).
cargo fetch --locked -q
cargo fetch --locked -q --manifest-path fuzz/Cargo.toml
# cargo-fuzz runs the fuzz targets, cargo-deny checks the dependency policy (deny.toml); both are
# built from crates.io once.
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked -q cargo-fuzz
command -v cargo-deny >/dev/null 2>&1 || cargo install --locked -q cargo-deny
# kubernetes-validate (PyPI; it bundles the Kubernetes JSON schemas, so the checks run offline)
# in a virtualenv of its own, for scripts/check-deploy.py.
DEPLOY_VENV=/opt/xdpos-tools/venv
if ! "$DEPLOY_VENV/bin/python" -c 'import kubernetes_validate' >/dev/null 2>&1; then
  echo "setup: installing kubernetes-validate into $DEPLOY_VENV"
  /usr/bin/python3 -m venv "$DEPLOY_VENV"
  "$DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check kubernetes-validate==1.37.0
fi
