package bus

import (
	"context"
	"runtime/debug"
)

// deliver calls the handler of every active subscription in subs.
//
// A recover costs a deferred call, and a defer inside a loop is not
// open-coded by the compiler: it would cost a heap-allocated defer record
// per handler. So deliverFrom defers once for the whole loop and, after a
// panic, deliver resumes it at the subscription after the one that
// panicked.
func (b *Bus) deliver(ctx context.Context, subs []*Subscription, e Event) {
	for i := 0; i < len(subs); {
		i = b.deliverFrom(ctx, subs, i, e)
	}
}

// deliverFrom delivers e to subs[i:] and returns len(subs), or the index
// after a subscription whose handler panicked.
func (b *Bus) deliverFrom(ctx context.Context, subs []*Subscription, i int, e Event) (next int) {
	defer func() {
		if r := recover(); r != nil {
			b.report(&DeliveryError{Topic: e.Topic, Pattern: subs[i].pat.text, Err: ErrHandlerPanic, Value: r, Stack: debug.Stack()})
			next = i + 1
		}
	}()
	for ; i < len(subs); i++ {
		if s := subs[i]; s.active.Load() {
			s.handler(ctx, e)
		}
	}
	return i
}

// report hands err to Options.OnError. A panic in OnError itself is
// swallowed: it must not kill the publisher, and there is nowhere left to
// report it.
func (b *Bus) report(err error) {
	defer func() { _ = recover() }()
	b.onError(err)
}
