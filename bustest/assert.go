package bustest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/busline/bus"
)

// Topics returns the topics of the events recorded so far, in the order
// they were recorded, in a slice of the caller's. It does not wait.
func (r *Recorder) Topics() []string {
	evs, _ := r.rec.snapshot()
	topics := make([]string, len(evs))
	for i, e := range evs {
		topics[i] = e.Topic
	}
	return topics
}

// Payloads returns the payloads of the events r has recorded so far as
// values of type T, in the order they were recorded. It does not wait. If a
// payload is not a T, Payloads calls t.Fatalf naming the event, its topic
// and the payload's type and value. A nil payload is not a T unless T is an
// interface type, for which it gives T's zero value.
//
//	orders := bustest.Payloads[*Order](rec)
func Payloads[T any](r *Recorder) []T {
	r.rec.t.Helper()
	evs, _ := r.rec.snapshot()
	out := make([]T, len(evs))
	typ := reflect.TypeFor[T]()
	for i, e := range evs {
		if e.Payload == nil && typ.Kind() == reflect.Interface {
			continue // the zero T
		}
		v, ok := e.Payload.(T)
		if !ok && e.Payload == nil {
			r.rec.t.Fatalf("bustest: Payloads[%v] on %q: event #%d (%s) has a nil payload", typ, r.rec.pattern, i+1, e.Topic)
			return nil
		}
		if !ok {
			r.rec.t.Fatalf("bustest: Payloads[%v] on %q: event #%d (%s) has a payload of type %T, not %v: %s",
				typ, r.rec.pattern, i+1, e.Topic, e.Payload, typ, formatPayload(e.Payload))
			return nil
		}
		out[i] = v
	}
	return out
}

// AssertTopics checks that the topics of the events recorded so far are
// exactly want, in that order, and nothing else. It does not wait: call
// WaitN first for events that arrive from another goroutine. On a mismatch
// it calls t.Errorf, showing both sequences and the first difference, and
// returns false; the test goes on.
func (r *Recorder) AssertTopics(want ...string) bool {
	r.rec.t.Helper()
	got := r.Topics()
	if slices.Equal(got, want) {
		return true
	}
	i := 0
	for i < len(got) && i < len(want) && got[i] == want[i] {
		i++
	}
	var diff string
	switch {
	case i == len(got):
		diff = fmt.Sprintf("#%d %q and after it are missing", i+1, want[i])
	case i == len(want):
		diff = fmt.Sprintf("#%d %q and after it are extra", i+1, got[i])
	default:
		diff = fmt.Sprintf("#%d is %q, want %q", i+1, got[i], want[i])
	}
	r.rec.t.Errorf("bustest: topics on %q: %s\n\tgot  %s (%s)\n\twant %s (%s)",
		r.rec.pattern, diff, formatTopics(got), plural(len(got), "event"), formatTopics(want), plural(len(want), "event"))
	return false
}

// AssertOrder checks that the events recorded so far include events on
// the topics of want in that order, other events being allowed before,
// between and after them; each topic of want is matched by a different
// event. It does not wait. On a mismatch it calls t.Errorf, saying which
// topic was not found after which, and returns false; the test goes on.
//
//	rec.AssertOrder("orders.created", "orders.paid") // created before paid
func (r *Recorder) AssertOrder(want ...string) bool {
	r.rec.t.Helper()
	got := r.Topics()
	j := 0 // want[j] is the next topic to find
	last := -1
	for i, topic := range got {
		if j < len(want) && topic == want[j] {
			j++
			last = i
		}
	}
	if j == len(want) {
		return true
	}
	where := "among them"
	if j > 0 {
		where = fmt.Sprintf("after %q (#%d)", want[j-1], last+1)
	}
	r.rec.t.Errorf("bustest: order on %q: no %q %s\n\tgot  %s (%s)\n\twant in order %s",
		r.rec.pattern, want[j], where, formatTopics(got), plural(len(got), "event"), formatTopics(want))
	return false
}

// AssertNone checks that the recorder holds no event at all once d has
// passed: it blocks for d, or fails as soon as an event is there (at once
// if one was recorded before the call). On failure it calls t.Errorf
// listing what arrived and returns false; the test goes on. d <= 0 checks
// at once.
func (r *Recorder) AssertNone(d time.Duration) bool {
	r.rec.t.Helper()
	return r.assertNoneAfter(0, d, "no event")
}

// AssertNoMore checks that no event is recorded beyond those already
// there when it is called, for d: it blocks for d, or fails as soon as
// another event arrives, calling t.Errorf listing them and returning false;
// the test goes on. Call it after WaitN to check that nothing is
// duplicated:
//
//	rec.WaitN(1)
//	rec.AssertNoMore(100 * time.Millisecond) // exactly once
func (r *Recorder) AssertNoMore(d time.Duration) bool {
	r.rec.t.Helper()
	base := r.Len()
	return r.assertNoneAfter(base, d, "no event after the first "+plural(base, "event"))
}

// assertNoneAfter fails the test if more than base events are recorded
// within d.
func (r *Recorder) assertNoneAfter(base int, d time.Duration, want string) bool {
	r.rec.t.Helper()
	_, err := r.wait(context.Background(), d, "", func(evs []bus.Event, _ int) bool { return len(evs) > base })
	if err != nil {
		return true // d passed quietly
	}
	evs, _ := r.rec.snapshot()
	r.rec.t.Errorf("bustest: want %s on %q within %v; %s", want, r.rec.pattern, d, arrived(evs))
	return false
}
