//go:build !linux

package bench

import "time"

// newSleeper returns a sleepUntil that uses time.Sleep outside Linux,
// whose wake-ups may be late by up to a millisecond or more (see
// sys_linux_test.go).
func newSleeper() (sleepUntil func(t int64), release func()) {
	return func(t int64) {
		if d := t - nanotime(); d > 0 {
			time.Sleep(time.Duration(d))
		}
	}, func() {}
}

// processCPU is not measured outside Linux: 0.
func processCPU() time.Duration { return 0 }
