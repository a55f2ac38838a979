package bus

import (
	"context"
	"testing"
)

// TestLookupSlowReadsOnlyUsedSlots: a publisher that loaded its stripe's
// generation two or more changes ago (publishMiss, lookup) finds the
// topic's set stamped current for the stripe but not for itself
// (stamped is false), and copies its slots after RUnlock: the set is
// inPlace then, so a Subscribe may be filling slot used at that moment
// (addInPlaceLocked stores the slot, then raises used). The copy must
// read the slots used when it loads used (filled), not all of them, or
// it delivers to a subscription whose Subscribe is under way, and, with
// a Subscribe filling slot j-1 and then j during the copy, to the later
// one without the earlier.
func TestLookupSlowReadsOnlyUsedSlots(t *testing.T) {
	b := New(&Options{OnError: func(error) {}})
	defer b.Close(ctx)
	const topic = "rev2.lookup"
	h := hashString(b.seed, topic)
	st := b.stripeOf(h)
	other := topicInStripe(b, st, "rev2.other.")
	g0 := st.gen.Load()                                         // the generation a slow publisher loaded
	mustSubscribe(t, b, other, func(context.Context, Event) {}) // bump
	mustSubscribe(t, b, topic, func(context.Context, Event) {}) // new set, stamped, bump
	st.mu.RLock()
	set := st.m[topic]
	st.mu.RUnlock()
	if set == nil || set.gen < g0+2 {
		t.Fatalf("set gen %v, publisher's %d: setup did not give the case", set, g0)
	}
	st.mu.Lock()
	if !inPlace(st, set) {
		st.mu.Unlock()
		t.Fatal("set is not written in place: setup did not give the case")
	}
	// What addInPlaceLocked has done halfway through a Subscribe: the
	// slot at used stored, used not raised yet.
	late := mustSubscribe(t, b, "rev2.late", func(context.Context, Event) {})
	j := int(set.used.Load())
	set.subs[j].Store(late)
	st.mu.Unlock()
	subs, _, err := b.lookupSlow(topic, h, st, g0)
	st.mu.Lock()
	set.subs[j].Store(nil) // undo
	st.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	for i := range subs {
		if subs[i].Load() == late {
			t.Fatalf("lookupSlow returned slot %d past the set's used (%d): a publish would deliver to a Subscribe under way", i, j)
		}
	}
}
