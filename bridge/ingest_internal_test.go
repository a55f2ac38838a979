package bridge

import (
	"runtime"
	"strings"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/wire"
	"github.com/redis/go-redis/v9"
)

// TestRejectionCost is the budget of rejecting a forged message on the
// read loop: a 64 KiB envelope with a bad MAC, and one on a channel whose
// topic is too long, once the rate limiter holds their reports back. The
// read loop reads the message where go-redis put it (it copied it whole
// before verifying it) and formats no error (it formatted one per
// message, reported or not).
func TestRejectionCost(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	br := newOffline(t, bus.New(nil), &Options{
		Prefix:     "app:",
		Routes:     []Route{{Pattern: "in.*", Direction: Import}},
		SigningKey: []byte("k"),
	})
	var sub subscriber = br.ps
	rl := readLoop{br: br, sub: sub, in: br.newIngest(true, false, br.enqueue)}

	env := wire.Envelope{Source: "forger", Epoch: 1, Seq: 1, Time: time.Now().UnixNano(), Payload: make([]byte, 64<<10)}
	forged := wire.AppendEnvelope(nil, "app:in.x", &env, []byte("not the key"))
	long := "app:in." + strings.Repeat("a", 8<<10)
	for _, tc := range []struct {
		name  string
		msg   *redis.Message
		count func(Stats) uint64
	}{
		{"bad signature", &redis.Message{Channel: "app:in.x", Pattern: "app:in.*", Payload: string(forged)}, func(s Stats) uint64 { return s.SignatureRejected }},
		{"long channel", &redis.Message{Channel: long, Pattern: "app:in.*", Payload: string(forged)}, func(s Stats) uint64 { return s.DecodeErrors }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Now()
			rl.handle(tc.msg, now) // reported, and starts the rate limit's second
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			const runs = 1000
			allocs := testing.AllocsPerRun(runs, func() { rl.handle(tc.msg, now) })
			runtime.ReadMemStats(&after)
			perRun := (after.TotalAlloc - before.TotalAlloc) / (runs + 1) // AllocsPerRun adds a warm-up run
			t.Logf("%s: %.0f allocations, %d bytes per rejected %d-byte message", tc.name, allocs, perRun, len(tc.msg.Payload))
			if allocs > 4 || perRun > 512 {
				t.Errorf("%s: %.0f allocations and %d bytes per rejection, budget 4 and 512", tc.name, allocs, perRun)
			}
			if got := tc.count(br.Stats()); got < runs {
				t.Errorf("%d counted, want at least %d", got, runs)
			}
		})
	}
}
