package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestStrictCodecs checks Text and Bytes without Redis: each encodes its
// own type and refuses every other with an error wrapping
// bus.ErrPayloadType, and decodes anything into its type whatever the
// content type.
func TestStrictCodecs(t *testing.T) {
	type named string
	for _, tc := range []struct {
		name     string
		codec    bridge.Codec
		payload  any
		wantData string
		wantType string
		wantErr  string // substring of the encode error; "" for none
	}{
		{"text string", bridge.Text(), "héllo", "héllo", bridge.ContentTypeText, ""},
		{"text empty", bridge.Text(), "", "", bridge.ContentTypeText, ""},
		{"text bytes", bridge.Text(), []byte("x"), "", "", "payload of type []byte, want string: use Codec: bridge.Bytes() for bytes"},
		{"text named string", bridge.Text(), named("x"), "", "", "payload of type bridge_test.named, want string: use Codec: bridge.JSON[T]() for Go values"},
		{"text int", bridge.Text(), 42, "", "", "payload of type int, want string"},
		{"text nil", bridge.Text(), nil, "", "", "payload of type nil, want string"},
		{"bytes bytes", bridge.Bytes(), []byte("a\x00b"), "a\x00b", bridge.ContentTypeBytes, ""},
		{"bytes nil slice", bridge.Bytes(), []byte(nil), "", bridge.ContentTypeBytes, ""},
		{"bytes string", bridge.Bytes(), "x", "", "", "payload of type string, want []byte: use Codec: bridge.Text() for strings"},
		{"bytes struct", bridge.Bytes(), struct{ A int }{1}, "", "", "want []byte: use Codec: bridge.JSON[T]() for Go values"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, ct, err := tc.codec.Encode(tc.payload)
			if tc.wantErr != "" {
				if !errors.Is(err, bus.ErrPayloadType) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Encode(%#v) = %v; want an error wrapping bus.ErrPayloadType containing %q", tc.payload, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "bus:") || strings.Contains(err.Error(), "bridge:") {
					t.Errorf("error %q has a package prefix of its own; the bridge adds one", err)
				}
				return
			}
			if err != nil || string(data) != tc.wantData || ct != tc.wantType {
				t.Fatalf("Encode(%#v) = %q, %q, %v; want %q, %q", tc.payload, data, ct, err, tc.wantData, tc.wantType)
			}
			if p, ok := tc.payload.([]byte); ok && len(p) > 0 && &data[0] == &p[0] {
				t.Error("Encode returned the caller's slice, not a copy")
			}
		})
	}
	for _, ct := range []string{"", bridge.ContentTypeText, bridge.ContentTypeBytes, bridge.ContentTypeJSON} {
		if v, err := bridge.Text().Decode([]byte("hi"), ct); err != nil || v != "hi" {
			t.Errorf("Text().Decode(%q) = %#v, %v; want the string", ct, v, err)
		}
		if v, err := bridge.Bytes().Decode([]byte("hi"), ct); err != nil || !bytes.Equal(v.([]byte), []byte("hi")) {
			t.Errorf("Bytes().Decode(%q) = %#v, %v; want the []byte", ct, v, err)
		}
	}
}

// TestRawPayloadTypes runs two instances over one Redis server with a raw
// route and checks that the other instance's subscriber gets the payload
// with the type the publisher's local subscriber gets, or, for a payload
// the route's codec does not carry, that the event is not exported but
// reported (ErrEncode and bus.ErrPayloadType) and counted (EncodeErrors).
func TestRawPayloadTypes(t *testing.T) {
	srv := redistest.Start(t, nil)
	for i, tc := range []struct {
		name     string
		delivery bridge.Delivery
		codec    bridge.Codec // nil: the raw default
		payload  any
		refused  bool
	}{
		{"text string", bridge.PubSub, bridge.Text(), "hello", false},
		{"bytes bytes", bridge.PubSub, bridge.Bytes(), []byte("hi\x00\xff"), false},
		{"default bytes", bridge.PubSub, nil, []byte("hi"), false},
		{"json value", bridge.PubSub, bridge.JSON[map[string]int](), map[string]int{"a": 1}, false},
		{"stream text string", bridge.Stream, bridge.Text(), "hello", false},
		{"text bytes", bridge.PubSub, bridge.Text(), []byte("hello"), true},
		{"text int", bridge.PubSub, bridge.Text(), 42, true},
		{"bytes string", bridge.PubSub, bridge.Bytes(), "hello", true},
		{"default string", bridge.PubSub, nil, "hello", true},
		{"stream default string", bridge.Stream, nil, "hello", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := fmt.Sprintf("raw%d", i)
			route := bridge.Route{Pattern: topic, Raw: true, Codec: tc.codec, Delivery: tc.delivery}
			opts := func(id string) *bridge.Options {
				o := testOptions(nil, route)
				o.InstanceID = id + topic
				o.StreamBlock = 100 * time.Millisecond
				return o
			}
			a := newInstance(t, srv.Client(t), opts("a"))
			b := newInstance(t, srv.Client(t), opts("b"))
			local := record(t, a.bus, topic)
			remote := record(t, b.bus, topic)

			publish(t, a.bus, topic, tc.payload)
			if l := local.waitFor(t, 1)[0]; !reflect.DeepEqual(l.Payload, tc.payload) {
				t.Fatalf("local subscriber got %#v", l.Payload)
			}
			if tc.refused {
				eventually(t, func() bool { return a.errs.count(bridge.ErrEncode) == 1 }, "encode error reported: %v", a.errs.String)
				if n := a.errs.count(bus.ErrPayloadType); n != 1 {
					t.Errorf("reports: %q; want one wrapping bus.ErrPayloadType", a.errs)
				}
				typ := strings.Replace(fmt.Sprintf("%T", tc.payload), "uint8", "byte", 1)
				if !strings.HasPrefix(a.errs.String(), fmt.Sprintf("bridge: encode: topic %q: payload of type %s, want ", topic, typ)) {
					t.Errorf("report %q", a.errs)
				}
				if s := a.bridge.Stats(); s.EncodeErrors != 1 || s.Exported != 0 {
					t.Errorf("EncodeErrors %d, Exported %d; want 1, 0", s.EncodeErrors, s.Exported)
				}
				// What the codec carries still goes through, and nothing
				// arrived before it.
				var want any = []byte("ok")
				if tc.codec == bridge.Text() {
					want = "ok"
				}
				publish(t, a.bus, topic, want)
				if events := remote.waitFor(t, 1); len(events) != 1 || !reflect.DeepEqual(events[0].Payload, want) {
					t.Fatalf("remote subscriber got %v; want only %#v", events, want)
				}
				return
			}
			e := remote.waitFor(t, 1)[0]
			if !e.Remote() || e.Meta.Source != bridge.RawSource || reflect.TypeOf(e.Payload) != reflect.TypeOf(tc.payload) ||
				!reflect.DeepEqual(e.Payload, tc.payload) {
				t.Errorf("remote subscriber got %T %#v from %q; want %T %#v from %q, as the local one",
					e.Payload, e.Payload, e.Meta.Source, tc.payload, tc.payload, bridge.RawSource)
			}
			if n := len(a.errs.String()) + len(b.errs.String()); n != 0 {
				t.Errorf("reports: %q %q", a.errs, b.errs)
			}
		})
	}
}

// TestRawForeignPayloadTypes checks what a raw route makes of redis-cli's
// PUBLISH: a string with Text, a []byte by default.
func TestRawForeignPayloadTypes(t *testing.T) {
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil,
		bridge.Route{Pattern: "notifications", Raw: true, Codec: bridge.Text()},
		bridge.Route{Pattern: "blobs", Raw: true},
	))
	rec := record(t, in.bus, "*")
	for _, ch := range []string{"app:notifications", "app:blobs"} {
		if _, err := srv.CLI("PUBLISH", ch, "hi"); err != nil {
			t.Fatal(err)
		}
	}
	events := rec.waitFor(t, 2)
	for i, want := range []struct {
		topic   string
		payload any
	}{{"notifications", "hi"}, {"blobs", []byte("hi")}} {
		if e := events[i]; e.Topic != want.topic || !reflect.DeepEqual(e.Payload, want.payload) {
			t.Errorf("event %d: %s %T %#v; want %s %T %#v", i, e.Topic, e.Payload, e.Payload, want.topic, want.payload, want.payload)
		}
	}
}

// TestRawDefaultCodecRefused checks that New refuses DefaultCodec on a raw
// route, whose messages carry no content type to tell strings from bytes.
func TestRawDefaultCodecRefused(t *testing.T) {
	srv := redistest.Start(t, nil)
	for _, d := range []bridge.Direction{bridge.Both, bridge.Export, bridge.Import} {
		b := bus.New(nil)
		_, err := bridge.New(b, srv.Client(t), &bridge.Options{Routes: []bridge.Route{
			{Pattern: "ok", Raw: true, Codec: bridge.Text()},
			{Pattern: "notifications", Raw: true, Codec: bridge.DefaultCodec, Direction: d},
		}})
		if !errors.Is(err, bridge.ErrInvalidOptions) || !strings.Contains(err.Error(), `route 1 ("notifications"): DefaultCodec on a raw route`) {
			t.Errorf("%v: New = %v; want ErrInvalidOptions naming the route", d, err)
		}
		if err := b.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}
