//go:build unix

package bridge_test

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time the process has used, user and system:
// what the benchmarks divide by the events for cpu-ns/event, a measure of
// the per-event cost that a machine shared with other work disturbs less
// than the wall clock does (Redis's own time is not in it).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
