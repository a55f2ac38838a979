package bridge

import (
	"context"
	"fmt"
	"sync/atomic"
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
// exported topic: the bus boxes the payload (1). The bridge keeps the
// payload until the flusher sends it, but this package's codecs lend a
// []byte to the outbox, which copies it into a chunk shared with the next
// exports (a 32 KiB chunk per few hundred small payloads), and send a
// string's own bytes; the codecs of users copy (1 more). Queueing in the
// outbox allocates nothing else once the ring has grown.
func TestExportAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	// One topic, a hundred and 1024 in turn: the channel of each is
	// built once, not per export (see channelCache).
	topics := make([]string, 1024)
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
			}{{"one topic", topics[:1]}, {"100 topics", topics[:100]}, {"1024 topics", topics}} {
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
				if allocs > 1 {
					t.Errorf("%s: %.2f allocations per exported Publish, budget 1", tc.name, allocs)
				}
				if s := br.Stats(); s.EncodeErrors != 0 {
					t.Fatalf("%d encode errors", s.EncodeErrors)
				}
			}
		})
	}
}

// TestBridgedEventAllocs is the allocation budget of one event crossing
// the bridge through a real redis-server, counted in the whole process:
// the publisher's bus and codec, the flusher's command, go-redis on the
// sending side, the receiver's own connection, the read loop, the ingest
// path and the local publish. Going over it is a regression (the flusher's
// outage state once escaped per batch, making it 32; a pipeline and a
// PUBLISH command built per flush were 12 of 31 before the flusher reused
// them; go-redis's PubSub on the receiving side was 10 more per message,
// a *Message read through a slice of boxed strings, before the bridge read
// a connection of its own in place: 16 one at a time, 13.22 uncoalesced).
//
// One at a time, 5: the bus boxes the payload (1), the outbox copies it
// into a shared chunk (a fraction); go-redis checks the pooled connection
// before the PUBLISH (3); the receiver reads the message into its buffer
// (0), its channel is a string kept from the last message (0); the
// default codec boxes the decoded []byte (1); the ingest path carves the
// event's Meta and the payload's copy out of chunks (1/32 and less); the
// import queue reuses its chunks, of every size a burst grows it to.
//
// Uncoalesced, a burst of 64 events makes 64 messages sent in one or two
// pipelines: what an event costs alone without go-redis's check.
// Coalesced, it makes one or two messages (see holdPublishes): the bus,
// the decoding codec and the Metas cost 2 per event, and each message what
// an event alone costs.
func TestBridgedEventAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	for _, tc := range []struct {
		name     string
		burst    int
		coalesce int
		budget   float64 // per event
	}{
		{"one at a time", 1, 0, 5.5},
		{"uncoalesced burst", 64, -1, 2.4},
		{"coalesced burst", 64, 0, 2.3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := bridgedAllocs(t, tc.burst, tc.coalesce)
			if n > tc.budget {
				t.Errorf("%.2f allocations per bridged event, want at most %.2f", n, tc.budget)
			} else {
				t.Logf("%.2f allocations per bridged event (budget %.2f)", n, tc.budget)
			}
		})
	}
}

// bridgedAllocs returns the allocations per event of bursts of burst
// events crossing from one bridge to another through Redis, with
// Options.CoalesceBytes coalesce.
func bridgedAllocs(t *testing.T, burst, coalesce int) float64 {
	srv := redistest.Start(t, nil)
	send, recv := bus.New(nil), bus.New(nil)
	defer send.Close(context.Background())
	defer recv.Close(context.Background())
	got := make(chan struct{}, burst)
	if _, err := recv.Subscribe("allocs.x", func(context.Context, bus.Event) { got <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	var hold holdPublishes
	for b, d := range map[*bus.Bus]Direction{send: Export, recv: Import} {
		rdb := srv.Client(t)
		if d == Export {
			rdb.AddHook(&hold)
		}
		br, err := New(b, rdb, &Options{
			Routes:        []Route{{Pattern: "allocs.*", Direction: d}},
			CoalesceBytes: coalesce,
			OnError:       func(err error) { t.Error(err) },
		})
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
		hold.held.Store(burst > 1)
		for range burst {
			if err := send.Publish(ctx, "allocs.x", payload); err != nil {
				t.Fatal(err)
			}
		}
		hold.held.Store(false)
		for range burst {
			select {
			case <-got:
			case <-deadline.Done():
				t.Fatal("the events did not all arrive within a minute")
			}
		}
	}
	for range 100 { // grow every buffer and pool first
		roundTrip()
	}
	return testing.AllocsPerRun(2000/burst+10, roundTrip) / float64(burst)
}

// holdPublishes is a go-redis hook that holds the flusher's commands while
// held is set: a test publishes a burst while it is, so that the flusher
// sends it in at most two flushes, whatever the scheduler does (the events
// it took while the test was publishing, and the rest). It polls rather
// than waits on a channel, so that holding allocates nothing.
type holdPublishes struct{ held atomic.Bool }

func (h *holdPublishes) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *holdPublishes) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.wait()
		return next(ctx, cmd)
	}
}

func (h *holdPublishes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.wait()
		return next(ctx, cmds)
	}
}

func (h *holdPublishes) wait() {
	for h.held.Load() {
		time.Sleep(10 * time.Microsecond)
	}
}
