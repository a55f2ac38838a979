package bench

import (
	"strings"
	"testing"

	eventbus "github.com/asaskevich/EventBus"
)

// github.com/asaskevich/EventBus: a map from exact topic to handlers,
// called through reflect.Value.Call under the bus's one mutex (so a handler
// that publishes or subscribes deadlocks). It has no wildcards.
//
// Unsubscribe finds the handler by comparing function pointers, so it
// removes the first subscription with the same code, not necessarily the one
// given: every subscription here has the same handler (countHit), so the
// counts come out right, but an application whose closures share a literal
// would lose the wrong subscription.

type eventBus struct{ b eventbus.Bus }

func newEventBus(testing.TB) router { return &eventBus{eventbus.New()} }

// exactOnly rejects the patterns of libraries that only know exact topics.
func exactOnly(pattern string) error {
	if strings.ContainsAny(pattern, `*?[]{}\`) {
		return notSupported("exact topics only: no wildcard subscriptions")
	}
	return nil
}

func (r *eventBus) subscribe(pattern string) (func(), error) {
	if err := exactOnly(pattern); err != nil {
		return nil, err
	}
	if err := r.b.Subscribe(pattern, countHit); err != nil {
		return nil, err
	}
	return func() { _ = r.b.Unsubscribe(pattern, countHit) }, nil
}

func (r *eventBus) publish(topic string, p *payload) { r.b.Publish(topic, p) }

// newEventBusAsync uses SubscribeAsync with transactional set, so that each
// subscriber's handler calls run one at a time, in order: Publish starts a
// goroutine per event and subscriber, after waiting for that subscriber's
// previous call to finish. (Without transactional, calls run concurrently
// and unordered, in unboundedly many goroutines.)
func newEventBusAsync(tb testing.TB, subs int, h func(p *payload)) func(p *payload) {
	b := eventbus.New()
	for range subs {
		if err := b.SubscribeAsync("t", h, true); err != nil {
			tb.Fatal(err)
		}
	}
	tb.Cleanup(b.WaitAsync)
	return func(p *payload) { b.Publish("t", p) }
}
