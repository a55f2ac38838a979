package bus

import (
	"context"
	"fmt"
	"log"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Bus is an in-process publish/subscribe event bus. Publishers send events
// to topics; subscribers receive the events of the topics that match their
// pattern. Create one with New: the zero Bus is not usable, and every
// method of one panics with "bus: Bus must be created with New" (making the
// zero value usable would cost a synchronized check on every Publish).
//
// All methods are safe for concurrent use, also from inside handlers.
type Bus struct {
	// Fields read by every Publish come first, apart from the ones that
	// subscribing writes, so that they share no cache line.
	closed    atomic.Bool
	sep       byte
	seed      uint64                     // of hashString
	cache     []atomic.Pointer[matchSet] // one slot that stays empty when disabled
	cacheMask uint64
	cacheOn   bool // the cache is enabled
	onError   func(error)
	_         [64]byte

	nextID  atomic.Uint64 // subscription IDs: delivery follows their order
	stripes [numStripes]stripe
	tree    tree

	stats              bool
	slowAfter          time.Duration
	dropReportInterval time.Duration
	published          counter
	delivered          counter
	dropped            counter
	panics             counter

	workersMu sync.Mutex                 // protects workers
	workers   map[*Subscription]struct{} // asynchronous subscriptions whose worker runs
}

// New returns a Bus configured by opts; nil opts means the defaults. New
// copies what it needs from opts, which may be changed afterwards. It panics
// if opts.Separator is not a valid separator: that is a programming error.
func New(opts *Options) *Bus {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Separator == 0 {
		o.Separator = DefaultSeparator
	}
	if !validSeparator(o.Separator) {
		panic(fmt.Sprintf("bus: invalid separator %q: want ASCII punctuation other than * ? [ ] { } \\ , ! -", o.Separator))
	}
	if o.OnError == nil {
		o.OnError = func(err error) { log.Print(err) }
	}
	b := &Bus{sep: byte(o.Separator), seed: rand.Uint64(), onError: o.OnError, stats: o.Stats,
		slowAfter: o.SlowAfter, dropReportInterval: o.DropReportInterval,
		published: newCounter(8), delivered: newCounter(8), dropped: newCounter(1), panics: newCounter(1),
		workers: make(map[*Subscription]struct{})}
	if b.slowAfter == 0 {
		b.slowAfter = time.Second
	}
	if b.dropReportInterval <= 0 {
		b.dropReportInterval = time.Second
	}
	switch {
	case o.MatchCacheSize == 0:
		o.MatchCacheSize = defaultMatchCacheSize
	case o.MatchCacheSize > 1<<24:
		o.MatchCacheSize = 1 << 24
	}
	n := 1
	if o.MatchCacheSize > 0 {
		n = 1 << bits.Len(uint(o.MatchCacheSize-1))
		b.cacheOn = true
	}
	b.cache = make([]atomic.Pointer[matchSet], n)
	b.cacheMask = uint64(n - 1)
	for i := range b.stripes {
		b.stripes[i].m = make(map[string][]*Subscription)
	}
	return b
}

// Separator returns the separator of the bus's topics.
func (b *Bus) Separator() rune {
	b.mustBeNew()
	return rune(b.sep)
}

// notCreated is the panic of the methods of a Bus not made by New.
const notCreated = "bus: Bus must be created with New"

// mustBeNew panics if b was not made by New.
func (b *Bus) mustBeNew() {
	if b.cache == nil {
		panic(notCreated)
	}
}

// Publish sends payload to every subscription whose pattern matches topic
// and returns once every matching synchronous handler has returned and
// every matching asynchronous subscription has queued the event.
//
// Synchronous handlers run on the calling goroutine, one after the other in
// the order their subscriptions were made, each once however many ways its
// pattern matches; a queue group counts as one subscription. A panicking
// handler is recovered and reported to Options.OnError; the other handlers
// still run and Publish does not panic. Handlers may call Publish,
// Subscribe, Unsubscribe and Close.
//
// Publish blocks only on a full queue with the Block policy, until there is
// room or ctx ends: it then still delivers to the other subscriptions and
// returns an error wrapping ctx's error (see Block). It returns a
// [*SyntaxError] wrapping ErrInvalidTopic for an invalid topic, and an
// error wrapping ErrClosed once the bus is closed, delivering nothing then.
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
	// This is lookup and deliverFrom written out: the calls would cost a
	// quarter of a cached publish. Close needs no check here: it bumps the
	// generations, so after it every publish takes lookupSlow, which
	// checks.
	h := hashString(b.seed, e.Topic)
	st := b.stripeOf(h)
	gen := st.gen.Load()
	var subs []*Subscription
	var kind subsKind
	slot := h & b.cacheMask
	if slot >= uint64(len(b.cache)) {
		// Only the zero Bus has no cache slot. The check costs nothing:
		// it stands in for the bounds check of the index below.
		panic(notCreated)
	}
	if m := b.cache[slot].Load(); m.valid(e.Topic, gen) {
		subs, kind = m.subs, m.kind
	} else {
		var err error
		if subs, err = b.lookupSlow(e.Topic, h, st, gen); err != nil {
			return err
		}
		kind = kindOf(subs)
	}
	switch kind {
	case noneFast:
		// Asynchronous subscriptions, groups and the like (or none at
		// all): each recovers its own handler's panics.
		var firstErr error
		for _, s := range subs {
			if err := b.deliverSlow(ctx, s, &e); err != nil && firstErr == nil {
				firstErr = err
			}
		}
		if b.stats && firstErr == nil {
			b.published.add(1)
		}
		return firstErr
	case someFast:
		return b.publishMixed(ctx, &e, subs)
	}
	// The common case: plain synchronous handlers only (so no Stats
	// either, which makes every subscription slow).
	i := 0
	closed := false
	defer func() {
		if r := recover(); r != nil {
			b.recovered(ctx, &e, subs, i, r)
		}
	}()
	for ; i < len(subs); i++ {
		if s := subs[i]; s.active.Load() {
			s.handler(ctx, e)
		} else if b.closed.Load() {
			closed = true // Close overtook this publish
		}
	}
	if closed {
		return errClosed("publish")
	}
	return nil
}

// publishMixed is the rest of PublishEvent when subs mixes plain
// synchronous subscriptions with others.
func (b *Bus) publishMixed(ctx context.Context, e *Event, subs []*Subscription) error {
	var firstErr error
	i := 0
	defer func() {
		if r := recover(); r != nil {
			b.recovered(ctx, e, subs, i, r)
		}
	}()
	for ; i < len(subs); i++ {
		s := subs[i]
		if s.fast {
			if s.active.Load() {
				s.handler(ctx, *e)
			} else if b.closed.Load() && firstErr == nil {
				firstErr = errClosed("publish") // Close overtook this publish
			}
		} else if err := b.deliverSlow(ctx, s, e); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if b.stats && firstErr == nil {
		b.published.add(1)
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
	case s.members != nil:
		return b.deliverGroup(ctx, s, e)
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

// Subscribe calls h for every event published to a topic matching pattern,
// until the returned Subscription is unsubscribed or the bus is closed. h
// runs synchronously, on the publisher's goroutine.
//
// pattern is a topic or a glob: see the package documentation for the
// syntax. A bad pattern gets a [*SyntaxError] wrapping ErrInvalidPattern,
// a nil h gets ErrNilHandler, and a closed bus an error wrapping ErrClosed.
// Subscribe may be called from inside a handler; the subscription sees the
// events published after Subscribe returns.
func (b *Bus) Subscribe(pattern string, h Handler) (*Subscription, error) {
	return b.subscribe(pattern, h, nil, 1)
}

// SubscribeWith is Subscribe with options: an asynchronous queue and its
// overflow policy, a queue group, once-only delivery, tracking of running
// calls. A nil opts is Subscribe. Options out of range get an error
// wrapping ErrInvalidOption.
//
// An asynchronous subscription starts a goroutine that ends after
// Unsubscribe or Close; its queue is allocated up front, and delivering
// through it allocates nothing.
func (b *Bus) SubscribeWith(pattern string, h Handler, opts *SubscribeOptions) (*Subscription, error) {
	return b.subscribe(pattern, h, opts, 1)
}

// SubscribeChan is an asynchronous subscription that delivers to a channel
// instead of a handler, for those who prefer `for e := range ch`. The bus
// owns the channel: it closes it after Unsubscribe or Close, so the range
// loop ends. opts.Queue is the capacity of the queue in front of the
// channel (64 when zero); the other options apply as for SubscribeWith.
//
// The reader must keep reading, or the queue fills up and its overflow
// policy applies. On Unsubscribe the events still queued are discarded and
// counted as dropped; on Close they are delivered until Close's deadline.
func (b *Bus) SubscribeChan(pattern string, opts *SubscribeOptions) (*Subscription, <-chan Event, error) {
	var o SubscribeOptions
	if opts != nil {
		o = *opts
	}
	if o.Queue == 0 {
		o.Queue = 64
	}
	// The worker sends to out itself (Subscription.send); the handler
	// only stands for it where a handler is expected.
	s, err := b.newSubscription(pattern, func(context.Context, Event) {}, &o)
	if err != nil {
		return nil, nil, err
	}
	out := make(chan Event)
	s.out, s.stop = out, make(chan struct{})
	runtime.Callers(2, s.pc[:])
	if err := b.start(s); err != nil {
		return nil, nil, err
	}
	return s, out, nil
}

// Close ends the bus: Publish and Subscribe fail with ErrClosed from the
// moment it starts, every subscription is unsubscribed, and the events
// already in asynchronous queues are handled until ctx ends. Close then
// waits for the goroutines of asynchronous subscriptions to exit. If ctx
// ends first, the events not yet started are discarded and counted as
// dropped, and Close returns an error wrapping ctx's error that says how
// many; a handler still running then is not interrupted, and its goroutine
// exits when it returns.
//
// Close may be called from a handler; called from an asynchronous one, it
// cannot wait for that handler's own goroutine, which exits after the
// handler returns. Calling Close again returns an error wrapping ErrClosed.
func (b *Bus) Close(ctx context.Context) error {
	b.mustBeNew()
	if !b.closed.CompareAndSwap(false, true) {
		return errClosed("close")
	}
	var all []*Subscription
	for i := range b.stripes {
		st := &b.stripes[i]
		st.mu.Lock()
		for _, subs := range st.m {
			all = append(all, subs...)
		}
		clear(st.m)
		st.gen.Add(1)
		st.mu.Unlock()
	}
	b.tree.mu.Lock()
	b.tree.root.each(func(s *Subscription) { all = append(all, s) })
	b.tree.root = node{}
	clear(b.tree.patterns)
	b.tree.size = 0
	b.bumpAll()
	b.tree.mu.Unlock()
	for i := range b.cache {
		b.cache[i].Store(nil)
	}
	for _, s := range all {
		if s.active.CompareAndSwap(true, false) {
			s.teardown(false) // drained until ctx ends
		}
	}
	b.workersMu.Lock()
	workers := make([]*Subscription, 0, len(b.workers))
	for s := range b.workers {
		workers = append(workers, s)
	}
	b.workersMu.Unlock()
	if len(workers) == 0 {
		return nil
	}
	self := goid()
	var lost uint64
	for _, s := range workers {
		if s.workerID.Load() == self {
			continue // Close runs in this worker's handler
		}
		select {
		case <-s.done:
			continue
		case <-ctx.Done():
		}
		lost += s.q.discardAll(s)
		if s.out != nil {
			// The worker of a SubscribeChan subscription only ever waits
			// for its reader: released, it exits at once, and the event
			// whose send it gave up is one more not delivered.
			before := s.q.abandonedCount()
			s.stopReader()
			<-s.done
			lost += s.q.abandonedCount() - before
		}
	}
	if lost > 0 || ctx.Err() != nil {
		return errorf(context.Cause(ctx), "close: %s not delivered", plural(lost, "queued event"))
	}
	return nil
}

// Stats returns the counters of the bus. It sums striped counters and
// walks the asynchronous subscriptions; it is meant for monitoring, not
// for a hot path.
func (b *Bus) Stats() Stats {
	b.mustBeNew()
	st := Stats{Published: b.published.load(), Delivered: b.delivered.load(), Dropped: b.dropped.load(), Panics: b.panics.load()}
	for i := range b.stripes {
		s := &b.stripes[i]
		s.mu.RLock()
		for _, subs := range s.m {
			st.Subscriptions += len(subs)
		}
		s.mu.RUnlock()
	}
	b.tree.mu.RLock()
	st.Subscriptions += b.tree.size
	b.tree.mu.RUnlock()
	b.workersMu.Lock()
	for s := range b.workers {
		n, _ := s.q.depth()
		st.Queued += n
	}
	b.workersMu.Unlock()
	return st
}

// reportAll reports the non-nil errors of reports.
func (b *Bus) reportAll(reports ...*DeliveryError) {
	for _, r := range reports {
		if r != nil {
			b.report(r)
		}
	}
}

func errClosed(op string) error { return errorf(ErrClosed, "%s", op) }

// NumSub returns how many subscriptions a publish to topic would reach,
// like Redis's PUBSUB NUMSUB but counting pattern subscriptions too; a
// queue group counts as one. It returns a [*SyntaxError] for an invalid
// topic and an error wrapping ErrClosed once the bus is closed.
func (b *Bus) NumSub(topic string) (int, error) {
	subs, err := b.lookup(topic)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range subs {
		if s.active.Load() {
			n++
		}
	}
	return n, nil
}

// NumPat returns the number of distinct patterns, other than plain topics,
// that subscriptions use, like Redis's PUBSUB NUMPAT.
func (b *Bus) NumPat() int {
	b.mustBeNew()
	b.tree.mu.RLock()
	defer b.tree.mu.RUnlock()
	return len(b.tree.patterns)
}

// Patterns returns the distinct patterns, other than plain topics, that
// subscriptions use, sorted. It allocates the returned slice.
func (b *Bus) Patterns() []string {
	b.mustBeNew()
	b.tree.mu.RLock()
	out := make([]string, 0, len(b.tree.patterns))
	for p := range b.tree.patterns {
		out = append(out, p)
	}
	b.tree.mu.RUnlock()
	slices.Sort(out)
	return out
}

// Topics returns the plain topics that subscriptions use, sorted, like
// Redis's PUBSUB CHANNELS. It allocates the returned slice.
func (b *Bus) Topics() []string {
	b.mustBeNew()
	var out []string
	for i := range b.stripes {
		st := &b.stripes[i]
		st.mu.RLock()
		for t := range st.m {
			out = append(out, t)
		}
		st.mu.RUnlock()
	}
	slices.Sort(out)
	return out
}
