#!/usr/bin/env bash
# Soak: a mixed load (forwarding through `xdpos forward --role router`, UDP echoes, a TCP echo
# stream, TCP connection churn through `xdpos echo`) for MINUTES (default 10), printing both
# processes' resident memory and the load's counters every 5 s, then the frame accounting,
# the drops and the totals. Fails if memory grows after warm-up, a frame is unaccounted for,
# anything is dropped or lost. CI runs the same test for 45 s (`scripts/test.sh`).
#
#   scripts/soak.sh [MINUTES]        (root; builds the test and the xdpos binary first)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
minutes=${1:-10}
cargo build --locked -q -p xdpos
XDPOS_SOAK_SECONDS=$(awk "BEGIN {print int($minutes * 60)}") \
  cargo test --locked -q -p xdpos-tests --test soak -- --nocapture
