package bridge

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/cloudevent"
	"github.com/busline/bus/bridge/internal/wire"
	"github.com/redis/go-redis/v9"
)

// TestRejectionCost is the budget of rejecting a forged message on the
// read loop: a 64 KiB envelope with a bad MAC, and one on a channel whose
// topic is too long, a 64 KiB CloudEvent with a bad signature, once the
// rate limiter holds their reports back. The
// read loop reads the message where go-redis put it (it copied it whole
// before verifying it) and formats no error (it formatted one per
// message, reported or not).
func TestRejectionCost(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	br := newOffline(t, bus.New(nil), &Options{
		Prefix:     "app:",
		Routes:     []Route{{Pattern: "in.*", Direction: Import}, {Pattern: "ce.*", Direction: Import, Format: CloudEvents}},
		SigningKey: []byte("k"),
	})
	// A transport of its own, not started (the bridge's has a loop of its
	// own trying to connect), whose subscriptions Redis confirmed: without
	// them every message is dropped before the ingest path.
	ps := &pubsubTransport{br: br}
	ps.subscribed("psubscribe", "app:in.*", true)
	ps.subscribed("psubscribe", "app:ce.*", true)
	var sub subscriber = ps
	rl := readLoop{br: br, sub: sub, in: br.newIngest(true, false, nil)}

	env := wire.Envelope{Source: "forger", Epoch: 1, Seq: 1, Time: time.Now().UnixNano(), Payload: make([]byte, 64<<10)}
	forged := wire.AppendEnvelope(nil, "app:in.x", &env, []byte("not the key"))
	long := "app:in." + strings.Repeat("a", 8<<10)
	ev := cloudevent.Event{ID: "app:ce.x", IDSeq: true, Seq: 1, Source: "forger", Type: "ce.x", Time: time.Now(), Epoch: 1,
		DataContentType: "text/plain", Data: bytes.Repeat([]byte("x"), 64<<10)}
	forgedCE := cloudevent.Sign(cloudevent.Append(nil, &ev), 0, []byte("not the key"))
	for _, tc := range []struct {
		name  string
		msg   *redis.Message
		count func(Stats) uint64
	}{
		{"bad signature", &redis.Message{Channel: "app:in.x", Pattern: "app:in.*", Payload: string(forged)}, func(s Stats) uint64 { return s.SignatureRejected }},
		{"bad CloudEvent signature", &redis.Message{Channel: "app:ce.x", Pattern: "app:ce.*", Payload: string(forgedCE)}, func(s Stats) uint64 { return s.SignatureRejected }},
		{"long channel", &redis.Message{Channel: long, Pattern: "app:in.*", Payload: string(forged)}, func(s Stats) uint64 { return s.DecodeErrors }},
	} {
		// As go-redis's PubSub hands it over, and as the bridge's own
		// connection does: in its buffer.
		for _, p := range []*push{pushOf(tc.msg), inPlace(tc.msg)} {
			t.Run(tc.name+"/"+p.origin(), func(t *testing.T) {
				testRejectionCost(t, br, &rl, p, tc.count)
			})
		}
	}
}

// testRejectionCost checks what rejecting p costs: counted, at most 4
// allocations and 512 bytes.
func testRejectionCost(t *testing.T, br *Bridge, rl *readLoop, p *push, count func(Stats) uint64) {
	start := count(br.Stats())
	now := time.Now()
	rl.handle(p, now) // reported, and starts the rate limit's second
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 1000
	allocs := testing.AllocsPerRun(runs, func() { rl.handle(p, now) })
	runtime.ReadMemStats(&after)
	perRun := (after.TotalAlloc - before.TotalAlloc) / (runs + 1) // AllocsPerRun adds a warm-up run
	t.Logf("%.0f allocations, %d bytes per rejected %d-byte message", allocs, perRun, len(p.payload))
	if allocs > 4 || perRun > 512 {
		t.Errorf("%.0f allocations and %d bytes per rejection, budget 4 and 512", allocs, perRun)
	}
	if got := count(br.Stats()) - start; got < runs {
		t.Errorf("%d counted, want at least %d", got, runs)
	}
}
