#!/usr/bin/env bash
# Runs the bench module's benchmarks and regenerates RESULTS.md.
#
#   bash bench/run.sh                 # the full suite, -count 3 (~10-15 min on 2 cores)
#   COUNT=1 bash bench/run.sh         # one run per benchmark
#   BENCH=PublishExact bash bench/run.sh   # one scenario (RESULTS.md then holds only it)
#
# The raw output goes to bench/out/raw.txt (not committed); cmd/results
# turns it into RESULTS.md with the medians over the runs.
set -euo pipefail
cd "$(dirname "$0")"

count=${COUNT:-3}
bench=${BENCH:-.}
benchtime=${BENCHTIME:-1s}
mkdir -p out
cmd="go test -v -run '^\$' -bench '$bench' -benchmem -benchtime $benchtime -count $count -timeout 60m ."
echo "== $cmd" >&2
# -v prints the "n/a: reason" of the libraries that cannot do a scenario.
go test -v -run '^$' -bench "$bench" -benchmem -benchtime "$benchtime" -count "$count" -timeout 60m . | tee out/raw.txt | grep -E '^(Benchmark.*(ns/op)|--- (SKIP|FAIL)|FAIL|ok|PASS)' >&2
go run ./cmd/results -in out/raw.txt -out RESULTS.md -gomod go.mod -cmd "$cmd"
echo "== wrote bench/RESULTS.md" >&2
