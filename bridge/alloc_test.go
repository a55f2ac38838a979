package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/redis/go-redis/v9"
)

// newOffline returns a bridge on b whose client connects to a port nothing
// listens on, closed at cleanup: the flusher fails once and then waits a
// minute (opts.ReconnectMin), allocating nothing while a test measures;
// nothing arrives but what the test hands the read loops.
func newOffline(t *testing.T, b *bus.Bus, opts *Options) *Bridge {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
	opts.ReconnectMin = time.Minute
	opts.OnError = func(error) {}
	br, err := New(b, rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = br.Close(ctx)
		_ = rdb.Close()
	})
	return br
}

// TestExportAllocs is the allocation budget of a local Publish on an
// exported topic: the bus boxes the payload (1) and the codec copies it
// (1), since the bridge keeps it until the flusher sends it: the default
// codec and Bytes a []byte, Text a string. Queueing in the outbox
// allocates nothing once the ring has grown.
func TestExportAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	// One topic, and a hundred in turn: the channel of each is built
	// once, not per export.
	topics := make([]string, 100)
	for i := range topics {
		topics[i] = fmt.Sprintf("orders.t%d", i)
	}
	for _, rc := range []struct {
		name    string
		route   Route
		payload any
	}{
		{"enveloped default", Route{Pattern: "orders.*", Direction: Export}, []byte("a small payload")},
		{"raw bytes", Route{Pattern: "orders.*", Direction: Export, Raw: true}, []byte("a small payload")},
		{"raw text", Route{Pattern: "orders.*", Direction: Export, Raw: true, Codec: Text()}, "a small payload"},
	} {
		t.Run(rc.name, func(t *testing.T) {
			b := bus.New(nil)
			br := newOffline(t, b, &Options{Routes: []Route{rc.route}})
			ctx := context.Background()
			for _, tc := range []struct {
				name   string
				topics []string
			}{{"one topic", topics[:1]}, {"100 topics", topics}} {
				i := 0
				var publish func()
				switch p := rc.payload.(type) {
				case string: // boxed by Publish, as a user's call does
					publish = func() {
						_ = b.Publish(ctx, tc.topics[i%len(tc.topics)], p)
						i++
					}
				case []byte:
					publish = func() {
						_ = b.Publish(ctx, tc.topics[i%len(tc.topics)], p)
						i++
					}
				}
				for range 20000 { // grow the outbox first
					publish()
				}
				allocs := testing.AllocsPerRun(1000, publish)
				if allocs > 2 {
					t.Errorf("%s: %.2f allocations per exported Publish, budget 2", tc.name, allocs)
				}
				if s := br.Stats(); s.EncodeErrors != 0 {
					t.Fatalf("%d encode errors", s.EncodeErrors)
				}
			}
		})
	}
}
