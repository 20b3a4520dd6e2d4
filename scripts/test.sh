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

step "unsafe code only in nic"
if grep -rn --include='*.rs' -E '\bunsafe\b' appliance libos config tests benches \
     | grep -v 'forbid(unsafe_code)'; then
  echo "unsafe code outside nic (see above)" >&2
  exit 1
fi

step "build (the integration tests run the xdpos binary)"
cargo build --workspace --locked -q

step "tests"
cargo test --workspace --locked

step "leftovers"
left=$(ip netns list | grep '^xdpos-' || true)
if [ -n "$left" ]; then
  echo "namespaces left behind: $left" >&2
  exit 1
fi
echo "all tests passed"
