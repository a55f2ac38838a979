package bus

import (
	"context"
	"runtime/debug"
	"unsafe"
)

// The synchronous delivery path: everything a Publish does on the
// publisher's goroutine, from the match set to the handlers, the queues
// and the groups, and back with an error.

// deliveryPath says how PublishEvent delivers to a match set. Plain
// synchronous subscriptions (Subscription.inline) are called in line, in
// one loop with one deferred recover; every other kind goes through
// deliverSlow.
type deliveryPath uint8

const (
	slowPath   deliveryPath = iota // no subscription called in line (or none at all)
	mixedPath                      // some called in line, the others (and groups) not
	inlinePath                     // every one called in line, at least one, and no group
)

// pathOf says which path a match set needs. Empty slots do not count.
func pathOf(subs slots, groups []*groupMatch) deliveryPath {
	var buf [16]*Subscription
	return pathOfList(list(buf[:0], subs), groups)
}

// pathOfList is pathOf for a list of subscriptions.
func pathOfList(subs []*Subscription, groups []*groupMatch) deliveryPath {
	n := 0
	for _, s := range subs {
		if s.inline {
			n++
		}
	}
	switch {
	case n == 0:
		return slowPath
	case n == len(subs) && len(groups) == 0:
		return inlinePath
	}
	return mixedPath
}

// Publish sends payload to every subscription whose pattern matches topic
// and returns once every matching synchronous handler has returned and
// every matching asynchronous subscription has queued the event.
//
// Synchronous handlers run on the calling goroutine, one after the other in
// the order their subscriptions were made, each once however many ways its
// pattern matches; queue groups come last, each counting as one
// subscription, in the order of their first members. A panicking
// handler is recovered and reported to Options.OnError; the other handlers
// still run and Publish does not panic. Handlers may call Publish,
// Subscribe, Unsubscribe and Close.
//
// Publish blocks only on a full queue with the Block policy, until there is
// room or ctx ends: it then still delivers to the other subscriptions and
// returns an error wrapping ctx's error (see Block). It returns a
// [*SyntaxError] wrapping ErrInvalidTopic for an invalid topic, and an
// error wrapping ErrClosed once the bus is closed, delivering nothing then,
// or when Close, starting during the Publish, kept it from a subscription.
// A topic with no subscribers is not an error. Publish passes ctx to the
// handlers, asynchronous ones included, which may find it ended: an
// asynchronous handler that must outlive its publisher's context should use
// context.WithoutCancel.
//
// Once a topic is in the match cache, Publish takes no lock and allocates
// nothing: a pointer payload travels in the interface without an
// allocation (a non-pointer value may allocate when converted to any).
func (b *Bus) Publish(ctx context.Context, topic string, payload any) error {
	return b.PublishEvent(ctx, Event{Topic: topic, Payload: payload})
}

// PublishEvent is Publish for an event that carries Meta, such as one a
// bridge imports. It behaves exactly as Publish(ctx, e.Topic, e.Payload)
// and passes e to the handlers as it is.
func (b *Bus) PublishEvent(ctx context.Context, e Event) error {
	// The cache hit for plain synchronous handlers written out, the rest
	// in functions of their own: calls would cost a quarter of a cached
	// publish, and the other paths' variables would make this frame
	// larger. Close needs no check here: it bumps the generations, so
	// after it every publish takes lookupSlow, which checks.
	//
	// First the sets by topic address (see addrSlot), then by the bytes.
	top := unsafe.StringData(e.Topic)
	as := b.addrSlot(top, len(e.Topic))
	if as >= uint64(len(b.byAddr)) {
		// Only the zero Bus has no cache slot. The check costs nothing:
		// it stands in for the bounds check of the index below.
		panic(notCreated)
	}
	m := b.byAddr[as].Load()
	if m == nil || unsafe.StringData(m.topic) != top || len(m.topic) != len(e.Topic) ||
		m.gen-b.stripes[m.stripe%numStripes].gen.Load() > 1 { // !current(m.gen, ...), written out
		if m = b.cached(e.Topic, as); m == nil {
			return b.publishMiss(ctx, e)
		}
	}
	if m.path != inlinePath {
		return b.deliverSet(ctx, &e, m.filled(), m.groups, m.path)
	}
	// Plain synchronous handlers only (so no groups and no Stats either,
	// which makes every subscription slow).
	//
	// The deferred closure captures the match set, one word, rather than
	// its slice, three: the smaller closure and the lone subscriber's
	// path without a loop took a fifth off a publish to one subscriber.
	//
	// The publish reads the first n slots, n loaded once (see
	// matchSet.subs). s is the subscription being called in the loop: its
	// slot may have been cleared by the time its handler panics
	// (TestInPlacePanicBlame). The first slot is never cleared in place
	// (removeInPlaceLocked), so the lone subscriber's path leaves s nil
	// and saves the store: recovered then reads the slot.
	i := 0
	n := int(m.used.Load())
	var s *Subscription
	returned := false
	defer func() {
		// Without a panic there is nothing to recover: skipping the call
		// of recover saves a tenth of a publish.
		if !returned {
			if r := recover(); r != nil {
				if s == nil {
					s = m.subs[0].Load()
				}
				b.recovered(ctx, &e, s, m.subs[:n], i, r)
			}
		}
	}()
	subs := m.subs[:n]
	if len(subs) == 1 {
		// The most common shape, one subscriber (i stays 0 for recovered).
		if s := subs[0].Load(); s != nil && s.active.Load() {
			s.handler(ctx, e)
			returned = true
			return nil
		}
		returned = true
		if b.closed.Load() {
			return errClosed("publish") // Close overtook this publish
		}
		return nil
	}
	closed := false
	for ; i < len(subs); i++ {
		if s = subs[i].Load(); s == nil {
			continue // cleared in place by an Unsubscribe
		}
		if s.active.Load() {
			s.handler(ctx, e)
		} else if b.closed.Load() {
			closed = true // Close overtook this publish
		}
	}
	returned = true
	if closed {
		return errClosed("publish")
	}
	return nil
}

// publishMiss is PublishEvent for a topic not in the cache.
//
//go:noinline
func (b *Bus) publishMiss(ctx context.Context, e Event) error {
	h := hashString(b.seed, e.Topic)
	st := b.stripeOf(h)
	subs, groups, err := b.lookupSlow(e.Topic, h, st, st.gen.Load())
	if err != nil {
		return err
	}
	return b.deliverSet(ctx, &e, subs, groups, pathOf(subs, groups))
}

// deliverSet delivers *e to a match set that takes path.
func (b *Bus) deliverSet(ctx context.Context, e *Event, subs slots, groups []*groupMatch, path deliveryPath) error {
	if path != slowPath {
		// No Stats to count: with Stats on no subscription is inline, so
		// a publish with Stats always takes slowPath.
		firstErr := b.deliverMixed(ctx, e, subs)
		if groups != nil {
			firstErr = b.deliverGroups(ctx, e, groups, firstErr)
		}
		return firstErr
	}
	// Asynchronous subscriptions, Once, Track and the like (or none at
	// all): each recovers its own handler's panics.
	var firstErr error
	for i := range subs {
		s := subs[i].Load()
		if s == nil {
			continue
		}
		if err := b.deliverSlow(ctx, s, e); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if groups != nil {
		firstErr = b.deliverGroups(ctx, e, groups, firstErr)
	}
	if b.stats && firstErr == nil {
		b.published.add(1)
	}
	return firstErr
}

// deliverMixed is PublishEvent's loop over subs when it mixes plain
// synchronous subscriptions with others. After a recovered panic it still
// returns the first error met.
func (b *Bus) deliverMixed(ctx context.Context, e *Event, subs slots) (firstErr error) {
	i := 0
	var s *Subscription // the one being called (see PublishEvent)
	defer func() {
		if r := recover(); r != nil {
			b.recovered(ctx, e, s, subs, i, r)
		}
	}()
	for ; i < len(subs); i++ {
		if s = subs[i].Load(); s == nil {
			continue
		}
		if s.inline {
			if s.active.Load() {
				s.handler(ctx, *e)
			} else if b.closed.Load() && firstErr == nil {
				firstErr = errClosed("publish") // Close overtook this publish
			}
		} else if err := b.deliverSlow(ctx, s, e); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// deliverSlow delivers to anything but a plain synchronous subscription.
// A subscription found gone because Close overtook the publish makes an
// error wrapping ErrClosed.
func (b *Bus) deliverSlow(ctx context.Context, s *Subscription, e *Event) error {
	var res offerResult
	var err error
	switch {
	case s.q != nil && !s.opts.Once:
		if !s.active.Load() {
			res = gone
			break
		}
		res, err = s.q.push(ctx, e, s, false)
	default:
		res, err = s.offer(ctx, e, false)
	}
	if res == gone && err == nil && b.closed.Load() {
		return errClosed("publish")
	}
	return err
}

// offer delivers *e to s, or queues it, as s is set up to. With skipIfFull,
// a full queue answers full instead of applying the overflow policy.
func (s *Subscription) offer(ctx context.Context, e *Event, skipIfFull bool) (offerResult, error) {
	if !s.active.Load() {
		return gone, nil
	}
	if s.opts.Once {
		if !s.fired.CompareAndSwap(false, true) {
			return gone, nil
		}
		if testHookOnceTaken != nil {
			testHookOnceTaken()
		}
	}
	var res offerResult
	var err error
	if s.q != nil {
		res, err = s.q.push(ctx, e, s, skipIfFull)
	} else {
		res = s.callSync(ctx, e)
	}
	if s.opts.Once {
		switch res {
		case full:
			s.fired.Store(false) // not taken: another publisher may have it
		case gone:
			s.end(false)
			if s.opts.Group != "" {
				break // the group gives the event to another member
			}
			// Taken, then found ended by Close or Unsubscribe: the one
			// event is lost, and the publishers that found it taken were
			// told nothing, so it counts as dropped.
			s.dropped.Add(1)
			s.bus.dropped.add(1)
			s.bus.report(&DeliveryError{Topic: e.Topic, Pattern: s.pat.text, Err: ErrDropped, Count: 1, Where: s.Where(),
				Detail: "the Once subscription ended while its event was being delivered"})
		default:
			s.end(false) // the queue keeps its one event: it is drained, not discarded
		}
	}
	return res, err
}

// testHookOnceTaken, when set by a test, runs after a publisher has taken
// the event of a Once subscription and before it delivers it.
var testHookOnceTaken func()

// callSync calls the handler of a synchronous subscription that is not
// plain: it tracks running calls, counts, and recovers a panic itself so
// that it reports this subscription even when it is a group member.
func (s *Subscription) callSync(ctx context.Context, e *Event) offerResult {
	if s.opts.Track {
		s.running.Add(1)
		defer s.leave()
	}
	if !s.active.Load() {
		return gone
	}
	if s.fn != nil {
		s.callFunc(ctx, e) // recovers and reports itself (handler.go)
		s.countDelivered(1)
		return accepted
	}
	defer s.recoverSync(ctx, e)
	s.handler(ctx, *e)
	s.countDelivered(1)
	return accepted
}

// leave ends a tracked call, closing done if it was the last one of an
// unsubscribed subscription. Unsubscribe and leave each write their own
// variable before reading the other's, so one of them sees both done.
func (s *Subscription) leave() {
	if s.running.Add(-1) == 0 && !s.active.Load() {
		s.closeDone()
	}
}

func (s *Subscription) recoverSync(ctx context.Context, e *Event) {
	if r := recover(); r != nil {
		s.countDelivered(1)
		s.bus.reportPanic(ctx, s, e.Topic, r)
	}
}

func (s *Subscription) countDelivered(n uint64) {
	if s.delivered.stripes != nil {
		s.delivered.add(n)
		s.bus.delivered.add(n)
	}
}

// recovered reports the panic r of the handler of s, subs[i] when it was
// called, recovered by PublishEvent, and delivers to the rest of subs.
func (b *Bus) recovered(ctx context.Context, e *Event, s *Subscription, subs slots, i int, r any) {
	b.reportPanic(ctx, s, e.Topic, r)
	for j := i + 1; j < len(subs); {
		j = b.deliverFrom(ctx, e, subs, j)
	}
}

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
func (b *Bus) deliverFrom(ctx context.Context, e *Event, subs slots, i int) (next int) {
	var s *Subscription
	defer b.recoverHandler(ctx, e, &s, &i, &next)
	for ; i < len(subs); i++ {
		if s = subs[i].Load(); s == nil {
			continue
		}
		if s.inline {
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

// recoverHandler is deferred by deliverFrom: it recovers a handler panic
// of *s, reports it, and makes deliverFrom return the index after the
// culprit.
func (b *Bus) recoverHandler(ctx context.Context, e *Event, s **Subscription, i, next *int) {
	if r := recover(); r != nil {
		b.reportPanic(ctx, *s, e.Topic, r)
		*next = *i + 1
	}
}

// reportPanic counts and reports a recovered panic of s's handler, also
// to the function of WithFailureFunc in ctx.
func (b *Bus) reportPanic(ctx context.Context, s *Subscription, topic string, r any) {
	s.panics.Add(1)
	b.panics.add(1)
	s.countFailed()
	de := &DeliveryError{Topic: topic, Pattern: s.pat.text, Err: ErrHandlerPanic, Value: r, Stack: debug.Stack()}
	b.report(de)
	b.notifyFailure(ctx, de)
}

// report hands err to Options.OnError. A panic in OnError itself is
// swallowed: it must not kill the publisher, and there is nowhere left to
// report it.
func (b *Bus) report(err error) {
	defer func() { _ = recover() }()
	b.onError(err)
}

// reportAll reports the non-nil errors of reports.
func (b *Bus) reportAll(reports ...*DeliveryError) {
	for _, r := range reports {
		if r != nil {
			b.report(r)
		}
	}
}
