package bus

import (
	"context"
	"testing"
)

// TestHandlerSubscribeMissesEventUnderWay: a subscription a handler makes
// while a publish is delivering does not get that publish's event, as
// Subscribe's documentation says, whether the topic's set is replaced
// (copy on write) or filled in place after an earlier Unsubscribe left a
// free slot (addInPlaceLocked: the publish read used before), and
// whether the publish found the set in the match cache or not. It fails
// if a publish reads slots past the used it loaded.
func TestHandlerSubscribeMissesEventUnderWay(t *testing.T) {
	for _, c := range []struct{ freeSlot, cached bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		freeSlot := c.freeSlot
		b := New(nil)
		const topic = "a.b"
		var late *Subscription
		armed := !c.cached
		lateGot := 0
		mustSubscribe(t, b, topic, func(context.Context, Event) {
			if late == nil && armed {
				late = mustSubscribe(t, b, topic, func(context.Context, Event) { lateGot++ })
			}
		})
		mustSubscribe(t, b, topic, func(context.Context, Event) {})
		if c.cached { // the publish below hits the match cache (PublishEvent's own path)
			mustPublish(t, b, topic, nil)
			armed = true
		}
		if freeSlot {
			mustSubscribe(t, b, topic, func(context.Context, Event) {}).Unsubscribe() // leaves a free last slot
		}
		mustPublish(t, b, topic, nil)
		if lateGot != 0 {
			t.Errorf("%+v: the subscription made by a handler got the event being delivered when it subscribed", c)
		}
		_ = b.Close(ctx)
	}
}
