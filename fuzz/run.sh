#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 10) with cargo fuzz, starting from the kept
# corpus (fuzz/corpus/<target>, not in git) and the seeds in fuzz/seeds/<target>. Prints each
# target's executions, coverage (libFuzzer's `cov`) and corpus size; fails on the first crash
# (the input is left in fuzz/artifacts/<target>/).
#
#   bash fuzz/run.sh          # 10 s per target (what .ci/run does)
#   bash fuzz/run.sh 600      # longer runs
#
# cargo fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 lets the stable toolchain take them.
# Rust's own memory safety stands in for AddressSanitizer (--sanitizer none): the targets
# look for panics, failed assertions, hangs and memory blow-ups, with coverage guidance.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-10}"
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi
targets=(wire_codec change_envelope record_parser sync_handler)
cargo fuzz build --sanitizer none --release >&2
printf '%-16s %12s %8s %8s %6s\n' target executions "exec/s" coverage corpus
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t"
  log="$(mktemp)"
  if ! cargo fuzz run --sanitizer none --release "$t" "corpus/$t" "seeds/$t" -- \
      -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 -timeout=10 \
      >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | grep -o '[0-9]*' || echo "?")
  units=$(find "corpus/$t" -type f | wc -l)
  printf '%-16s %12s %8s %8s %6s\n' "$t" "$execs" "$rate" "$cov" "$units"
  rm -f "$log"
done
