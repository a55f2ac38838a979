package bench

import (
	"context"
	"testing"

	bus "github.com/busline/bus"
)

// Busline through its public API only: a bus with default options.

type busline struct{ b *bus.Bus }

var bg = context.Background()

func newBusline(tb testing.TB) router {
	b := bus.New(nil)
	tb.Cleanup(func() { _ = b.Close(bg) })
	return &busline{b}
}

func buslineHit(_ context.Context, e bus.Event) { e.Payload.(*payload).n++ }

func (r *busline) subscribe(pattern string) (func(), error) {
	s, err := r.b.Subscribe(pattern, buslineHit)
	if err != nil {
		return nil, err
	}
	return s.Unsubscribe, nil
}

func (r *busline) publish(topic string, p *payload) { _ = r.b.Publish(bg, topic, p) }

// newBuslineAsync: subs asynchronous subscriptions (SubscribeWith, a queue
// of asyncQueue events, the default Block policy, so nothing is dropped).
func newBuslineAsync(tb testing.TB, subs int, h func(p *payload)) func(p *payload) {
	b := bus.New(nil)
	tb.Cleanup(func() { _ = b.Close(bg) })
	for range subs {
		if _, err := b.SubscribeWith("t", func(_ context.Context, e bus.Event) {
			h(e.Payload.(*payload))
		}, &bus.SubscribeOptions{Queue: asyncQueue}); err != nil {
			tb.Fatal(err)
		}
	}
	return func(p *payload) { _ = b.Publish(bg, "t", p) }
}
