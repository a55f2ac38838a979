package bridge_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestCoalesce holds the exporter's PUBLISHes back with CLIENT PAUSE WRITE
// while events pile up in its outbox, so that the flusher finds them
// waiting together, and checks what comes out: with coalescing, fewer
// messages than events, none over CoalesceBytes, and every event delivered
// on the other side once, in order per topic, with its own sequence
// number, time, headers and payload; without coalescing, one message per
// event. A plain Redis subscriber counts the messages.
func TestCoalesce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		coalesce int
		signed   bool
		// maxMessages bounds the messages of the busy topic, whose
		// events are all in the outbox together after the first.
		maxMessages func(events int) int
		minMessages func(events int) int
	}{
		{"default", 0, false, func(n int) int { return n / 20 }, func(int) int { return 2 }},
		{"signed", 0, true, func(n int) int { return n / 20 }, func(int) int { return 2 }},
		{"small messages", 1500, false, func(n int) int { return n / 5 }, func(n int) int { return n / 40 }},
		{"off", -1, false, func(n int) int { return n }, func(n int) int { return n }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, nil)
			route := bridge.Route{Pattern: "coal.*"}
			opts := func() *bridge.Options {
				o := testOptions(nil, route)
				o.CoalesceBytes = tc.coalesce
				if tc.signed {
					o.SigningKey = []byte("coalesce-key")
				}
				return o
			}
			from := newInstance(t, srv.Client(t), opts())
			to := newInstance(t, srv.Client(t), opts())
			plain := subscribePlain(t, srv.Client(t), []string{"app:coal.busy"}, nil)
			recBusy := record(t, to.bus, "coal.busy")
			recQuiet := record(t, to.bus, "coal.quiet")

			ctx := context.Background()
			if err := srv.Client(t).Do(ctx, "CLIENT", "PAUSE", "300", "WRITE").Err(); err != nil {
				t.Fatal(err)
			}
			const n = 1000
			quiet := 0
			for i := range n {
				e := bus.Event{Topic: "coal.busy", Payload: fmt.Sprintf("busy-%d", i)}
				if i%7 == 0 {
					e.Meta = &bus.Meta{Headers: map[string]string{"i": strconv.Itoa(i)}}
				}
				if err := from.bus.PublishEvent(ctx, e); err != nil {
					t.Fatal(err)
				}
				if i%100 == 50 { // interleaved: runs break here
					publish(t, from.bus, "coal.quiet", fmt.Sprintf("quiet-%d", quiet))
					quiet++
				}
			}

			busy := recBusy.waitFor(t, n)
			for i, e := range busy {
				if want := fmt.Sprintf("busy-%d", i); e.Payload != want {
					t.Fatalf("busy event %d: %v, want %q", i, e.Payload, want)
				}
				if e.Meta.Seq != uint64(i+1) || e.Meta.Source != from.bridge.InstanceID() || e.Meta.Time.IsZero() {
					t.Fatalf("busy event %d: meta %+v", i, e.Meta)
				}
				if h := e.Meta.Headers["i"]; (i%7 == 0) != (h != "") || (h != "" && h != strconv.Itoa(i)) {
					t.Fatalf("busy event %d: headers %v", i, e.Meta.Headers)
				}
				if i > 0 && e.Meta.Time.Before(busy[i-1].Meta.Time) {
					t.Fatalf("busy event %d: time %v before the previous one's %v", i, e.Meta.Time, busy[i-1].Meta.Time)
				}
			}
			for i, e := range recQuiet.waitFor(t, quiet) {
				if want := fmt.Sprintf("quiet-%d", i); e.Payload != want || e.Meta.Seq != uint64(i+1) {
					t.Fatalf("quiet event %d: %v seq %d, want %q seq %d", i, e.Payload, e.Meta.Seq, want, i+1)
				}
			}

			msgs := plain.collect(300 * time.Millisecond)
			t.Logf("%d events of the busy topic in %d messages", n, len(msgs))
			if got, lo, hi := len(msgs), tc.minMessages(n), tc.maxMessages(n); got < lo || got > hi {
				t.Errorf("%d messages carried %d events, want %d..%d", got, n, lo, hi)
			}
			limit := tc.coalesce
			if limit == 0 {
				limit = 64 << 10
			}
			for _, m := range msgs {
				if limit > 0 && len(m) > limit {
					t.Errorf("a %d-byte message, CoalesceBytes %d", len(m), limit)
				}
			}
			time.Sleep(100 * time.Millisecond) // anything extra would arrive now
			if got := recBusy.len() + recQuiet.len(); got != n+quiet {
				t.Errorf("%d events delivered, want %d", got, n+quiet)
			}
			s := to.bridge.Stats()
			if s.Imported != uint64(n+quiet) || s.Gaps != 0 || s.Duplicates != 0 {
				t.Errorf("receiver: %+v", s)
			}
			// The quiet topic's events are alone in their runs: one
			// message each.
			if s := from.bridge.Stats(); s.Exported != uint64(n+quiet) || s.ExportMessages != uint64(len(msgs)+quiet) {
				t.Errorf("sender exported %d events in %d messages, want %d in %d", s.Exported, s.ExportMessages, n+quiet, len(msgs)+quiet)
			}
			checkAccounting(t, to.bridge)
			checkAccounting(t, from.bridge) // its own echoes, one per event
		})
	}
}

// collect returns the payloads of the messages that arrive within d of
// each other.
func (p *plainSubscriber) collect(d time.Duration) []string {
	var msgs []string
	for {
		msg, err := p.ps.ReceiveTimeout(context.Background(), d)
		if err != nil {
			return msgs
		}
		if m, ok := msg.(*redis.Message); ok {
			msgs = append(msgs, m.Payload)
		}
	}
}
