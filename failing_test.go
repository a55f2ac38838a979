package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Tests of handlers that fail: HandlerFunc, middleware, retries and dead
// letters (handler.go, retry.go).

// errBoom is what the failing handlers of these tests return.
var errBoom = errors.New("boom")

// codeError is an error type for errors.As through a DeliveryError.
type codeError struct{ code int }

func (e *codeError) Error() string { return fmt.Sprintf("code %d", e.code) }

// deliveryErrors returns the *DeliveryErrors of errs wrapping target.
func deliveryErrors(errs []error, target error) []*DeliveryError {
	var out []*DeliveryError
	for _, err := range errs {
		var de *DeliveryError
		if errors.As(err, &de) && errors.Is(err, target) {
			out = append(out, de)
		}
	}
	return out
}

// TestHandlerFuncFailure: a HandlerFunc's error is reported as a
// *DeliveryError wrapping ErrHandlerFailed and the error, counted, not
// returned by Publish, and the other subscriptions still get the event;
// for each way of subscribing one.
func TestHandlerFuncFailure(t *testing.T) {
	for _, tc := range []struct {
		name  string
		async bool
		sub   func(b *Bus, h HandlerFunc) (*Subscription, error)
	}{
		{"SubscribeFunc", false, func(b *Bus, h HandlerFunc) (*Subscription, error) { return b.SubscribeFunc("f.*", h) }},
		{"SubscribeFuncWith/Once", false, func(b *Bus, h HandlerFunc) (*Subscription, error) {
			return b.SubscribeFuncWith("f.*", h, &SubscribeOptions{Once: true})
		}},
		{"SubscribeFuncWith/Queue", true, func(b *Bus, h HandlerFunc) (*Subscription, error) {
			return b.SubscribeFuncWith("f.*", h, &SubscribeOptions{Queue: 4})
		}},
		{"SubscribeFuncWith/Group", false, func(b *Bus, h HandlerFunc) (*Subscription, error) {
			return b.SubscribeFuncWith("f.*", h, &SubscribeOptions{Group: "g"})
		}},
		{"SubscribeTypedFunc", false, func(b *Bus, h HandlerFunc) (*Subscription, error) {
			return SubscribeTypedFunc(b, "f.*", func(ctx context.Context, e Event, v int) error { return h(ctx, e) })
		}},
		{"SubscribeTypedFuncWith/Queue", true, func(b *Bus, h HandlerFunc) (*Subscription, error) {
			return SubscribeTypedFuncWith(b, "f.*", func(ctx context.Context, e Event, v int) error { return h(ctx, e) },
				&SubscribeOptions{Queue: 4})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, errs := collectErrors()
			opts.Stats = true
			b := New(opts)
			var other atomic.Int64
			mustSubscribe(t, b, "f.x", func(context.Context, Event) { other.Add(1) })
			s, err := tc.sub(b, func(ctx context.Context, e Event) error {
				return fmt.Errorf("handling %v: %w", e.Payload, &codeError{7})
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Publish(ctx, "f.x", 1); err != nil {
				t.Fatalf("Publish = %v, want nil: handler errors are reported, not returned", err)
			}
			if tc.async {
				if err := s.UnsubscribeWait(bounded(t)); err != nil {
					t.Fatal(err)
				}
			}
			if other.Load() != 1 {
				t.Fatalf("the other subscription got %d events, want 1", other.Load())
			}
			des := deliveryErrors(errs(), ErrHandlerFailed)
			if len(des) != 1 {
				t.Fatalf("reports %v, want one wrapping ErrHandlerFailed", errs())
			}
			de := des[0]
			var ce *codeError
			if !errors.As(de, &ce) || ce.code != 7 {
				t.Errorf("errors.As(report, *codeError) failed: %v", de)
			}
			if de.Topic != "f.x" || de.Pattern != "f.*" || de.Attempt != 1 || !strings.Contains(de.Where, "failing_test.go") {
				t.Errorf("report %+v: want topic f.x, pattern f.*, attempt 1, where in failing_test.go", de)
			}
			want := fmt.Sprintf(`bus: handler failed: topic "f.x", pattern "f.*": attempt 1: handling 1: code 7 (subscribed at %s)`, de.Where)
			if de.Error() != want {
				t.Errorf("Error() = %q\nwant      %q", de.Error(), want)
			}
			if st := s.Stats(); st.Failed != 1 || st.Delivered != 1 {
				t.Errorf("subscription stats %+v, want 1 failed, 1 delivered", st)
			}
			if st := b.Stats(); st.Failed != 1 || st.Delivered != 2 || st.Panics != 0 {
				t.Errorf("bus stats %+v, want 1 failed, 2 delivered", st)
			}
			if err := b.Close(bounded(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestHandlerFuncPanic: a panicking HandlerFunc is recovered, counted as a
// panic and a failure, and reported with where it was subscribed.
func TestHandlerFuncPanic(t *testing.T) {
	opts, errs := collectErrors()
	b := New(opts)
	s, err := b.SubscribeFunc("p", func(context.Context, Event) error { panic("kaput") })
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "p", nil)
	des := deliveryErrors(errs(), ErrHandlerPanic)
	if len(des) != 1 || des[0].Value != "kaput" || des[0].Attempt != 1 || len(des[0].Stack) == 0 || des[0].Where == "" {
		t.Fatalf("reports %v, want one panic report with value, stack, attempt and where", errs())
	}
	if st := s.Stats(); st.Panics != 1 || st.Failed != 1 {
		t.Fatalf("stats %+v, want 1 panic, 1 failed", st)
	}
	if st := b.Stats(); st.Panics != 1 || st.Failed != 1 {
		t.Fatalf("bus stats %+v, want 1 panic, 1 failed", st)
	}
}

// TestWithFailureFunc: the function of WithFailureFunc sees the failures of
// synchronous handlers before Publish returns (an error, a HandlerFunc
// panic, a plain Handler panic), nothing for an event handled well, and
// an asynchronous subscription's final failure later.
func TestWithFailureFunc(t *testing.T) {
	b := New(&Options{OnError: func(error) {}})
	fail := func(ctx context.Context, e Event) error {
		if e.Payload == "bad" {
			return errBoom
		}
		return nil
	}
	if _, err := b.SubscribeFunc("w", fail); err != nil {
		t.Fatal(err)
	}
	mustSubscribe(t, b, "w", func(ctx context.Context, e Event) {
		if e.Payload == "bad" {
			panic("plain")
		}
	})
	var mu sync.Mutex
	var seen []*DeliveryError
	fctx := WithFailureFunc(ctx, func(de *DeliveryError) {
		mu.Lock()
		seen = append(seen, de)
		mu.Unlock()
	})
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	if err := b.Publish(fctx, "w", "good"); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 0 {
		t.Fatalf("%d failures seen for a good event", n)
	}
	if err := b.Publish(fctx, "w", "bad"); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 2 || !errors.Is(seen[0], errBoom) || !errors.Is(seen[1], ErrHandlerPanic) {
		t.Fatalf("seen %v before Publish returned, want the error and the panic", seen)
	}
	// An asynchronous subscription with retries reports once, at the end.
	if _, err := b.SubscribeFuncWith("a", fail, &SubscribeOptions{Queue: 4, Retry: &RetryPolicy{Attempts: 2, Initial: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(fctx, "a", "bad"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the dead letter is reported", func() bool { return count() == 3 })
	if de := seen[2]; !errors.Is(de, ErrHandlerFailed) || de.Attempt != 2 || !strings.Contains(de.Detail, `dead-lettered to "deadletter.a"`) {
		t.Fatalf("final failure %v, want attempt 2 dead-lettered to deadletter.a", de)
	}
	if err := b.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 3 {
		t.Fatalf("%d failures seen, want 3", n)
	}
}

// TestMiddleware: the bus's middleware wraps the subscription's, first
// outermost, around every kind of handler; a middleware may refuse an event
// (a failure) or swallow an error.
func TestMiddleware(t *testing.T) {
	var mu sync.Mutex
	var trace []string
	mark := func(name string) Middleware {
		return func(next HandlerFunc) HandlerFunc {
			return func(ctx context.Context, e Event) error {
				mu.Lock()
				trace = append(trace, name+">")
				mu.Unlock()
				err := next(ctx, e)
				mu.Lock()
				trace = append(trace, "<"+name)
				mu.Unlock()
				return err
			}
		}
	}
	swallow := func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e Event) error { _ = next(ctx, e); return nil }
	}
	opts, errs := collectErrors()
	opts.Middleware = []Middleware{mark("bus1"), mark("bus2")}
	b := New(opts)
	h := func(ctx context.Context, e Event) {
		mu.Lock()
		trace = append(trace, "h")
		mu.Unlock()
	}
	mustSubscribe(t, b, "plain", h)
	if _, err := b.SubscribeWith("sub", h, &SubscribeOptions{Middleware: []Middleware{mark("sub1"), mark("sub2")}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		topic string
		want  string
	}{
		{"plain", "bus1> bus2> h <bus2 <bus1"},
		{"sub", "bus1> bus2> sub1> sub2> h <sub2 <sub1 <bus2 <bus1"},
	} {
		trace = nil
		mustPublish(t, b, tc.topic, nil)
		if got := strings.Join(trace, " "); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.topic, got, tc.want)
		}
	}
	s, err := b.SubscribeFuncWith("swallow", func(context.Context, Event) error { return errBoom },
		&SubscribeOptions{Middleware: []Middleware{swallow}})
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "swallow", nil)
	if st := s.Stats(); st.Failed != 0 || len(deliveryErrors(errs(), ErrHandlerFailed)) != 0 {
		t.Fatalf("a swallowed error counted or reported: %+v %v", st, errs())
	}
	// SubscribeChan has no handler to wrap: the bus's middleware leaves
	// it alone, and its own is refused.
	_, ch, err := b.SubscribeChan("chan", nil)
	if err != nil {
		t.Fatal(err)
	}
	trace = nil
	mustPublish(t, b, "chan", 1)
	waitFor(t, ch, "event on the channel")
	if len(trace) != 0 {
		t.Fatalf("middleware ran for SubscribeChan: %v", trace)
	}
	if err := b.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
}

// TestFailingOptionsValidation: middleware and retry policies out of range
// are rejected with ErrInvalidOption, and New panics on a nil middleware.
func TestFailingOptionsValidation(t *testing.T) {
	b := New(nil)
	defer func() { _ = b.Close(bounded(t)) }()
	nop := func(context.Context, Event) error { return nil }
	nilReturning := func(HandlerFunc) HandlerFunc { return nil }
	for _, tc := range []struct {
		name string
		opts SubscribeOptions
		want string
	}{
		{"nil middleware", SubscribeOptions{Middleware: []Middleware{nil}}, "Middleware[0] is nil"},
		{"middleware returns nil", SubscribeOptions{Middleware: []Middleware{nilReturning}}, "returned a nil HandlerFunc"},
		{"retry without queue", SubscribeOptions{Retry: &RetryPolicy{}}, "retry policy without a queue"},
		{"negative attempts", SubscribeOptions{Queue: 1, Retry: &RetryPolicy{Attempts: -1}}, "negative retry attempts"},
		{"negative delay", SubscribeOptions{Queue: 1, Retry: &RetryPolicy{Initial: -time.Second}}, "negative retry delay"},
		{"max below initial", SubscribeOptions{Queue: 1, Retry: &RetryPolicy{Initial: time.Second, Max: time.Millisecond}}, "below Initial"},
		{"multiplier below 1", SubscribeOptions{Queue: 1, Retry: &RetryPolicy{Multiplier: 0.5}}, "Multiplier 0.5"},
		{"jitter above 1", SubscribeOptions{Queue: 1, Retry: &RetryPolicy{Jitter: 1.5}}, "Jitter 1.5"},
		{"bad dead-letter topic", SubscribeOptions{Queue: 1, Retry: &RetryPolicy{DeadLetter: "a..b"}}, "retry DeadLetter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.SubscribeFuncWith("v", nop, &tc.opts)
			if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SubscribeFuncWith = %v, want ErrInvalidOption saying %q", err, tc.want)
			}
		})
	}
	for _, opts := range []*SubscribeOptions{{Retry: &RetryPolicy{}}, {Middleware: []Middleware{nilReturning}}} {
		if _, _, err := b.SubscribeChan("v", opts); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("SubscribeChan(%+v) = %v, want ErrInvalidOption", opts, err)
		}
	}
	if _, err := b.SubscribeFunc("v", nil); !errors.Is(err, ErrNilHandler) {
		t.Errorf("SubscribeFunc(nil) = %v, want ErrNilHandler", err)
	}
	if _, err := SubscribeTypedFunc[int](b, "v", nil); !errors.Is(err, ErrNilHandler) {
		t.Errorf("SubscribeTypedFunc(nil) = %v, want ErrNilHandler", err)
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "Options.Middleware[1] is nil") {
			t.Errorf("New with a nil middleware: recovered %v", r)
		}
	}()
	New(&Options{Middleware: []Middleware{func(n HandlerFunc) HandlerFunc { return n }, nil}})
}

// TestRetryDelayBounds: every delay lies within the policy's bounds,
// [(1-Jitter)·d, d] with d = min(Max, Initial·Multiplier^(n-1)).
func TestRetryDelayBounds(t *testing.T) {
	for _, p := range []RetryPolicy{
		{Initial: 10 * time.Millisecond, Max: 70 * time.Millisecond, Multiplier: 2},
		{Initial: 10 * time.Millisecond, Max: time.Second, Multiplier: 3, Jitter: 0.5},
		{Initial: time.Millisecond, Max: time.Millisecond, Multiplier: 1, Jitter: 1},
		{}, // the defaults: 100ms, 200ms, ... up to 10s
	} {
		p, err := p.normalize('.')
		if err != nil {
			t.Fatal(err)
		}
		d := float64(p.Initial)
		for n := 1; n <= 12; n++ {
			hi := time.Duration(min(d, float64(p.Max)))
			lo := time.Duration(float64(hi) * (1 - p.Jitter))
			for range 200 {
				if got := p.delay(n); got < lo || got > hi {
					t.Fatalf("%+v: delay before attempt %d = %v, want within [%v, %v]", p, n+1, got, lo, hi)
				}
			}
			d *= p.Multiplier
		}
	}
}

// flaky returns a HandlerFunc that fails the first n calls for each
// payload and records the time of every call.
type flaky struct {
	n     int
	mu    sync.Mutex
	calls map[any][]time.Time
}

func newFlaky(n int) *flaky { return &flaky{n: n, calls: map[any][]time.Time{}} }

func (f *flaky) handle(ctx context.Context, e Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[e.Payload] = append(f.calls[e.Payload], time.Now())
	if f.n < 0 || len(f.calls[e.Payload]) <= f.n {
		return fmt.Errorf("attempt %d: %w", len(f.calls[e.Payload]), errBoom)
	}
	return nil
}

func (f *flaky) attempts(p any) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls[p]...)
}

// TestRetryThenSucceed: a handler that fails N times then succeeds gets
// exactly N+1 attempts, spaced at least by the policy's lower bounds; the
// failures are reported with their attempt, and the event counts as
// delivered once.
func TestRetryThenSucceed(t *testing.T) {
	for _, n := range []int{1, 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			opts, errs := collectErrors()
			b := New(opts)
			f := newFlaky(n)
			p := RetryPolicy{Attempts: 5, Initial: 10 * time.Millisecond, Max: 25 * time.Millisecond, Multiplier: 2, Jitter: 0.2}
			s, err := b.SubscribeFuncWith("r", f.handle, &SubscribeOptions{Queue: 4, Retry: &p})
			if err != nil {
				t.Fatal(err)
			}
			mustPublish(t, b, "r", "x")
			if err := s.UnsubscribeWait(bounded(t)); err != nil {
				t.Fatal(err)
			}
			calls := f.attempts("x")
			if len(calls) != n+1 {
				t.Fatalf("%d attempts, want %d", len(calls), n+1)
			}
			for i := 1; i < len(calls); i++ {
				d := min(float64(p.Initial)*pow(p.Multiplier, i-1), float64(p.Max))
				lo := time.Duration(d * (1 - p.Jitter))
				if gap := calls[i].Sub(calls[i-1]); gap < lo {
					t.Errorf("attempt %d came %v after attempt %d, want at least %v", i+1, gap, i, lo)
				}
			}
			des := deliveryErrors(errs(), ErrHandlerFailed)
			if len(des) != n {
				t.Fatalf("%d failure reports, want %d: %v", len(des), n, errs())
			}
			for i, de := range des {
				if de.Attempt != i+1 || !strings.HasPrefix(de.Detail, "retrying in ") {
					t.Errorf("report %d: attempt %d, detail %q", i, de.Attempt, de.Detail)
				}
			}
			want := SubscriptionStats{Delivered: 1, Failed: uint64(n), Retried: uint64(n), Capacity: 4, HighWater: 1}
			if st := s.Stats(); st != want {
				t.Fatalf("stats %+v, want %+v", st, want)
			}
		})
	}
}

func pow(x float64, n int) float64 {
	r := 1.0
	for range n {
		r *= x
	}
	return r
}

// TestRetryDeadLetter: a poison event reaches the dead letter after
// exactly Attempts attempts, with its payload and Meta saying what failed,
// on the default topic or the policy's; a panic is retried like an error.
func TestRetryDeadLetter(t *testing.T) {
	for _, tc := range []struct {
		name, deadLetter, wantTopic string
		panics                      bool
		attempts                    int
	}{
		{"default topic", "", "deadletter.orders.created", false, 3},
		{"own topic", "poison", "poison", false, 1},
		{"panic", "", "deadletter.orders.created", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, errs := collectErrors()
			b := New(opts)
			dead := make(chan Event, 2)
			mustSubscribe(t, b, tc.wantTopic, func(ctx context.Context, e Event) { dead <- e })
			var calls atomic.Int64
			h := func(context.Context, Event) error {
				calls.Add(1)
				if tc.panics {
					panic("poison")
				}
				return errBoom
			}
			s, err := b.SubscribeFuncWith("orders.*", h, &SubscribeOptions{Queue: 4,
				Retry: &RetryPolicy{Attempts: tc.attempts, Initial: time.Millisecond, DeadLetter: tc.deadLetter}})
			if err != nil {
				t.Fatal(err)
			}
			payload := &payload{}
			meta := &Meta{Source: "other", Seq: 9, ContentType: "text/plain", Headers: map[string]string{"traceparent": "t1"}}
			if err := b.PublishEvent(ctx, Event{Topic: "orders.created", Payload: payload, Meta: meta}); err != nil {
				t.Fatal(err)
			}
			var e Event
			select {
			case e = <-dead:
			case <-time.After(waitLimit):
				t.Fatalf("no dead letter after %v; reports %v", waitLimit, errs())
			}
			if err := s.UnsubscribeWait(bounded(t)); err != nil {
				t.Fatal(err)
			}
			if calls.Load() != int64(tc.attempts) {
				t.Fatalf("%d attempts, want %d", calls.Load(), tc.attempts)
			}
			if e.Payload != payload || e.Remote() || e.Meta.ContentType != "text/plain" || e.Meta.Time.IsZero() {
				t.Errorf("dead letter %+v %+v: want the payload, a local event, the content type, a time", e, e.Meta)
			}
			lastErr := "boom"
			if tc.panics {
				lastErr = "panic: poison"
			}
			h0 := e.Meta.Headers
			for k, want := range map[string]string{
				HeaderDeadLetterTopic: "orders.created", HeaderDeadLetterPattern: "orders.*", HeaderDeadLetterError: lastErr,
				HeaderDeadLetterAttempts: fmt.Sprint(tc.attempts), HeaderDeadLetterSource: "other", HeaderDeadLetterSeq: "9",
				"traceparent": "t1",
			} {
				if h0[k] != want {
					t.Errorf("header %s = %q, want %q", k, h0[k], want)
				}
			}
			if !strings.Contains(h0[HeaderDeadLetterWhere], "failing_test.go") {
				t.Errorf("header %s = %q", HeaderDeadLetterWhere, h0[HeaderDeadLetterWhere])
			}
			if tm, err := time.Parse(time.RFC3339Nano, h0[HeaderDeadLetterTime]); err != nil || !tm.Equal(e.Meta.Time) {
				t.Errorf("header %s = %q (%v), want Meta.Time %v", HeaderDeadLetterTime, h0[HeaderDeadLetterTime], err, e.Meta.Time)
			}
			if len(meta.Headers) != 1 {
				t.Errorf("the original event's headers were modified: %v", meta.Headers)
			}
			st := s.Stats()
			want := SubscriptionStats{DeadLettered: 1, Failed: uint64(tc.attempts), Retried: uint64(tc.attempts - 1), Capacity: 4, HighWater: 1}
			if tc.panics {
				want.Panics = want.Failed
			}
			if st != want {
				t.Fatalf("stats %+v, want %+v", st, want)
			}
			if bs := b.Stats(); bs.DeadLettered != 1 || bs.Failed != uint64(tc.attempts) {
				t.Fatalf("bus stats %+v", bs)
			}
			last := errs()[len(errs())-1]
			var de *DeliveryError
			if !errors.As(last, &de) || !strings.Contains(de.Detail, fmt.Sprintf("dead-lettered to %q after %s", tc.wantTopic, plural(uint64(tc.attempts), "attempt"))) {
				t.Fatalf("last report %v, want the dead letter", last)
			}
			if err := b.Close(bounded(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestDeadLetterNotDeadLetteredAgain: a subscription that matches its own
// dead-letter topic and fails on it does not dead-letter it again.
func TestDeadLetterNotDeadLetteredAgain(t *testing.T) {
	b := New(&Options{OnError: func(error) {}})
	var topics []string
	var mu sync.Mutex
	s, err := b.SubscribeFuncWith("**", func(ctx context.Context, e Event) error {
		mu.Lock()
		topics = append(topics, e.Topic)
		mu.Unlock()
		return errBoom
	}, &SubscribeOptions{Queue: 8, Retry: &RetryPolicy{Attempts: 1}})
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "a", nil)
	eventually(t, "the dead letter is handled", func() bool { return s.Stats().Delivered == 1 })
	if err := b.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.DeadLettered != 1 || st.Delivered != 1 || st.Failed != 2 || strings.Join(topics, " ") != "a deadletter.a" {
		t.Fatalf("stats %+v, topics %v: want a dead-lettered once, its dead letter handled (failed) once", st, topics)
	}
}

// TestRetryKeepsOrderAndOthersFlow: a retrying subscription handles its
// later events after the failing one, in order, while another asynchronous
// subscription and the publisher go on.
func TestRetryKeepsOrderAndOthersFlow(t *testing.T) {
	b := New(&Options{OnError: func(error) {}})
	var calls atomic.Int64
	gate := make(chan struct{})
	var mu sync.Mutex
	var order []int
	h := func(ctx context.Context, e Event) error {
		if e.Payload == 1 && calls.Add(1) == 1 {
			return errBoom // the first attempt of event 1
		}
		if e.Payload == 1 {
			<-gate // the second attempt waits until the others flowed
		}
		mu.Lock()
		order = append(order, e.Payload.(int))
		mu.Unlock()
		return nil
	}
	s, err := b.SubscribeFuncWith("o", h, &SubscribeOptions{Queue: 16, Retry: &RetryPolicy{Initial: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	var other atomic.Int64
	if _, err := b.SubscribeWith("o", func(context.Context, Event) { other.Add(1) }, &SubscribeOptions{Queue: 16}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 10; i++ {
		mustPublish(t, b, "o", i)
	}
	eventually(t, "the other subscription handles all", func() bool { return other.Load() == 10 })
	mu.Lock()
	early := len(order)
	mu.Unlock()
	if early != 0 {
		t.Fatalf("%d events handled before the failing one: order broken", early)
	}
	close(gate)
	if err := s.UnsubscribeWait(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(order) != fmt.Sprint(seq(1, 10)) {
		t.Fatalf("handled %v, want 1..10 in order", order)
	}
	if err := b.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
}

// TestRetryStopsWhenPublisherContextEnds: an event whose publisher's ctx
// has ended is not retried: it goes to the dead letter at once.
func TestRetryStopsWhenPublisherContextEnds(t *testing.T) {
	b := New(&Options{OnError: func(error) {}})
	pctx, cancel := context.WithCancel(ctx)
	s, err := b.SubscribeFuncWith("c", func(ctx context.Context, e Event) error {
		cancel()
		return ctx.Err()
	}, &SubscribeOptions{Queue: 1, Retry: &RetryPolicy{Attempts: 5, Initial: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(pctx, "c", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.UnsubscribeWait(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Failed != 1 || st.DeadLettered != 1 || st.Retried != 0 {
		t.Fatalf("stats %+v: want 1 attempt, dead-lettered", st)
	}
	if err := b.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
}

// TestCloseDuringBackoff: Close while an event waits an hour for its next
// attempt returns at once, counting it as abandoned, for a Close with time
// to spare and for one whose ctx has already ended. With time to spare,
// the events queued behind it are drained (first attempts only), and the
// one of them that fails is abandoned too; with none, the worker may start
// them before Close discards them, and Close's count says which.
func TestCloseDuringBackoff(t *testing.T) {
	for _, tc := range []struct {
		name        string
		budget      time.Duration
		wantErr     string
		wantHandled int
		wantDropped uint64
		wantAband   uint64
	}{
		{"time to spare", waitLimit, "bus: close: 2 failed events abandoned between attempts", 1, 0, 2},
		{"ctx ended", 0, "", 0, 0, 0}, // see below
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, errs := collectErrors()
			b := New(opts)
			h := func(ctx context.Context, e Event) error {
				if e.Payload == 2 {
					return nil
				}
				return errBoom
			}
			s, err := b.SubscribeFuncWith("b", h, &SubscribeOptions{Queue: 4, Retry: &RetryPolicy{Initial: time.Hour}})
			if err != nil {
				t.Fatal(err)
			}
			mustPublish(t, b, "b", 1)
			eventually(t, "the worker waits for the next attempt", s.retrying.Load)
			mustPublish(t, b, "b", 2)
			mustPublish(t, b, "b", 3)
			cctx, cancel := context.WithTimeout(ctx, tc.budget)
			defer cancel()
			start := time.Now()
			err = b.Close(cctx)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Close took %v", took)
			}
			waitFor(t, s.Done(), "Done")
			st := s.Stats()
			if tc.budget == 0 {
				// Whatever the worker started before the discard is
				// handled or abandoned; Close's error counts the rest.
				tc.wantErr = closeError(cctx, st.Dropped, st.Abandoned).Error()
				tc.wantHandled, tc.wantDropped, tc.wantAband = int(st.Delivered), st.Dropped, max(st.Abandoned, 1)
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Close = %v, want it to wrap DeadlineExceeded", err)
				}
			}
			if err == nil || err.Error() != tc.wantErr || !errors.Is(err, ErrRetryAbandoned) {
				t.Fatalf("Close = %v, want %q wrapping ErrRetryAbandoned", err, tc.wantErr)
			}
			if st.Abandoned != tc.wantAband || st.Delivered != uint64(tc.wantHandled) || st.Dropped != tc.wantDropped ||
				st.Delivered+st.Dropped+st.Abandoned+st.DeadLettered != 3 {
				t.Fatalf("stats %+v: want %d handled, %d dropped, %d abandoned, 3 in all", st, tc.wantHandled, tc.wantDropped, tc.wantAband)
			}
			if bs := b.Stats(); bs.Abandoned != tc.wantAband {
				t.Fatalf("bus stats %+v", bs)
			}
			if got := deliveryErrors(errs(), ErrRetryAbandoned); uint64(len(got)) != tc.wantAband || got[0].Attempt != 1 {
				t.Fatalf("abandon reports %v, want %d", errs(), tc.wantAband)
			}
		})
	}
}

// TestRetryAccounting: several retrying subscriptions, with each overflow
// policy, get events that succeed at once, after retries, or never, then
// Close comes with retries under way. For each: handled + dead-lettered +
// dropped + abandoned == published, exactly, and each counter agrees with
// what the handler saw.
func TestRetryAccounting(t *testing.T) {
	b := New(&Options{OnError: func(error) {}})
	const events = 300
	type sub struct {
		s        *Subscription
		mu       sync.Mutex
		attempts map[int]int
		ok       int
	}
	var subs []*sub
	var dead atomic.Int64
	mustSubscribe(t, b, "deadletter.**", func(context.Context, Event) { dead.Add(1) })
	for _, o := range []Overflow{Block, DropNewest, DropOldest} {
		for _, queue := range []int{1, 8} {
			m := &sub{attempts: map[int]int{}}
			h := func(ctx context.Context, e Event) error {
				i := e.Payload.(int)
				m.mu.Lock()
				defer m.mu.Unlock()
				m.attempts[i]++
				// i%3 == 0 always fails; 1 fails once; 2 succeeds.
				if i%3 == 0 || (i%3 == 1 && m.attempts[i] == 1) {
					return errBoom
				}
				m.ok++
				return nil
			}
			var err error
			m.s, err = b.SubscribeFuncWith("acc.*", h, &SubscribeOptions{Queue: queue, Overflow: o,
				Retry: &RetryPolicy{Attempts: 3, Initial: 20 * time.Microsecond, Max: 200 * time.Microsecond, Jitter: 0.5}})
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, m)
		}
	}
	for i := range events {
		// Some publishers give up on a full Block queue, and their
		// events, whose ctx has ended, go to the dead letter at the
		// first failure.
		c, cancel := ctx, context.CancelFunc(func() {})
		if i%4 == 0 {
			c, cancel = context.WithTimeout(ctx, time.Millisecond)
		}
		if err := b.Publish(c, "acc.x", i); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatal(err)
		}
		cancel()
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	closeErr := b.Close(cctx)
	var sumAband uint64
	for _, m := range subs {
		waitFor(t, m.s.Done(), "Done")
		st := m.s.Stats()
		sumAband += st.Abandoned
		if total := st.Delivered + st.DeadLettered + st.Dropped + st.Abandoned; total != events {
			t.Errorf("%v queue %d: %+v: delivered + dead-lettered + dropped + abandoned = %d, want %d",
				m.s.opts.Overflow, m.s.opts.Queue, st, total, events)
		}
		if st.Delivered != uint64(m.ok) {
			t.Errorf("%+v: delivered %d, handler succeeded %d times", st, st.Delivered, m.ok)
		}
		var attempts uint64
		for _, n := range m.attempts {
			attempts += uint64(n)
		}
		if st.Failed != attempts-uint64(m.ok) || st.Retried != attempts-uint64(len(m.attempts)) {
			t.Errorf("%+v: %d attempts of %d events, %d succeeded", st, attempts, len(m.attempts), m.ok)
		}
	}
	bs := b.Stats()
	if bs.DeadLettered != uint64(dead.Load()) {
		t.Errorf("Stats.DeadLettered %d, the dead-letter subscriber got %d", bs.DeadLettered, dead.Load())
	}
	if bs.Abandoned != sumAband {
		t.Errorf("Stats.Abandoned %d, subscriptions' sum %d", bs.Abandoned, sumAband)
	}
	t.Logf("published %d to %d subscriptions; bus %+v; Close: %v", events, len(subs), bs, closeErr)
}

// TestFuncAllocs: a HandlerFunc that succeeds, behind a middleware, costs
// no allocation per event, synchronous or asynchronous; and a bus whose
// other subscriptions have middleware still publishes to plain ones
// without one.
func TestFuncAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	pass := func(next HandlerFunc) HandlerFunc { return next }
	b := New(nil)
	var n atomic.Int64
	h := func(context.Context, Event) error { n.Add(1); return nil }
	if _, err := b.SubscribeFuncWith("sync", h, &SubscribeOptions{Middleware: []Middleware{pass}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SubscribeFuncWith("async", h, &SubscribeOptions{Queue: 256, Retry: &RetryPolicy{}}); err != nil {
		t.Fatal(err)
	}
	mustSubscribe(t, b, "plain", func(context.Context, Event) {})
	p := &payload{}
	for _, topic := range []string{"sync", "plain"} {
		if allocs := testing.AllocsPerRun(100, func() { _ = b.Publish(ctx, topic, p) }); allocs != 0 {
			t.Errorf("%s: %v allocs per Publish, want 0", topic, allocs)
		}
	}
	if allocs := asyncAllocs(t, b, "async", p, &n); allocs != 0 {
		t.Errorf("%v allocs per 100 async publishes to a HandlerFunc, want 0", allocs)
	}
	if err := b.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
}

// TestCloseDuringPublishNotSilent: publishes racing Close either reach the
// subscription or fail with ErrClosed; none returns nil having reached no
// one. With the cache off every publish looks the index up, where the
// race was: a publish that checked closed before Close emptied the index
// found no subscriber and returned nil.
func TestCloseDuringPublishNotSilent(t *testing.T) {
	for round := range 50 {
		b := New(&Options{MatchCacheSize: -1})
		var handled atomic.Int64
		mustSubscribe(t, b, "t", func(context.Context, Event) { handled.Add(1) })
		var ok atomic.Int64
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for {
					err := b.Publish(ctx, "t", nil)
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Errorf("Publish = %v", err)
						}
						return
					}
					ok.Add(1)
				}
			})
		}
		for handled.Load() < int64(10+round) {
			time.Sleep(time.Microsecond)
		}
		if err := b.Close(bounded(t)); err != nil {
			t.Fatal(err)
		}
		waitGroup(t, &wg, "publishers")
		if ok.Load() != handled.Load() {
			t.Fatalf("round %d: %d publishes returned nil, %d handled", round, ok.Load(), handled.Load())
		}
	}
}

// TestOnceTakenThenEnded: a Once subscription whose event a publisher has
// taken when Close or Unsubscribe ends it, before it is delivered, counts
// that event as dropped: another publish that found it taken returned nil,
// so handled + dropped must still be 1.
func TestOnceTakenThenEnded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		queue int
		end   func(*Bus, *Subscription)
	}{
		{"sync/Unsubscribe", 0, func(_ *Bus, s *Subscription) { s.Unsubscribe() }},
		{"sync/Close", 0, func(b *Bus, _ *Subscription) { _ = b.Close(ctx) }},
		{"async/Close", 4, func(b *Bus, _ *Subscription) { _ = b.Close(ctx) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, errs := collectErrors()
			b := New(opts)
			var handled atomic.Int64
			s, err := b.SubscribeWith("o", func(context.Context, Event) { handled.Add(1) }, &SubscribeOptions{Once: true, Queue: tc.queue})
			if err != nil {
				t.Fatal(err)
			}
			var other error
			testHookOnceTaken = func() {
				testHookOnceTaken = nil
				other = b.Publish(ctx, "o", 2) // finds the event taken
				tc.end(b, s)
			}
			defer func() { testHookOnceTaken = nil }()
			first := b.Publish(ctx, "o", 1)
			if other != nil {
				t.Fatalf("the publish that found the event taken = %v, want nil", other)
			}
			waitFor(t, s.Done(), "Done")
			if got := uint64(handled.Load()) + s.Stats().Dropped; got != 1 {
				t.Fatalf("first publish %v; handled + dropped = %d, want 1", first, got)
			}
			if len(deliveryErrors(errs(), ErrDropped)) != 1 {
				t.Fatalf("reports %v, want the drop", errs())
			}
			_ = b.Close(bounded(t))
		})
	}
}
