package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var ctx = context.Background()

// collectErrors returns Options whose OnError appends to the returned
// function's result.
func collectErrors() (*Options, func() []error) {
	var mu sync.Mutex
	var errs []error
	opts := &Options{OnError: func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}}
	return opts, func() []error {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(errs)
	}
}

func mustSubscribe(t testing.TB, b *Bus, pattern string, h Handler) *Subscription {
	t.Helper()
	s, err := b.Subscribe(pattern, h)
	if err != nil {
		t.Fatalf("Subscribe(%q): %v", pattern, err)
	}
	return s
}

// topicInStripe returns the first topic prefix+"N" (N = 0, 1, ...) whose
// hash falls in stripe st: a change to it moves st's generation.
func topicInStripe(b *Bus, st *stripe, prefix string) string {
	for i := 0; ; i++ {
		if c := prefix + strconv.Itoa(i); b.stripeOf(hashString(b.seed, c)) == st {
			return c
		}
	}
}

func mustPublish(t testing.TB, b *Bus, topic string, payload any) {
	t.Helper()
	if err := b.Publish(ctx, topic, payload); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

// within fails the test if f does not return within d: the deadlock tests
// use it so that a deadlock fails instead of hanging the run.
func within(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("did not return within %v: deadlock?", d)
	}
}

// TestPatternTable is the pattern table of the README and the package
// documentation, checked through Subscribe and through CompilePattern,
// which must mean the same.
func TestPatternTable(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		match   []string
		noMatch []string
	}{
		{"orders", []string{"orders"}, []string{"orders.eu", "ordersx", "order", "x.orders"}},
		{"orders.created", []string{"orders.created"}, []string{"orders", "orders.created.eu", "orders.Created"}},
		{"orders.*", []string{"orders.created", "orders.paid"}, []string{"orders", "orders.created.eu"}},
		{"orders.**", []string{"orders.created", "orders.created.eu"}, []string{"orders", "shipping.created"}},
		{"**.failed", []string{"failed", "orders.failed", "a.b.failed"}, []string{"failed.x", "orders.failedx"}},
		{"orders.**.eu", []string{"orders.eu", "orders.created.eu", "orders.a.b.eu"}, []string{"orders.created.us"}},
		{"**", []string{"a", "a.b.c"}, nil},
		{"*.created", []string{"orders.created", "users.created"}, []string{"created", "a.b.created"}},
		{"orders.c*", []string{"orders.created", "orders.c"}, []string{"orders.paid", "orders.created.x"}},
		{"orders.cr?ated", []string{"orders.created", "orders.crxated"}, []string{"orders.crated"}},
		{"user.[0-9]", []string{"user.1", "user.7"}, []string{"user.a", "user.10"}},
		{"user.[!0-9]", []string{"user.a"}, []string{"user.1"}},
		{"{orders,users}.created", []string{"orders.created", "users.created"}, []string{"items.created"}},
		{"{a.b,c}.d", []string{"a.b.d", "c.d"}, []string{"a.d", "b.d"}},
		{"a**z", []string{"az", "a.b.z", "abz"}, []string{"a.b.y"}},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			b := New(nil)
			var got []string
			mustSubscribe(t, b, tc.pattern, func(ctx context.Context, e Event) { got = append(got, e.Topic) })
			for _, topic := range append(slices.Clone(tc.match), tc.noMatch...) {
				mustPublish(t, b, topic, nil)
			}
			if !slices.Equal(got, tc.match) {
				t.Errorf("pattern %q received %q, want %q", tc.pattern, got, tc.match)
			}
			match, err := CompilePattern(tc.pattern, '.')
			if err != nil {
				t.Fatal(err)
			}
			for _, topic := range tc.match {
				if !match(topic) {
					t.Errorf("CompilePattern(%q) does not match %q", tc.pattern, topic)
				}
			}
			for _, topic := range tc.noMatch {
				if match(topic) {
					t.Errorf("CompilePattern(%q) matches %q", tc.pattern, topic)
				}
			}
		})
	}
}

func TestDeliveryOrderAndOnce(t *testing.T) {
	b := New(nil)
	var got []string
	// Patterns that several paths of the tree match, mixed with literal
	// ones, subscribed in a known order.
	for _, p := range []string{"a.**.**.b", "a.x.b", "**.**", "a.*.b", "a.x.b", "a.{x,y}.b", "**.b"} {
		mustSubscribe(t, b, p, func(ctx context.Context, e Event) { got = append(got, p) })
	}
	for range 3 { // the second and third publish are served by the cache
		got = got[:0]
		mustPublish(t, b, "a.x.b", nil)
		want := []string{"a.**.**.b", "a.x.b", "**.**", "a.*.b", "a.x.b", "a.{x,y}.b", "**.b"}
		if !slices.Equal(got, want) {
			t.Fatalf("got %q, want each subscription once in subscription order %q", got, want)
		}
	}
}

func TestSubscribeAfterCachedPublish(t *testing.T) {
	for _, pattern := range []string{"a.b", "a.*", "a.b*"} {
		b := New(nil)
		var n int
		mustPublish(t, b, "a.b", nil) // caches "no subscribers"
		s := mustSubscribe(t, b, pattern, func(context.Context, Event) { n++ })
		mustPublish(t, b, "a.b", nil)
		s.Unsubscribe()
		mustPublish(t, b, "a.b", nil)
		if n != 1 {
			t.Errorf("pattern %q: handler ran %d times, want 1", pattern, n)
		}
	}
}

func TestPayloadAndMeta(t *testing.T) {
	b := New(nil)
	type order struct{ ID int }
	want := &order{ID: 7}
	meta := &Meta{Source: "other", Seq: 3, Headers: map[string]string{"traceparent": "00-x"}}
	var got []Event
	mustSubscribe(t, b, "orders.*", func(ctx context.Context, e Event) { got = append(got, e) })
	mustPublish(t, b, "orders.created", want)
	if err := b.PublishEvent(ctx, Event{Topic: "orders.paid", Payload: want, Meta: meta}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Payload != want || got[0].Meta != nil || got[0].Remote() ||
		got[1].Meta != meta || !got[1].Remote() || got[1].Topic != "orders.paid" {
		t.Fatalf("got %+v", got)
	}
}

func TestHandlerReentrancy(t *testing.T) {
	for _, tc := range []struct {
		name string
		body func(t *testing.T, b *Bus, self **Subscription, e Event)
	}{
		{"publish", func(t *testing.T, b *Bus, self **Subscription, e Event) {
			if e.Topic == "a.1" {
				mustPublish(t, b, "a.2", nil)
			}
		}},
		{"subscribe", func(t *testing.T, b *Bus, self **Subscription, e Event) {
			mustSubscribe(t, b, "a.*", func(context.Context, Event) {})
		}},
		{"unsubscribe self", func(t *testing.T, b *Bus, self **Subscription, e Event) { (*self).Unsubscribe() }},
		{"close", func(t *testing.T, b *Bus, self **Subscription, e Event) { _ = b.Close(ctx) }},
	} {
		for _, pattern := range []string{"a.1", "a.*", "a.[12]"} {
			t.Run(tc.name+"/"+pattern, func(t *testing.T) {
				b := New(nil)
				var self *Subscription
				self = mustSubscribe(t, b, pattern, func(ctx context.Context, e Event) { tc.body(t, b, &self, e) })
				within(t, 5*time.Second, func() {
					_ = b.Publish(ctx, "a.1", nil)
					_ = b.Publish(ctx, "a.1", nil)
				})
			})
		}
	}
}

func TestUnsubscribe(t *testing.T) {
	b := New(nil)
	var a, c int
	sa := mustSubscribe(t, b, "t", func(context.Context, Event) { a++ })
	mustSubscribe(t, b, "t", func(context.Context, Event) { c++ })
	mustPublish(t, b, "t", nil)
	sa.Unsubscribe()
	sa.Unsubscribe() // idempotent
	mustPublish(t, b, "t", nil)
	if a != 1 || c != 2 || sa.Active() {
		t.Fatalf("a=%d c=%d active=%v, want 1 2 false", a, c, sa.Active())
	}
	if got := b.Topics(); !slices.Equal(got, []string{"t"}) {
		t.Fatalf("Topics() = %q", got)
	}
}

// TestUnsubscribeFromOtherHandler: a handler that unsubscribes a later
// subscription of the same event stops its delivery at once.
func TestUnsubscribeFromOtherHandler(t *testing.T) {
	b := New(nil)
	var second *Subscription
	ran := false
	mustSubscribe(t, b, "t", func(context.Context, Event) { second.Unsubscribe() })
	second = mustSubscribe(t, b, "t", func(context.Context, Event) { ran = true })
	mustPublish(t, b, "t", nil)
	if ran {
		t.Fatal("a subscription unsubscribed by an earlier handler still got the event")
	}
}

func TestPanicRecovered(t *testing.T) {
	opts, errs := collectErrors()
	b := New(opts)
	var order []string
	mustSubscribe(t, b, "x.*", func(context.Context, Event) { order = append(order, "first") })
	mustSubscribe(t, b, "x.y", func(context.Context, Event) { panic("boom") })
	mustSubscribe(t, b, "x.y", func(context.Context, Event) { panic(nil) })
	mustSubscribe(t, b, "x.**", func(context.Context, Event) { order = append(order, "last") })
	if err := b.Publish(ctx, "x.y", nil); err != nil {
		t.Fatalf("Publish returned %v after a handler panic", err)
	}
	if !slices.Equal(order, []string{"first", "last"}) {
		t.Fatalf("handlers ran %q, want first and last", order)
	}
	got := errs()
	if len(got) != 2 {
		t.Fatalf("OnError got %d errors, want 2: %v", len(got), got)
	}
	var de *DeliveryError
	if !errors.As(got[0], &de) || !errors.Is(got[0], ErrHandlerPanic) || de.Topic != "x.y" || de.Pattern != "x.y" ||
		de.Value != "boom" || !strings.Contains(string(de.Stack), "TestPanicRecovered") {
		t.Fatalf("first report = %#v", got[0])
	}
	if !strings.Contains(got[0].Error(), "boom") || !strings.Contains(got[0].Error(), `"x.y"`) {
		t.Fatalf("message %q lacks the panic value or topic", got[0].Error())
	}
}

func TestOnErrorPanicDoesNotKillPublisher(t *testing.T) {
	b := New(&Options{OnError: func(error) { panic("hook") }})
	mustSubscribe(t, b, "t", func(context.Context, Event) { panic("handler") })
	if err := b.Publish(ctx, "t", nil); err != nil {
		t.Fatal(err)
	}
}

func TestPublishOrderPerPublisher(t *testing.T) {
	b := New(nil)
	const publishers, events = 4, 2000
	var mu sync.Mutex
	last := make(map[int]int)
	var bad atomic.Int64
	mustSubscribe(t, b, "seq.*", func(ctx context.Context, e Event) {
		v := e.Payload.([2]int)
		mu.Lock()
		if v[1] <= last[v[0]] && last[v[0]] != 0 {
			bad.Add(1)
		}
		last[v[0]] = v[1]
		mu.Unlock()
	})
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := 1; i <= events; i++ {
				if err := b.Publish(ctx, fmt.Sprintf("seq.%d", i%3), [2]int{p, i}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	waitGroup(t, &wg, "wg")
	if bad.Load() != 0 {
		t.Fatalf("%d events out of publish order", bad.Load())
	}
	for p := range publishers {
		if last[p] != events {
			t.Fatalf("publisher %d: last seen %d, want %d", p, last[p], events)
		}
	}
}

func TestClose(t *testing.T) {
	b := New(nil)
	var n int
	s := mustSubscribe(t, b, "a.*", func(context.Context, Event) { n++ })
	mustPublish(t, b, "a.b", nil)
	if err := b.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, "a.b", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe("a.b", func(context.Context, Event) {}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if err := b.Close(bounded(t)); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	if s.Active() || n != 1 || b.NumPat() != 0 {
		t.Errorf("after Close: active=%v n=%d numpat=%d", s.Active(), n, b.NumPat())
	}
	s.Unsubscribe() // harmless after Close
}

func TestBadInput(t *testing.T) {
	b := New(nil)
	var n int
	mustSubscribe(t, b, "**", func(context.Context, Event) { n++ })
	for _, topic := range []string{"", "a..b", "a.*", "a\n"} {
		err := b.Publish(ctx, topic, nil)
		if !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("Publish(%q) = %v, want ErrInvalidTopic", topic, err)
		}
	}
	for _, pattern := range []string{"", "a..b", "a.{b", "a.[", "x\\"} {
		if _, err := b.Subscribe(pattern, func(context.Context, Event) {}); !errors.Is(err, ErrInvalidPattern) {
			t.Errorf("Subscribe(%q) = %v, want ErrInvalidPattern", pattern, err)
		}
	}
	if _, err := b.Subscribe("a", nil); !errors.Is(err, ErrNilHandler) {
		t.Errorf("Subscribe with nil handler = %v", err)
	}
	if _, err := SubscribeTyped[int](b, "a", nil); !errors.Is(err, ErrNilHandler) {
		t.Errorf("SubscribeTyped with nil handler = %v", err)
	}
	if n != 0 {
		t.Errorf("invalid publishes delivered %d events", n)
	}
	mustPublish(t, b, "valid", nil)
	if n != 1 {
		t.Errorf("valid publish after bad input delivered %d", n)
	}
}

func TestNewPanicsOnBadSeparator(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "bus: invalid separator") {
			t.Fatalf("recover() = %v", r)
		}
	}()
	New(&Options{Separator: '*'})
}

type typedOrder struct{ ID int }

func (o *typedOrder) String() string { return fmt.Sprint("order ", o.ID) }

func TestSubscribeTyped(t *testing.T) {
	opts, errs := collectErrors()
	b := New(opts)
	var got []*typedOrder
	s, err := SubscribeTyped(b, "orders.*", func(ctx context.Context, e Event, o *typedOrder) { got = append(got, o) })
	if err != nil {
		t.Fatal(err)
	}
	var strs []string
	if _, err := SubscribeTyped(b, "orders.*", func(ctx context.Context, e Event, v fmt.Stringer) { strs = append(strs, v.String()) }); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "orders.created", &typedOrder{ID: 1})
	mustPublish(t, b, "orders.created", typedOrder{ID: 2}) // a value, not a pointer: wrong type for both
	mustPublish(t, b, "orders.created", nil)               // no type at all: wrong for both
	if len(got) != 1 || got[0].ID != 1 || !slices.Equal(strs, []string{"order 1"}) {
		t.Errorf("typed handlers got %v and %q, want order 1 once each", got, strs)
	}
	if s.Pattern() != "orders.*" || !strings.Contains(s.Where(), "bus_test.go:") {
		t.Errorf("Pattern()=%q Where()=%q", s.Pattern(), s.Where())
	}
	reports := errs()
	if len(reports) != 4 {
		t.Fatalf("got %d reports, want 4: %v", len(reports), reports)
	}
	for _, err := range reports {
		var de *DeliveryError
		if !errors.As(err, &de) || !errors.Is(err, ErrPayloadType) || de.Topic != "orders.created" || de.Pattern != "orders.*" {
			t.Errorf("report %v is not an ErrPayloadType DeliveryError", err)
		}
	}
	if !strings.Contains(reports[0].Error(), "want *bus.typedOrder, got bus.typedOrder") {
		t.Errorf("report %q does not name both types", reports[0])
	}
}

func TestIntrospection(t *testing.T) {
	b := New(nil)
	nop := func(context.Context, Event) {}
	for _, p := range []string{"a.b", "a.b", "a.*", "a.*", "**", "a.b*", "c"} {
		mustSubscribe(t, b, p, nop)
	}
	for _, tc := range []struct {
		topic string
		want  int
	}{{"a.b", 6}, {"a.c", 3}, {"c", 2}, {"z.z.z", 1}} {
		if got, err := b.NumSub(tc.topic); err != nil || got != tc.want {
			t.Errorf("NumSub(%q) = %d, %v; want %d", tc.topic, got, err, tc.want)
		}
	}
	if _, err := b.NumSub("a..b"); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("NumSub of a bad topic: %v", err)
	}
	if got := b.NumPat(); got != 3 {
		t.Errorf("NumPat() = %d, want 3", got)
	}
	if got := b.Patterns(); !slices.Equal(got, []string{"**", "a.*", "a.b*"}) {
		t.Errorf("Patterns() = %q", got)
	}
	if got := b.Topics(); !slices.Equal(got, []string{"a.b", "c"}) {
		t.Errorf("Topics() = %q", got)
	}
}

// TestConcurrentChurn publishes while subscriptions come and go, from many
// goroutines, and checks that a Publish that starts after Unsubscribe has
// returned never reaches the subscription. Run it with -race.
func TestConcurrentChurn(t *testing.T) {
	b := New(&Options{MatchCacheSize: 64})
	var stop atomic.Bool
	var publishers, churners sync.WaitGroup
	topics := []string{"a.b", "a.c", "b.c", "a.b.c"}
	for p := range 2 {
		publishers.Go(func() {
			for i := 0; !stop.Load(); i++ {
				_ = b.Publish(ctx, topics[(i+p)%len(topics)], nil)
			}
		})
	}
	type marker struct{}
	patterns := []string{"a.b", "a.*", "**", "a.b*", "{a,b}.b", "a.**.b"}
	var violations, delivered atomic.Int64
	for w := range 3 {
		churners.Go(func() {
			for i := range 300 {
				var gone atomic.Bool
				s, err := b.Subscribe(patterns[(i+w)%len(patterns)], func(ctx context.Context, e Event) {
					if ctx.Value(marker{}) == &gone {
						if gone.Load() {
							violations.Add(1)
						} else {
							delivered.Add(1)
						}
					}
				})
				if err != nil {
					t.Error(err)
					return
				}
				mine := context.WithValue(ctx, marker{}, &gone)
				_ = b.Publish(mine, "a.b", nil) // must reach s
				s.Unsubscribe()
				gone.Store(true)
				_ = b.Publish(mine, "a.b", nil) // must not
			}
		})
	}
	waitGroup(t, &churners, "churners")
	stop.Store(true)
	waitGroup(t, &publishers, "publishers")
	if v := violations.Load(); v != 0 {
		t.Fatalf("%d deliveries by publishes that started after Unsubscribe returned", v)
	}
	if d := delivered.Load(); d != 900 {
		t.Fatalf("%d deliveries before Unsubscribe, want 900", d)
	}
}

func TestNumSubGroupsAndClose(t *testing.T) {
	b := New(nil)
	for range 3 {
		if _, err := b.SubscribeWith("jobs.*", func(context.Context, Event) {}, &SubscribeOptions{Group: "w"}); err != nil {
			t.Fatal(err)
		}
	}
	mustSubscribe(t, b, "jobs.x", func(context.Context, Event) {})
	if n, err := b.NumSub("jobs.x"); err != nil || n != 2 {
		t.Fatalf("NumSub = %d, %v; want 2 (the group counts once)", n, err)
	}
	_ = b.Close(bounded(t))
	if _, err := b.NumSub("jobs.x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("NumSub after Close = %v", err)
	}
}

// waitLimit bounds every wait of the tests: a wait that takes longer fails
// with a message instead of hanging until the test binary's timeout.
const waitLimit = 10 * time.Second

// waitFor fails the test if ch is not closed (or sent on) within waitLimit.
func waitFor[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLimit):
		t.Fatalf("%s: still waiting after %v", what, waitLimit)
	}
}

// bounded returns a context that ends after waitLimit, for the waits of
// UnsubscribeWait and Close that must not hang a failing test.
func bounded(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(ctx, waitLimit)
	t.Cleanup(cancel)
	return c
}

// eventually fails the test if cond does not hold within waitLimit.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, waitLimit)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// waitGroup fails the test if wg is not done within waitLimit.
func waitGroup(t testing.TB, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitFor(t, done, what)
}

// publishWithin is Publish for a publish that may wait on a full Block
// queue: it fails the test if Publish has not returned within waitLimit,
// as it would if Block ignored ctx.
func publishWithin(t testing.TB, b *Bus, c context.Context, topic string, payload any) error {
	t.Helper()
	result := make(chan error, 1)
	go func() { result <- b.Publish(c, topic, payload) }()
	select {
	case err := <-result:
		return err
	case <-time.After(waitLimit):
		t.Fatalf("Publish(%q) still waiting after %v: does Block honour ctx?", topic, waitLimit)
		return nil
	}
}

// TestPanicAtEveryPosition: whichever handler of a match set panics, and
// however many there are, the panic is recovered and reported once and
// every other handler still runs, on the first publish (a cache miss) and
// on the cached ones, for each delivery path.
func TestPanicAtEveryPosition(t *testing.T) {
	paths := []struct {
		name string
		opts *SubscribeOptions // of the subscription at position 0; nil for plain
	}{
		{"inline", nil},
		{"mixed", &SubscribeOptions{Track: true}},
	}
	for _, path := range paths {
		for n := 1; n <= 5; n++ {
			for culprit := range n {
				t.Run(fmt.Sprintf("%s/subs=%d/panics=%d", path.name, n, culprit), func(t *testing.T) {
					opts, errs := collectErrors()
					b := New(opts)
					ran := make([]int, n)
					for i := range n {
						h := func(context.Context, Event) {
							ran[i]++
							if i == culprit {
								panic(fmt.Sprint("boom ", i))
							}
						}
						var o *SubscribeOptions
						if i == 0 {
							o = path.opts
						}
						if _, err := b.SubscribeWith("a.b", h, o); err != nil {
							t.Fatal(err)
						}
					}
					const publishes = 3
					for range publishes {
						if err := b.Publish(ctx, "a.b", nil); err != nil {
							t.Fatalf("Publish: %v", err)
						}
					}
					for i, got := range ran {
						if got != publishes {
							t.Errorf("handler %d ran %d times, want %d", i, got, publishes)
						}
					}
					got := errs()
					if len(got) != publishes {
						t.Fatalf("OnError got %d errors, want %d: %v", len(got), publishes, got)
					}
					for _, err := range got {
						var de *DeliveryError
						if !errors.As(err, &de) || de.Value != fmt.Sprint("boom ", culprit) {
							t.Errorf("report %v, want the panic of handler %d", err, culprit)
						}
					}
				})
			}
		}
	}
}

// TestCachedTopicChanges: after every step of every sequence of
// subscribes and unsubscribes on a topic that is in the match cache, a
// publish reaches exactly the live subscriptions, each once, in order.
// The steps mix plain subscriptions (whose sets the cache holds as they
// are), a pattern that matches, one that does not, and queue group members.
func TestCachedTopicChanges(t *testing.T) {
	steps := []struct {
		name    string
		pattern string // "" unsubscribes instead
		group   string
		newest  bool // unsubscribe the newest, else the oldest
	}{
		{name: "+plain", pattern: "a.b"},
		{name: "+star", pattern: "a.*"},
		{name: "+other", pattern: "c.*"},
		{name: "+group", pattern: "a.b", group: "g"},
		{name: "-oldest"},
		{name: "-newest", newest: true},
	}
	const depth = 4
	var seq []int
	var run func()
	run = func() {
		if len(seq) == depth {
			return
		}
		for i := range steps {
			seq = append(seq, i)
			testCachedTopicChanges(t, seq, func(i int) (string, string, bool) {
				return steps[i].pattern, steps[i].group, steps[i].newest
			}, func() string {
				var names []string
				for _, i := range seq {
					names = append(names, steps[i].name)
				}
				return strings.Join(names, " ")
			})
			run()
			seq = seq[:len(seq)-1]
		}
	}
	run()
}

func testCachedTopicChanges(t *testing.T, seq []int, step func(int) (pattern, group string, newest bool), name func() string) {
	t.Helper()
	b := New(nil)
	defer b.Close(ctx)
	type live struct {
		s     *Subscription
		id    int
		match bool
	}
	var subs []live
	var got []int
	nextID := 0
	check := func(when string) {
		t.Helper()
		var want []int
		for _, l := range subs {
			if l.match {
				want = append(want, l.id)
			}
		}
		for range 2 { // a cache miss or hit, then a hit
			got = got[:0]
			mustPublish(t, b, "a.b", nil)
			slices.Sort(got) // groups come last
			if !slices.Equal(got, want) {
				t.Fatalf("%s, %s: publish reached %v, want %v", name(), when, got, want)
			}
		}
	}
	check("at first")
	for k, i := range seq {
		pattern, group, newest := step(i)
		if pattern == "" {
			if len(subs) == 0 {
				continue
			}
			j := 0
			if newest {
				j = len(subs) - 1
			}
			subs[j].s.Unsubscribe()
			subs = slices.Delete(subs, j, j+1)
		} else {
			id := nextID
			nextID++
			if group != "" {
				group += strconv.Itoa(id) // a group of one: it gets every event
			}
			s, err := b.SubscribeWith(pattern, func(context.Context, Event) { got = append(got, id) }, &SubscribeOptions{Group: group})
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, live{s: s, id: id, match: pattern != "c.*"})
		}
		check(fmt.Sprintf("after step %d", k+1))
	}
}
