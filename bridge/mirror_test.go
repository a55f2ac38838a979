package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestDirections checks that an Export route only sends and an Import route
// only receives.
func TestDirections(t *testing.T) {
	srv := redistest.Start(t, nil)
	a := newInstance(t, srv.Client(t), testOptions(nil,
		bridge.Route{Pattern: "out.*", Direction: bridge.Export},
		bridge.Route{Pattern: "in.*", Direction: bridge.Import},
	))
	b := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "**"}))
	recA := record(t, a.bus, "**")
	recB := record(t, b.bus, "**")

	publish(t, a.bus, "out.x", "from a")  // exported
	publish(t, a.bus, "in.x", "local a")  // not exported: import only
	publish(t, b.bus, "in.y", "from b")   // imported by a
	publish(t, b.bus, "out.y", "other b") // not imported by a: export only
	got := recB.waitFor(t, 3)             // in.y and out.y locally, out.x from a
	eventually(t, func() bool { return recA.len() >= 3 }, "a's events")
	time.Sleep(100 * time.Millisecond) // let anything unwanted arrive

	if s := a.bridge.Stats(); s.Exported != 1 || s.Imported != 1 {
		t.Errorf("a: exported %d, imported %d; want 1, 1", s.Exported, s.Imported)
	}
	var remoteB []string
	for _, e := range recB.snapshot() {
		if e.Remote() {
			remoteB = append(remoteB, e.Topic)
		}
	}
	if len(remoteB) != 1 || remoteB[0] != "out.x" || len(got) != 3 {
		t.Errorf("b received %v from a, want [out.x]", remoteB)
	}
	var remoteA []string
	for _, e := range recA.snapshot() {
		if e.Remote() {
			remoteA = append(remoteA, e.Topic)
		}
	}
	if len(remoteA) != 1 || remoteA[0] != "in.y" {
		t.Errorf("a received %v from b, want [in.y]", remoteA)
	}
}

type Order struct {
	ID    int      `json:"id"`
	Items []string `json:"items"`
}

// TestCodecs checks that subscribers get the Go types local publishers
// use: strings and bytes through the default codec, *Order through
// JSON[*Order], so SubscribeTyped handlers work for remote events too.
func TestCodecs(t *testing.T) {
	srv := redistest.Start(t, nil)
	routes := []bridge.Route{
		{Pattern: "typed.*", Codec: bridge.JSON[*Order]()},
		{Pattern: "plain.*"},
	}
	a := newInstance(t, srv.Client(t), testOptions(nil, routes...))
	b := newInstance(t, srv.Client(t), testOptions(nil, routes...))

	orders := make(chan *Order, 2)
	if _, err := bus.SubscribeTyped(b.bus, "typed.*", func(_ context.Context, e bus.Event, o *Order) {
		orders <- o
	}); err != nil {
		t.Fatal(err)
	}
	rec := record(t, b.bus, "plain.*")

	publish(t, a.bus, "typed.order", &Order{ID: 7, Items: []string{"tea"}})
	publish(t, a.bus, "plain.s", "text")
	publish(t, a.bus, "plain.b", []byte{0, 1, 2})
	publish(t, a.bus, "plain.j", map[string]int{"n": 1})

	select {
	case o := <-orders:
		if o.ID != 7 || len(o.Items) != 1 || o.Items[0] != "tea" {
			t.Errorf("got %+v", o)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no typed event")
	}
	events := rec.waitFor(t, 3)
	want := map[string]struct {
		payload any
		ct      string
	}{
		"plain.s": {"text", bridge.ContentTypeText},
		"plain.b": {[]byte{0, 1, 2}, bridge.ContentTypeBytes},
		"plain.j": {[]byte(`{"n":1}`), bridge.ContentTypeJSON},
	}
	for _, e := range events {
		w := want[e.Topic]
		switch p := e.Payload.(type) {
		case string:
			if p != w.payload {
				t.Errorf("%s: %q", e.Topic, p)
			}
		case []byte:
			wb, ok := w.payload.([]byte)
			if !ok || !bytes.Equal(p, wb) {
				t.Errorf("%s: %q, want %v", e.Topic, p, w.payload)
			}
		default:
			t.Errorf("%s: payload type %T", e.Topic, p)
		}
		if e.Meta.ContentType != w.ct {
			t.Errorf("%s: content type %q, want %q", e.Topic, e.Meta.ContentType, w.ct)
		}
	}

	// A message the typed codec cannot decode is counted, reported and
	// not delivered.
	if _, err := srv.CLI("PUBLISH", "app:typed.bad", "not json"); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return b.bridge.Stats().DecodeErrors == 1 }, "decode error")
	checkAccounting(t, b.bridge)
	if n := b.errs.count(bridge.ErrDecode); n != 1 {
		t.Errorf("%d ErrDecode reports, want 1:\n%s", n, b.errs)
	}
	// An encoding failure is counted and reported, and never panics.
	publish(t, a.bus, "plain.bad", func() {})
	eventually(t, func() bool { return a.bridge.Stats().EncodeErrors == 1 }, "encode error")
	if n := a.errs.count(bridge.ErrEncode); n != 1 {
		t.Errorf("%d ErrEncode reports, want 1", n)
	}
}

// TestOverlappingImports subscribes to topics through an exact route, two
// pattern routes and a route whose glob equals another's: Redis sends the
// bridge one copy of a message per matching subscription, and the bus
// receives one.
func TestOverlappingImports(t *testing.T) {
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil,
		bridge.Route{Pattern: "*.created", Direction: bridge.Import},
		bridge.Route{Pattern: "orders.*", Direction: bridge.Import},
		bridge.Route{Pattern: "orders.**", Direction: bridge.Import}, // same glob as orders.*
		bridge.Route{Pattern: "orders.paid", Direction: bridge.Import},
	))
	channels, patterns := in.bridge.RedisSubscriptions()
	if len(channels) != 1 || len(patterns) != 2 {
		t.Fatalf("subscriptions %v %v: want 1 channel and 2 globs", channels, patterns)
	}
	rec := record(t, in.bus, "**")

	// orders.paid: exact and one glob; orders.created: two globs;
	// users.created and orders.a.b: one glob each.
	for _, ch := range []string{"app:orders.created", "app:orders.paid", "app:users.created", "app:orders.a.b"} {
		if _, err := srv.CLI("PUBLISH", ch, ch); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitFor(t, 4)
	eventually(t, func() bool { return in.bridge.Stats().Received == 2+2+1+1 }, "all copies")
	time.Sleep(100 * time.Millisecond)
	var topics []string
	for _, e := range rec.snapshot() {
		topics = append(topics, e.Topic)
	}
	if strings.Join(topics, " ") != "orders.created orders.paid users.created orders.a.b" {
		t.Errorf("delivered %v, want each topic once", topics)
	}
	if s := in.bridge.Stats(); s.DuplicateCopies != 2 || s.Imported != 4 {
		t.Errorf("duplicate copies %d, imported %d; want 2, 4", s.DuplicateCopies, s.Imported)
	}
	checkAccounting(t, in.bridge)
}

// TestGlobFiltering checks that the messages a widened Redis glob lets in
// are filtered out by the bus pattern.
func TestGlobFiltering(t *testing.T) {
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "orders.{eu,us}", Direction: bridge.Import}))
	rec := record(t, in.bus, "**")
	for _, ch := range []string{"app:orders.fr", "app:orders.eu.x", "app:orders.us"} {
		if _, err := srv.CLI("PUBLISH", ch, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if first := rec.waitFor(t, 1)[0]; first.Topic != "orders.us" {
		t.Errorf("delivered %v first, want orders.us", first)
	}
	eventually(t, func() bool { return in.bridge.Stats().Received == 3 }, "messages")
	time.Sleep(50 * time.Millisecond)
	if events := rec.snapshot(); len(events) != 1 || events[0].Topic != "orders.us" {
		t.Errorf("delivered %v, want orders.us only", events)
	}
	if s := in.bridge.Stats(); s.Filtered != 2 {
		t.Errorf("filtered %d, want 2", s.Filtered)
	}
	checkAccounting(t, in.bridge)
}

// TestRawInterop uses redis-cli as a foreign publisher and subscriber. A
// raw route delivers redis-cli's bytes exactly and exports bytes redis-cli
// prints as they are; an enveloped route delivers a foreign message without
// the envelope magic as raw bytes.
func TestRawInterop(t *testing.T) {
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil,
		bridge.Route{Pattern: "notifications", Raw: true},
		bridge.Route{Pattern: "events.*"},
	))
	rec := record(t, in.bus, "**")

	// Foreign publisher.
	if _, err := srv.CLI("PUBLISH", "app:notifications", "hi"); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLI("PUBLISH", "app:events.x", "plain text"); err != nil {
		t.Fatal(err)
	}
	events := rec.waitFor(t, 2)
	for i, want := range []struct{ topic, payload string }{{"notifications", "hi"}, {"events.x", "plain text"}} {
		e := events[i]
		p, ok := e.Payload.([]byte)
		if e.Topic != want.topic || !ok || string(p) != want.payload || e.Meta.Source != bridge.RawSource {
			t.Errorf("event %d: %s %T %q source %q; want %s []byte %q source %q", i, e.Topic, e.Payload, e.Payload, e.Meta.Source, want.topic, want.payload, bridge.RawSource)
		}
	}
	// Imported raw events are never exported again.
	time.Sleep(50 * time.Millisecond)
	if s := in.bridge.Stats(); s.Exported != 0 {
		t.Errorf("re-exported %d imported events", s.Exported)
	}

	// Foreign subscriber: redis-cli SUBSCRIBE prints the exported bytes.
	host, port, _ := strings.Cut(srv.Addr(), ":")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cli := exec.CommandContext(ctx, "redis-cli", "-h", host, "-p", port, "SUBSCRIBE", "app:notifications")
	out, err := cli.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cli.Wait()
	}()
	lines := bufio.NewScanner(out)
	// redis-cli prints "subscribe", the channel and the count once it is
	// subscribed.
	for i := 0; i < 3 && lines.Scan(); i++ {
	}
	publish(t, in.bus, "notifications", []byte("raw bytes \x01"))
	var got []string
	for len(got) < 3 && lines.Scan() {
		got = append(got, lines.Text())
	}
	if len(got) != 3 || got[0] != "message" || got[1] != "app:notifications" || got[2] != "raw bytes \x01" {
		t.Errorf("redis-cli printed %q", got)
	}
	// The bridge dropped the echo of its own raw message.
	eventually(t, func() bool { return in.bridge.Stats().EchoesDropped == 1 }, "echo")
	if n := len(rec.snapshot()); n != 3 {
		t.Errorf("%d events on the bus, want 3 (two imported, one local)", n)
	}
}

// TestRawEchoSuppression checks that a bridge drops the echo of what it
// sent on a raw route it also imports, but not a foreign message with
// other content, nor a second identical foreign message.
func TestRawEchoSuppression(t *testing.T) {
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "chat.*", Raw: true, Codec: bridge.Text()}))
	rec := record(t, in.bus, "chat.*")
	publish(t, in.bus, "chat.room", "hello")
	eventually(t, func() bool { return in.bridge.Stats().EchoesDropped == 1 }, "echo dropped")
	for _, msg := range []string{"hello", "other"} {
		if _, err := srv.CLI("PUBLISH", "app:chat.room", msg); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitFor(t, 3)
	time.Sleep(50 * time.Millisecond) // room for an echo wrongly delivered
	events := rec.snapshot()
	if len(events) != 3 || events[0].Remote() || !events[1].Remote() || !events[2].Remote() {
		t.Fatalf("events %v: want the local one and two foreign ones", events)
	}
	if s := in.bridge.Stats(); s.EchoesDropped != 1 || s.Imported != 2 {
		t.Errorf("echoes %d, imported %d; want 1, 2", s.EchoesDropped, s.Imported)
	}
}
