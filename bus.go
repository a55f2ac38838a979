package bus

import (
	"context"
	"fmt"
	"log"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync/atomic"
)

// Options configures a Bus. The zero value (and a nil *Options) means the
// defaults documented on each field.
type Options struct {
	// Separator separates the segments of topics and patterns. Zero means
	// DefaultSeparator ('.'). It must be an ASCII punctuation character
	// other than the glob metacharacters * ? [ ] { } \ and , ! -; New
	// panics otherwise.
	Separator rune

	// OnError receives what goes wrong during delivery, when no caller is
	// there to get an error: recovered handler panics and payload type
	// mismatches as *DeliveryError. It is called on the goroutine where the
	// problem happened, possibly concurrently, and must not block for
	// long. Nil means the errors are written with the log package, so that
	// nothing is lost silently.
	OnError func(err error)

	// MatchCacheSize is the number of slots of the match cache, which maps
	// recently published topics to their subscribers so that a steady
	// stream of publishes costs one hash and no lock. Zero means 4096; the
	// size is rounded up to a power of two. A negative size disables the
	// cache: every publish then walks the index under read locks, and
	// publishes that match wildcard subscriptions allocate.
	MatchCacheSize int
}

const defaultMatchCacheSize = 4096

// Bus is an in-process publish/subscribe event bus. Publishers send events
// to topics; subscribers receive the events of the topics that match their
// pattern. Create one with New; the zero Bus is not usable.
//
// All methods are safe for concurrent use, also from inside handlers.
type Bus struct {
	// Fields read by every Publish come first, apart from the ones that
	// subscribing writes, so that they share no cache line.
	closed    atomic.Bool
	sep       byte
	seed      uint64 // of hashString
	cache     []atomic.Pointer[matchSet] // one slot that stays empty when disabled
	cacheMask uint64
	cacheOn   bool // the cache is enabled
	onError   func(error)
	wildGen   atomic.Uint64 // bumped after every change to tree
	_         [64]byte

	nextID  atomic.Uint64 // subscription IDs: delivery follows their order
	stripes [numStripes]stripe
	tree    tree
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
	b := &Bus{sep: byte(o.Separator), seed: rand.Uint64(), onError: o.OnError}
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
func (b *Bus) Separator() rune { return rune(b.sep) }

// Publish sends payload to every subscription whose pattern matches topic
// and returns once every matching synchronous handler has returned.
//
// Handlers run on the calling goroutine, one after the other in the order
// their subscriptions were made, each once however many ways its pattern
// matches. A panicking handler is recovered and reported to Options.OnError;
// the other handlers still run and Publish does not panic. Handlers may call
// Publish, Subscribe and Unsubscribe.
//
// Publish returns a [*SyntaxError] wrapping ErrInvalidTopic for an invalid
// topic, and an error wrapping ErrClosed once the bus is closed; it
// delivers nothing then. A topic with no subscribers is not an error.
// Publish passes ctx to the handlers and does not itself look at it.
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
	litGen, wildGen := st.gen.Load(), b.wildGen.Load()
	var subs []*Subscription
	if m := b.cache[h&b.cacheMask].Load(); m.valid(e.Topic, litGen, wildGen) {
		subs = m.subs
	} else {
		var err error
		if subs, err = b.lookupSlow(e.Topic, h, st, litGen, wildGen); err != nil {
			return err
		}
	}
	i := 0
	defer b.recoverPublish(ctx, &e, subs, &i)
	for ; i < len(subs); i++ {
		if s := subs[i]; s.active.Load() {
			s.handler(ctx, e)
		}
	}
	return nil
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
	return b.subscribe(pattern, h)
}

// Close unsubscribes every subscription and makes later calls to Publish
// and Subscribe fail with ErrClosed. Publishes already running may still
// call handlers that they had reached before Close.
//
// Close may be called from a handler. Calling it again returns an error
// wrapping ErrClosed.
func (b *Bus) Close(ctx context.Context) error {
	if !b.closed.CompareAndSwap(false, true) {
		return errClosed("close")
	}
	for i := range b.stripes {
		st := &b.stripes[i]
		st.mu.Lock()
		for _, subs := range st.m {
			for _, s := range subs {
				s.active.Store(false)
			}
		}
		clear(st.m)
		st.gen.Add(1)
		st.mu.Unlock()
	}
	b.tree.mu.Lock()
	b.tree.root.each(func(s *Subscription) { s.active.Store(false) })
	b.tree.root = node{}
	clear(b.tree.patterns)
	b.tree.size = 0
	b.wildGen.Add(1)
	b.tree.mu.Unlock()
	for i := range b.cache {
		b.cache[i].Store(nil)
	}
	return nil
}

func errClosed(op string) error { return fmt.Errorf("bus: %s: %w", op, ErrClosed) }

// NumSub returns how many subscriptions a publish to topic would reach,
// like Redis's PUBSUB NUMSUB but counting pattern subscriptions too. It
// returns a [*SyntaxError] for an invalid topic.
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
	b.tree.mu.RLock()
	defer b.tree.mu.RUnlock()
	return len(b.tree.patterns)
}

// Patterns returns the distinct patterns, other than plain topics, that
// subscriptions use, sorted. It allocates the returned slice.
func (b *Bus) Patterns() []string {
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
