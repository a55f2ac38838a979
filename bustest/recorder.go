package bustest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/busline/bus"
)

// DefaultTimeout is how long the waits of a [Recorder] wait unless
// [Recorder.WithTimeout] says otherwise. It is generous because it only
// matters when a test is about to fail: a passing wait returns as soon as
// its events are there.
const DefaultTimeout = 10 * time.Second

// ErrTimeout is wrapped by the error of a Context wait whose recorder's
// timeout ran out before the events it waited for arrived.
var ErrTimeout = errors.New("bustest: timed out")

// Recorder records the events of one subscription for a test. Make it with
// [Record].
//
// All methods are safe for concurrent use, with publishers and with each
// other. Those that can fail the test report to the t given to Record:
// WaitN, WaitFor, WithTimeout and [Payloads] call t.Fatalf, so, like
// t.Fatalf, they must be called from the goroutine of that test, not from
// another goroutine or from a subtest (use WaitNContext and WaitForContext
// there, or a recorder made with the subtest's t); the Assert methods call
// t.Errorf, which any goroutine may call until the test ends.
type Recorder struct {
	rec     *recording
	timeout time.Duration
}

// recording is what the views made by WithTimeout share.
type recording struct {
	t       testing.TB
	pattern string

	mu     sync.Mutex    // protects events and wake
	events []bus.Event   // append only: an element never changes once recorded
	wake   chan struct{} // closed by the next record; nil when nobody waits
}

// Record subscribes to pattern on b and records every event the
// subscription receives, from the moment Record returns until the test
// ends: a t.Cleanup unsubscribes it. Call it before the code under test
// publishes.
//
// The subscription is synchronous (b.Subscribe): the recorder appends each
// event under a mutex on the publisher's goroutine, before that Publish
// returns. So it drops nothing, holds a publisher up only for that append,
// records the events of one publishing goroutine in their publish order
// (those of concurrent publishers in the order their deliveries ran), and
// starts no goroutine. It sees what any synchronous subscriber of pattern
// sees: it is not a member of a queue group, and it does not take events
// away from the other subscribers.
//
// Record calls t.Fatalf if the subscription fails (an invalid pattern, a
// closed bus); the error wraps the bus's sentinel.
func Record(t testing.TB, b *bus.Bus, pattern string) *Recorder {
	t.Helper()
	r := &recording{t: t, pattern: pattern}
	sub, err := b.Subscribe(pattern, r.record)
	if err != nil {
		t.Fatalf("bustest: cannot record %q: %v", pattern, err)
		return nil
	}
	t.Cleanup(sub.Unsubscribe)
	return &Recorder{rec: r, timeout: DefaultTimeout}
}

// record is the handler of the subscription.
func (r *recording) record(_ context.Context, e bus.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	if r.wake != nil {
		close(r.wake)
		r.wake = nil
	}
	r.mu.Unlock()
}

// snapshot returns the events recorded so far, without copying, and a
// channel closed when the next one is recorded. The caller may read the
// slice, never write it: later records append beyond its length.
func (r *recording) snapshot() ([]bus.Event, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.wake == nil {
		r.wake = make(chan struct{})
	}
	return r.events, r.wake
}

// WithTimeout returns a view of the recorder whose waits give up after d
// instead of DefaultTimeout. The view shares the recorded events; the
// recorder itself keeps its timeout. It calls t.Fatalf for d <= 0.
//
//	rec.WithTimeout(30 * time.Second).WaitN(10000)
func (r *Recorder) WithTimeout(d time.Duration) *Recorder {
	r.rec.t.Helper()
	if d <= 0 {
		r.rec.t.Fatalf("bustest: WithTimeout(%v): the timeout must be positive", d)
		return r
	}
	return &Recorder{rec: r.rec, timeout: d}
}

// Pattern returns the pattern given to Record.
func (r *Recorder) Pattern() string { return r.rec.pattern }

// Len returns the number of events recorded so far. It does not wait.
func (r *Recorder) Len() int {
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	return len(r.rec.events)
}

// Events returns a copy of the events recorded so far, in the order they
// were recorded. It does not wait. The slice is the caller's; the payloads
// and Meta in it are those the publisher passed, shared with every other
// subscriber, and must not be modified.
func (r *Recorder) Events() []bus.Event {
	evs, _ := r.rec.snapshot()
	return append([]bus.Event(nil), evs...)
}

// WaitN waits until at least n events have been recorded and returns the
// first n, in a slice of the caller's. If they have not all arrived within
// the recorder's timeout it calls t.Fatalf with a message saying how long
// it waited, for how many events, and which ones did arrive. It returns at
// once for n == 0 and calls t.Fatalf for n < 0.
func (r *Recorder) WaitN(n int) []bus.Event {
	r.rec.t.Helper()
	evs, err := r.WaitNContext(context.Background(), n)
	if err != nil {
		r.rec.t.Fatalf("%v", err)
	}
	return evs
}

// WaitNContext is WaitN that returns an error instead of failing the test,
// for use on any goroutine. It stops waiting when ctx ends or the
// recorder's timeout runs out, whichever comes first; the error then wraps
// ctx's error (its cause, if it has one) or ErrTimeout, and says what
// arrived. It returns an error for n < 0.
func (r *Recorder) WaitNContext(ctx context.Context, n int) ([]bus.Event, error) {
	if n < 0 {
		return nil, fmt.Errorf("bustest: WaitN(%d): the count must not be negative", n)
	}
	want := "for " + plural(n, "event")
	evs, err := r.wait(ctx, r.timeout, want, func(evs []bus.Event, _ int) bool { return len(evs) >= n })
	if err != nil {
		return nil, err
	}
	return append([]bus.Event(nil), evs[:n]...), nil
}

// WaitFor waits until an event for which match returns true has been
// recorded, and returns the first such event. desc says in words what the
// event should be, for the failure message: if none has arrived within the
// recorder's timeout, WaitFor calls t.Fatalf with a message saying how long
// it waited, desc, and the events that did arrive.
//
// match is called on the waiting goroutine, without any lock held (so it
// may publish), once for each recorded event in order until one matches. It
// must not be nil.
//
//	e := rec.WaitFor("order 42 paid", func(e bus.Event) bool {
//		o, ok := e.Payload.(*Order)
//		return e.Topic == "orders.paid" && ok && o.ID == 42
//	})
func (r *Recorder) WaitFor(desc string, match func(bus.Event) bool) bus.Event {
	r.rec.t.Helper()
	e, err := r.WaitForContext(context.Background(), desc, match)
	if err != nil {
		r.rec.t.Fatalf("%v", err)
	}
	return e
}

// WaitForContext is WaitFor that returns an error instead of failing the
// test, for use on any goroutine. It stops waiting when ctx ends or the
// recorder's timeout runs out, whichever comes first, as WaitNContext does.
// It returns an error for a nil match.
func (r *Recorder) WaitForContext(ctx context.Context, desc string, match func(bus.Event) bool) (bus.Event, error) {
	if match == nil {
		return bus.Event{}, fmt.Errorf("bustest: WaitFor(%q): nil match function", desc)
	}
	var found bus.Event
	want := fmt.Sprintf("for an event matching %q", desc)
	_, err := r.wait(ctx, r.timeout, want, func(evs []bus.Event, from int) bool {
		for _, e := range evs[from:] {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	})
	return found, err
}

// wait calls found with the events recorded so far, and again each time
// more arrive, until it returns true; wait then returns the events it was
// given. from is how many of them found has been given before, so that it
// need only look at the new ones. wait gives up when ctx ends or after d,
// returning an error that says how long it waited, what for (want), and
// what arrived.
func (r *Recorder) wait(ctx context.Context, d time.Duration, want string, found func(evs []bus.Event, from int) bool) ([]bus.Event, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeoutCause(ctx, d, ErrTimeout)
	defer cancel()
	from := 0
	for {
		evs, wake := r.rec.snapshot()
		if found(evs, from) {
			return evs, nil
		}
		from = len(evs)
		select {
		case <-wake:
		case <-ctx.Done():
			evs, _ := r.rec.snapshot()
			return nil, r.waitError(context.Cause(ctx), d, time.Since(start), want, evs)
		}
	}
}
