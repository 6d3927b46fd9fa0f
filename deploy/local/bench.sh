#!/usr/bin/env bash
# `make bench`: every benchmark in release mode, each figure beside its baseline measured in the
# same run, then one summary table (printed, and written to BENCHMARKS.md with the core count and
# the commit). A benchmark that fails leaves its rows "not measured" and the run exits non-zero
# after the summary.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

"$ROOT/deploy/local/stack.sh" up || exit 1

say "release binaries the benchmarks start (gateway, registration-batcher, activity-log-processor, loadgen)"
cargo build --release -p gateway -p registration-batcher -p activity-log-processor -p loadgen || exit 1

export BENCH_RESULTS="$ROOT/target/bench/results.jsonl"
mkdir -p "$(dirname "$BENCH_RESULTS")"
rm -f "$BENCH_RESULTS"
failed=()
for bench in events_throughput registration activity_logs positions; do
    say "cargo bench -p system-tests --bench $bench"
    cargo bench -p system-tests --bench "$bench" || failed+=("$bench")
done

say "summary"
cargo bench -p system-tests --bench summary || failed+=(summary)
if [ "${#failed[@]}" -gt 0 ]; then
    echo "failed: ${failed[*]}" >&2
    exit 1
fi
