#!/usr/bin/env bash
# Runs every test of every module of Busline, after setting up what the tests
# need. This is the one test command: the README tells newcomers to run it and
# .ci/run calls it.
#
#   bash scripts/test.sh            # everything
#   SHORT=1 bash scripts/test.sh    # skip the slower load tests (go test -short)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# What the tests need from Debian, installed with apt-get when absent:
# redis-server and redis-cli (Redis 7.0; the tests start their own servers on
# free loopback ports, never the system-wide one the package may start on
# 6379), redis-sentinel, python3-redis (redis-py, for the interop tests) and
# chromium (the chat example's browser test).
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
/usr/bin/python3 -c 'import redis' 2>/dev/null || need+=(python3-redis)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
	echo "== installing ${need[*]}"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
redis-server --version

# Node test folders (a package-lock.json outside node_modules): npm ci
# installs exactly what the lockfile pins.
for lock in $(git ls-files '*package-lock.json' 2>/dev/null || find . -name package-lock.json -not -path '*/node_modules/*'); do
	dir=$(dirname "$lock")
	echo "== $dir: npm ci"
	(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
done

# golangci-lint, pinned; built once into .bin/ (not committed).
lint_version=v2.15.0
lint="$root/.bin/golangci-lint"
# Rebuilt when the version or the Go it was built with differs (a linter
# built with an older Go refuses code for a newer one).
if ! [ -x "$lint" ] || ! "$lint" version 2>/dev/null | grep -q "version ${lint_version#v} built with $(go env GOVERSION) "; then
	echo "== installing golangci-lint $lint_version"
	GOBIN="$root/.bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$lint_version"
fi

short=()
[ -n "${SHORT:-}" ] && short=(-short)

# Everything the tests need was installed above: a test that finds a
# prerequisite missing (redis-py, chromium, a terminal) fails under CI=true
# instead of skipping.
export CI="${CI:-true}"

# Every module: the library at the root and bench/ (its own module).
for mod in $(git ls-files 'go.mod' '*/go.mod' 2>/dev/null || find . -name go.mod); do
	dir=$(dirname "$mod")
	dir=${dir#./} # find prints ./bench
	echo "== $dir: go vet"
	(cd "$dir" && go vet ./...)
	echo "== $dir: golangci-lint $lint_version"
	(cd "$dir" && "$lint" run --config "$root/.golangci.yml" ./...)
	if [ "$dir" = "bench" ]; then
		# Benchmarks are run by bench/run.sh, not in CI: here they are only
		# compiled, and their correctness checks run.
		echo "== $dir: go test -run . (no benchmarks)"
		(cd "$dir" && go test "${short[@]}" -count=1 ./...)
		continue
	fi
	echo "== $dir: go test -race"
	(cd "$dir" && go test "${short[@]}" -race -count=1 -timeout 10m ./...)
	echo "== $dir: go test (allocation budgets, skipped under -race)"
	(cd "$dir" && go test "${short[@]}" -count=1 -run 'Alloc' ./...)
done
echo "== all tests passed"
