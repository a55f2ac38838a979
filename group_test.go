package bus

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestGroupRoundRobin: synchronous members of a group take turns, each
// getting every third event, in a fixed rotation: with the match cache,
// without it (every publish rebuilds its match set), and while other
// subscriptions change between publishes (each change rebuilds it too).
func TestGroupRoundRobin(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  *Options
		churn bool
	}{
		{"cached", nil, false},
		{"no cache", &Options{MatchCacheSize: -1}, false},
		{"subscriptions changing", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(tc.opts)
			var mu sync.Mutex
			var order []int
			for m := range 3 {
				if _, err := b.SubscribeWith("jobs", func(context.Context, Event) {
					mu.Lock()
					order = append(order, m)
					mu.Unlock()
				}, &SubscribeOptions{Group: "w"}); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 12 {
				if tc.churn {
					s, err := b.Subscribe("other.*", func(context.Context, Event) {})
					if err != nil {
						t.Fatal(err)
					}
					s.Unsubscribe()
				}
				mustPublish(t, b, "jobs", i)
			}
			if len(order) != 12 {
				t.Fatalf("%d deliveries, want 12: %v", len(order), order)
			}
			for i := range order {
				if i >= 3 && order[i] != order[i-3] {
					t.Fatalf("deliveries %v are not a rotation of the three members", order)
				}
			}
			if first := slices.Sorted(slices.Values(order[:3])); !slices.Equal(first, []int{0, 1, 2}) {
				t.Fatalf("deliveries %v: some member skipped", order)
			}
		})
	}
}

// TestGroupAllMembersFull: when every member's queue is full, the event
// goes to one member's overflow policy: counted and reported as dropped
// (DropNewest), or waited for and failed with ctx's error (Block).
func TestGroupAllMembersFull(t *testing.T) {
	for _, policy := range []Overflow{DropNewest, Block} {
		t.Run(policy.String(), func(t *testing.T) {
			opts, errs := collectErrors()
			b := New(opts)
			gates := []*gate{newGate(), newGate()}
			var members []*Subscription
			for _, g := range gates {
				s, err := b.SubscribeWith("jobs", g.handle, &SubscribeOptions{Group: "w", Queue: 1, Overflow: policy})
				if err != nil {
					t.Fatal(err)
				}
				members = append(members, s)
			}
			// Hold both handlers, then fill both queues.
			for i := 1; ; i++ {
				if i > 10 {
					t.Fatal("the members' handlers did not both start")
				}
				mustPublish(t, b, "jobs", i)
				time.Sleep(time.Millisecond)
				if entered(gates[0]) && entered(gates[1]) {
					break
				}
			}
			for i := 100; members[0].Stats().Queued+members[1].Stats().Queued < 2; i++ {
				if i > 110 {
					t.Fatal("the members' queues did not fill")
				}
				mustPublish(t, b, "jobs", i)
			}
			before := members[0].Stats().Dropped + members[1].Stats().Dropped
			short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
			err := publishWithin(t, b, short, "jobs", 999)
			cancel()
			after := members[0].Stats().Dropped + members[1].Stats().Dropped
			if after-before != 1 || b.Stats().Dropped != after {
				t.Errorf("members dropped %d, bus %d: want the event counted once", after-before, b.Stats().Dropped)
			}
			switch policy {
			case Block:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("Publish = %v, want DeadlineExceeded", err)
				}
			default:
				if err != nil {
					t.Errorf("Publish = %v", err)
				}
				reported := false
				for _, err := range errs() {
					var de *DeliveryError
					if errors.As(err, &de) && errors.Is(err, ErrDropped) && de.Topic == "jobs" {
						reported = true
					}
				}
				if !reported {
					t.Errorf("the drop was not reported: %v", errs())
				}
			}
			for _, g := range gates {
				g.open()
			}
			if err := b.Close(bounded(t)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func entered(g *gate) bool {
	select {
	case <-g.entered:
		return true
	default:
		return false
	}
}

// TestGroupsAfterPlainSubscriptions: a publish reaches the subscriptions
// outside groups first, in subscription order, then each group, in the
// order of its first member.
func TestGroupsAfterPlainSubscriptions(t *testing.T) {
	b := New(nil)
	var got []string
	record := func(name string) Handler { return func(context.Context, Event) { got = append(got, name) } }
	for _, s := range []struct{ name, group string }{{"g2", "second"}, {"a", ""}, {"g1", "first"}, {"b", ""}} {
		if _, err := b.SubscribeWith("t.*", record(s.name), &SubscribeOptions{Group: s.group}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // computed, then from the match cache
		got = got[:0]
		mustPublish(t, b, "t.x", nil)
		if want := []string{"a", "b", "g2", "g1"}; !slices.Equal(got, want) {
			t.Fatalf("delivered to %q, want %q", got, want)
		}
	}
}
