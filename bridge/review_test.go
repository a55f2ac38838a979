package bridge_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestDropReportsSayWhat checks the batched reports of drops: the first
// drop of a reason is reported with its details, those that follow within
// a second are held and reported as one *DropError, which must say what
// became of them and where they are counted, not just "encode: 1 event".
func TestDropReportsSayWhat(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "typed.*", Codec: bridge.JSON[int]()}
	for _, tc := range []struct {
		name   string
		reason error
		drop   func(t *testing.T, in *instance)
		want   string
	}{
		{"encode", bridge.ErrEncode, func(t *testing.T, in *instance) {
			publish(t, in.bus, "typed.bad", func() {}) // JSON cannot encode a func
		}, "bridge: encode: 1 more event not exported (see Stats.EncodeErrors)"},
		{"decode", bridge.ErrDecode, func(t *testing.T, in *instance) {
			if _, err := srv.CLI("PUBLISH", "app:typed.bad", "not json"); err != nil {
				t.Fatal(err)
			}
		}, "bridge: decode: 1 more event not delivered (see Stats.DecodeErrors)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := &errLog{}
			in := newInstance(t, srv.Client(t), testOptions(log, route))
			tc.drop(t, in)
			eventually(t, func() bool { return log.count(tc.reason) == 1 }, "the first report: %s", log.String)
			tc.drop(t, in) // within a second: held back until Close
			if err := closeBridge(in.bridge); err != nil {
				t.Fatal(err)
			}
			var drop *bridge.DropError
			var got []string
			for _, err := range log.all() {
				if errors.As(err, &drop) {
					got = append(got, err.Error())
				}
			}
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("DropError reports %q, want [%q]\nall reports:\n%s", got, tc.want, log)
			}
			if first := strings.SplitN(log.String(), "\n", 2)[0]; !strings.Contains(first, `topic "typed.bad"`) {
				t.Errorf("first report %q: want the details of the drop", first)
			}
		})
	}
}
