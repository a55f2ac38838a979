package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

var replayKey = []byte("replay-test-key")

// signedOptions are the options of an instance of the replay tests: one
// route on topic "rp.x", signed, one message per event (so that each
// recorded message is one event).
func signedOptions(id string, dir bridge.Direction, d bridge.Delivery) *bridge.Options {
	o := durableOptions(id, bridge.Route{Pattern: "rp.x", Direction: dir, Delivery: d})
	o.SigningKey = replayKey
	o.CoalesceBytes = -1
	return o
}

// recorder of the messages a sender puts on Redis, as an eavesdropper
// with read access does: a plain go-redis subscriber of the channel, or
// XRANGE of the stream.
type wiretap struct {
	t   *testing.T
	rdb *redis.Client
	d   bridge.Delivery
	spy *plainSubscriber
	n   int // stream entries read so far
}

func tap(t *testing.T, rdb *redis.Client, d bridge.Delivery) *wiretap {
	w := &wiretap{t: t, rdb: rdb, d: d}
	if d == bridge.PubSub {
		w.spy = subscribePlain(t, rdb, []string{"app:rp.x"}, nil)
	}
	return w
}

// next returns the next n messages sent.
func (w *wiretap) next(n int) []string {
	t := w.t
	t.Helper()
	ctx := context.Background()
	var msgs []string
	if w.d == bridge.PubSub {
		for len(msgs) < n {
			msg, err := w.spy.ps.ReceiveTimeout(ctx, waitTimeout)
			if err != nil {
				t.Fatalf("%d of %d messages: %v", len(msgs), n, err)
			}
			if m, ok := msg.(*redis.Message); ok {
				msgs = append(msgs, m.Payload)
			}
		}
		return msgs
	}
	key := bridge.StreamKey("app:", "rp.x")
	eventually(t, func() bool { return w.rdb.XLen(ctx, key).Val() >= int64(w.n+n) }, "%d entries", func() int { return w.n + n })
	entries, err := w.rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries[w.n : w.n+n] {
		msgs = append(msgs, e.Values["data"].(string))
	}
	w.n += n
	return msgs
}

// TestReplayAcrossRestart records the signed messages of a sender, which
// then restarts with the same InstanceID (as Stream routes with the
// default checkpointer require), and replays the recording to a receiver
// that saw both runs, with plain PUBLISH (or XADD). The receiver must
// reject every recorded message as a replay of the earlier run (its
// epoch), and keep delivering the new run's events. Before epochs it
// took the recording for a gap, delivered it again, and dropped the new
// run's next events as duplicates.
func TestReplayAcrossRestart(t *testing.T) {
	for _, d := range []bridge.Delivery{bridge.PubSub, bridge.Stream} {
		t.Run(d.String(), func(t *testing.T) {
			srv := redistest.Start(t, nil)
			rdb := srv.Client(t)
			w := tap(t, rdb, d)
			to := newInstance(t, srv.Client(t), signedOptions("receiver", bridge.Import, d))
			rec := record(t, to.bus, "rp.x")

			run1 := newInstance(t, srv.Client(t), signedOptions("sender", bridge.Export, d))
			for i := range 5 {
				publish(t, run1.bus, "rp.x", fmt.Sprintf("run1-%d", i))
			}
			recorded := w.next(5)
			rec.waitFor(t, 5)
			if err := closeBridge(run1.bridge); err != nil {
				t.Fatal(err)
			}

			run2 := newInstance(t, srv.Client(t), signedOptions("sender", bridge.Export, d))
			publish(t, run2.bus, "rp.x", "run2-0")
			w.next(1)
			rec.waitFor(t, 6)
			for _, msg := range recorded {
				inject(t, rdb, d, "app:", "rp.x", msg)
			}
			publish(t, run2.bus, "rp.x", "run2-1")
			publish(t, run2.bus, "rp.x", "run2-2")
			eventually(t, func() bool {
				s := to.bridge.Stats()
				return s.Received == 13 && s.ImportDepth == 0
			}, "13 messages handled: %d", func() int { return int(to.bridge.Stats().Received) })
			checkAccounting(t, to.bridge)

			want := []string{"run1-0", "run1-1", "run1-2", "run1-3", "run1-4", "run2-0", "run2-1", "run2-2"}
			if got := payloads(t, rec.snapshot()); !slices.Equal(got, want) {
				t.Errorf("delivered %v, want %v", got, want)
			}
			s := to.bridge.Stats()
			if s.Replayed != 5 || s.Duplicates != 0 || s.Gaps != 0 {
				t.Errorf("replayed %d, duplicates %d, gaps %d; want 5, 0, 0", s.Replayed, s.Duplicates, s.Gaps)
			}
			if to.errs.count(bridge.ErrReplay) == 0 {
				t.Errorf("replays not reported:\n%s", to.errs)
			}
		})
	}
}

// TestReplayIntoFreshReceiver replays recorded signed messages to a
// receiver started after they were sent, which knows nothing of their
// source: pub/sub receivers reject those sent longer ago than
// ReplayWindow (before it, they accepted every recorded message), while a
// new event of the sender still arrives. Within the window, a fresh
// receiver does accept a recording: what the documentation says signing
// does not protect against.
func TestReplayIntoFreshReceiver(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	w := tap(t, rdb, bridge.PubSub)
	from := newInstance(t, srv.Client(t), signedOptions("sender", bridge.Export, bridge.PubSub))
	for i := range 5 {
		publish(t, from.bus, "rp.x", fmt.Sprintf("old-%d", i))
	}
	recorded := w.next(5)

	const window = 300 * time.Millisecond
	time.Sleep(2 * window)
	opts := signedOptions("receiver", bridge.Import, bridge.PubSub)
	opts.ReplayWindow = window
	to := newInstance(t, srv.Client(t), opts)
	rec := record(t, to.bus, "rp.x")
	for _, msg := range recorded {
		inject(t, rdb, bridge.PubSub, "app:", "rp.x", msg)
	}
	publish(t, from.bus, "rp.x", "new")
	eventually(t, func() bool { s := to.bridge.Stats(); return s.Received == 6 && s.ImportDepth == 0 },
		"6 messages handled: %d", func() int { return int(to.bridge.Stats().Received) })
	checkAccounting(t, to.bridge)
	if got := payloads(t, rec.snapshot()); !slices.Equal(got, []string{"new"}) {
		t.Errorf("delivered %v, want only the new event", got)
	}
	if s := to.bridge.Stats(); s.Replayed != 5 {
		t.Errorf("replayed %d, want 5", s.Replayed)
	}
	var replay error
	for _, err := range to.errs.all() {
		if errors.Is(err, bridge.ErrReplay) {
			replay = err
			break
		}
	}
	if replay == nil {
		t.Errorf("replays not reported:\n%s", to.errs)
	} else {
		t.Logf("reported: %v", replay)
	}

	// The documented limit: within its window, a receiver that never saw
	// the source accepts a recording once.
	fresh := newInstance(t, srv.Client(t), signedOptions("fresh", bridge.Import, bridge.PubSub))
	frec := record(t, fresh.bus, "rp.x")
	inject(t, rdb, bridge.PubSub, "app:", "rp.x", recorded[0])
	frec.waitFor(t, 1)
}

// TestReplayWindowDefault: a SigningKey turns the window on, longer than
// the outbox's age limit; without one there is none unless asked for.
func TestReplayWindowDefault(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts bridge.Options
		old  time.Duration // age of the message sent
		want bool          // accepted
	}{
		{"signed, fresh", bridge.Options{SigningKey: replayKey}, 0, true},
		{"signed, 5 minutes old (within OutboxMaxAge)", bridge.Options{SigningKey: replayKey}, 5*time.Minute + 30*time.Second, true},
		{"signed, an hour old", bridge.Options{SigningKey: replayKey}, time.Hour, false},
		{"signed, an hour ahead", bridge.Options{SigningKey: replayKey}, -time.Hour, false},
		{"signed, no window", bridge.Options{SigningKey: replayKey, ReplayWindow: -1}, time.Hour, true},
		{"unsigned", bridge.Options{}, time.Hour, true},
		{"unsigned, window", bridge.Options{ReplayWindow: time.Minute}, time.Hour, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, nil)
			opts := testOptions(nil, bridge.Route{Pattern: "rp.x", Direction: bridge.Import})
			opts.SigningKey, opts.ReplayWindow = tc.opts.SigningKey, tc.opts.ReplayWindow
			to := newInstance(t, srv.Client(t), opts)
			env := signedEnvelope("app:rp.x", tc.opts.SigningKey, 1, time.Now().Add(-tc.old).UnixNano())
			inject(t, srv.Client(t), bridge.PubSub, "app:", "rp.x", env)
			// Imported counts once the local publish returned, after
			// the import queue is empty: wait for the verdict itself.
			eventually(t, func() bool { s := to.bridge.Stats(); return s.Received == 1 && s.Imported+s.Replayed == 1 }, "received and judged")
			if s := to.bridge.Stats(); (s.Imported == 1) != tc.want || (s.Replayed == 1) == tc.want {
				t.Errorf("imported %d, replayed %d; want accepted %v", s.Imported, s.Replayed, tc.want)
			}
		})
	}
}
