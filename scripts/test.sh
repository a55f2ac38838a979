#!/usr/bin/env bash
# Runs every test of every module of Busline, after setting up what the tests
# need. This is the one test command: the README tells newcomers to run it and
# .ci/run calls it.
#
#   bash scripts/test.sh            # everything
#   SHORT=1 bash scripts/test.sh    # skip the slower load tests (go test -short)
set -euo pipefail
cd "$(dirname "$0")/.."

# redis-server and redis-cli (Debian package redis-server, Redis 7.0): the
# bridge tests start their own servers on free loopback ports.
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
	echo "== installing redis-server"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null
fi
# The Debian package starts a system-wide server on 6379; the tests never use
# it, and CI machines do not need it running.
redis-server --version

# redis-py (Debian package python3-redis) for the bridge's interop test with
# a Python publisher and subscriber.
if ! /usr/bin/python3 -c 'import redis' 2>/dev/null && ! python3 -c 'import redis' 2>/dev/null; then
	echo "== installing python3-redis"
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends python3-redis >/dev/null
fi

short=()
[ -n "${SHORT:-}" ] && short=(-short)

# Every module: the library at the root and bench/ (its own module).
for mod in $(git ls-files 'go.mod' '*/go.mod' 2>/dev/null || find . -name go.mod); do
	dir=$(dirname "$mod")
	echo "== $dir: go vet"
	(cd "$dir" && go vet ./...)
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
