package bus

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
)

// payload is what the benchmarks publish: a pointer, so that converting it
// to any costs nothing.
type payload struct{ _ int }

var (
	sinkN   int
	nopSink = func(ctx context.Context, e Event) {
		if e.Payload == nil {
			sinkN++
		}
	}
)

// directHandler is called through a variable so that the baseline pays for
// an indirect call, as the bus does.
var directHandler Handler = nopSink

// BenchmarkDirectCall is the floor: calling one handler with the event the
// bus would build, no bus at all. Compare Publish/exact/subs=1 with it.
func BenchmarkDirectCall(b *testing.B) {
	p := &payload{}
	b.ReportAllocs()
	for b.Loop() {
		directHandler(ctx, Event{Topic: "orders.eu.created", Payload: p})
	}
}

// publishCases are the subscription shapes of the allocation tests and
// benchmarks: every one matches the published topic "orders.eu.created".
var publishCases = []struct {
	name    string
	pattern string
}{
	{"exact", "orders.eu.created"},
	{"star", "orders.*.created"},
	{"globstar", "orders.**"},
	{"glob", "orders.eu.cr*"},
}

func newBusWith(tb testing.TB, opts *Options, pattern string, n int) *Bus {
	b := New(opts)
	for range n {
		mustSubscribe(tb, b, pattern, nopSink)
	}
	return b
}

func BenchmarkPublish(b *testing.B) {
	for _, pc := range publishCases {
		for _, n := range []int{1, 10, 1000} {
			b.Run(fmt.Sprintf("%s/subs=%d", pc.name, n), func(b *testing.B) {
				bus := newBusWith(b, nil, pc.pattern, n)
				p := &payload{}
				b.ReportAllocs()
				for b.Loop() {
					_ = bus.Publish(ctx, "orders.eu.created", p)
				}
			})
		}
	}
}

// fillTree subscribes n subscriptions of four shapes (plain topics, `*`,
// `**` and in-segment globs) under distinct tenants, plus three that match
// "tenant.5.orders.created", and returns that topic.
func fillTree(tb testing.TB, b *Bus, n int) string {
	for i := 0; i < n-3; i++ {
		tenant := strconv.Itoa(i + 1000)
		var p string
		switch i % 4 {
		case 0:
			p = "tenant." + tenant + ".orders.created"
		case 1:
			p = "tenant." + tenant + ".*.created"
		case 2:
			p = "tenant." + tenant + ".**"
		case 3:
			p = "tenant." + tenant + ".orders.c*"
		}
		mustSubscribe(tb, b, p, nopSink)
	}
	for _, p := range []string{"tenant.5.orders.created", "tenant.5.**", "tenant.5.orders.{created,paid}"} {
		mustSubscribe(tb, b, p, nopSink)
	}
	return "tenant.5.orders.created"
}

// BenchmarkPublishTreeSize publishes to a topic matched by 3 subscriptions
// out of 10 to 1M, with the match cache (the steady state) and without it
// (every publish walks the index).
func BenchmarkPublishTreeSize(b *testing.B) {
	for _, cache := range []int{0, -1} {
		for _, n := range []int{10, 10_000, 1_000_000} {
			name := fmt.Sprintf("cached/subs=%d", n)
			if cache < 0 {
				name = fmt.Sprintf("uncached/subs=%d", n)
			}
			b.Run(name, func(b *testing.B) {
				bus := New(&Options{MatchCacheSize: cache})
				topic := fillTree(b, bus, n)
				if got, _ := bus.NumSub(topic); got != 3 {
					b.Fatalf("NumSub = %d, want 3", got)
				}
				p := &payload{}
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					_ = bus.Publish(ctx, topic, p)
				}
			})
		}
	}
}

// BenchmarkPublishParallel: publishers on all cores, to one topic, and each
// to a topic of its own, with and without Options.Stats. Compare with
// BenchmarkPublish/exact/subs=1, the same work on one core.
func BenchmarkPublishParallel(b *testing.B) {
	for _, stats := range []bool{false, true} {
		suffix := ""
		if stats {
			suffix = "/stats"
		}
		b.Run("same-topic"+suffix, func(b *testing.B) { benchParallelSame(b, &Options{Stats: stats}) })
		b.Run("distinct-topics"+suffix, func(b *testing.B) { benchParallelDistinct(b, &Options{Stats: stats}) })
	}
}

func benchParallelSame(b *testing.B, opts *Options) {
	{
		bus := newBusWith(b, opts, "orders.eu.created", 1)
		p := &payload{}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = bus.Publish(ctx, "orders.eu.created", p)
			}
		})
	}
}

func benchParallelDistinct(b *testing.B, opts *Options) {
	{
		bus := New(opts)
		const topics = 64
		for i := range topics {
			mustSubscribe(b, bus, "orders."+strconv.Itoa(i), nopSink)
		}
		var next int64
		var mu = make(chan struct{}, 1)
		p := &payload{}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			mu <- struct{}{}
			topic := "orders." + strconv.FormatInt(next%topics, 10)
			next++
			<-mu
			for pb.Next() {
				_ = bus.Publish(ctx, topic, p)
			}
		})
	}
}

func BenchmarkSubscribeUnsubscribe(b *testing.B) {
	for _, pc := range publishCases {
		b.Run(pc.name, func(b *testing.B) {
			bus := newBusWith(b, nil, pc.pattern, 100)
			b.ReportAllocs()
			for b.Loop() {
				s, _ := bus.Subscribe(pc.pattern, nopSink)
				s.Unsubscribe()
			}
		})
	}
}

// TestPublishAllocs is the allocation budget of Publish: none in steady
// state, for every subscription shape and 1 to 1000 subscribers.
func TestPublishAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, pc := range publishCases {
		for _, n := range []int{1, 10, 1000} {
			bus := newBusWith(t, nil, pc.pattern, n)
			p := &payload{}
			allocs := testing.AllocsPerRun(100, func() { _ = bus.Publish(ctx, "orders.eu.created", p) })
			if allocs != 0 {
				t.Errorf("%s with %d subscribers: %v allocs per Publish, want 0", pc.name, n, allocs)
			}
		}
	}
	// A topic with no subscribers, a panicking-free typed handler, and
	// PublishEvent with Meta cost nothing either.
	bus := New(nil)
	if _, err := SubscribeTyped(bus, "typed", func(context.Context, Event, *payload) {}); err != nil {
		t.Fatal(err)
	}
	p, meta := &payload{}, &Meta{Source: "x"}
	for name, f := range map[string]func(){
		"no subscribers": func() { _ = bus.Publish(ctx, "nobody.listens", p) },
		"typed":          func() { _ = bus.Publish(ctx, "typed", p) },
		"PublishEvent":   func() { _ = bus.PublishEvent(ctx, Event{Topic: "typed", Payload: p, Meta: meta}) },
	} {
		if allocs := testing.AllocsPerRun(100, f); allocs != 0 {
			t.Errorf("%s: %v allocs, want 0", name, allocs)
		}
	}
}

// TestPublishAllocsCacheOff is the allocation budget of a publish with the
// match cache off: a topic with plain subscriptions only publishes its
// set as it is, and one a pattern matches allocates the merged list once
// (the set handed to delivery), as before subscriber sets were written
// in place (then a second allocation merged it).
func TestPublishAllocsCacheOff(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, c := range []struct {
		name     string
		patterns []string
		want     float64
	}{
		{"plain", []string{"orders.eu.created", "orders.eu.created"}, 0},
		{"plain and pattern", []string{"orders.eu.created", "orders.*.created"}, 1},
		{"patterns", []string{"orders.*.created", "orders.eu.*", "**"}, 1},
	} {
		bus := New(&Options{MatchCacheSize: -1})
		for _, p := range c.patterns {
			if _, err := bus.Subscribe(p, nopSink); err != nil {
				t.Fatal(err)
			}
		}
		p := &payload{}
		if allocs := testing.AllocsPerRun(100, func() { _ = bus.Publish(ctx, "orders.eu.created", p) }); allocs != c.want {
			t.Errorf("%s: %v allocs per Publish, want %v", c.name, allocs, c.want)
		}
		_ = bus.Close(ctx)
	}
}

// TestSubscribeAllocs is the allocation budget of a Subscribe and an
// Unsubscribe on a topic that has been published, so is in the match
// cache: the Subscription only, once the topic's set has a free slot at
// its end (the first Unsubscribe leaves one), since both write the set in
// place (addInPlaceLocked); with no subscription left, the set goes and
// the next Subscribe makes one. An unrelated pattern in the tree changes
// nothing.
func TestSubscribeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, c := range []struct {
		stable int
		other  bool // a pattern subscription that does not match
		want   float64
	}{
		{0, false, 2}, // nothing is left to list after Unsubscribe
		{1, false, 1},
		{10, false, 1},
		{10, true, 1},
		{15, false, 1},
		{20, false, 3}, // over 16, add and remove list the set in slices of their own
	} {
		bus := newBusWith(t, nil, "orders.eu.created", c.stable)
		if c.other {
			mustSubscribe(t, bus, "items.*", nopSink)
		}
		_ = bus.Publish(ctx, "orders.eu.created", &payload{})
		allocs := testing.AllocsPerRun(100, func() {
			s, _ := bus.Subscribe("orders.eu.created", nopSink)
			s.Unsubscribe()
		})
		if allocs > c.want {
			t.Errorf("%d stable subscriptions, unrelated pattern %v: %v allocs per Subscribe and Unsubscribe, want %v",
				c.stable, c.other, allocs, c.want)
		}
	}
}

// TestValidateAllocs: validation of a valid topic allocates nothing.
func TestValidateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = ValidateTopic("orders.eu.créé", '.') }); allocs != 0 {
		t.Errorf("ValidateTopic: %v allocs, want 0", allocs)
	}
}

// BenchmarkPublishStats is BenchmarkPublish/exact/subs=1 with Options.Stats:
// the serial reference for BenchmarkPublishParallel/*/stats.
func BenchmarkPublishStats(b *testing.B) {
	bus := newBusWith(b, &Options{Stats: true}, "orders.eu.created", 1)
	p := &payload{}
	b.ReportAllocs()
	for b.Loop() {
		_ = bus.Publish(ctx, "orders.eu.created", p)
	}
}

// BenchmarkPublishGroup publishes to a topic that a queue group of
// synchronous members and one plain subscription share.
func BenchmarkPublishGroup(b *testing.B) {
	for _, members := range []int{1, 3} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			bus := New(nil)
			mustSubscribe(b, bus, "orders.eu.created", nopSink)
			for range members {
				if _, err := bus.SubscribeWith("orders.*.created", nopSink, &SubscribeOptions{Group: "workers"}); err != nil {
					b.Fatal(err)
				}
			}
			p := &payload{}
			b.ReportAllocs()
			for b.Loop() {
				_ = bus.Publish(ctx, "orders.eu.created", p)
			}
		})
	}
}

// BenchmarkChurn subscribes and unsubscribes on a topic with ten
// subscriptions that stay, while another goroutine publishes to it (as
// bench/'s Churn scenario does); ns/op is one Subscribe plus one
// Unsubscribe. quiet is the same without the publisher: the subscriber's
// own cost.
func BenchmarkChurn(b *testing.B) {
	for _, publishing := range []bool{true, false} {
		name := "publishing"
		if !publishing {
			name = "quiet"
		}
		b.Run(name, func(b *testing.B) {
			bus := newBusWith(b, nil, "orders.eu.created", 10)
			p := &payload{}
			_ = bus.Publish(ctx, "orders.eu.created", p)
			var quit atomic.Bool
			done := make(chan struct{})
			go func() {
				defer close(done)
				for publishing && !quit.Load() {
					_ = bus.Publish(ctx, "orders.eu.created", p)
				}
			}()
			b.ReportAllocs()
			for b.Loop() {
				s, _ := bus.Subscribe("orders.eu.created", nopSink)
				s.Unsubscribe()
			}
			quit.Store(true)
			<-done
		})
	}
}
