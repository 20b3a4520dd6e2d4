#!/usr/bin/env bash
# Coverage-guided fuzzing of xdpos with cargo-fuzz (libFuzzer): builds every target of fuzz/
# (AddressSanitizer, optimizations with debug assertions and overflow checks), then runs each
# one for SECONDS, starting from its seed corpus in fuzz/corpus/<target>/ (read only: what
# libFuzzer finds goes to fuzz/corpus-run/<target>/, ignored by git) and the fixed crashes in
# fuzz/regressions/<target>/. Prints executions, coverage and corpus size per target. A crash,
# a leak, a timeout (-timeout s per input) or an out-of-memory fails the script; libFuzzer
# leaves the input in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 6 s each, every target)
#
# Toolchain: the pinned stable toolchain with RUSTC_BOOTSTRAP=1, which lets stable rustc take
# the -Zsanitizer flag cargo-fuzz passes (its ASan runtime ships with stable); no nightly needed.
# docs/robustness.md has the long-run figures.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export PATH="$HOME/.cargo/bin:$PATH"
secs=${1:-6}
[ $# -gt 0 ] && shift
if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <(cargo fuzz list); fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
export RUSTC_BOOTSTRAP=1
# 16 codegen units: a build in CI takes minutes less for a few percent of fuzzing speed.
cargo fuzz build --codegen-units 16 >/dev/null

summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus-run/$t" "artifacts/$t"
  seeds=("corpus/$t")
  [ -d "regressions/$t" ] && seeds+=("regressions/$t")
  log="corpus-run/$t.log"
  # -timeout: an input that runs 10 s is a hang; -rss_limit_mb: a leak or a runaway table.
  if ! cargo fuzz run --codegen-units 16 "$t" "corpus-run/$t" "${seeds[@]}" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
    # libFuzzer's verdict and the panic message (cargo-fuzz then prints the input in full).
    grep -E -m 20 "panicked|assertion|ERROR|SUMMARY|Test unit written|timeout|out-of-memory" "$log" >&2 || true
    echo "fuzz: target $t failed (input in fuzz/artifacts/$t/, log fuzz/$log)" >&2
    exit 1
  fi
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\).*/\1/p' <<<"$last")
  summary+=("$(printf '%-14s %12s %9s %7s %7s %7s' "$t" "$execs" "$rate" "$cov" "$ft" "$corp")")
done
printf '%-14s %12s %9s %7s %7s %7s\n' target execs exec/s cov ft corpus
printf '%s\n' "${summary[@]}"
