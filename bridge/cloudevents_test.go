package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// TestCloudEventsMirror sends events of each payload type through a
// CloudEvents route of each delivery between two bridges: they arrive
// with the Go types and the Meta the sender gave them (source, sequence,
// time, content type, headers, plus the event's id and type), and what
// Redis holds is a CloudEvent encoding/json reads.
func TestCloudEventsMirror(t *testing.T) {
	for _, d := range []bridge.Delivery{bridge.PubSub, bridge.Stream, bridge.Group} {
		t.Run(d.String(), func(t *testing.T) { testCloudEventsMirror(t, d) })
	}
}

func testCloudEventsMirror(t *testing.T, d bridge.Delivery) {
	srv := redistest.Start(t, nil)
	out := bridge.Route{Pattern: "ce.*", Format: bridge.CloudEvents, Delivery: d, Direction: bridge.Export}
	in := out
	in.Direction = bridge.Import
	oa := testOptions(nil, out)
	oa.InstanceID = "urn:busline:a"
	a := newInstance(t, srv.Client(t), oa)
	ob := testOptions(nil, in)
	ob.InstanceID = "b" // a Stream route keeps its checkpoint under it
	b := newInstance(t, srv.Client(t), ob)
	rec := record(t, b.bus, "ce.*")

	// What Redis carries, read with a plain client.
	raw := srv.Client(t)
	var sub *redis.PubSub
	if d == bridge.PubSub {
		sub = raw.Subscribe(context.Background(), "app:ce.json")
		t.Cleanup(func() { _ = sub.Close() })
		if _, err := sub.Receive(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	before := time.Now()
	headers := map[string]string{"traceparent": traceparent, "tracestate": "busline=1", "subject": "order-42"}
	if err := a.bus.PublishEvent(context.Background(), bus.Event{Topic: "ce.json", Payload: Order{ID: 42, Items: []string{"é"}}, Meta: &bus.Meta{Headers: headers}}); err != nil {
		t.Fatal(err)
	}
	publish(t, a.bus, "ce.text", "hello \"world\"\n")
	publish(t, a.bus, "ce.bytes", []byte{0, 0xff, 0xb5, 0x1e})

	got := map[string]bus.Event{}
	for _, e := range rec.waitFor(t, 3) {
		got[e.Topic] = e
	}
	for topic, want := range map[string]struct {
		payload     string
		contentType string
	}{
		"ce.json":  {`{"id":42,"items":["é"]}`, bridge.ContentTypeJSON},
		"ce.text":  {"hello \"world\"\n", bridge.ContentTypeText},
		"ce.bytes": {"\x00\xff\xb5\x1e", bridge.ContentTypeBytes},
	} {
		e, ok := got[topic]
		if !ok {
			t.Errorf("%s: not delivered", topic)
			continue
		}
		m := e.Meta
		if p := fmt.Sprint(e.Payload); topic == "ce.text" && e.Payload != want.payload ||
			topic != "ce.text" && string(e.Payload.([]byte)) != want.payload {
			t.Errorf("%s: payload %T %q, want %q", topic, e.Payload, p, want.payload)
		}
		if m.Source != "urn:busline:a" || m.Seq != 1 || m.ContentType != want.contentType ||
			m.Time.Before(before.Add(-time.Second)) || time.Since(m.Time) > waitTimeout {
			t.Errorf("%s: meta %+v", topic, m)
		}
		if m.Headers["type"] != topic || m.Headers["id"] != "app:"+topic+":1" {
			t.Errorf("%s: id %q, type %q", topic, m.Headers["id"], m.Headers["type"])
		}
	}
	if h := got["ce.json"].Meta.Headers; h["traceparent"] != traceparent || h["tracestate"] != "busline=1" || h["subject"] != "order-42" || len(h) != 5 {
		t.Errorf("headers %v", h)
	}

	// Redis holds the JSON of the event.
	var msg string
	if d == bridge.PubSub {
		m, err := sub.ReceiveTimeout(context.Background(), waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		msg = m.(*redis.Message).Payload
	} else {
		entries, err := raw.XRange(context.Background(), "app:stream:ce.*", "-", "+").Result()
		if err != nil || len(entries) != 3 {
			t.Fatalf("XRANGE: %d entries, %v", len(entries), err)
		}
		if entries[0].Values["topic"] != "ce.json" {
			t.Errorf("entry %v", entries[0].Values)
		}
		msg = entries[0].Values["data"].(string)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(msg), &ev); err != nil {
		t.Fatalf("not JSON: %v: %s", err, msg)
	}
	data, _ := ev["data"].(map[string]any)
	if ev["specversion"] != "1.0" || ev["type"] != "ce.json" || ev["source"] != "urn:busline:a" ||
		ev["buslineseq"] != "1" || ev["traceparent"] != traceparent || data["id"] != 42.0 {
		t.Errorf("exported %s", msg)
	}
	checkAccounting(t, b.bridge)
	// The sender counts an export when Redis has replied to it, which can
	// be after the receiver got the message.
	eventually(t, func() bool { return a.bridge.Stats().Exported == 3 }, "a to count 3 exports: %+v", a.bridge.Stats)
}

// TestCloudEventsForeign publishes CloudEvents with a plain Redis client,
// as a producer in another language would: valid ones reach subscribers
// with their attributes in Meta, not sequence-checked when they carry no
// buslineseq; those with one follow the duplicate and echo rules; invalid
// ones are dropped and counted, each reported.
func TestCloudEventsForeign(t *testing.T) {
	srv := redistest.Start(t, nil)
	log := &errLog{}
	o := testOptions(log, bridge.Route{Pattern: "f.*", Format: bridge.CloudEvents})
	o.InstanceID = "me"
	in := newInstance(t, srv.Client(t), o)
	rec := record(t, in.bus, "f.*")
	rdb := srv.Client(t)
	pub := func(topic, msg string) {
		t.Helper()
		if err := rdb.Publish(context.Background(), "app:"+topic, msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	const head = `{"specversion":"1.0","source":"https://example.com/shop","type":"com.example.order"`
	pub("f.a", head+`,"id":"A1","time":"2025-03-04T05:06:07.5Z","datacontenttype":"application/json","data":{"n":1},"ext":7}`)
	pub("f.a", head+`,"id":"A1","data":{"n":1}}`) // the same again: no buslineseq, so delivered again
	pub("f.b", head+`,"id":"B","buslineseq":"1","datacontenttype":"text/plain","data":"one"}`)
	pub("f.b", head+`,"id":"B","buslineseq":"1","datacontenttype":"text/plain","data":"one"}`)    // duplicate
	pub("f.b", head+`,"id":"B3","buslineseq":"3","datacontenttype":"text/plain","data":"three"}`) // gap of one
	pub("f.c", `{"specversion":"1.0","source":"me","type":"t","id":"x"}`)                         // our echo
	pub("f.c", `{"specversion":"1.0","source":"x","id":"x"}`)                                     // no type
	pub("f.c", `{"specversion":"1.0","source":"x","type":"t","id":"x","time":"now"}`)             // bad time
	pub("f.c", `not json`)
	pub("f.d", head+`,"id":"D","datacontenttype":"application/octet-stream","data_base64":"AP8="}`)

	events := rec.waitFor(t, 5)
	eventually(t, func() bool { return in.bridge.Stats().Received == 10 }, "10 messages")
	checkAccounting(t, in.bridge)
	byTopic := map[string][]bus.Event{}
	for _, e := range events {
		byTopic[e.Topic] = append(byTopic[e.Topic], e)
	}
	a := byTopic["f.a"]
	if len(a) != 2 {
		t.Fatalf("f.a: %d events, want 2", len(a))
	}
	m := a[0].Meta
	if string(a[0].Payload.([]byte)) != `{"n":1}` || m.Source != "https://example.com/shop" || m.Seq != 0 ||
		!m.Time.Equal(time.Date(2025, 3, 4, 5, 6, 7, 5e8, time.UTC)) || m.ContentType != "application/json" ||
		m.Headers["ext"] != "7" || m.Headers["id"] != "A1" || m.Headers["type"] != "com.example.order" {
		t.Errorf("f.a: %q %+v", a[0].Payload, m)
	}
	if b := byTopic["f.b"]; len(b) != 2 || b[0].Payload != "one" || b[1].Payload != "three" || b[1].Meta.Seq != 3 {
		t.Errorf("f.b: %v", b)
	}
	if d := byTopic["f.d"]; len(d) != 1 || string(d[0].Payload.([]byte)) != "\x00\xff" {
		t.Errorf("f.d: %v", d)
	}
	s := in.bridge.Stats()
	if s.Duplicates != 1 || s.EchoesDropped != 1 || s.DecodeErrors != 3 || s.Gaps != 1 || s.GapEvents != 1 {
		t.Errorf("stats %+v", s)
	}
	// Drops are reported in batches: the first, then a count.
	eventually(t, func() bool {
		return strings.Contains(log.String(), `on "app:f.c": malformed CloudEvent: at byte 43: missing type`)
	}, "the malformed report, got %v", log)
}

// TestCloudEventsOptions checks what New refuses, and that an event whose
// header cannot be an attribute is not exported, counted and reported.
func TestCloudEventsOptions(t *testing.T) {
	srv := redistest.Start(t, nil)
	ce := bridge.Route{Pattern: "x", Format: bridge.CloudEvents}
	for _, tc := range []struct {
		name string
		edit func(*bridge.Options)
	}{
		{"raw", func(o *bridge.Options) { o.Routes[0].Raw, o.Routes[0].Codec = true, bridge.Bytes() }},
		{"instance ID not a URI-reference", func(o *bridge.Options) { o.InstanceID = "my host" }},
		{"unknown format", func(o *bridge.Options) { o.Routes[0].Format = 9 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(nil, ce)
			tc.edit(o)
			if _, err := bridge.New(bus.New(nil), srv.Client(t), o); !errors.Is(err, bridge.ErrInvalidOptions) {
				t.Fatalf("New = %v, want ErrInvalidOptions", err)
			}
		})
	}

	log := &errLog{}
	in := newInstance(t, srv.Client(t), testOptions(log, ce))
	for _, h := range []string{"X-Request-ID", "user_id", strings.Repeat("a", 21)} {
		if err := in.bus.PublishEvent(context.Background(), bus.Event{Topic: "x", Payload: "p", Meta: &bus.Meta{Headers: map[string]string{h: "v"}}}); err != nil {
			t.Fatal(err)
		}
	}
	// Reserved names are ignored, not refused.
	if err := in.bus.PublishEvent(context.Background(), bus.Event{Topic: "x", Payload: "p", Meta: &bus.Meta{Headers: map[string]string{"id": "v", "type": "w"}}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { s := in.bridge.Stats(); return s.EncodeErrors == 3 && s.Exported == 1 }, "3 refused, 1 exported: %+v", in.bridge.Stats)
	eventually(t, func() bool { return log.count(bridge.ErrEncode) >= 1 }, "ErrEncode reported, got %v", log)
	if !strings.Contains(log.String(), `"X-Request-ID" is not a CloudEvents extension name`) {
		t.Errorf("reports: %v", log)
	}
}

// TestCloudEventsMixedFormats runs an envelope instance and a CloudEvents
// instance on the same topics: the CloudEvents route reads envelopes too
// (so that instances can switch one by one), the envelope route takes
// CloudEvents as raw bytes, and neither delivers its own echo.
func TestCloudEventsMixedFormats(t *testing.T) {
	srv := redistest.Start(t, nil)
	env := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "m.*"}))
	ce := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "m.*", Format: bridge.CloudEvents}))
	recEnv, recCE := record(t, env.bus, "m.*"), record(t, ce.bus, "m.*")
	publish(t, env.bus, "m.a", "from envelope")
	publish(t, ce.bus, "m.b", "from cloudevents")
	recEnv.waitFor(t, 2)
	recCE.waitFor(t, 2)
	eventually(t, func() bool {
		return env.bridge.Stats().EchoesDropped == 1 && ce.bridge.Stats().EchoesDropped == 1
	}, "echoes: %+v %+v", env.bridge.Stats, ce.bridge.Stats)
	time.Sleep(100 * time.Millisecond)
	for _, e := range recCE.snapshot() {
		if e.Topic == "m.a" && (e.Payload != "from envelope" || !e.Remote()) {
			t.Errorf("cloudevents instance got %+v", e)
		}
	}
	for _, e := range recEnv.snapshot() {
		if e.Topic == "m.b" && (!e.Remote() || !strings.Contains(string(e.Payload.([]byte)), `"data":"from cloudevents"`)) {
			t.Errorf("envelope instance got %+v", e)
		}
	}
	if recEnv.len() != 2 || recCE.len() != 2 {
		t.Errorf("%d and %d events, want 2 each", recEnv.len(), recCE.len())
	}
	checkAccounting(t, env.bridge)
	checkAccounting(t, ce.bridge)
}

// TestCloudEventsSharded runs a CloudEvents route over sharded pub/sub on
// a cluster, with partitioned channels: events reach the other instance
// in order with their sequence numbers, and a plain SSUBSCRIBE receives
// the JSON; signed too, when both have a SigningKey.
func TestCloudEventsSharded(t *testing.T) {
	for _, key := range []string{"", "s3cret"} {
		name := "unsigned"
		if key != "" {
			name = "signed"
		}
		t.Run(name, func(t *testing.T) { testCloudEventsSharded(t, []byte(key)) })
	}
}

func testCloudEventsSharded(t *testing.T, key []byte) {
	c := redistest.StartCluster(t, 3)
	ctx := clusterCtx(t)
	route := bridge.Route{Pattern: "ce.shard", Format: bridge.CloudEvents}
	oa, ob := clusterOptions("app:", route), clusterOptions("app:", route)
	oa.Partitions, ob.Partitions = 16, 16
	if len(key) > 0 {
		oa.SigningKey, ob.SigningKey = key, key
	}
	oa.InstanceID = "shard-a"
	a := newInstance(t, c.Client(t), oa)
	b := newInstance(t, c.Client(t), ob)
	rec := record(t, b.bus, "ce.shard")
	ch := bridge.ShardChannel("app:", "ce.shard", 16)
	cc := c.Client(t)
	ps := cc.SSubscribe(ctx, ch)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	const n = 50
	for i := range n {
		publish(t, a.bus, "ce.shard", fmt.Sprint(i))
	}
	for i, e := range rec.waitOrdered(t, n) {
		if e.Payload != fmt.Sprint(i) || e.Meta.Seq != uint64(i+1) || e.Meta.Source != "shard-a" || e.Meta.Headers["id"] != fmt.Sprintf("%s:%d", ch, i+1) {
			t.Fatalf("event %d: %q %+v", i, e.Payload, e.Meta)
		}
	}
	msg, err := ps.ReceiveTimeout(ctx, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := msg.(*redis.Message)
	if !ok || !strings.Contains(m.Payload, `"type":"ce.shard"`) || !strings.Contains(m.Payload, `"buslineseq":"1","data":"0"`) {
		t.Fatalf("SSUBSCRIBE received %v", msg)
	}
	if signed := strings.Contains(m.Payload, `"buslinesig":"`); signed != (len(key) > 0) || signed && signCE(unsignCE(m.Payload), key) != m.Payload {
		t.Errorf("signed %v with key %q: %s", signed, key, m.Payload)
	}
	// An altered copy is rejected.
	if len(key) > 0 {
		if err := cc.SPublish(ctx, ch, strings.Replace(m.Payload, `"data":"0"`, `"data":"X"`, 1)).Err(); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() bool { return b.bridge.Stats().SignatureRejected == 1 }, "the altered copy rejected: %+v", b.bridge.Stats)
	}
	// The sender counts an export when Redis has replied to it, which can
	// be after the receiver got the message.
	eventually(t, func() bool { return a.bridge.Stats().ExportMessages >= n }, "a to count %d messages (CloudEvents are never coalesced): %+v", n, a.bridge.Stats)
	if s := a.bridge.Stats(); s.ExportMessages != n {
		t.Errorf("%d messages for %d events: CloudEvents are never coalesced", s.ExportMessages, n)
	}
	checkAccounting(t, b.bridge)
}
