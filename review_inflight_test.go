package bus

import (
	"context"
	"testing"
)

// TestReviewHandlerSubscribeSeesOwnPublish: a subscription a handler makes
// while a publish is delivering does not get that publish's event when the
// topic's set is replaced (copy on write), but does when the set had a free
// slot after its last subscription (addInPlaceLocked): whether it does
// depends on an unrelated earlier Unsubscribe. addInPlaceLocked's comment
// says "one under way may or may not, as with a new set", but a publish
// under way never sees a new set. On 93ef87c neither case delivers.
func TestReviewHandlerSubscribeSeesOwnPublish(t *testing.T) {
	for _, freeSlot := range []bool{false, true} {
		b := New(nil)
		const topic = "a.b"
		var late *Subscription
		lateGot := 0
		mustSubscribe(t, b, topic, func(context.Context, Event) {
			if late == nil {
				late = mustSubscribe(t, b, topic, func(context.Context, Event) { lateGot++ })
			}
		})
		mustSubscribe(t, b, topic, func(context.Context, Event) {})
		if freeSlot {
			mustSubscribe(t, b, topic, func(context.Context, Event) {}).Unsubscribe() // leaves a free last slot
		}
		mustPublish(t, b, topic, nil)
		if lateGot != 0 {
			t.Errorf("free slot %v: the subscription made by a handler got the event being delivered when it subscribed", freeSlot)
		}
		_ = b.Close(ctx)
	}
}
