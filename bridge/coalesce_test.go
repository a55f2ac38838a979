package bridge_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// TestCoalesce holds the exporter's PUBLISHes back with CLIENT PAUSE WRITE
// while events pile up in its outbox, so that the flusher finds them
// waiting together, and checks what comes out: with coalescing, fewer
// messages than events, none over CoalesceBytes, and every event delivered
// on the other side once, in order per topic, with its own sequence
// number, time, headers and payload; without coalescing, one message per
// event. A plain Redis subscriber counts the messages.
//
// The events of a second topic are published between them now and then:
// they are grouped with each other (see TestCoalesceGroups).
func TestCoalesce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		coalesce int
		signed   bool
		// maxMessages and minMessages bound the messages of the busy
		// topic, whose events are all in the outbox together (after
		// the first, which may have gone before the pause held the
		// flusher back).
		maxMessages func(events int) int
		minMessages func(events int) int
	}{
		{"default", 0, false, func(n int) int { return n / 20 }, func(int) int { return 1 }},
		{"signed", 0, true, func(n int) int { return n / 20 }, func(int) int { return 1 }},
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
			plain := subscribePlain(t, srv.Client(t), []string{"app:coal.busy", "app:coal.quiet"}, nil)
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

			busy := recBusy.waitOrdered(t, n)
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
			for i, e := range recQuiet.waitOrdered(t, quiet) {
				if want := fmt.Sprintf("quiet-%d", i); e.Payload != want || e.Meta.Seq != uint64(i+1) {
					t.Fatalf("quiet event %d: %v seq %d, want %q seq %d", i, e.Payload, e.Meta.Seq, want, i+1)
				}
			}

			all := plain.collect(300 * time.Millisecond)
			var msgs []*redis.Message
			quietMsgs := 0
			for _, m := range all {
				if m.Channel == "app:coal.busy" {
					msgs = append(msgs, m)
				} else {
					quietMsgs++
				}
			}
			t.Logf("%d events of the busy topic in %d messages, %d of the quiet one in %d", n, len(msgs), quiet, quietMsgs)
			if got, lo, hi := len(msgs), tc.minMessages(n), tc.maxMessages(n); got < lo || got > hi {
				t.Errorf("%d messages carried %d events, want %d..%d", got, n, lo, hi)
			}
			if got, lo, hi := quietMsgs, tc.minMessages(quiet), tc.maxMessages(quiet); got < min(lo, 1) || got > max(hi, 3) {
				t.Errorf("%d messages carried the quiet topic's %d events, want %d..%d", got, quiet, min(lo, 1), max(hi, 3))
			}
			limit := tc.coalesce
			if limit == 0 {
				limit = 64 << 10
			}
			for _, m := range all {
				if limit > 0 && len(m.Payload) > limit {
					t.Errorf("a %d-byte message, CoalesceBytes %d", len(m.Payload), limit)
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
			if s := from.bridge.Stats(); s.Exported != uint64(n+quiet) || s.ExportMessages != uint64(len(all)) {
				t.Errorf("sender exported %d events in %d messages, want %d in %d", s.Exported, s.ExportMessages, n+quiet, len(all))
			}
			checkAccounting(t, to.bridge)
			checkAccounting(t, from.bridge) // its own echoes, one per event
		})
	}
}

// TestCoalesceGroups checks that the flusher groups the exports waiting
// together by channel before coalescing them, keeping the order of each
// channel, and that raw exports keep their place: a plain Redis subscriber
// sees them in publishing order.
func TestCoalesceGroups(t *testing.T) {
	for _, tc := range []struct {
		name   string
		topics []string // published in turn
		// wantOrder: the plain subscriber sees one message per event,
		// in publishing order; otherwise few, coalesced messages.
		wantOrder bool
	}{
		{"interleaved topics", []string{"grp.a", "grp.b", "grp.c"}, false},
		{"raw exports in between", []string{"grp.a", "grp.b", "raw.r"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, nil)
			routes := []bridge.Route{{Pattern: "grp.*"}, {Pattern: "raw.r", Raw: true, Codec: bridge.Text()}}
			from := newInstance(t, srv.Client(t), testOptions(nil, routes...))
			to := newInstance(t, srv.Client(t), testOptions(nil, routes...))
			plain := subscribePlain(t, srv.Client(t), nil, []string{"app:*"})
			recs := map[string]*recorder{}
			for _, topic := range tc.topics {
				recs[topic] = record(t, to.bus, topic)
			}

			ctx := context.Background()
			if err := srv.Client(t).Do(ctx, "CLIENT", "PAUSE", "300", "WRITE").Err(); err != nil {
				t.Fatal(err)
			}
			const rounds = 200
			for i := range rounds {
				for _, topic := range tc.topics {
					publish(t, from.bus, topic, fmt.Sprintf("%s-%d", topic, i))
				}
			}
			for topic, rec := range recs {
				for i, e := range rec.waitOrdered(t, rounds) {
					if want := fmt.Sprintf("%s-%d", topic, i); string(payloadBytes(e.Payload)) != want {
						t.Fatalf("%s: event %d is %v, want %q", topic, i, e.Payload, want)
					}
				}
			}
			msgs := plain.collect(300 * time.Millisecond)
			events := rounds * len(tc.topics)
			if !tc.wantOrder {
				// The first flush (of the first round or so, before
				// the pause), then two of up to 512 (BatchSize): at
				// most one message per topic each.
				if len(msgs) > 3*len(tc.topics) {
					t.Errorf("%d events in %d messages: not grouped", events, len(msgs))
				}
				return
			}
			if len(msgs) != events {
				t.Fatalf("%d messages for %d events, want one each", len(msgs), events)
			}
			for k, m := range msgs {
				if want := "app:" + tc.topics[k%len(tc.topics)]; m.Channel != want {
					t.Fatalf("message %d on %s, want %s: publishing order lost", k, m.Channel, want)
				}
			}
		})
	}
}

// payloadBytes returns the bytes of a string or []byte payload.
func payloadBytes(p any) []byte {
	switch v := p.(type) {
	case []byte:
		return v
	case string:
		return []byte(v)
	}
	return nil
}

// collect returns the messages that arrive within d of each other.
func (p *plainSubscriber) collect(d time.Duration) []*redis.Message {
	var msgs []*redis.Message
	for {
		msg, err := p.ps.ReceiveTimeout(context.Background(), d)
		if err != nil {
			return msgs
		}
		if m, ok := msg.(*redis.Message); ok {
			msgs = append(msgs, m)
		}
	}
}

// TestMalformedFromRedis publishes, with a plain client, messages that
// start with the envelope magic but are cut short or malformed, batches
// included, on an enveloped route: each is counted and reported as a
// decode error, nothing is delivered or panics, and a valid event sent
// after them still arrives.
func TestMalformedFromRedis(t *testing.T) {
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "bad.*"}))
	from := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "bad.*", Direction: bridge.Export}))
	rec := record(t, in.bus, "bad.*")
	rdb := srv.Client(t)
	ctx := context.Background()
	bad := []string{
		"\xb5\x1e",                          // magic only
		"\xb5\x1e\x01",                      // no flags
		"\xb5\x1e\x01\x04",                  // a batch, nothing after the flags
		"\xb5\x1e\x01\x04\x01a\x01\x05\x00", // a batch of 5, cut after its first event flags
		"\xb5\x1e\x01\x04\x01a\x01\x01\x00\x00\x00\x00", // a batch of 1
		"\xb5\x1e\x01\x06\x01a\x01\x02",                 // headers flag on a batch
	}
	for _, msg := range bad {
		if err := rdb.Publish(ctx, "app:bad.x", msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, from.bus, "bad.x", "fine")
	events := rec.waitFor(t, 1)
	if len(events) != 1 || events[0].Payload != "fine" {
		t.Fatalf("delivered %v", events)
	}
	eventually(t, func() bool { return in.bridge.Stats().DecodeErrors == uint64(len(bad)) }, "decode errors: %d", func() int {
		return int(in.bridge.Stats().DecodeErrors)
	})
	if n := in.errs.count(bridge.ErrMalformed); n == 0 {
		t.Errorf("no ErrMalformed reported:\n%s", in.errs)
	}
	checkAccounting(t, in.bridge)
}
