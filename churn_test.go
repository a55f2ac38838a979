package bus

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
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
			slotted, groups, err := b.lookupSlow(topic, h, st, gen)
			if err != nil {
				t.Fatal(err)
			}
			subs := list(nil, slotted)
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
				check(when, list(nil, subs), groups, wantPlain)
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

// token marks the events of one check of TestChurnVisibility: a handler
// counts only the events that carry its own token, so the publishes of
// the others, to the same topics, do not disturb the count.
type token struct{ n atomic.Int32 }

type tokenKey struct{}

// TestChurnVisibility: goroutines subscribe, publish, unsubscribe and
// publish again, each checking that the first publish reached its new
// subscription exactly once and that the second did not, while pairs of
// them churn the same topics, publishers keep every topic cached (in a
// cache small enough for topics to share its slots, or none), other
// subscriptions churn patterns (bumps of every stripe, sweeps) and plain
// topics of every stripe, and a handler subscribes, unsubscribes and
// publishes.
func TestChurnVisibility(t *testing.T) {
	cases := []struct {
		name      string
		cacheSize int // Options.MatchCacheSize
		kinds     []string
		resident  int // subscriptions each topic keeps throughout (room up to 16 inline, beyond in a slice)
	}{
		{name: "exact/one slot", cacheSize: 1, kinds: []string{"exact"}},
		{name: "exact/8 slots/resident", cacheSize: 8, kinds: []string{"exact"}, resident: 1},
		{name: "exact/17 resident", cacheSize: 8, kinds: []string{"exact"}, resident: 17},
		{name: "mixed/one slot", cacheSize: 1, kinds: []string{"exact", "star", "exact", "globstar", "glob"}},
		{name: "mixed/default cache/resident", kinds: []string{"exact", "star", "globstar", "glob"}, resident: 2},
		{name: "mixed/no cache", cacheSize: -1, kinds: []string{"exact", "star", "glob"}, resident: 1},
	}
	const workers, topicsPer = 4, 8
	iterations := 600
	if testing.Short() {
		iterations = 100
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := New(&Options{MatchCacheSize: c.cacheSize})
			defer b.Close(ctx)
			nop := func(context.Context, Event) {}
			// Workers w and w+2 churn the same topics. Everyone uses the
			// very same strings, so that publishes find their sets by
			// address too (byAddr).
			var topics [2][topicsPer]string
			var all []string
			for w := range 2 {
				for j := range topicsPer {
					topics[w][j] = fmt.Sprintf("t%d.k%d", w, j)
					all = append(all, topics[w][j])
					for range c.resident {
						mustSubscribe(t, b, topics[w][j], nop)
					}
				}
			}
			topic := func(w, j int) string { return topics[w%2][j] }
			var stop atomic.Bool
			var background sync.WaitGroup
			for p := range 2 {
				background.Go(func() {
					for i := p; !stop.Load(); i++ {
						_ = b.Publish(ctx, all[i%len(all)], nil)
					}
				})
			}
			background.Go(func() { // pattern churn: bumpAll and sweepLocked
				patterns := []string{"zz.*", "t0.**", "**", "t1.k1*", "*.k3"}
				for i := 0; !stop.Load(); i++ {
					s, err := b.Subscribe(patterns[i%len(patterns)], nop)
					if err != nil {
						t.Error(err)
						return
					}
					s.Unsubscribe()
				}
			})
			background.Go(func() { // plain churn on every stripe, with a reentrant handler
				var n atomic.Int64
				mustSubscribe(t, b, "r.x", func(ctx context.Context, e Event) {
					if n.Add(1)%8 == 0 {
						if s, err := b.Subscribe("r.y", nop); err == nil {
							_ = b.Publish(ctx, "r.y", nil)
							s.Unsubscribe()
						}
					}
				})
				for i := 0; !stop.Load(); i++ {
					s, err := b.Subscribe(fmt.Sprintf("u.%d", i%256), nop)
					if err != nil {
						t.Error(err)
						return
					}
					_ = b.Publish(ctx, "r.x", nil)
					s.Unsubscribe()
				}
			})
			var churners sync.WaitGroup
			var failures atomic.Int32
			for w := range workers {
				churners.Go(func() {
					for i := range iterations {
						j := (i*7 + w) % topicsPer
						top := topic(w, j)
						var pattern string
						switch kind := c.kinds[i%len(c.kinds)]; kind {
						case "exact":
							pattern = top
						case "star":
							pattern = fmt.Sprintf("t%d.*", w%2)
						case "globstar":
							pattern = fmt.Sprintf("t%d.**", w%2)
						case "glob":
							pattern = fmt.Sprintf("t%d.k%d*", w%2, j)
						}
						tok := new(token)
						s, err := b.Subscribe(pattern, func(ctx context.Context, e Event) {
							if ctx.Value(tokenKey{}) == tok {
								tok.n.Add(1)
							}
						})
						if err != nil {
							t.Error(err)
							return
						}
						tctx := context.WithValue(ctx, tokenKey{}, tok)
						_ = b.Publish(tctx, top, nil)
						if n := tok.n.Load(); n != 1 {
							t.Errorf("worker %d, iteration %d: a publish to %q after Subscribe(%q) returned reached it %d times", w, i, top, pattern, n)
						}
						before := tok.n.Load()
						s.Unsubscribe()
						_ = b.Publish(tctx, top, nil)
						if tok.n.Load() != before {
							t.Errorf("worker %d, iteration %d: a publish to %q after Unsubscribe of %q reached it", w, i, top, pattern)
						}
						if t.Failed() && failures.Add(1) > 5 {
							return
						}
					}
				})
			}
			waitGroup(t, &churners, "churners")
			stop.Store(true)
			waitGroup(t, &background, "background")
		})
	}
}

// TestPatternDuringPlainChurn: a pattern subscription is reached by a
// publish that starts after its Subscribe returned while another
// goroutine keeps changing the plain subscriptions of the published
// topic. Each of those changes caches the topic's new set one generation
// ahead and then moves the stripe to that generation (putLocked); a
// pattern's Subscribe bumps every stripe (bumpAll), and coming between the
// two it would be lost, leaving the new set, without the pattern, current.
func TestPatternDuringPlainChurn(t *testing.T) {
	cases := []struct{ pattern, topic string }{
		{"a.*", "a.b"},
		{"a.**", "a.b.c"},
		{"*.b", "a.b"},
		{"a.b*", "a.bc"},
	}
	iterations := 3000
	if testing.Short() {
		iterations = 300
	}
	for _, c := range cases {
		t.Run(c.pattern, func(t *testing.T) {
			b := New(nil)
			defer b.Close(ctx)
			nop := func(context.Context, Event) {}
			topic := strings.Clone(c.topic) // one string for all, as a constant would be
			mustSubscribe(t, b, topic, nop) // the topic keeps a set throughout
			st := b.stripeOf(hashString(b.seed, topic))
			gen0 := st.gen.Load()
			var stop atomic.Bool
			var churn sync.WaitGroup
			var changes atomic.Uint64 // of the topic's stripe, each at most one bump
			var bumps atomic.Uint64   // of the pattern, each exactly one bump
			for range 2 {
				churn.Go(func() {
					for !stop.Load() {
						s, err := b.Subscribe(topic, nop)
						if err != nil {
							t.Error(err)
							return
						}
						s.Unsubscribe()
						changes.Add(2)
					}
				})
			}
			churn.Go(func() { // keeps the topic in the cache
				for !stop.Load() {
					_ = b.Publish(ctx, topic, nil)
				}
			})
			misses := 0
			for i := range iterations {
				tok := new(token)
				s, err := b.Subscribe(c.pattern, func(ctx context.Context, e Event) {
					if ctx.Value(tokenKey{}) == tok {
						tok.n.Add(1)
					}
				})
				if err != nil {
					t.Fatal(err)
				}
				tctx := context.WithValue(ctx, tokenKey{}, tok)
				for range 2 { // by the bytes, then by address
					_ = b.Publish(tctx, topic, nil)
				}
				if n := tok.n.Load(); n != 2 {
					misses++
					if misses <= 3 {
						t.Errorf("iteration %d: 2 publishes to %q after Subscribe(%q) returned reached it %d times", i, topic, c.pattern, n)
					}
				}
				s.Unsubscribe()
				changes.Add(2)
				bumps.Add(2)
			}
			stop.Store(true)
			waitGroup(t, &churn, "churners")
			// No bump lost: a Subscribe and an Unsubscribe of the pattern
			// (bumpAll) move the stripe one generation each, and one of
			// the topic (putLocked) one too unless it wrote the topic's
			// set in place (addInPlaceLocked), however they interleave.
			if got, lo, hi := st.gen.Load()-gen0, bumps.Load(), changes.Load(); got < lo || got > hi {
				t.Errorf("the topic's stripe moved %d generations for %d changes, %d of the pattern", got, hi, lo)
			}
		})
	}
}

// TestCloseDuringChurn: Close while subscriptions to plain topics and
// patterns churn and publishers publish. Every subscription that Subscribe
// returned is inactive once Close has returned, and a publish that starts
// afterwards fails with ErrClosed and reaches no one, from the cache or
// not.
func TestCloseDuringChurn(t *testing.T) {
	patterns := []string{"a.b", "a.*", "a.b", "**", "a.b*"}
	for round := range 50 {
		b := New(&Options{MatchCacheSize: 4})
		var delivered atomic.Bool
		after := new(token) // marks the publishes that start after Close returned
		handler := func(ctx context.Context, e Event) {
			if ctx.Value(tokenKey{}) == after {
				delivered.Store(true)
			}
		}
		var mu sync.Mutex
		var made []*Subscription
		var wg sync.WaitGroup
		for w := range 3 {
			wg.Go(func() {
				for i := 0; ; i++ {
					s, err := b.Subscribe(patterns[(i+w)%len(patterns)], handler)
					if err != nil {
						if !errors.Is(err, ErrClosed) {
							t.Error(err)
						}
						return
					}
					mu.Lock()
					made = append(made, s)
					mu.Unlock()
					_ = b.Publish(ctx, "a.b", nil)
					if i%2 == 0 {
						s.Unsubscribe()
					}
				}
			})
		}
		for range round%5 + 1 { // let the churn start
			_ = b.Publish(ctx, "a.b", nil)
		}
		if err := b.Close(bounded(t)); err != nil {
			t.Fatal(err)
		}
		actx := context.WithValue(ctx, tokenKey{}, after)
		for _, topic := range []string{"a.b", "a.b", strings.Clone("a.b")} {
			if err := b.Publish(actx, topic, nil); !errors.Is(err, ErrClosed) {
				t.Fatalf("round %d: Publish after Close = %v, want ErrClosed", round, err)
			}
		}
		waitGroup(t, &wg, "churners")
		if delivered.Load() {
			t.Fatalf("round %d: a publish after Close reached a subscription", round)
		}
		for _, s := range made {
			if s.Active() {
				t.Fatalf("round %d: %q still active after Close", round, s.Pattern())
			}
		}
	}
}

// TestInPlacePanicBlame: a handler that unsubscribes itself, subscribes a
// new subscription (which takes the slot it left, in place) and then
// panics has its own panic counted, not the newcomer's: PublishEvent
// reports the subscription it called, not what its slot holds by then.
func TestInPlacePanicBlame(t *testing.T) {
	for _, n := range []int{1, 3} { // stays before the culprit
		b := New(&Options{OnError: func(error) {}})
		for range n {
			mustSubscribe(t, b, "a.b", func(context.Context, Event) {})
		}
		var culprit, newcomer *Subscription
		armed := false
		culprit = mustSubscribe(t, b, "a.b", func(context.Context, Event) {
			if !armed || newcomer != nil {
				return
			}
			culprit.Unsubscribe()
			newcomer = mustSubscribe(t, b, "a.b", func(context.Context, Event) {})
			panic("boom")
		})
		_ = b.Publish(ctx, "a.b", nil) // caches the set
		armed = true
		_ = b.Publish(ctx, "a.b", nil) // from the cache: PublishEvent's own loop
		if newcomer == nil {
			t.Fatal("the culprit was not called")
		}
		if got := culprit.Stats().Panics; got != 1 {
			t.Errorf("%d before: the culprit has %d panics, want 1", n, got)
		}
		if got := newcomer.Stats().Panics; got != 0 {
			t.Errorf("%d before: the newcomer has %d panics, want 0", n, got)
		}
		_ = b.Close(ctx)
	}
}

// TestInPlaceSetShape: however subscriptions to a published topic come and
// go, its set lists them in subscription order, and its empty slots never
// outnumber them, so that the in-place writes (addInPlaceLocked,
// removeInPlaceLocked) neither reorder deliveries nor let the set grow.
func TestInPlaceSetShape(t *testing.T) {
	b := New(nil)
	defer b.Close(ctx)
	const topic = "a.b"
	var live []*Subscription
	st := b.stripeOf(hashString(b.seed, topic))
	rng := uint64(1)
	for i := range 5000 {
		rng = rng*6364136223846793005 + 1442695040888963407
		if len(live) == 0 || (rng>>33)%3 != 0 && len(live) < 40 {
			live = append(live, mustSubscribe(t, b, topic, func(context.Context, Event) {}))
		} else {
			k := int(rng>>40) % len(live)
			live[k].Unsubscribe()
			live = append(live[:k], live[k+1:]...)
		}
		_ = b.Publish(ctx, topic, nil) // keeps the topic cached, its set current
		st.mu.RLock()
		set := st.m[topic]
		var got []*Subscription
		size, used := 0, 0
		if set != nil {
			got, size, used = list(nil, set.subs), len(set.subs), int(set.used.Load())
		}
		st.mu.RUnlock()
		if !slices.Equal(got, live) {
			t.Fatalf("change %d: the set lists %d subscriptions, want the %d live ones in order", i, len(got), len(live))
		}
		if used-len(got) > len(got) || size > max(16, 4*len(got)) {
			t.Fatalf("change %d: %d slots, %d used, for %d subscriptions", i, size, used, len(got))
		}
	}
}
