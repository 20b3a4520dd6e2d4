#!/usr/bin/env bash
# The README's first command: installs what is missing, builds xdpos (release), and runs the
# demo: an xdpos router and an xdpos server (`xdpos run` daemons) on a namespace rig it creates
# and removes, driven by kernel clients (ping, UDP echo, curl, iperf3). Extra arguments go to
# `xdpos demo` (e.g. --seconds 30).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -q -p xdpos
exec ./target/release/xdpos demo "$@"
