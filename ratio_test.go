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
