#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 10), starting from the kept corpus
# (fuzz/corpus/<target>, not in git) and the seeds in fuzz/seeds/<target>. Prints each
# target's executions, rate, coverage (libFuzzer's `cov`) and corpus size; fails on the first
# crash (the input is left in fuzz/artifacts/<target>/).
#
#   bash fuzz/run.sh            # 10 s per target, release build
#   bash fuzz/run.sh 600        # longer runs
#   FUZZ_PROFILE=dev bash fuzz/run.sh 5   # what .ci/run does: a quicker build
#   FUZZ_BUILD=cargo bash fuzz/run.sh     # build with cargo even where cargo-fuzz is installed
#
# With cargo-fuzz installed (`cargo install cargo-fuzz`) the targets are built by
# `cargo fuzz build`; without it, by cargo with the same instrumentation flags cargo-fuzz
# passes (SanitizerCoverage for libFuzzer's guidance, --cfg fuzzing, debug assertions), so CI
# needs no extra install. Either way nightly flags are taken through RUSTC_BOOTSTRAP=1, and
# Rust's own memory safety stands in for AddressSanitizer (--sanitizer none): the targets look
# for panics, failed assertions, hangs and memory blow-ups.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-10}"
profile="${FUZZ_PROFILE:-release}"
triple=x86_64-unknown-linux-gnu
export RUSTC_BOOTSTRAP=1
targets=(wire_codec change_envelope record_parser sync_handler)

if [ "${FUZZ_BUILD:-auto}" != cargo ] && cargo fuzz --version >/dev/null 2>&1; then
  if [ "$profile" = release ]; then
    cargo fuzz build --sanitizer none --release >&2
  else
    cargo fuzz build --sanitizer none --dev >&2
  fi
else
  echo "fuzz: cargo-fuzz not installed; building the targets with its flags" >&2
  flags="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4"
  flags+=" -Cllvm-args=-sanitizer-coverage-inline-8bit-counters"
  flags+=" -Cllvm-args=-sanitizer-coverage-pc-table"
  flags+=" -Cllvm-args=-sanitizer-coverage-trace-compares"
  flags+=" -Cllvm-args=-simplifycfg-branch-fold-threshold=0"
  flags+=" --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
  if [ "$profile" = release ]; then
    RUSTFLAGS="$flags" cargo build --release --target "$triple" --bins >&2
  else
    RUSTFLAGS="$flags" cargo build --target "$triple" --bins >&2
  fi
fi
dir="target/$triple/$([ "$profile" = release ] && echo release || echo debug)"

printf '%-16s %12s %8s %8s %6s\n' target executions "exec/s" coverage corpus
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  log="$(mktemp)"
  if ! "$dir/$t" "corpus/$t" "seeds/$t" -max_total_time="$seconds" -print_final_stats=1 \
      -rss_limit_mb=2048 -timeout=10 -artifact_prefix="artifacts/$t/" >"$log" 2>&1; then
    grep -v '^INFO\|^#' "$log" | tail -n 60 >&2
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
