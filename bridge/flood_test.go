package bridge_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/bridge/internal/wire"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// floodN is the size of the flood of TestLongChannelsMemory; the issue's
// figure is for 60,000: go test ./bridge -run TestLongChannelsMemory -v -args -flood=60000
var floodN = flag.Int("flood", 20000, "messages on long channels in TestLongChannelsMemory")

// forged returns an unsigned envelope of source "forger" numbered seq and
// sent at t on channel, with payload "x".
func forged(channel string, seq uint64, t int64) string { return signedEnvelope(channel, nil, seq, t) }

// signedEnvelope returns forged's envelope signed with key (unsigned if
// nil), as another instance with the key would send it.
func signedEnvelope(channel string, key []byte, seq uint64, t int64) string {
	env := wire.Envelope{Source: "forger", Epoch: 1, Seq: seq, Time: t, Payload: []byte("x")}
	return string(wire.AppendEnvelope(nil, channel, &env, key))
}

// flood publishes n messages, msg(i) on channel(i), in pipelines.
func flood(t *testing.T, rdb *redis.Client, n int, channel func(i int) string, msg func(i int) string) {
	t.Helper()
	ctx := context.Background()
	const pipe = 500
	for lo := 0; lo < n; lo += pipe {
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := lo; i < min(lo+pipe, n); i++ {
				p.Publish(ctx, channel(i), msg(i))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFloodReportsRateLimited floods a receiver with forged messages of
// each kind it rejects or reports, as anyone who can PUBLISH on a shared
// Redis can: gaps (100,000 messages each skipping a number, as in the
// issue), duplicates, malformed envelopes, oversized messages, messages
// on channels whose topic the bus rejects, unsigned messages on a signed
// route, and replays outside the window. Each is counted in full, in Stats
// and in the reports (the details of the first, then summaries with
// counts), but OnError is called a few times a second, not once per
// message (it was 99,999 times for the gaps).
func TestFloodReportsRateLimited(t *testing.T) {
	srv := redistest.Start(t, nil)
	const ch = "app:flood.x"
	now := time.Now().UnixNano()
	for _, tc := range []struct {
		name    string
		n       int
		opts    func(*bridge.Options)
		channel func(i int) string
		msg     func(i int) string
		reason  error
		counted func(s bridge.Stats) uint64
		want    uint64 // counted
	}{
		{"gaps", 100000, nil, nil, func(i int) string { return forged(ch, uint64(2*i+1), now) }, bridge.ErrGap,
			func(s bridge.Stats) uint64 { return s.Gaps }, 99999},
		{"duplicates", 10000, nil, nil, func(int) string { return forged(ch, 1, now) }, bridge.ErrDuplicate,
			func(s bridge.Stats) uint64 { return s.Duplicates }, 9999},
		{"malformed", 10000, nil, nil, func(i int) string { return fmt.Sprintf("\xb5\x1e\x01\x00\x01a%d", i) }, bridge.ErrMalformed,
			func(s bridge.Stats) uint64 { return s.DecodeErrors }, 10000},
		{"too large", 10000, func(o *bridge.Options) { o.MaxMessageBytes = 100 }, nil,
			func(int) string { return strings.Repeat("z", 101) }, bridge.ErrTooLarge,
			func(s bridge.Stats) uint64 { return s.DecodeErrors }, 10000},
		{"bad topic", 10000, nil, func(i int) string { return fmt.Sprintf("app:flood.%02000d", i) },
			func(i int) string { return forged(fmt.Sprintf("app:flood.%02000d", i), 1, now) }, bridge.ErrMalformed,
			func(s bridge.Stats) uint64 { return s.DecodeErrors }, 10000},
		{"bad signature", 10000, func(o *bridge.Options) { o.SigningKey = []byte("k") }, nil,
			func(i int) string { return forged(ch, uint64(i+1), now) }, bridge.ErrSignature,
			func(s bridge.Stats) uint64 { return s.SignatureRejected }, 10000},
		{"replay", 10000, func(o *bridge.Options) { o.ReplayWindow = time.Minute }, nil,
			func(i int) string { return forged(ch, uint64(i+1), now-int64(time.Hour)) }, bridge.ErrReplay,
			func(s bridge.Stats) uint64 { return s.Replayed }, 10000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log errLog
			opts := testOptions(&log, bridge.Route{Pattern: "flood.*", Direction: bridge.Import})
			opts.ImportQueueSize = 200000
			if tc.opts != nil {
				tc.opts(opts)
			}
			to := newInstance(t, srv.Client(t), opts)
			channel := tc.channel
			if channel == nil {
				channel = func(int) string { return ch }
			}
			start := time.Now()
			flood(t, srv.Client(t), tc.n, channel, tc.msg)
			eventually(t, func() bool { return to.bridge.Stats().Received == uint64(tc.n) },
				"every message received: %d of %d", func() int { return int(to.bridge.Stats().Received) }, func() int { return tc.n })
			checkAccounting(t, to.bridge)
			elapsed := time.Since(start)
			s := to.bridge.Stats()
			if got := tc.counted(s); got != tc.want {
				t.Errorf("counted %d, want %d: %+v", got, tc.want, s)
			}
			// Every one is in the reports: the first with its details,
			// the others in summaries (flushed within a second).
			var reported uint64
			eventually(t, func() bool {
				reported = 0
				for _, err := range log.all() {
					var drop *bridge.DropError
					var gap *bridge.GapError
					switch {
					case errors.As(err, &drop) && errors.Is(drop.Err, tc.reason):
						reported += drop.Count
					case errors.As(err, &gap):
						reported += gap.Missing()
					case errors.Is(err, tc.reason):
						reported++
					}
				}
				return reported == tc.want
			}, "reports count %d of %d", func() int { return int(reported) }, func() int { return int(tc.want) })
			calls := len(log.all())
			t.Logf("%d messages in %v: %d OnError calls, %d reports held (Stats.ReportsHeld)",
				tc.n, elapsed.Round(time.Millisecond), calls, s.ReportsHeld)
			// One report with details a second, plus the summary of the
			// second before it, and one flushed at the end.
			if limit := 2*int(elapsed/time.Second) + 4; calls > limit {
				t.Errorf("%d OnError calls for %d forged messages in %v, want at most %d", calls, tc.n, elapsed, limit)
			}
			if s.ReportsHeld < uint64(tc.want)-uint64(calls) {
				t.Errorf("ReportsHeld %d, want at least %d", s.ReportsHeld, uint64(tc.want)-uint64(calls))
			}
		})
	}
}

// heapAfterGC returns the live heap after a collection.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestLongChannelsMemory floods a pattern route with forged envelopes, one
// per channel, on channels of 8 KB: longer than bus.MaxTopicLen, so every
// one is dropped. The receiver must not keep anything per channel before
// it has checked the topic: it held about 550 MB for 60,000 of them, its
// sequence table keyed by their names. Measured by the live heap after a
// collection, before and after.
func TestLongChannelsMemory(t *testing.T) {
	srv := redistest.Start(t, nil)
	to := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "flood.*", Direction: bridge.Import}))
	n := *floodN
	long := strings.Repeat("a", 8<<10)
	channel := func(i int) string { return fmt.Sprintf("app:flood.%d%s", i, long) }
	before := heapAfterGC()
	flood(t, srv.Client(t), n, channel, func(i int) string { return forged(channel(i), 1, time.Now().UnixNano()) })
	// Redis drops a subscriber that falls too far behind (its output
	// buffer limit for pub/sub, 32 MB): on a loaded machine the flood
	// may cost the receiver its connection and the rest of the flood,
	// which changes nothing to what it must not keep.
	var last uint64
	eventually(t, func() bool {
		s := to.bridge.Stats()
		done := s.Received == uint64(n) || s.Reconnects > 0 && s.Received == last
		last = s.Received
		if !done {
			time.Sleep(200 * time.Millisecond)
		}
		return done
	}, "every message received: %d of %d", func() int { return int(to.bridge.Stats().Received) }, func() int { return n })
	checkAccounting(t, to.bridge)
	n = int(to.bridge.Stats().Received)
	after := heapAfterGC()
	growth := int64(after) - int64(before)
	t.Logf("%d messages on 8 KB channels: live heap %.1f MB before, %.1f MB after (%+.1f MB)",
		n, float64(before)/(1<<20), float64(after)/(1<<20), float64(growth)/(1<<20))
	if s := to.bridge.Stats(); s.DecodeErrors != uint64(n) || s.Imported != 0 || n == 0 {
		t.Errorf("decode errors %d, imported %d; want %d, 0", s.DecodeErrors, s.Imported, n)
	}
	if growth > 16<<20 {
		t.Errorf("the receiver holds %.1f MB more after the flood, want at most 16", float64(growth)/(1<<20))
	}
}

// TestImportQueueBytes blocks the subscriber of a topic while large
// events arrive: the import queue holds at most ImportQueueBytes of them
// (it held its count cap, 8192 events of up to MaxMessageBytes each), and
// drops the rest, counted: delivered + dropped = published.
func TestImportQueueBytes(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "big.x"}
	from := newInstance(t, srv.Client(t), testOptions(nil, route))
	opts := testOptions(nil, route)
	opts.ImportQueueBytes = 1 << 20
	b := newBus()
	var g *gate
	var delivered atomic.Uint64
	if _, err := b.Subscribe("big.x", func(context.Context, bus.Event) { g.wait(); delivered.Add(1) }); err != nil {
		t.Fatal(err)
	}
	to := newInstanceOn(t, b, srv.Client(t), opts)
	g = newGate(t) // after the instance: its cleanup opens the gate first
	const n = 50
	payload := make([]byte, 100<<10)
	for range n {
		publish(t, from.bus, "big.x", payload)
	}
	eventually(t, func() bool { s := to.bridge.Stats(); return s.Received == n },
		"every message received: %d of %d", func() int { return int(to.bridge.Stats().Received) }, func() int { return n })
	s := to.bridge.Stats()
	if s.ImportBytes > opts.ImportQueueBytes || s.ImportDropped == 0 {
		t.Errorf("import queue holds %d bytes (cap %d), dropped %d", s.ImportBytes, opts.ImportQueueBytes, s.ImportDropped)
	}
	if to.errs.count(bridge.ErrImportFull) == 0 {
		t.Errorf("drops not reported:\n%s", to.errs)
	}
	g.open()
	checkAccounting(t, to.bridge)
	eventually(t, func() bool { s := to.bridge.Stats(); return s.Imported+s.ImportDropped == n },
		"delivered + dropped = published")
	if s := to.bridge.Stats(); s.Imported != delivered.Load() || s.ImportBytes != 0 {
		t.Errorf("imported %d, delivered %d, %d bytes left", s.Imported, delivered.Load(), s.ImportBytes)
	}
}
