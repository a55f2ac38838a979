package bridge_test

import (
	"errors"
	"testing"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/bridge/internal/wire"
	"github.com/busline/bus/redistest"
)

// TestPrintableSources checks that sources and content types are
// printable ASCII: New refuses such an InstanceID, and a receiver drops
// envelopes whose source or content type holds a control character (an
// escape sequence for the terminal of whoever reads the logs, say)
// instead of passing it on in Meta.
func TestPrintableSources(t *testing.T) {
	for _, id := range []string{"a\nb", "\x1b[31mred", "caf\u00e9", "tab\t"} {
		_, err := bridge.New(newBus(), redistest.Start(t, nil).Client(t), &bridge.Options{InstanceID: id})
		if !errors.Is(err, bridge.ErrInvalidOptions) {
			t.Errorf("InstanceID %q: %v, want ErrInvalidOptions", id, err)
		}
	}

	srv := redistest.Start(t, nil)
	to := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "pr.x", Direction: bridge.Import}))
	rec := record(t, to.bus, "pr.x")
	for _, env := range []wire.Envelope{
		{Source: "evil\x1b[2J", Seq: 1, Payload: []byte("x")},
		{Source: "ok", Seq: 1, ContentType: "text/plain\r\nX-Injected: 1", Payload: []byte("x")},
		{Source: "ok", Seq: 2, ContentType: "text/plain", Payload: []byte("fine")},
	} {
		inject(t, srv.Client(t), bridge.PubSub, "app:", "pr.x", string(wire.AppendEnvelope(nil, "app:pr.x", &env, nil)))
	}
	eventually(t, func() bool { s := to.bridge.Stats(); return s.Received == 3 && s.ImportDepth == 0 }, "3 received")
	checkAccounting(t, to.bridge)
	if s := to.bridge.Stats(); s.DecodeErrors != 2 || s.Imported != 1 {
		t.Errorf("decode errors %d, imported %d; want 2, 1", s.DecodeErrors, s.Imported)
	}
	if e := rec.waitFor(t, 1)[0]; e.Meta.Source != "ok" || e.Meta.ContentType != "text/plain" {
		t.Errorf("delivered %+v", e.Meta)
	}
	if to.errs.count(bridge.ErrMalformed) == 0 {
		t.Errorf("not reported:\n%s", to.errs)
	}
}
