package bus

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// How Publish finds its subscribers.
//
// Plain topics live in a map split into stripes, each with its own lock and
// generation number, so that subscriptions to different topics rarely
// touch the same lock. Patterns live in the wildcard tree (see tree), under
// one lock. A change to a stripe bumps that stripe's generation; a change to
// the tree bumps every stripe's generation (64 atomic additions on the
// subscriber's side), so that a publish has one generation to check, that
// of its topic's stripe.
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
	// Pads the stripe to 128 bytes: neighbouring stripes' locks stay off
	// one cache line, and finding a stripe is a shift, not a multiply.
	_ [128 - 24 - 8 - 8]byte
}

// matchSet is the immutable result of matching one topic.
type matchSet struct {
	topic string
	gen   uint64          // of the topic's stripe when it was computed
	subs  []*Subscription // in subscription order, each once; no group member
	// groups are the queue groups with members among the matches, in the
	// order of their first member; Publish delivers to them last.
	groups []*groupMatch
	path   deliveryPath
}

func (b *Bus) stripeOf(h uint64) *stripe { return &b.stripes[h>>(64-stripeBits)] }

// valid reports whether m, possibly nil, is the match set of topic at the
// given generation of its stripe.
func (m *matchSet) valid(topic string, gen uint64) bool {
	return m != nil && m.gen == gen && m.topic == topic
}

// lookup returns the subscriptions that match topic, in subscription order,
// each once, apart from the members of queue groups, which come as groups.
// The slices must not be modified. It may hold subscriptions that
// have been unsubscribed since: callers check Subscription.active.
//
// PublishEvent has its own copy of the cache hit path; everything else is
// in lookupSlow.
func (b *Bus) lookup(topic string) ([]*Subscription, []*groupMatch, error) {
	b.mustBeNew()
	h := hashString(b.seed, topic)
	st := b.stripeOf(h)
	// Load the generations before reading the index, so that a result
	// computed while a change is under way is stamped stale.
	gen := st.gen.Load()
	if m := b.cache[h&b.cacheMask].Load(); m.valid(topic, gen) {
		return m.subs, m.groups, nil
	}
	return b.lookupSlow(topic, h, st, gen)
}

// lookupSlow computes what lookup did not find in the cache and caches it.
func (b *Bus) lookupSlow(topic string, h uint64, st *stripe, gen uint64) ([]*Subscription, []*groupMatch, error) {
	// Only topics that passed validation enter the cache, so a hit needs
	// no validation.
	if err := validate(topic, b.sep, false); err != nil {
		return nil, nil, err
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
	// Checked after reading the index, not before: Close sets closed
	// before it empties the index, so an index found emptied by Close is
	// seen here. Checked first, a publish could find no subscriber left
	// and return nil for an event that reached no one.
	if b.closed.Load() {
		return nil, nil, errClosed("publish")
	}
	if len(wild) > 0 {
		// Merge: subscription order, and each subscription once even if
		// several paths of the tree matched it.
		merged := make([]*Subscription, 0, len(subs)+len(wild))
		merged = append(append(merged, subs...), wild...)
		slices.SortFunc(merged, func(x, y *Subscription) int { return cmp.Compare(x.id, y.id) })
		subs = slices.Clip(slices.Compact(merged))
	}
	subs, groups := splitGroups(subs)
	if b.cacheOn {
		m := &matchSet{topic: strings.Clone(topic), gen: gen, subs: subs, groups: groups, path: pathOf(subs, groups)}
		b.cache[h&b.cacheMask].Store(m)
	}
	return subs, groups, nil
}

// bumpAll turns every cached match set stale, after a change to the tree.
// It is called with b.tree.mu held, so that a publisher that sees a new
// generation also sees the new tree.
func (b *Bus) bumpAll() {
	for i := range b.stripes {
		b.stripes[i].gen.Add(1)
	}
}

// add puts s into the index. It fails with ErrClosed once Close has begun.
func (b *Bus) add(s *Subscription) error {
	if s.pat.kind == kindLiteral {
		st := b.stripeOf(hashString(b.seed, s.pat.text))
		st.mu.Lock()
		defer st.mu.Unlock()
		if b.closed.Load() {
			return errClosed(fmt.Sprintf("subscribe %q", s.pat.text))
		}
		old := st.m[s.pat.text]
		st.m[s.pat.text] = append(old[:len(old):len(old)], s) // copy on write
		st.gen.Add(1)
		return nil
	}
	b.tree.mu.Lock()
	defer b.tree.mu.Unlock()
	if b.closed.Load() {
		return errClosed(fmt.Sprintf("subscribe %q", s.pat.text))
	}
	b.tree.insertLocked(s, s.pat.segs)
	b.bumpAll()
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
		b.bumpAll()
	}
}

// The padding of stripe assumes these sizes.
var _ = [1]struct{}{}[unsafe.Sizeof(stripe{})-128]
