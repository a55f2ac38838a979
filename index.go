package bus

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// How Publish finds its subscribers.
//
// Plain topics live in a map split into stripes, each with its own lock and
// generation number, so that subscriptions to different topics rarely
// touch the same lock. Patterns live in the wildcard tree (see tree), under
// one lock and one generation number (Bus.wildGen).
//
// In front of both sits the match cache: a fixed array of slots, each an
// atomic pointer to an immutable matchSet that lists the subscribers of one
// topic and the generations it was computed at. A publish hashes the
// topic, loads the slot and compares: on a hit it takes no lock and
// allocates nothing. A subscription change only bumps a generation, which
// turns the matchSets computed before it stale; publishers never sweep or
// scan the cache, and a slot is simply overwritten by the next miss that
// hashes to it, which also bounds its size.
//
// A design that kept one lock-protected map and walked the tree on every
// publish was rejected: two atomic read-modify-writes per RWMutex round
// trip and a map lookup cost more than the whole cached publish, and
// publishers to one topic would contend on the lock's reader count.

const (
	stripeBits = 6
	numStripes = 1 << stripeBits
)

// stripe is one part of the map of plain topics.
type stripe struct {
	mu sync.RWMutex // protects m
	// gen is bumped, with mu held, after every change to m.
	gen atomic.Uint64
	// m maps a topic to its subscriptions in subscription order. The
	// slices are copy-on-write: a slice read under mu stays valid after.
	m map[string][]*Subscription
	_ [64]byte // keeps neighbouring stripes' locks off one cache line
}

// matchSet is the immutable result of matching one topic.
type matchSet struct {
	topic   string
	litGen  uint64
	wildGen uint64
	subs    []*Subscription // in subscription order, each once
	fast    bool            // subs holds a plain synchronous subscription
}

// anyFast reports whether subs holds a plain synchronous subscription,
// whose handler PublishEvent calls in line.
func anyFast(subs []*Subscription) bool {
	for _, s := range subs {
		if s.fast {
			return true
		}
	}
	return false
}

func (b *Bus) stripeOf(h uint64) *stripe { return &b.stripes[h>>(64-stripeBits)] }

// valid reports whether m, possibly nil, is the match set of topic at the
// given generations.
func (m *matchSet) valid(topic string, litGen, wildGen uint64) bool {
	return m != nil && m.litGen == litGen && m.wildGen == wildGen && m.topic == topic
}

// lookup returns the subscriptions that match topic, in subscription order,
// each once. The slice must not be modified. It may hold subscriptions that
// have been unsubscribed since: callers check Subscription.active.
//
// PublishEvent has its own copy of the cache hit path; everything else is
// in lookupSlow.
func (b *Bus) lookup(topic string) ([]*Subscription, error) {
	h := hashString(b.seed, topic)
	st := b.stripeOf(h)
	// Load the generations before reading the index, so that a result
	// computed while a change is under way is stamped stale.
	litGen, wildGen := st.gen.Load(), b.wildGen.Load()
	if m := b.cache[h&b.cacheMask].Load(); m.valid(topic, litGen, wildGen) {
		return m.subs, nil
	}
	return b.lookupSlow(topic, h, st, litGen, wildGen)
}

// lookupSlow computes what lookup did not find in the cache and caches it.
func (b *Bus) lookupSlow(topic string, h uint64, st *stripe, litGen, wildGen uint64) ([]*Subscription, error) {
	if b.closed.Load() {
		return nil, errClosed("publish")
	}
	// Only topics that passed validation enter the cache, so a hit needs
	// no validation.
	if err := validate(topic, b.sep, false); err != nil {
		return nil, err
	}
	st.mu.RLock()
	subs := st.m[topic]
	st.mu.RUnlock()
	var buf [16]*Subscription
	b.tree.mu.RLock()
	wild := buf[:0]
	if b.tree.size > 0 {
		wild = b.tree.matchLocked(topic, b.sep, wild)
	}
	b.tree.mu.RUnlock()
	if len(wild) > 0 {
		// Merge: subscription order, and each subscription once even if
		// several paths of the tree matched it.
		merged := make([]*Subscription, 0, len(subs)+len(wild))
		merged = append(append(merged, subs...), wild...)
		slices.SortFunc(merged, func(x, y *Subscription) int { return cmp.Compare(x.id, y.id) })
		subs = slices.Clip(slices.Compact(merged))
	}
	subs = collapseGroups(subs)
	if b.cacheOn {
		m := &matchSet{topic: strings.Clone(topic), litGen: litGen, wildGen: wildGen, subs: subs, fast: anyFast(subs)}
		b.cache[h&b.cacheMask].Store(m)
	}
	return subs, nil
}

// add puts s into the index. It fails with ErrClosed once Close has begun.
func (b *Bus) add(s *Subscription) error {
	if s.pat.kind == kindLiteral {
		st := b.stripeOf(hashString(b.seed, s.pat.text))
		st.mu.Lock()
		defer st.mu.Unlock()
		if b.closed.Load() {
			return errClosed("subscribe")
		}
		old := st.m[s.pat.text]
		st.m[s.pat.text] = append(old[:len(old):len(old)], s) // copy on write
		st.gen.Add(1)
		return nil
	}
	b.tree.mu.Lock()
	defer b.tree.mu.Unlock()
	if b.closed.Load() {
		return errClosed("subscribe")
	}
	b.tree.insertLocked(s, s.pat.segs)
	b.wildGen.Add(1)
	return nil
}

// remove takes s out of the index, if it is still there.
func (b *Bus) remove(s *Subscription) {
	if s.pat.kind == kindLiteral {
		st := b.stripeOf(hashString(b.seed, s.pat.text))
		st.mu.Lock()
		defer st.mu.Unlock()
		old := st.m[s.pat.text]
		i := slices.Index(old, s)
		if i < 0 {
			return
		}
		if len(old) == 1 {
			delete(st.m, s.pat.text)
		} else {
			st.m[s.pat.text] = slices.Concat(old[:i], old[i+1:]) // copy on write
		}
		st.gen.Add(1)
		return
	}
	b.tree.mu.Lock()
	defer b.tree.mu.Unlock()
	if b.tree.removeLocked(s, s.pat.segs) {
		b.wildGen.Add(1)
	}
}
