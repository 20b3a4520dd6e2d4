#!/usr/bin/env bash
# Soak: a mixed load on two daemons started from TOML configurations (`xdpos run --config`):
# forwarding through a router-role daemon, and UDP echoes, a TCP echo stream and TCP connection
# churn against a server-role daemon, for MINUTES (default 10). Prints both daemons' resident
# memory and the load's counters every 5 s, then the totals, the drops read from each daemon's
# /metrics, the kernel clients' retransmissions by kind, and the workers' frame accounting at
# SIGTERM. Fails if memory grows after warm-up, a frame is unaccounted for, anything is dropped
# or lost, or a kernel client found a loss. CI runs the same test for 45 s (`cargo test
# --workspace` in scripts/test.sh).
#
#   scripts/soak.sh [MINUTES]        (root; builds the test and the xdpos binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
minutes=${1:-10}
cargo build --locked -q -p xdpos
XDPOS_SOAK_SECONDS=$(awk "BEGIN {print int($minutes * 60)}") \
  cargo test --locked -q -p xdpos-tests --test soak -- --nocapture
