package bus

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
)

// The tests of this file check the promises of doc.go ("Delivery
// guarantees", "Queue groups") while subscriptions churn: a Publish that
// starts after Subscribe returned reaches the subscription, once; one that
// starts after Unsubscribe returned does not; a queue group's event goes
// to one member. They aim at the match cache's validity rule (index.go:
// current, putLocked, lookupSlow): sets stamped one generation ahead,
// topics sharing a cache slot or a stripe, and the bumps and sweeps of
// pattern changes.

// TestStaleGenerationSet: a publisher that loaded its stripe's generation
// before the subscriptions below were made (publishMiss passes what it
// loaded to lookupSlow) and read the index after them gets the topic's
// queue group as a group, never its members as plain subscriptions, and
// the plain subscriptions once each. A topic's set in the map is its
// whole match set only once stamped (refreshLocked); one that was not
// has generation 0, the first generation of every stripe.
func TestStaleGenerationSet(t *testing.T) {
	nop := func(context.Context, Event) {}
	cases := []struct {
		name   string
		groups []string // one subscription to "a.b" each, "" for a plain one
		star   bool     // and one to "a.*"
	}{
		{name: "group of one", groups: []string{"g"}},
		{name: "group of two", groups: []string{"g", "g"}},
		{name: "plain and group", groups: []string{"", "g", "g"}},
		{name: "two groups", groups: []string{"g", "h", "g"}},
		{name: "plain", groups: []string{"", ""}},
		{name: "plain and pattern", groups: []string{""}, star: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := New(nil)
			defer b.Close(ctx)
			const topic = "a.b"
			h := hashString(b.seed, topic)
			st := b.stripeOf(h)
			gen := st.gen.Load() // loaded before the subscriptions, as by a publisher
			wantPlain, wantGroups := 0, map[string]int{}
			for _, g := range c.groups {
				if _, err := b.SubscribeWith(topic, nop, &SubscribeOptions{Group: g}); err != nil {
					t.Fatal(err)
				}
				if g == "" {
					wantPlain++
				} else {
					wantGroups[g]++
				}
			}
			if c.star {
				mustSubscribe(t, b, "a.*", nop)
			}
			subs, groups, err := b.lookupSlow(topic, h, st, gen)
			if err != nil {
				t.Fatal(err)
			}
			check := func(when string, subs []*Subscription, groups []*groupMatch, wantPlain int) {
				t.Helper()
				for _, s := range subs {
					if s.opts.Group != "" {
						t.Fatalf("%s: group member %d (group %q) among the plain subscriptions", when, s.id, s.opts.Group)
					}
				}
				if len(subs) != wantPlain {
					t.Fatalf("%s: %d plain subscriptions, want %d", when, len(subs), wantPlain)
				}
				got := map[string]int{}
				for _, g := range groups {
					got[g.name] = len(g.members)
				}
				if !maps.Equal(got, wantGroups) {
					t.Fatalf("%s: groups %v, want %v", when, got, wantGroups)
				}
			}
			subs, groups, err = b.lookupSlow(topic, h, st, gen)
			if err != nil {
				t.Fatal(err)
			}
			// The pattern subscription came after the publisher loaded
			// the generation: it may or may not be in the set.
			if c.star && len(subs) == wantPlain+1 {
				subs = subs[:wantPlain]
			}
			check("publisher that loaded the generation first", subs, groups, wantPlain)
			// A publish that starts after the subscriptions sees them all.
			if c.star {
				wantPlain++
			}
			for _, when := range []string{"publish after", "cached publish after"} {
				subs, groups, err := b.lookup(topic)
				if err != nil {
					t.Fatal(err)
				}
				check(when, subs, groups, wantPlain)
			}
		})
	}
}

// TestGroupOnceOnNewBus: the events published while the first members of
// a queue group join a new bus each reach at most one member, whichever
// generation the publishers loaded (TestStaleGenerationSet steps through
// the interleaving that broke this).
func TestGroupOnceOnNewBus(t *testing.T) {
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	const publishers, events = 4, 64
	for range rounds {
		b := New(&Options{MatchCacheSize: 16}) // a small cache is quicker to make
		var got [publishers][events]atomic.Int32
		key := &got // the context key: a pointer of this test's own
		handler := func(ctx context.Context, e Event) {
			if p, ok := ctx.Value(key).(int); ok {
				got[p][e.Payload.(int)].Add(1)
			}
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for p := range publishers {
			wg.Go(func() {
				pctx := context.WithValue(ctx, key, p)
				<-start
				for i := range events {
					_ = b.Publish(pctx, "a.b", i)
				}
			})
		}
		close(start)
		for range 3 {
			if _, err := b.SubscribeWith("a.b", handler, &SubscribeOptions{Group: "g"}); err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		_ = b.Close(ctx)
		for p := range publishers {
			for i := range events {
				if n := got[p][i].Load(); n > 1 {
					t.Fatalf("publisher %d, event %d: delivered to %d members of the group", p, i, n)
				}
			}
		}
	}
}
