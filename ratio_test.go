package bus

import (
	"os"
	"testing"
	"time"
)

// TestRatioProbe is a development probe, run by hand with BUS_RATIO=1.
func TestRatioProbe(t *testing.T) {
	if os.Getenv("BUS_RATIO") == "" {
		t.Skip("set BUS_RATIO=1")
	}
	bus := newBusWith(t, nil, "orders.eu.created", 1)
	p := &payload{}
	minOf := func(f func()) time.Duration {
		best := time.Hour
		for range 15 {
			start := time.Now()
			for range 200000 {
				f()
			}
			if d := time.Since(start); d < best {
				best = d
			}
		}
		return best
	}
	direct := minOf(func() { directHandler(ctx, Event{Topic: "orders.eu.created", Payload: p}) })
	pub := minOf(func() { _ = bus.Publish(ctx, "orders.eu.created", p) })
	t.Logf("ratio %.2f", float64(pub)/float64(direct))
}

// TestAsyncRatioProbe compares the per-event cost of one asynchronous
// subscriber with a buffered channel, alternating runs and keeping the best
// of each. Run by hand with BUS_RATIO=1.
func TestAsyncRatioProbe(t *testing.T) {
	if os.Getenv("BUS_RATIO") == "" {
		t.Skip("set BUS_RATIO=1")
	}
	const n, capacity = 200000, 1024
	p := &payload{}
	chanRun := func() time.Duration {
		ch := make(chan Event, capacity)
		done := make(chan struct{})
		go func() {
			for e := range ch {
				nopSink(ctx, e)
			}
			close(done)
		}()
		start := time.Now()
		for range n {
			ch <- Event{Topic: "t", Payload: p}
		}
		close(ch)
		<-done
		return time.Since(start)
	}
	busRun := func() time.Duration {
		b := New(nil)
		if _, err := b.SubscribeWith("t", nopSink, &SubscribeOptions{Queue: capacity}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		for range n {
			_ = b.Publish(ctx, "t", p)
		}
		_ = b.Close(ctx)
		return time.Since(start)
	}
	bestChan, bestBus := time.Hour, time.Hour
	for range 15 {
		bestChan = min(bestChan, chanRun())
		bestBus = min(bestBus, busRun())
	}
	t.Logf("chan %.1f ns/event, bus %.1f ns/event, ratio %.2f", float64(bestChan)/n, float64(bestBus)/n, float64(bestBus)/float64(bestChan))
}
