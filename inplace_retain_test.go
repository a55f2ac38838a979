package bus

import (
	"context"
	"runtime"
	"testing"
	"weak"
)

// TestStaleCacheCopyReleasesUnsubscribed: a publisher that loaded its
// stripe's generation before the topic's set was made anew finds the set
// not current for that generation, copies it and caches the copy (stale,
// stamped with its old generation). An Unsubscribe that then cleared the
// subscription's slot in place would leave that copy in the cache slot,
// and the unsubscribed subscription, its handler and whatever that
// captures reachable until the topic is published again or another topic
// takes the slot; removeInPlaceLocked sees the copy and lets putLocked
// (refreshLocked) replace it.
func TestStaleCacheCopyReleasesUnsubscribed(t *testing.T) {
	b := New(nil)
	defer b.Close(ctx)
	const topic = "a.b"
	h := hashString(b.seed, topic)
	st := b.stripeOf(h)
	mustSubscribe(t, b, topic, func(context.Context, Event) {})
	g := st.gen.Load() // a publisher loads the generation here, then stalls
	// Two changes to another topic of the stripe move its generation on,
	// so that the next change to topic makes a new set (copy on write):
	// a change in place would not move it.
	other := topicInStripe(b, st, "other.")
	mustSubscribe(t, b, other, func(context.Context, Event) {}).Unsubscribe() // a new set, then none
	big := make([]byte, 1<<20)                                                // what the handler keeps alive
	gone := mustSubscribe(t, b, topic, func(context.Context, Event) { _ = big[0] })
	if got := st.gen.Load(); got < g+2 {
		t.Fatalf("the stripe moved %d generations, want at least 2", got-g)
	}
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
