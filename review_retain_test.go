package bus

import (
	"context"
	"runtime"
	"testing"
	"weak"
)

// TestReviewStaleCacheCopyKeepsUnsubscribed: a publisher that loaded its
// stripe's generation before two changes of its topic finds the topic's
// set not current for that generation, copies it and caches the copy
// (stale, stamped with its old generation), evicting the current set.
// An Unsubscribe that then clears the subscription's slot in place
// (removeInPlaceLocked) leaves that copy in the cache slot: the
// unsubscribed subscription, its handler and whatever that captures stay
// reachable until the topic is published again or another topic takes
// the slot. Before the in-place writes, the Unsubscribe's putLocked
// (refreshLocked) replaced the cached set of the topic, copy included.
func TestReviewStaleCacheCopyKeepsUnsubscribed(t *testing.T) {
	b := New(nil)
	defer b.Close(ctx)
	const topic = "a.b"
	h := hashString(b.seed, topic)
	st := b.stripeOf(h)
	mustSubscribe(t, b, topic, func(context.Context, Event) {})
	g := st.gen.Load() // a publisher loads the generation here, then stalls
	mustSubscribe(t, b, topic, func(context.Context, Event) {})
	big := make([]byte, 1<<20) // what the handler keeps alive
	gone := mustSubscribe(t, b, topic, func(context.Context, Event) { _ = big[0] })
	// The stalled publisher goes on: the set is two generations ahead of
	// what it loaded, so it copies it and caches the copy.
	if _, _, err := b.lookupSlow(topic, h, st, g); err != nil {
		t.Fatal(err)
	}
	wp := weak.Make(gone)
	gone.Unsubscribe()
	gone, big = nil, nil
	for range 3 {
		runtime.GC()
	}
	if wp.Value() != nil {
		t.Errorf("the unsubscribed subscription is still reachable (from the topic's stale cached copy) until %q is published again", topic)
	}
}
