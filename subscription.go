package bus

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Subscription is the handle of one subscription, returned by Subscribe and
// its variants. Its methods are safe for concurrent use, also from inside
// its own handler.
type Subscription struct {
	// handler, active and inline are read by every delivery: they come first.
	handler Handler
	active  atomic.Bool // true from Subscribe until Unsubscribe or Close
	// inline marks a plain synchronous subscription, which Publish calls in
	// line; every other kind goes through deliverSlow.
	inline bool
	bus    *Bus
	id     uint64 // subscription order
	pat    pattern
	opts   *SubscribeOptions // a copy of the caller's, or &noOptions; never written
	pc     [1]uintptr        // the caller of Subscribe, for reports

	q        *queue        // asynchronous subscriptions
	out      chan Event    // SubscribeChan: the channel, closed by the worker
	stop     chan struct{} // SubscribeChan: closed when the reader is gone
	stopped  atomic.Bool   // stop is closed, or about to be (a sync.Once is 8 bytes more)
	fired    atomic.Bool   // Once: the event has been taken
	workerID atomic.Uint64 // goroutine ID of the worker, once started

	groupNext *atomic.Uint64 // queue groups: the group's round-robin counter, shared by its members

	running atomic.Int64 // synchronous calls under way, with Track
	// done is made by the first call of Done, not by Subscribe: most
	// subscriptions are never waited for, and making a channel for each
	// was a tenth of a Subscribe plus Unsubscribe.
	doneMu sync.Mutex    // protects done and ended
	done   chan struct{} // nil until Done is called
	ended  bool          // closeDone has run: done is closed, or will be closedChan
	// retrying is set while the worker waits between attempts, so that
	// Close waits for it to abandon the event (retry.go). (Beside ended:
	// the small fields are paired so that a Subscription fits 256 bytes.)
	retrying atomic.Bool

	delivered counter // handler calls, see SubscriptionStats
	dropped   atomic.Uint64
	panics    atomic.Uint64

	// fn is the handler wrapped in its middleware, for a subscription made
	// with a HandlerFunc or with middleware or a retry policy; nil for a
	// plain Handler, which handler calls directly. See handler.go.
	fn    HandlerFunc
	retry *RetryPolicy // normalized copy of opts.Retry; nil without
	// failures is made by the first failure: most subscriptions never
	// fail, and its four counters in every Subscription took it from the
	// 256-byte size class to the 288-byte one.
	failures atomic.Pointer[subFailures]
}

// subFailures are the counters of a subscription's failed handling.
type subFailures struct {
	failed, retried, deadLettered, abandoned atomic.Uint64
}

// failureCounts returns s's failure counters, making them on the first call.
func (s *Subscription) failureCounts() *subFailures {
	if f := s.failures.Load(); f != nil {
		return f
	}
	s.failures.CompareAndSwap(nil, new(subFailures))
	return s.failures.Load()
}

// abandonedCount is the count of events s abandoned on Close (retry.go).
func (s *Subscription) abandonedCount() uint64 {
	if f := s.failures.Load(); f != nil {
		return f.abandoned.Load()
	}
	return 0
}

// A Subscription is allocated by every Subscribe: it stays within the
// 256-byte size class (the next is 288).
var _ = [1]struct{}{}[unsafe.Sizeof(Subscription{})/257]

// noOptions are the options of a subscription made without any. A pointer
// to one shared zero value, rather than a copy in every Subscription,
// makes a plain subscription a fifth smaller to allocate.
var noOptions SubscribeOptions

// newSubscription validates and builds a subscription; it does not enter
// it in the index. One of h and fn is the handler, the other nil.
func (b *Bus) newSubscription(text string, h Handler, fn HandlerFunc, opts *SubscribeOptions) (*Subscription, error) {
	b.mustBeNew()
	if b.closed.Load() {
		return nil, errClosed(fmt.Sprintf("subscribe %q", text))
	}
	if h == nil && fn == nil {
		return nil, errorf(ErrNilHandler, "subscribe %q", text)
	}
	o := &noOptions
	if opts != nil {
		c := *opts
		if err := c.validate(); err != nil {
			return nil, err
		}
		o = &c
	}
	p, err := parsePattern(text, b.sep)
	if err != nil {
		return nil, err
	}
	s := &Subscription{handler: h, bus: b, id: b.nextID.Add(1), pat: p, opts: o}
	if err := s.wrap(fn); err != nil {
		return nil, err
	}
	if o.Group != "" {
		s.groupNext = b.groupCounter(o.Group)
	}
	s.inline = o.Queue == 0 && !o.Once && !o.Track && o.Group == "" && !b.stats && s.fn == nil
	if o.Queue > 0 {
		s.q = newQueue(o.Queue, o.Overflow)
	}
	if o.Queue > 0 || b.stats {
		s.delivered = newCounter(2)
	}
	return s, nil
}

// subscribe makes and enters a subscription; skip is the number of frames
// between the user's call and subscribe, for Where.
//
//go:noinline
func (b *Bus) subscribe(text string, h Handler, fn HandlerFunc, opts *SubscribeOptions, skip int) (*Subscription, error) {
	s, err := b.newSubscription(text, h, fn, opts)
	if err != nil {
		return nil, err
	}
	s.pc[0] = callerPC(skip + 2)
	return s, b.start(s)
}

// start enters s in the index and starts its worker.
func (b *Bus) start(s *Subscription) error {
	s.active.Store(true)
	if s.q != nil {
		if err := b.addWorker(s); err != nil {
			s.active.Store(false)
			s.closeDone()
			return err
		}
	}
	if err := b.add(s); err != nil {
		s.active.Store(false)
		s.teardown(false)
		return err
	}
	return nil
}

// Pattern returns the pattern the subscription was made with.
func (s *Subscription) Pattern() string { return s.pat.text }

// Active reports whether the subscription still takes events: it has not
// been unsubscribed and its bus has not been closed.
func (s *Subscription) Active() bool { return s.active.Load() }

// Where returns "file:line" of the call that made the subscription, for
// diagnostics; "" when unknown.
func (s *Subscription) Where() string {
	frame, _ := runtime.CallersFrames(s.pc[:]).Next()
	if frame.File == "" {
		return ""
	}
	return fmt.Sprintf("%s:%d", frame.File, frame.Line)
}

// Unsubscribe stops the subscription and returns without waiting.
//
// Once it returns, no Publish that starts afterwards delivers to the
// subscription; one already under way skips it unless it had already
// decided to deliver. An asynchronous subscription still handles the events
// already in its queue, with their retries if it has a RetryPolicy, then its
// goroutine ends; the channel of
// SubscribeChan is closed instead, discarding (and counting) what the
// reader had not taken. A Block publisher waiting for room in the queue
// gives up: its event counts as dropped and is reported (ErrDropped). Done
// tells when all of that is over.
//
// Unsubscribe is idempotent and may be called from any handler, the
// subscription's own included.
func (s *Subscription) Unsubscribe() {
	if s.out != nil {
		// SubscribeChan: discard what is queued even when Once or Close
		// ended the subscription first, so that a reader that stopped
		// reading does not keep the worker waiting.
		s.end(true)
		return
	}
	s.end(false)
}

// end makes s inactive, takes it out of the index and tears it down; with
// discard, a SubscribeChan queue is discarded instead of drained.
func (s *Subscription) end(discard bool) {
	if !s.active.CompareAndSwap(true, false) {
		if discard && s.q != nil {
			s.teardown(true)
		}
		return
	}
	s.bus.remove(s)
	s.teardown(discard)
}

// teardown ends a subscription that is no longer active: its queue takes no
// more events, and done is closed once nothing runs any more. With discard
// (the Unsubscribe of a SubscribeChan subscription), what is queued is
// discarded and counted as dropped instead of handled.
func (s *Subscription) teardown(discard bool) {
	switch {
	case discard && s.stop != nil:
		// Discard first, then release the worker from its send: the events
		// it claims in between still reach the reader, and the one whose
		// send stopReader cuts short the worker counts as dropped itself.
		s.q.discardAll(s)
		s.stopReader()
	case s.q != nil:
		s.q.close() // the worker closes done when it has finished
	case s.opts.Track:
		if s.running.Load() == 0 {
			s.closeDone()
		}
	default:
		s.closeDone()
	}
}

// stopReader releases the worker of a SubscribeChan subscription from
// waiting on a reader that may be gone.
func (s *Subscription) stopReader() {
	if s.stop != nil && s.stopped.CompareAndSwap(false, true) {
		close(s.stop)
	}
}

// closeDone ends the subscription for Done, once.
func (s *Subscription) closeDone() {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	if !s.ended {
		s.ended = true
		if s.done != nil {
			close(s.done)
		}
	}
}

// closedChan is what Done returns for a subscription that ended before
// anyone asked.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Done returns a channel that is closed once the subscription has ended
// for good: it has been unsubscribed (or its bus closed) and its handler is
// not running and will not run again. For an asynchronous subscription that
// is when its goroutine has handled or discarded its queue and exited. For
// a synchronous one made with SubscribeOptions.Track, when the calls under
// way have returned; without Track, the calls under way are not tracked and
// Done is closed by Unsubscribe itself.
//
// The channel is made by the first call; calling Done allocates nothing
// after that, or once the subscription has ended.
func (s *Subscription) Done() <-chan struct{} {
	s.doneMu.Lock()
	defer s.doneMu.Unlock()
	if s.done == nil {
		if s.ended {
			return closedChan
		}
		s.done = make(chan struct{})
	}
	return s.done
}

// UnsubscribeWait is Unsubscribe followed by waiting for Done, or for ctx
// to end, whose error it then returns. Called from the subscription's own
// asynchronous handler, it would wait for itself: it unsubscribes and
// returns an error wrapping ErrWouldDeadlock instead.
func (s *Subscription) UnsubscribeWait(ctx context.Context) error {
	s.Unsubscribe()
	if id := s.workerID.Load(); id != 0 && id == goid() {
		select {
		case <-s.Done():
			return nil
		default:
			return errorf(ErrWouldDeadlock, "unsubscribe %q: waiting from its own handler", s.pat.text)
		}
	}
	select {
	case <-s.Done():
		return nil
	case <-ctx.Done():
		return errorf(context.Cause(ctx), "unsubscribe %q", s.pat.text)
	}
}

// Stats returns the counters of the subscription.
func (s *Subscription) Stats() SubscriptionStats {
	st := SubscriptionStats{Delivered: s.delivered.load(), Dropped: s.dropped.Load(), Panics: s.panics.Load()}
	if f := s.failures.Load(); f != nil {
		st.Failed, st.Retried = f.failed.Load(), f.retried.Load()
		st.DeadLettered, st.Abandoned = f.deadLettered.Load(), f.abandoned.Load()
	}
	if s.q != nil {
		st.Queued, st.HighWater = s.q.depth()
		st.Capacity = s.q.capacity
	}
	return st
}
