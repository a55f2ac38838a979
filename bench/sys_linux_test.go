package bench

import (
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// newSleeper returns a sleepUntil for the open loop of
// BenchmarkSustainedLatency, and the function that releases it. It waits
// on a timerfd through Go's network poller: the goroutine parks, its P goes
// back to the scheduler, and the kernel's high-resolution timer wakes the
// poller on time. The two obvious ways are both wrong here: time.Sleep wakes
// a sleeping goroutine of an otherwise idle process about 1 ms late (the
// scheduler then waits in epoll with a millisecond timeout), and a blocking
// nanosleep keeps its P in the system call, with the goroutines the sender
// just woke (the bridge's flusher, say) queued on that P, until sysmon takes
// it back, which can take milliseconds: a transport that hands events to
// its own goroutines would pay for the harness's sleep. If no timerfd can
// be made, time.Sleep it is.
func newSleeper() (sleepUntil func(t int64), release func()) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return sleepUntilCoarse, func() {}
	}
	f := os.NewFile(uintptr(fd), "timerfd") // non-blocking: pollable
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return sleepUntilCoarse, func() {}
	}
	var buf [8]byte
	return func(t int64) {
		d := t - nanotime()
		if d <= 0 {
			return
		}
		spec := unix.ItimerSpec{Value: unix.NsecToTimespec(d)}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.TimerfdSettime(int(fd), 0, &spec, nil) }); err != nil || serr != nil {
			sleepUntilCoarse(t)
			return
		}
		// Read blocks (in the poller) until the timer expires, and
		// returns its expiry count.
		if _, err := f.Read(buf[:]); err != nil {
			sleepUntilCoarse(t)
		}
	}, func() { _ = f.Close() }
}

// sleepUntilCoarse sleeps until nanotime() reaches t with time.Sleep.
func sleepUntilCoarse(t int64) {
	if d := t - nanotime(); d > 0 {
		time.Sleep(time.Duration(d))
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
