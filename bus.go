package bus

import (
	"context"
	"fmt"
	"log"
	"math/bits"
	"math/rand/v2"
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
	byAddr    []atomic.Pointer[matchSet] // cache's sets again, by the address of their topic (see addrSlot)
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
	failures           failureCounters // handler.go
	middleware         []Middleware
	// life ends when Close starts: it stops the waits between retries
	// and the publishes of dead letters (retry.go).
	life    context.Context
	endLife context.CancelFunc

	workersMu sync.Mutex                 // protects workers
	workers   map[*Subscription]struct{} // asynchronous subscriptions whose worker runs

	groupsMu  sync.Mutex                // protects groupNext
	groupNext map[string]*atomic.Uint64 // queue group name -> its round-robin counter (group.go)

	req requests // request/reply (request.go)
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
		workers: make(map[*Subscription]struct{}), failures: newFailureCounters()}
	for i, m := range o.Middleware {
		if m == nil {
			panic(fmt.Sprintf("bus: Options.Middleware[%d] is nil", i))
		}
	}
	b.middleware = slices.Clone(o.Middleware)
	b.life, b.endLife = context.WithCancel(context.Background())
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
	b.byAddr = make([]atomic.Pointer[matchSet], n)
	b.cacheMask = uint64(n - 1)
	for i := range b.stripes {
		b.stripes[i].m = make(map[string]*matchSet)
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

// Subscribe calls h for every event published to a topic matching pattern,
// until the returned Subscription is unsubscribed or the bus is closed. h
// runs synchronously, on the publisher's goroutine.
//
// pattern is a topic or a glob: see the package documentation for the
// syntax. A bad pattern gets a [*SyntaxError] wrapping ErrInvalidPattern,
// a nil h gets ErrNilHandler, and a closed bus an error wrapping ErrClosed.
// Subscribe may be called from inside a handler; the subscription sees the
// events published after Subscribe returns.
//
//go:noinline
func (b *Bus) Subscribe(pattern string, h Handler) (*Subscription, error) {
	return b.subscribe(pattern, h, nil, nil, 1)
}

// SubscribeWith is Subscribe with options: an asynchronous queue and its
// overflow policy, a queue group, once-only delivery, tracking of running
// calls. A nil opts is Subscribe. Options out of range get an error
// wrapping ErrInvalidOption.
//
// An asynchronous subscription starts a goroutine that ends after
// Unsubscribe or Close; its queue is allocated up front, and delivering
// through it allocates nothing.
//
//go:noinline
func (b *Bus) SubscribeWith(pattern string, h Handler, opts *SubscribeOptions) (*Subscription, error) {
	return b.subscribe(pattern, h, nil, opts, 1)
}

// SubscribeChan is an asynchronous subscription that delivers to a channel
// instead of a handler, for those who prefer `for e := range ch`. The bus
// owns the channel: it closes it after Unsubscribe or Close, so the range
// loop ends. opts.Queue is the capacity of the queue in front of the
// channel (64 when zero); the other options apply as for SubscribeWith.
//
// The reader must keep reading, or the queue fills up and its overflow
// policy applies. On Unsubscribe the events not yet taken by the reader are
// discarded, counted as dropped and reported (ErrDropped), even after Once
// or Close ended the subscription, so that a reader that has stopped
// reading does not keep the goroutine waiting; on Close they are delivered
// until Close's deadline, and the ones left then are in Close's count. With
// Once, the one event reaches the channel before it closes.
//
// The reader itself must not call Close without a deadline while events
// are queued for it: Close waits for the channel's worker, which waits for
// the reader to take the next event (give Close a context that ends, or
// Unsubscribe first).
//
//go:noinline
func (b *Bus) SubscribeChan(pattern string, opts *SubscribeOptions) (*Subscription, <-chan Event, error) {
	var o SubscribeOptions
	if opts != nil {
		o = *opts
	}
	if o.Queue == 0 {
		o.Queue = 64
	}
	if len(o.Middleware) > 0 || o.Retry != nil {
		b.mustBeNew()
		return nil, nil, errorf(ErrInvalidOption, "subscribe %q: SubscribeChan has no handler for middleware or retries", pattern)
	}
	// The worker sends to out itself (Subscription.send); the handler
	// only stands for it where a handler is expected.
	s, err := b.newSubscription(pattern, func(context.Context, Event) {}, nil, &o)
	if err != nil {
		return nil, nil, err
	}
	s.fn = nil // the bus's middleware has no handler to wrap here
	out := make(chan Event)
	s.out, s.stop = out, make(chan struct{})
	s.pc[0] = callerPC(2)
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
// exits when it returns. A Block publisher waiting for room when Close
// starts gets an error wrapping ErrClosed, and its event counts as dropped
// (it was never queued, so it is not in Close's count); so does a Publish
// under way that Close keeps from reaching a subscription.
//
// Close stops retries (see RetryPolicy): an event waiting for its next
// attempt is abandoned at once, and a queued event that fails while Close
// drains is abandoned instead of retried, since its dead letter could not
// be published any more. Close's error counts the abandoned events and
// wraps ErrRetryAbandoned; Stats.Abandoned counts them too, including any
// abandoned by a handler still running when Close returns.
//
// Close may be called from a handler; called from an asynchronous one, it
// cannot wait for that handler's own goroutine, which exits after the
// handler returns. Calling Close again returns an error wrapping ErrClosed.
func (b *Bus) Close(ctx context.Context) error {
	b.mustBeNew()
	if !b.closed.CompareAndSwap(false, true) {
		return errClosed("close")
	}
	// The workers are listed before retries are stopped, so that one
	// that abandons an event and exits at once is still in Close's count;
	// addWorker starts no worker once closed is set.
	b.workersMu.Lock()
	workers := make([]*Subscription, 0, len(b.workers))
	for s := range b.workers {
		workers = append(workers, s)
	}
	b.workersMu.Unlock()
	b.endLife() // stops retries
	var all []*Subscription
	for i := range b.stripes {
		st := &b.stripes[i]
		st.mu.Lock()
		for _, set := range st.m {
			all = list(all, set.subs)
		}
		st.m, st.peak = make(map[string]*matchSet), 0 // clear would keep the table
		st.gen.Add(1)
		st.mu.Unlock()
	}
	b.tree.mu.Lock()
	b.tree.root.each(func(s *Subscription) { all = append(all, s) })
	b.tree.root = node{}
	b.tree.patterns, b.tree.peak = nil, 0
	b.tree.size = 0
	b.tree.count.Store(0)
	b.bumpAll()
	b.tree.mu.Unlock()
	for i := range b.cache {
		b.cache[i].Store(nil)
		b.byAddr[i].Store(nil)
	}
	for _, s := range all {
		if s.active.CompareAndSwap(true, false) {
			s.teardown(false) // drained until ctx ends
		}
	}
	if len(workers) == 0 {
		return nil
	}
	self := goid()
	var lost, abandoned uint64
	for _, s := range workers {
		if s.workerID.Load() == self {
			continue // Close runs in this worker's handler
		}
		select {
		case <-s.Done():
			abandoned += s.abandonedCount()
			continue
		case <-ctx.Done():
		}
		lost += s.q.discardAll(s)
		if s.retrying.Load() {
			// Between two attempts: the worker gives up at once
			// (endLife) and, its queue discarded, exits without calling
			// a handler again; waiting for it puts the abandoned event
			// in the count.
			<-s.Done()
		}
		abandoned += s.abandonedCount()
		if s.out != nil {
			// The worker of a SubscribeChan subscription only ever waits
			// for its reader: released, it exits at once, and the event
			// whose send it gave up is one more not delivered.
			before := s.q.abandonedCount()
			s.stopReader()
			<-s.Done()
			lost += s.q.abandonedCount() - before
		}
	}
	return closeError(ctx, lost, abandoned)
}

// Stats returns the counters of the bus. It sums striped counters and
// walks the asynchronous subscriptions; it is meant for monitoring, not
// for a hot path.
func (b *Bus) Stats() Stats {
	b.mustBeNew()
	st := Stats{Published: b.published.load(), Delivered: b.delivered.load(), Dropped: b.dropped.load(), Panics: b.panics.load()}
	b.failures.load(&st)
	st.LateReplies = b.req.late.Load()
	for i := range b.stripes {
		s := &b.stripes[i]
		s.mu.RLock()
		for _, set := range s.m {
			for i := range set.subs {
				if set.subs[i].Load() != nil {
					st.Subscriptions++
				}
			}
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

func errClosed(op string) error { return errorf(ErrClosed, "%s", op) }

// NumSub returns how many subscriptions a publish to topic would reach,
// like Redis's PUBSUB NUMSUB but counting pattern subscriptions too; a
// queue group counts as one. It returns a [*SyntaxError] for an invalid
// topic and an error wrapping ErrClosed once the bus is closed.
func (b *Bus) NumSub(topic string) (int, error) {
	if b.closed.Load() {
		return 0, errClosed(fmt.Sprintf("numsub %q", topic)) // not lookup's "publish"
	}
	subs, groups, err := b.lookup(topic)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range subs {
		if s := subs[i].Load(); s != nil && s.active.Load() {
			n++
		}
	}
	for _, g := range groups {
		if g.active() {
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
