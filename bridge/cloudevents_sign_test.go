package bridge_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
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

// sigSuffix is the length of the `,"buslinesig":"…"}` that ends a signed
// CloudEvent: 15 bytes, 43 characters of base64url, 2 bytes.
const sigSuffix = 60

// signCE signs event, a CloudEvent's JSON without signature, by the
// recipe of the documentation, written out here so that the test checks
// the recipe and not the implementation.
func signCE(event string, key []byte) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(event))
	return event[:len(event)-1] + `,"buslinesig":"` + base64.RawURLEncoding.EncodeToString(h.Sum(nil)) + `"}`
}

// unsignCE returns signed without its signature: what its MAC covers.
func unsignCE(signed string) string { return signed[:len(signed)-sigSuffix] + "}" }

// TestCloudEventsSigned runs signed CloudEvents routes of each delivery
// between two instances with a SigningKey, and sends the receiver, with a
// plain Redis client, what an attacker would: every message is accounted
// for, delivered or rejected as the table says. The replay of an event of
// the sender's previous run (old epoch) and a duplicate are caught on
// Stream routes and pub/sub as for envelopes; Group routes do not check
// sequences (see Route.Delivery).
func TestCloudEventsSigned(t *testing.T) {
	for _, d := range []bridge.Delivery{bridge.PubSub, bridge.Stream, bridge.Group} {
		t.Run(d.String(), func(t *testing.T) { testCloudEventsSigned(t, d) })
	}
}

func testCloudEventsSigned(t *testing.T, d bridge.Delivery) {
	srv := redistest.Start(t, nil)
	ctx := context.Background()
	key := []byte("s3cret")
	route := bridge.Route{Pattern: "s.*", Format: bridge.CloudEvents, Delivery: d}
	in, out := route, route
	in.Direction, out.Direction = bridge.Import, bridge.Export
	log := &errLog{}
	ob := testOptions(log, in)
	ob.InstanceID, ob.SigningKey = "b", key
	b := newInstance(t, srv.Client(t), ob)
	rec := record(t, b.bus, "s.*")

	raw := srv.Client(t)
	streamKey := bridge.StreamKey("app:", "s.*")
	var sub *redis.PubSub
	if d == bridge.PubSub {
		sub = raw.Subscribe(ctx, "app:s.x")
		t.Cleanup(func() { _ = sub.Close() })
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// exported returns the message the sender exported last, as Redis
	// holds it, once it holds one with payload.
	exported := func(payload string) string {
		t.Helper()
		if d == bridge.PubSub {
			m, err := sub.ReceiveTimeout(ctx, waitTimeout)
			if err != nil {
				t.Fatal(err)
			}
			return m.(*redis.Message).Payload
		}
		var msg string
		eventually(t, func() bool {
			entries, err := raw.XRevRangeN(ctx, streamKey, "+", "-", 1).Result()
			if err != nil || len(entries) != 1 {
				return false
			}
			msg = entries[0].Values["data"].(string)
			return strings.Contains(msg, payload)
		}, "no entry of %q", payload)
		return msg
	}
	inject := func(topic, msg string) {
		t.Helper()
		var err error
		if d == bridge.PubSub {
			err = raw.Publish(ctx, "app:"+topic, msg).Err()
		} else {
			err = raw.XAdd(ctx, &redis.XAddArgs{Stream: streamKey, Values: []any{"topic", topic, "data", msg}}).Err()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	sender := func() *instance {
		oa := testOptions(nil, out)
		oa.InstanceID, oa.SigningKey = "a", key
		return newInstance(t, srv.Client(t), oa)
	}

	// Two runs of the sender: the first one's event is the recording of
	// an earlier epoch.
	a := sender()
	publish(t, a.bus, "s.x", "first run")
	old := exported("first run")
	rec.waitFor(t, 1)
	if err := a.bridge.Close(ctx); err != nil {
		t.Fatal(err)
	}
	a = sender()
	publish(t, a.bus, "s.x", "second run")
	base := exported("second run")
	rec.waitFor(t, 2)
	if !strings.Contains(base, `"buslineepoch":"`) || !strings.Contains(base, `"data":"second run"`) {
		t.Fatalf("exported %s", base)
	}
	if signCE(unsignCE(base), key) != base {
		t.Fatalf("the recipe does not give the signature of %s", base)
	}

	type outcome int
	const (
		delivered outcome = iota
		badSignature
		replayed
		duplicate
	)
	// Events signed with the key by the recipe, numbered after the
	// sender's: one now, one sent a year ago.
	resign := func(seq, payload, year string) string {
		return signCE(strings.NewReplacer(`"app:s.x:1"`, `"app:s.x:`+seq+`"`, `"buslineseq":"1"`, `"buslineseq":"`+seq+`"`,
			`"second run"`, `"`+payload+`"`, `"time":"`+time.Now().UTC().Format("2006"), `"time":"`+year).Replace(unsignCE(base)), key)
	}
	thisYear := time.Now().UTC().Format("2006")
	// On each delivery: pub/sub, Stream, Group (which does not check
	// sequences), what becomes of each message.
	for _, tc := range []struct {
		name  string
		topic string
		msg   string
		want  [3]outcome
	}{
		{"unsigned", "s.x", unsignCE(base), [3]outcome{badSignature, badSignature, badSignature}},
		{"data altered", "s.x", strings.Replace(base, `"second run"`, `"forged!!!!"`, 1), [3]outcome{badSignature, badSignature, badSignature}},
		{"time altered", "s.x", strings.Replace(base, `"time":"2`, `"time":"1`, 1), [3]outcome{badSignature, badSignature, badSignature}},
		{"other key", "s.x", signCE(unsignCE(base), []byte("other")), [3]outcome{badSignature, badSignature, badSignature}},
		{"other topic", "s.y", base, [3]outcome{badSignature, badSignature, badSignature}},
		{"old epoch", "s.x", old, [3]outcome{replayed, replayed, delivered}},
		{"duplicate", "s.x", base, [3]outcome{duplicate, duplicate, delivered}},
		{"signed by hand", "s.x", resign("2", "by hand", thisYear), [3]outcome{delivered, delivered, delivered}},
		{"signed a year ago", "s.x", resign("3", "last year", fmt.Sprint(time.Now().Year()-1)), [3]outcome{replayed, delivered, delivered}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tc.want[map[bridge.Delivery]int{bridge.PubSub: 0, bridge.Stream: 1, bridge.Group: 2}[d]]
			before := b.bridge.Stats()
			n := rec.len()
			inject(tc.topic, tc.msg)
			switch want {
			case delivered:
				rec.waitFor(t, n+1)
			case badSignature:
				eventually(t, func() bool { return b.bridge.Stats().SignatureRejected == before.SignatureRejected+1 }, "rejected: %+v", b.bridge.Stats)
			case replayed:
				eventually(t, func() bool { return b.bridge.Stats().Replayed == before.Replayed+1 }, "replayed: %+v", b.bridge.Stats)
			case duplicate:
				eventually(t, func() bool { return b.bridge.Stats().Duplicates == before.Duplicates+1 }, "duplicate: %+v", b.bridge.Stats)
			}
		})
	}

	// Exact accounting: every message was delivered or rejected once.
	sent := uint64(2 + 9)
	want := map[bridge.Delivery]bridge.Stats{
		bridge.PubSub: {Imported: 2 + 1, SignatureRejected: 5, Replayed: 2, Duplicates: 1},
		bridge.Stream: {Imported: 2 + 2, SignatureRejected: 5, Replayed: 1, Duplicates: 1},
		bridge.Group:  {Imported: 2 + 4, SignatureRejected: 5},
	}[d]
	eventually(t, func() bool { return b.bridge.Stats().Received == sent }, "%d received: %+v", sent, b.bridge.Stats)
	time.Sleep(50 * time.Millisecond) // nothing more arrives
	s := b.bridge.Stats()
	if s.Imported != want.Imported || s.SignatureRejected != want.SignatureRejected || s.Replayed != want.Replayed ||
		s.Duplicates != want.Duplicates || s.DecodeErrors != 0 || s.Received != sent || rec.len() != int(want.Imported) {
		t.Errorf("stats %+v, %d delivered; want %+v", s, rec.len(), want)
	}
	checkAccounting(t, b.bridge)
	for _, e := range rec.snapshot() {
		if _, ok := e.Meta.Headers["buslinesig"]; ok || e.Meta.Headers["buslineepoch"] != "" || e.Meta.Source != "a" {
			t.Errorf("%s: meta %+v", e.Topic, e.Meta)
		}
	}
	if got := rec.snapshot()[2].Payload; d != bridge.Group && got != "by hand" {
		t.Errorf("third event %q, want the one signed by hand", got)
	}
	// Rejections are reported as for envelopes, the first one in full.
	eventually(t, func() bool { return log.count(bridge.ErrSignature) >= 1 }, "ErrSignature reported: %v", log)
	var first error
	for _, err := range log.all() {
		if errors.Is(err, bridge.ErrSignature) {
			first = err
			break
		}
	}
	if !strings.Contains(first.Error(), "CloudEvent") || !strings.Contains(first.Error(), "no buslinesig member") {
		t.Errorf("first report %v", first)
	}
}

// TestCloudEventsSignedKeyless checks that a receiver without a
// SigningKey accepts signed CloudEvents (as it accepts signed envelopes,
// so that signing can be rolled out receiver by receiver) without the
// signature attributes in its headers.
func TestCloudEventsSignedKeyless(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "k.x", Format: bridge.CloudEvents}
	oa := testOptions(nil, route)
	oa.InstanceID, oa.SigningKey = "a", []byte("key")
	a := newInstance(t, srv.Client(t), oa)
	b := newInstance(t, srv.Client(t), testOptions(nil, route))
	rec := record(t, b.bus, "k.x")
	if err := a.bus.PublishEvent(context.Background(), bus.Event{Topic: "k.x", Payload: "p", Meta: &bus.Meta{Headers: map[string]string{"buslinesig": "mine", "tracestate": "k=v"}}}); err != nil {
		t.Fatal(err)
	}
	e := rec.waitFor(t, 1)[0]
	if h := e.Meta.Headers; e.Payload != "p" || len(h) != 3 || h["tracestate"] != "k=v" || e.Meta.Seq != 1 {
		t.Errorf("got %q %+v", e.Payload, e.Meta)
	}
	checkAccounting(t, b.bridge)
}
