#!/usr/bin/env bash
# Runs the bench module's benchmarks and regenerates RESULTS.md.
#
#   bash bench/run.sh                        # the full suite: -count 5, -benchtime 500ms (~9-11 min on 2 cores)
#   COUNT=1 BENCHTIME=200ms bash bench/run.sh       # a quick look
#   BENCH=PublishExact bash bench/run.sh     # one scenario (RESULTS.md then holds only it)
#
# The raw output goes to bench/out/raw.txt (not committed); cmd/results
# turns it into RESULTS.md with the medians over the runs, and appends
# NOTES.md (the explanation of where Busline loses, written by hand for the
# committed run: re-read it when the numbers change).
set -euo pipefail
cd "$(dirname "$0")"

count=${COUNT:-5}
bench=${BENCH:-.}
benchtime=${BENCHTIME:-500ms}
mkdir -p out
# BenchmarkCapacity and BenchmarkCapacityCluster (SCALING.md's input) and
# BenchmarkAsyncLatencyGap (NOTES.md's) are measurements, not comparisons:
# run them by hand.
skip=${SKIP:-'^Benchmark(Capacity|CapacityCluster|AsyncLatencyGap)$'}
cmd="go test -v -run '^\$' -bench '$bench' -skip '$skip' -benchmem -benchtime $benchtime -count $count -timeout 60m ."
rev=$(git -C .. describe --always --dirty 2>/dev/null || echo unknown)
echo "== $cmd (Busline $rev)" >&2
# -v prints the "n/a: reason" of the libraries that cannot do a scenario.
go test -v -run '^$' -bench "$bench" -skip "$skip" -benchmem -benchtime "$benchtime" -count "$count" -timeout 60m . >out/raw.txt
grep -E '^(Benchmark.*ns/op|--- FAIL|FAIL)' out/raw.txt >&2 || true
notes=()
[ -f NOTES.md ] && notes=(-notes NOTES.md)
go run ./cmd/results -in out/raw.txt -out RESULTS.md -gomod go.mod -cmd "$cmd" -rev "$rev" "${notes[@]}"
echo "== wrote bench/RESULTS.md" >&2
