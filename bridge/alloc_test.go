package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/redistest"
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

// TestBridgedEventAllocs is the allocation budget of one event crossing
// the bridge through a real redis-server, one at a time, counted in the
// whole process: the publisher's bus and codec, the flusher's pipeline,
// go-redis on both sides (23 of them), the read loop, the ingest
// path and the local publish. Going over it is a regression (the
// flusher's outage state once escaped per batch, making it 32).
func TestBridgedEventAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	const budget = 31
	srv := redistest.Start(t, nil)
	send, recv := bus.New(nil), bus.New(nil)
	defer send.Close(context.Background())
	defer recv.Close(context.Background())
	got := make(chan struct{}, 1)
	if _, err := recv.Subscribe("allocs.x", func(context.Context, bus.Event) { got <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	for b, d := range map[*bus.Bus]Direction{send: Export, recv: Import} {
		br, err := New(b, srv.Client(t), &Options{Routes: []Route{{Pattern: "allocs.*", Direction: d}}, OnError: func(err error) { t.Error(err) }})
		if err != nil {
			t.Fatal(err)
		}
		defer br.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := br.Ready(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	ctx, payload := context.Background(), []byte("a small payload")
	deadline, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	roundTrip := func() {
		if err := send.Publish(ctx, "allocs.x", payload); err != nil {
			t.Fatal(err)
		}
		select {
		case <-got:
		case <-deadline.Done():
			t.Fatal("the events did not all arrive within a minute")
		}
	}
	for range 100 { // grow every buffer and pool first
		roundTrip()
	}
	if n := testing.AllocsPerRun(2000, roundTrip); n > budget {
		t.Errorf("%.1f allocations per bridged event, want at most %d", n, budget)
	} else {
		t.Logf("%.1f allocations per bridged event (budget %d)", n, budget)
	}
}
