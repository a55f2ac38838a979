package queue

import "time"

// clockRenew is how long clock goes on from one reading of the wall clock.
const clockRenew = 10 * time.Millisecond

// clock tells Outbox.Push the time for half the cost of time.Now, which
// reads two clocks (the wall clock and the monotonic one: about 40 ns on
// the virtual machine of bench/RESULTS.md, a twentieth of what a bridged
// event costs). It reads the monotonic clock only, and adds what it moved
// to a reading of both that it renews every clockRenew. What NTP slews
// moves both clocks alike; a step of the wall clock (settimeofday, an NTP
// step) shows after clockRenew at most. Its zero value is ready. It is not
// safe for concurrent use: the outbox calls it under its lock.
type clock struct {
	base time.Time // a reading of both clocks; zero before the first
	wall int64     // base.UnixNano()
}

// now returns the wall clock's time in unix nanoseconds. It does not
// allocate.
func (c *clock) now() int64 {
	if !c.base.IsZero() {
		// time.Since reads only the monotonic clock when base holds a
		// reading of it, as every time.Now does.
		if d := time.Since(c.base); d >= 0 && d < clockRenew {
			return c.wall + int64(d)
		}
	}
	c.base = time.Now()
	c.wall = c.base.UnixNano()
	return c.wall
}
