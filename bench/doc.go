// Package bench compares Busline with the libraries a user would otherwise
// pick, and with the limits no library can beat (a direct function call, a
// buffered channel), scenario by scenario, on one machine in one run.
//
// Everything is in test files: one file per library with its adapter
// (busline_test.go, eventbus_test.go, cskr_test.go, watermill_test.go,
// gsl_test.go, globscan_test.go, baseline_test.go, and for Redis
// goredis_test.go and redisstream_test.go), and scenario_test.go, where every
// benchmark runs b.Run("<library>", ...) for each library. A library that
// cannot do a scenario skips with a reason starting "n/a:", and RESULTS.md
// shows it as n/a: it is never imitated.
//
// Every benchmark first checks, outside the timer, that the library delivers
// what the scenario claims; the Test functions run the same checks, quickly,
// so that `go test ./...` keeps the adapters honest without benchmarking.
//
// bash run.sh runs the suite and regenerates RESULTS.md with cmd/results.
package bench
