package bus

import "context"

// deliverFrom delivers *e to subs[i:], calling the handler of every active
// subscription in order, and returns len(subs), or the index after a
// subscription whose handler panicked. The caller calls it again from there
// until it gets len(subs).
//
// A recover costs a deferred call, and a defer inside a loop is not
// open-coded by the compiler: it would cost a heap-allocated defer record
// per handler. So deliverFrom defers once for the whole loop. The event
// travels by pointer so that the arguments fit the registers of the calling
// convention.
func (b *Bus) deliverFrom(ctx context.Context, e *Event, subs []*Subscription, i int) (next int) {
	defer b.recoverHandler(e, subs, &i, &next)
	for ; i < len(subs); i++ {
		s := subs[i]
		if s.fast {
			if s.active.Load() {
				s.handler(ctx, *e)
			}
		} else if err := b.deliverSlow(ctx, s, e); err != nil {
			// After a panic Publish has no way left to return it.
			b.report(err)
		}
	}
	return i
}

// recoverHandler is deferred by deliverFrom: it recovers a handler panic,
// reports it, and makes deliverFrom return the index after the culprit.
func (b *Bus) recoverHandler(e *Event, subs []*Subscription, i, next *int) {
	if r := recover(); r != nil {
		b.reportPanic(subs[*i], e.Topic, r)
		*next = *i + 1
	}
}

// recovered reports the panic r of subs[i]'s handler, recovered by
// PublishEvent, and delivers to the rest of subs.
func (b *Bus) recovered(ctx context.Context, e *Event, subs []*Subscription, i int, r any) {
	b.reportPanic(subs[i], e.Topic, r)
	for j := i + 1; j < len(subs); {
		j = b.deliverFrom(ctx, e, subs, j)
	}
}

// report hands err to Options.OnError. A panic in OnError itself is
// swallowed: it must not kill the publisher, and there is nowhere left to
// report it.
func (b *Bus) report(err error) {
	defer func() { _ = recover() }()
	b.onError(err)
}
