package bridge_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestExportSizeLimit exports payloads around MaxMessageBytes, alone and
// coalesced, signed and not, to a receiver with the same options: the
// sender refuses (counted in EncodeErrors, reported wrapping ErrTooLarge
// and ErrEncode) every message the receiver would drop, and the receiver
// drops none. The sender used to compare the payload alone with the
// limit: a payload a few dozen bytes under it was exported, counted as
// exported, and dropped by every receiver.
func TestExportSizeLimit(t *testing.T) {
	const limit = 1000
	for _, signed := range []bool{false, true} {
		name := "unsigned"
		if signed {
			name = "signed"
		}
		t.Run(name, func(t *testing.T) {
			srv := redistest.Start(t, nil)
			options := func(dir bridge.Direction) *bridge.Options {
				o := testOptions(nil, bridge.Route{Pattern: "sz.*", Direction: dir, Codec: bridge.Bytes()})
				o.MaxMessageBytes = limit
				if signed {
					o.SigningKey = []byte("k")
				}
				return o
			}
			from := newInstance(t, srv.Client(t), options(bridge.Export))
			to := newInstance(t, srv.Client(t), options(bridge.Import))
			rec := record(t, to.bus, "sz.*")

			// Alone: payloads from 850 to 1000 bytes, one at a time, so
			// that none coalesces.
			sent := 0
			for n := 850; n <= limit; n++ {
				publish(t, from.bus, "sz.alone", []byte(strings.Repeat("a", n)))
				sent++
				eventually(t, func() bool {
					s := from.bridge.Stats()
					return int(s.Exported+s.EncodeErrors) == sent
				}, "export %d handled", func() int { return sent })
			}
			// Coalesced: 300 events of 300 bytes at once, grouped into
			// batches that must each fit too.
			for range 300 {
				publish(t, from.bus, "sz.batch", []byte(strings.Repeat("b", 300)))
			}
			sent += 300
			eventually(t, func() bool { s := from.bridge.Stats(); return int(s.Exported+s.EncodeErrors) == sent },
				"every export handled")
			fs := from.bridge.Stats()
			eventually(t, func() bool { s := to.bridge.Stats(); return s.Received == fs.Exported && s.ImportDepth == 0 },
				"every exported event received: %d of %d", func() int { return int(to.bridge.Stats().Received) }, func() int { return int(fs.Exported) })
			checkAccounting(t, to.bridge)
			ts := to.bridge.Stats()
			t.Logf("sender: %d exported in %d messages, %d refused; receiver: %d imported, %d dropped as too large",
				fs.Exported, fs.ExportMessages, fs.EncodeErrors, ts.Imported, ts.DecodeErrors)
			if ts.DecodeErrors != 0 || ts.Imported != fs.Exported || rec.len() != int(fs.Exported) {
				t.Errorf("receiver: %d imported, %d dropped; sender exported %d", ts.Imported, ts.DecodeErrors, fs.Exported)
			}
			if fs.EncodeErrors == 0 || fs.EncodeErrors > 151 || fs.Exported < 300 {
				t.Errorf("sender refused %d, exported %d", fs.EncodeErrors, fs.Exported)
			}
			if fs.ExportMessages >= 300+151-fs.EncodeErrors {
				t.Errorf("nothing coalesced: %d messages for %d events", fs.ExportMessages, fs.Exported)
			}
			var refusal error
			for _, err := range from.errs.all() {
				if errors.Is(err, bridge.ErrTooLarge) {
					refusal = err
					break
				}
			}
			if refusal == nil || !errors.Is(refusal, bridge.ErrEncode) {
				t.Fatalf("refusal reported as %v, want ErrTooLarge and ErrEncode:\n%s", refusal, from.errs)
			}
			t.Logf("reported: %v", refusal)
		})
	}
}
