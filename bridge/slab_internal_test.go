package bridge

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/wire"
	"github.com/redis/go-redis/v9"
)

// TestSlabClone checks what a slab hands out: a copy of its own, as long
// as the original, nil for nil and non-nil for empty, whatever its size;
// carved from a chunk, of no more capacity than its length, so that a
// handler's append cannot reach a neighbour.
func TestSlabClone(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"one byte", []byte("x")},
		{"small", []byte("a small payload")},
		{"slabMax", bytes.Repeat([]byte("m"), slabMax)},
		{"past slabMax", bytes.Repeat([]byte("l"), slabMax+1)},
		{"a chunk", bytes.Repeat([]byte("c"), slabBytes)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s slab
			s.clone([]byte("before")) // not the chunk's first
			got := s.clone(tc.b)
			switch {
			case !bytes.Equal(got, tc.b):
				t.Fatalf("clone = %q, want %q", got, tc.b)
			case (got == nil) != (tc.b == nil):
				t.Fatalf("clone of a nil %v is nil %v", tc.b == nil, got == nil)
			case len(tc.b) <= slabMax && cap(got) != len(got): // carved from a chunk
				t.Fatalf("capacity %d, want its length %d", cap(got), len(got))
			case len(tc.b) > 0 && &got[0] == &tc.b[0]:
				t.Fatal("clone aliases its argument")
			}
		})
	}
}

// TestSlabDisjoint hands out payloads and Metas and keeps them all, as
// handlers may, then checks that nothing handed out later, nor an append
// to one of them, changed another: no memory is handed out twice.
func TestSlabDisjoint(t *testing.T) {
	var s slab
	var kept [][]byte
	var metas []*bus.Meta
	for i := range 3000 {
		p := fmt.Appendf(nil, "payload %d %s", i, bytes.Repeat([]byte{'p'}, i%300))
		kept = append(kept, s.clone(p))
		m := s.meta()
		if m.Source != "" || m.Seq != 0 || !m.Time.IsZero() || m.ContentType != "" || m.Headers != nil || m.ReplyTo != "" {
			t.Fatalf("meta %d is not zero: %+v", i, *m)
		}
		m.Seq = uint64(i)
		metas = append(metas, m)
	}
	for i, p := range kept {
		_ = append(p, "appended by a handler"...)
		kept[i] = p
	}
	for i, p := range kept {
		want := fmt.Appendf(nil, "payload %d %s", i, bytes.Repeat([]byte{'p'}, i%300))
		if !bytes.Equal(p, want) {
			t.Fatalf("payload %d is %q, want %q", i, p, want)
		}
		if metas[i].Seq != uint64(i) {
			t.Fatalf("meta %d has Seq %d", i, metas[i].Seq)
		}
	}
}

// TestIngestOwnsPayloads sends batches and plain envelopes through a read
// loop's ingest path and keeps every event's payload, as a handler may:
// each must keep its bytes while later messages are accepted, and a plain
// envelope from a message the transport does not give away (inbound.own
// unset, as a stream entry's) must not alias it.
func TestIngestOwnsPayloads(t *testing.T) {
	br := newOffline(t, bus.New(nil), &Options{Prefix: "app:", Routes: []Route{{Pattern: "in.*", Direction: Import}}})
	// A transport of its own, not started: the bridge's has a loop of
	// its own trying to connect.
	ps := &pubsubTransport{br: br}
	ps.subscribed("psubscribe", "app:in.*", true) // as Redis confirms it
	var sub subscriber = ps
	var got []importItem
	rl := readLoop{br: br, sub: sub, in: br.newIngest(true, false, func(it importItem) { got = append(got, it) })}

	const channel = "app:in.x"
	now := time.Now()
	seq := uint64(1)
	event := func() wire.Envelope {
		defer func() { seq++ }()
		return wire.Envelope{Source: "other", Epoch: 7, Seq: seq, Time: now.UnixNano(), Payload: fmt.Appendf(nil, "event %d", seq)}
	}
	for range 50 {
		envs := make([]wire.Envelope, 40)
		for i := range envs {
			envs[i] = event()
		}
		rl.handle(pushOf(&redis.Message{Channel: channel, Pattern: "app:in.*", Payload: string(wire.AppendBatch(nil, channel, envs, nil))}), now)
		env := event()
		rl.handle(pushOf(&redis.Message{Channel: channel, Pattern: "app:in.*", Payload: string(wire.AppendEnvelope(nil, channel, &env, nil))}), now)
	}
	topic, r, _ := sub.route(channel, []byte("app:in.*"))
	for _, entry := range []string{"", "1-0"} { // a pub/sub message, a stream entry
		env := event()
		msg := wire.AppendEnvelope(nil, channel, &env, nil)
		rl.in.accept(&inbound{channel: channel, topic: topic, route: r, data: msg, now: now.UnixNano(), entry: entry, key: "app:stream"})
		clear(msg) // the transport reuses its memory
	}

	if want := int(seq - 1); len(got) != want {
		t.Fatalf("%d events accepted, want %d (stats %+v)", len(got), want, br.Stats())
	}
	for i, it := range got {
		if want := fmt.Sprintf("event %d", i+1); string(it.payload) != want {
			t.Fatalf("event %d has payload %q, want %q", i+1, it.payload, want)
		}
		if it.meta.Seq != uint64(i+1) || it.meta.Source != "other" {
			t.Fatalf("event %d has meta %+v", i+1, *it.meta)
		}
	}
}
