package bus

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestInPlaceGuarantees races Subscribe/Unsubscribe on one topic
// (whose set is written in place) against publishers, a pattern that comes
// and goes (bumpAll) and a second topic of the same stripe (putLocked
// bumps), and checks, for every churned subscription:
//   - every publish that started after its Subscribe returned and finished
//     before its Unsubscribe began reached it;
//   - no publish that started after its Unsubscribe returned reached it;
//   - no publish reached it twice;
//   - within one publish, a subscription made after another's Subscribe
//     returned was not called before it.
//
// A publish's ticket is taken (started.Add) before Publish is called, so a
// ticket greater than a value loaded after Subscribe returned belongs to a
// publish that started after it.
func TestInPlaceGuarantees(t *testing.T) {
	const maxTickets = 1 << 19
	dur := 3 * time.Second
	if testing.Short() {
		dur = time.Second
	}
	for _, mode := range []string{"inline", "mixed"} {
		t.Run(mode, func(t *testing.T) {
			b := New(&Options{OnError: func(error) {}})
			defer b.Close(ctx)
			const topic = "rev.topic"
			h := hashString(b.seed, topic)
			st := b.stripeOf(h)
			other := topicInStripe(b, st, "rev.other.")
			var started atomic.Uint64
			done := make([]atomic.Bool, maxTickets+1)
			// Per ticket: the latest start (ordinal taken just before
			// Subscribe was called) of the subscriptions called so far.
			// One whose Subscribe returned before that start must not come
			// after it.
			maxStart := make([]atomic.Uint64, maxTickets+1)
			var ord atomic.Uint64
			var failures atomic.Int64
			fail := func(format string, args ...any) {
				if failures.Add(1) <= 10 {
					t.Errorf(format, args...)
				}
			}
			type probe struct {
				sub    atomic.Pointer[Subscription]
				start  uint64        // ord before Subscribe was called
				ret    atomic.Uint64 // ord after Subscribe returned, 0 before
				mu     sync.Mutex
				got    map[uint64]bool
				after  atomic.Uint64 // tickets above this came after Unsubscribe returned
				record bool
			}
			handler := func(p *probe) Handler {
				return func(_ context.Context, e Event) {
					k := e.Payload.(uint64)
					// The calls of one publish are sequential (inline or
					// Track, on the publisher's goroutine).
					if r := p.ret.Load(); r != 0 && maxStart[k].Load() > r {
						fail("ticket %d: subscription made at %d..%d called after one made at %d", k, p.start, r, maxStart[k].Load())
					}
					if maxStart[k].Load() < p.start {
						maxStart[k].Store(p.start)
					}
					if k > p.after.Load() {
						fail("ticket %d delivered after Unsubscribe returned (at %d)", k, p.after.Load())
					}
					if p.record {
						p.mu.Lock()
						if p.got[k] {
							fail("ticket %d delivered twice", k)
						}
						p.got[k] = true
						p.mu.Unlock()
					}
				}
			}
			subscribe := func(p *probe, async bool) *Subscription {
				p.after.Store(^uint64(0))
				p.start = ord.Add(1)
				var opts *SubscribeOptions
				if async {
					opts = &SubscribeOptions{Track: true} // synchronous, but not inline: mixed path
				}
				s, err := b.SubscribeWith(topic, handler(p), opts)
				if err != nil {
					t.Fatal(err)
				}
				p.sub.Store(s)
				p.ret.Store(ord.Add(1))
				return s
			}
			for range 3 {
				p := &probe{}
				subscribe(p, false)
			}
			if mode == "mixed" {
				p := &probe{}
				subscribe(p, true)
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			for w := range 2 {
				wg.Go(func() {
					for !stop.Load() {
						k := started.Add(1)
						if k > maxTickets {
							stop.Store(true)
							return
						}
						tp := topic
						if w == 1 {
							tp = string([]byte(topic)) // misses byAddr: the hash path
						}
						_ = b.Publish(ctx, tp, k)
						done[k].Store(true)
					}
				})
			}
			// A pattern that comes and goes, and a second topic of the
			// stripe: generation bumps interleaved with the in-place writes.
			wg.Go(func() {
				for !stop.Load() {
					s, err := b.Subscribe("rev.*", func(context.Context, Event) {})
					if err != nil {
						return
					}
					time.Sleep(50 * time.Microsecond)
					s.Unsubscribe()
					time.Sleep(200 * time.Microsecond)
				}
			})
			wg.Go(func() {
				for !stop.Load() {
					s, err := b.Subscribe(other, func(context.Context, Event) {})
					if err != nil {
						return
					}
					time.Sleep(100 * time.Microsecond)
					s.Unsubscribe()
				}
			})
			var checked atomic.Int64
			for c := range 2 {
				wg.Go(func() {
					for n := 0; !stop.Load(); n++ {
						p := &probe{got: map[uint64]bool{}, record: true}
						s := subscribe(p, mode == "mixed" && (n+c)%3 == 0)
						t0 := started.Load()
						// Let a few publishes start after the Subscribe.
						for started.Load() < t0+3 && !stop.Load() {
							time.Sleep(time.Microsecond)
						}
						t1 := started.Load()
						var finished []uint64
						for k := t0 + 1; k <= t1 && k <= maxTickets; k++ {
							if done[k].Load() {
								finished = append(finished, k)
							}
						}
						s.Unsubscribe()
						p.after.Store(started.Load())
						p.mu.Lock()
						for _, k := range finished {
							if !p.got[k] {
								fail("subscription %d (%d-th of churner %d): publish %d started after its Subscribe (tickets > %d) and finished before its Unsubscribe, but did not reach it",
									s.id, n, c, k, t0)
							}
						}
						p.mu.Unlock()
						checked.Add(int64(len(finished)))
					}
				})
			}
			time.Sleep(dur)
			stop.Store(true)
			wg.Wait()
			t.Logf("%d publishes, %d deliveries checked", started.Load(), checked.Load())
		})
	}
}
