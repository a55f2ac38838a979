package bridge

import (
	"context"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/redis/go-redis/v9"
)

// TestExportAllocs is the allocation budget of a local Publish on an
// exported topic: the bus boxes the []byte payload (1) and the default
// codec copies it (1), since the bridge keeps it until the flusher sends
// it. Queueing in the outbox allocates nothing once the ring has grown.
func TestExportAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	// A client for a port nothing listens on: the flusher fails once and
	// then waits a minute, allocating nothing while this test measures.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	defer rdb.Close()
	b := bus.New(nil)
	br, err := New(b, rdb, &Options{
		Routes:       []Route{{Pattern: "orders.*", Direction: Export}},
		ReconnectMin: time.Minute,
		OnError:      func(error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = br.Close(ctx)
	}()
	ctx := context.Background()
	payload := []byte("a small payload")
	for range 2000 { // grow the outbox's ring first
		_ = b.Publish(ctx, "orders.created", payload)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		_ = b.Publish(ctx, "orders.created", payload)
	})
	if allocs > 2 {
		t.Errorf("%.1f allocations per exported Publish, budget 2", allocs)
	}
}
