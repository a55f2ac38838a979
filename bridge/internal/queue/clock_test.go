package queue

import (
	"testing"
	"time"
)

// TestClockFollowsWallClock: each reading lies between the wall clock's
// readings just before and after it, over several renewals.
func TestClockFollowsWallClock(t *testing.T) {
	var c clock
	const slack = int64(time.Millisecond) // the two clocks are read at different instants
	end := time.Now().Add(5 * clockRenew)
	for n := 0; time.Now().Before(end); n++ {
		before := time.Now().UnixNano()
		got := c.now()
		after := time.Now().UnixNano()
		if got < before-slack || got > after+slack {
			t.Fatalf("reading %d: %d, not within [%d, %d] give or take %d", n, got, before, after, slack)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestClockRenews: a reading older than clockRenew is renewed, so that a
// step of the wall clock shows after clockRenew at most.
func TestClockRenews(t *testing.T) {
	var c clock
	c.now()
	// The wall clock as the clock last read it was an hour behind: a
	// step forward since.
	c.wall -= int64(time.Hour)
	if got, want := c.now(), time.Now().UnixNano(); want-got < int64(time.Hour)-int64(clockRenew) {
		t.Fatalf("within clockRenew of its reading, now is %v behind, want the reading's hour", time.Duration(want-got))
	}
	time.Sleep(clockRenew + time.Millisecond)
	if got, want := c.now(), time.Now().UnixNano(); want-got > int64(time.Millisecond) {
		t.Fatalf("after clockRenew, now is %v behind the wall clock, want it renewed", time.Duration(want-got))
	}
}

func BenchmarkClock(b *testing.B) {
	b.Run("clock", func(b *testing.B) {
		var c clock
		b.ReportAllocs()
		for b.Loop() {
			c.now()
		}
	})
	b.Run("time.Now", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = time.Now().UnixNano()
		}
	})
}
