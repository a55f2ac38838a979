package bridge

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"testing"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/plural"
)

// prefixRE finds the package prefixes in a message: at its start and
// where wrapping put one after ": ".
var prefixRE = regexp.MustCompile(`(^|: )(bridge|bus): `)

// TestMessages checks the wording of the bridge's errors: plurals ("1
// event", "2 events") and one package prefix per message, however errors
// of the bus and of this package are wrapped.
func TestMessages(t *testing.T) {
	busClosed := fmt.Errorf("bus: publish: %w", bus.ErrClosed) // as the bus words it today
	syntax := &bus.SyntaxError{Input: "a..b", Offset: 2, Reason: "empty segment", Err: bus.ErrInvalidPattern}
	for _, tc := range []struct {
		err  error
		want string
		is   []error
	}{
		{&GapError{Source: "a", Channel: "c", Expected: 4, Got: 5}, `bridge: sequence gap from "a" on "c": 1 event missing (expected 4, got 5)`, []error{ErrGap}},
		{&GapError{Source: "a", Channel: "c", Expected: 4, Got: 7}, `bridge: sequence gap from "a" on "c": 3 events missing (expected 4, got 7)`, []error{ErrGap}},
		{&DropError{Err: ErrOutboxFull, Count: 1}, "bridge: outbox full: 1 event dropped (see Stats.OutboxOverflow)", []error{ErrOutboxFull}},
		{&DropError{Err: ErrEncode, Count: 2}, "bridge: encode: 2 more events not exported (see Stats.EncodeErrors)", []error{ErrEncode}},
		{&DropError{Err: ErrMalformed, Count: 1}, "bridge: malformed envelope: 1 more message dropped (see Stats.DecodeErrors)", []error{ErrMalformed}},
		{&DropError{Err: ErrTrimmed, Count: 2}, "bridge: pending stream entries trimmed: 2 entries lost (see Stats.StreamTrimmed)", []error{ErrTrimmed}},
		{fmt.Errorf("%w: %s dropped: %w", ErrNotSent, plural.Of(1, "export"), context.DeadlineExceeded),
			"bridge: exports not sent before close: 1 export dropped: context deadline exceeded", []error{ErrNotSent, context.DeadlineExceeded}},
		{chain(ErrInvalidOptions, "route 0", syntax),
			`bridge: invalid options: route 0: invalid pattern "a..b" at offset 2: empty segment`, []error{ErrInvalidOptions, bus.ErrInvalidPattern}},
		{chain(ErrEncode, `topic "x"`, fmt.Errorf("%w: 9 headers", ErrMalformed)),
			`bridge: encode: topic "x": malformed envelope: 9 headers`, []error{ErrEncode, ErrMalformed}},
		{chain(ErrSubscribe, "", fmt.Errorf("%w: load %q: NOPERM", ErrCheckpoint, "k")),
			`bridge: subscribe refused: stream checkpoint: load "k": NOPERM`, []error{ErrSubscribe, ErrCheckpoint}},
		{busError(`bridge: publish "t" on the bus`, busClosed), `bridge: publish "t" on the bus: publish: closed`, []error{bus.ErrClosed}},
		{busError(`bridge: subscribe "t" on the bus`, fmt.Errorf("bus: subscribe: %w", bus.ErrClosed)), `bridge: subscribe "t" on the bus: subscribe: closed`, []error{bus.ErrClosed}},
		{&connectError{addr: "127.0.0.1:1", err: errors.New("dial tcp: refused")}, "bridge: cannot connect to redis at 127.0.0.1:1: dial tcp: refused", []error{ErrConnect, ErrDisconnected}},
		{&notReadyError{ctxErr: context.DeadlineExceeded, last: chain(ErrSubscribe, "", errors.New("NOPERM"))},
			"bridge: not ready: context deadline exceeded; last error: subscribe refused: NOPERM", []error{context.DeadlineExceeded, ErrSubscribe}},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("message %q\nwant        %q", got, tc.want)
		}
		if n := len(prefixRE.FindAllString(tc.err.Error(), -1)); n != 1 {
			t.Errorf("%q: %d package prefixes, want 1", tc.err, n)
		}
		for _, target := range tc.is {
			if !errors.Is(tc.err, target) {
				t.Errorf("%q does not match %v", tc.err, target)
			}
		}
	}
}
