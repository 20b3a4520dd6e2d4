#!/usr/bin/env bash
# The README's second command: installs what is missing and runs the whole test suite: format
# and lint checks, the unsafe-code rule, unit and property tests, and the integration tests on
# real AF_XDP sockets, veth pairs and network namespaces (root required; nothing is skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -q -- -D warnings

step "fuzz crate: cargo fmt --check, clippy"
# fuzz/ is its own workspace (cargo-fuzz), outside the checks above.
cargo fmt --check --manifest-path fuzz/Cargo.toml
(cd fuzz && cargo clippy --locked -q --all-targets -- -D warnings)

step "cargo deny: licenses, duplicate versions, bans, sources, advisories"
cargo deny --locked check licenses bans sources
# The advisory database is a git repository on github.com: fetched where it can be; where it
# cannot (this CI machine reaches crates.io but not github.com), the dated snapshot in deny/ is
# checked instead, set up as cargo-deny expects it (a git repository under db-path).
if cargo deny --locked fetch db >/dev/null 2>&1; then
  cargo deny --locked check advisories
else
  snap=$(ls deny/rustsec-advisory-db-*.tar.xz | tail -1)
  echo "cargo deny: github.com unreachable; advisories from the snapshot $snap"
  advdir=$(mktemp -d)
  db="$advdir/advisory-db-3157b0e258782691"   # cargo-deny's directory name for db-urls[0]
  mkdir -p "$db"
  tar xJf "$snap" -C "$db"
  git -C "$db" init -q
  git -C "$db" add -A
  git -C "$db" -c user.name=snapshot -c user.email=snapshot@localhost commit -qm "$snap"
  sed "s#^db-path = .*#db-path = \"$advdir\"#" deny.toml > "$advdir/deny.toml"
  cargo deny --locked --offline --config "$advdir/deny.toml" check advisories
  rm -rf "$advdir"
fi

step "unsafe code only in nic"
# Every crate root outside nic forbids unsafe code, so the compiler enforces the rule.
roots="appliance/src/lib.rs appliance/src/main.rs libos/src/lib.rs config/src/lib.rs
       $(ls tests/*.rs benches/*.rs)"
for f in $roots; do
  grep -q '^#!\[forbid(unsafe_code)\]' "$f" || { echo "$f does not forbid unsafe code" >&2; exit 1; }
done

step "dashboards: Prometheus config and rules (promtool), rule unit tests"
promtool check config dashboards/prometheus.yml >/dev/null
(cd dashboards && promtool test rules rules_test.yml)

step "build (the integration tests run the xdpos binary)"
cargo build --workspace --locked -q

step "deployment: kubernetes-validate, promtool check config, systemd-analyze verify"
/opt/xdpos-tools/venv/bin/python scripts/check-deploy.py
promtool check config deploy/prometheus/prometheus.yml
# Debian's promtool is built without Kubernetes service discovery: where it rejects exactly that,
# the file was checked by check-deploy.py above (schema and relabelling); anything else fails.
if ! out=$(promtool check config deploy/prometheus/prometheus-kubernetes.yml 2>&1); then
  if echo "$out" | grep -q "field kubernetes_sd_configs not found"; then
    echo "promtool: built without Kubernetes discovery; prometheus-kubernetes.yml was checked" \
         "by scripts/check-deploy.py"
  else
    echo "$out" >&2
    exit 1
  fi
fi
# verify needs the unit's programs to exist: check a copy that runs the binary just built. It
# exits 0 on unknown keys and bad values (it only prints them), so any output fails.
unit_dir=$(mktemp -d)
sed "s|/usr/local/bin/xdpos|$PWD/target/debug/xdpos|g" deploy/systemd/xdpos.service \
  > "$unit_dir/xdpos.service"
verify=$(systemd-analyze verify "$unit_dir/xdpos.service" 2>&1) || true
rm -rf "$unit_dir"
if [ -n "$verify" ]; then
  echo "systemd-analyze verify deploy/systemd/xdpos.service:" >&2
  echo "$verify" >&2
  exit 1
fi
echo "deploy/systemd/xdpos.service: ok"

step "tests"
cargo test --workspace --locked

step "fuzzing: every target for 6 s from its corpus"
./scripts/fuzz.sh 6

step "DPDK backend (feature dpdk): clippy, nic's tests on net_ring, echo and router on net_af_packet"
# The default build above needs no DPDK; this builds nic, the appliance and its tests with it.
cargo clippy -p nic -p xdpos -p xdpos-tests --all-targets --features xdpos-tests/dpdk --locked -q \
  -- -D warnings
cargo build -p xdpos --features dpdk --locked -q
cargo test -p nic --features dpdk --locked --lib -- dpdk::
cargo test -p xdpos-tests --features dpdk --locked --test dpdk_kernel

step "leftovers"
# Namespaces of the rig are named xdpos-<tag>-<pid>-<n>; any whose process is gone leaked.
leaked=""
for ns in $(ip netns list | awk '/^xdpos-/ {print $1}'); do
  pid=$(echo "$ns" | awk -F- '{print $(NF-1)}')
  kill -0 "$pid" 2>/dev/null || leaked="$leaked $ns"
done
if [ -n "$leaked" ]; then
  echo "namespaces leaked by the tests:$leaked" >&2
  exit 1
fi
if ip -d -o link show | grep -q 'prog/xdp'; then
  echo "an XDP program is left attached in the root namespace" >&2
  exit 1
fi
echo "all tests passed"
