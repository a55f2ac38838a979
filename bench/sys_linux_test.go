package bench

import (
	"runtime"
	"syscall"
	"time"
)

// prctl options for the calling thread's timer slack (linux/prctl.h).
const (
	prSetTimerSlack = 29
	prGetTimerSlack = 30
)

// lockPreciseSleep locks the calling goroutine to its thread and sets the
// thread's timer slack to 1 µs (the default, 50 µs, is how late the kernel
// may wake a sleeper to batch wake-ups), for sleepUntil. unlock restores
// both.
func lockPreciseSleep() (unlock func()) {
	runtime.LockOSThread()
	old, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prGetTimerSlack, 0, 0)
	if errno != 0 {
		return runtime.UnlockOSThread
	}
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1000, 0)
	return func() {
		_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, old, 0)
		runtime.UnlockOSThread()
	}
}

// sleepUntil sleeps until nanotime() reaches t, in nanosleep: a blocking
// system call, so the Go scheduler hands the goroutine's P to others while
// it sleeps, and the kernel's high-resolution timer wakes it (time.Sleep
// would wait for the scheduler's own timer check, which in an otherwise
// idle process is epoll's timeout, rounded up to a millisecond).
func sleepUntil(t int64) {
	for {
		d := t - nanotime()
		if d <= 0 {
			return
		}
		ts := syscall.NsecToTimespec(d)
		_ = syscall.Nanosleep(&ts, nil) // EINTR (Go's preemption signal): sleep the rest
	}
}

// processCPU returns the CPU time (user and system) this process has used
// so far: around a timed loop, the Go side's cost per event (both bridges
// of a pair, the benchmark and the runtime), beside redisCPU's.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
