package bench

import (
	"sync/atomic"
	"testing"

	"github.com/cskr/pubsub/v2"
)

// github.com/cskr/pubsub/v2 (the current major): every operation is a
// command sent to one goroutine that owns the registry; subscribers get a
// channel each. Delivery is only through those channels, so handlers run
// on the subscribers' goroutines after Pub has returned: it cannot do the
// synchronous scenarios. Topics are exact (a comparable key), no wildcards.

const cskrAsync = "delivers only through channels read by subscriber goroutines: Pub returns before handlers run"

type cskrRouter struct {
	ps *pubsub.PubSub[string, *payload]
}

func newCskr(tb testing.TB) router {
	ps := pubsub.New[string, *payload](asyncQueue)
	tb.Cleanup(ps.Shutdown)
	return &cskrRouter{ps}
}

// subscribe starts the goroutine that reads the subscription's channel
// until Unsub closes it.
func (r *cskrRouter) subscribe(pattern string) (func(), error) {
	if err := exactOnly(pattern); err != nil {
		return nil, err
	}
	ch := r.ps.Sub(pattern)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range ch {
			atomic.AddInt64(&p.n, 1)
		}
	}()
	return func() {
		r.ps.Unsub(ch)
		<-done
	}, nil
}

func (r *cskrRouter) publish(topic string, p *payload) { r.ps.Pub(p, topic) }

func newCskrAsync(tb testing.TB, subs int, h func(p *payload)) func(p *payload) {
	ps := pubsub.New[string, *payload](asyncQueue)
	done := make(chan struct{}, subs)
	for range subs {
		ch := ps.Sub("t")
		go func() {
			defer func() { done <- struct{}{} }()
			for p := range ch {
				h(p)
			}
		}()
	}
	tb.Cleanup(func() {
		ps.Shutdown()
		for range subs {
			<-done
		}
	})
	return func(p *payload) { ps.Pub(p, "t") }
}
