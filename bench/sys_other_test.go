//go:build !linux

package bench

import "time"

// lockPreciseSleep does nothing outside Linux: sleepUntil uses time.Sleep,
// whose wake-ups may be late by up to a millisecond or more (see
// sys_linux_test.go).
func lockPreciseSleep() (unlock func()) { return func() {} }

// sleepUntil sleeps until nanotime() reaches t.
func sleepUntil(t int64) {
	if d := t - nanotime(); d > 0 {
		time.Sleep(time.Duration(d))
	}
}

// processCPU is not measured outside Linux: 0.
func processCPU() time.Duration { return 0 }
