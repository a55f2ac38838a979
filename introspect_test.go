package bus

import (
	"context"
	"strings"
	"sync"
	"testing"
)

func TestSubscriptions(t *testing.T) {
	b := New(nil)
	defer b.Close(ctx)
	nop := func(context.Context, Event) {}
	type want struct {
		name, pattern, group string
		async, ch            bool
		overflow             Overflow
		capacity             int
	}
	tests := []struct {
		pattern string
		opts    *SubscribeOptions
		chanSub bool
		want    want
	}{
		{"orders.created", nil, false, want{pattern: "orders.created"}},
		{"orders.*", &SubscribeOptions{Name: "projection", Queue: 8, Overflow: DropOldest}, false,
			want{name: "projection", pattern: "orders.*", async: true, overflow: DropOldest, capacity: 8}},
		{"jobs.**", &SubscribeOptions{Name: "worker", Group: "workers"}, false, want{name: "worker", pattern: "jobs.**", group: "workers"}},
		{"audit.{a,b}", &SubscribeOptions{Name: "audit"}, true, want{name: "audit", pattern: "audit.{a,b}", async: true, ch: true, capacity: 64}},
	}
	var subs []*Subscription
	for _, tc := range tests {
		var s *Subscription
		var err error
		if tc.chanSub {
			s, _, err = b.SubscribeChan(tc.pattern, tc.opts)
		} else {
			s, err = b.SubscribeWith(tc.pattern, nop, tc.opts)
		}
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	got := b.Subscriptions()
	if len(got) != len(tests) {
		t.Fatalf("Subscriptions() has %d, want %d", len(got), len(tests))
	}
	for i, tc := range tests {
		s := got[i]
		if s != subs[i] {
			t.Errorf("Subscriptions()[%d] is %q, want %q (subscription order)", i, s.Pattern(), subs[i].Pattern())
		}
		w := want{name: s.Name(), pattern: s.Pattern(), group: s.Group(), async: s.Async(), ch: s.Chan(),
			overflow: s.Overflow(), capacity: s.Stats().Capacity}
		if w != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.pattern, w, tc.want)
		}
		if !strings.Contains(s.Where(), "introspect_test.go:") {
			t.Errorf("%s: Where() = %q, want this file", tc.pattern, s.Where())
		}
	}
	subs[1].Unsubscribe()
	subs[0].Unsubscribe()
	if got := b.Subscriptions(); len(got) != 2 || got[0] != subs[2] || got[1] != subs[3] {
		t.Errorf("after two Unsubscribes: %d subscriptions, want the last two", len(got))
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := b.Subscriptions(); len(got) != 0 {
		t.Errorf("after Close: %d subscriptions, want none", len(got))
	}
}

// TestSubscriptionsConcurrent lists subscriptions while others subscribe,
// publish and unsubscribe, for the race detector.
func TestSubscriptionsConcurrent(t *testing.T) {
	b := New(nil)
	defer b.Close(ctx)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				s, err := b.SubscribeWith("a.*", func(context.Context, Event) {}, &SubscribeOptions{Name: "n"})
				if err != nil {
					t.Error(err)
					return
				}
				_ = b.Publish(ctx, "a.b", 1)
				s.Unsubscribe()
			}
		})
	}
	for range 200 {
		for _, s := range b.Subscriptions() {
			_ = s.Name() + s.Pattern()
			_ = s.Stats()
		}
	}
	wg.Wait()
}
