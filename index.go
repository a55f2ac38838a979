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
// one lock. A change to a stripe's map (a new set for a topic, see below
// for the changes made in place) bumps that stripe's generation; a change to
// the tree bumps every stripe's generation (64 atomic additions on the
// subscriber's side), so that a publish has one generation to check, that
// of its topic's stripe.
//
// In front of both sits the match cache: a fixed array of slots, each an
// atomic pointer to an immutable matchSet that lists the subscribers of one
// topic and the generations it was computed at. A publish hashes the
// topic, loads the slot and compares: on a hit it takes no lock and
// allocates nothing. A subscription change bumps a generation, which
// turns the matchSets computed before it stale; a change to the plain
// subscriptions of a cached topic also puts the topic's new set in the
// cache, stamped one generation ahead, just before the bump (putLocked),
// so that its publishers go on hitting. Publishers never sweep or scan the
// cache, and a slot is simply overwritten by the next miss that hashes to
// it, which also bounds its size.
//
// A set is immutable but for its slots, which hold its subscriptions
// atomically, and the count of those in use. When a topic's set is current
// and is its whole match set (no pattern or queue group adds to it), an
// Unsubscribe clears the subscription's slot in place, and a Subscribe
// fills the next slot never used, if the set has one (a set made by a
// change has spare slots), then counts it in use (see addInPlaceLocked and
// removeInPlaceLocked): no new set, no generation bump, no cache or address
// slot to rewrite. A subscription churning on a busy topic otherwise made
// the subscriber write, on every change, five cache lines that every
// publish reads (the set's three, its cache slot and its stripe's
// generation) and the publisher's core fetch them back. A publish reads
// the slots in use when it starts, so that, as with a new set, it never
// delivers to a subscription made while it runs; slots are filled in
// order and never filled again, so that the set stays in subscription
// order; and a set is copied afresh once its cleared slots would outnumber
// its subscriptions or its slots are all used, so that it stays small.
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
	// gen is bumped, with mu and the tree's read lock held, after every
	// change to m (see putLocked), and by bumpAll and Close. Every publish reads it:
	// it has a cache line of its own, apart from the lock that subscribing
	// writes.
	gen atomic.Uint64
	_   [56]byte
	mu  sync.RWMutex // protects m and peak
	// m maps a topic to the set of its plain subscriptions, in
	// subscription order. The sets are copy-on-write but for the slots of
	// one stamped current (see inPlace), which are written in place, so a
	// set read under mu is read by loading its slots. A set whose gen is not 0 and is current (see
	// current) is the topic's whole match set (the tree adds nothing,
	// there are no queue groups), which the cache holds as it is (see
	// putLocked); one refreshLocked did not stamp has gen 0.
	m    map[string]*matchSet
	peak int // the most topics m has held since it was made (see shrink)
	// Pads the stripe to 128 bytes, so that finding a stripe is a shift,
	// not a multiply.
	_ [128 - 64 - unsafe.Sizeof(sync.RWMutex{}) - unsafe.Sizeof(map[string]*matchSet(nil)) - unsafe.Sizeof(0)]byte
}

// matchSet is the immutable result of matching one topic.
type matchSet struct {
	topic string
	gen   uint64 // of the topic's stripe when it was computed
	// subs are the slots of the subscriptions, in subscription order,
	// each once; no group member. Publishes read the first used of them
	// (filled), loading used once, first: a Subscribe that fills the
	// slot at used in place (addInPlaceLocked) then raises used, so a
	// publish under way never sees it, as with a new set. A slot is
	// written once, then only cleared, by an Unsubscribe in place; it is
	// never filled again. Only the set in the stripe's map, while
	// current, has its slots written.
	subs []atomic.Pointer[Subscription]
	used atomic.Int32
	// groups are the queue groups with members among the matches, in the
	// order of their first member; Publish delivers to them last.
	groups []*groupMatch
	path   deliveryPath
	stripe uint8 // the index of the topic's stripe, for sweepLocked
}

// setWith is a matchSet followed by the room for its subscriptions.
type setWith[A any] struct {
	matchSet
	room A
}

// slots is the type of matchSet.subs.
type slots = []atomic.Pointer[Subscription]

// newSet returns a match set of at least n empty slots, none used. Up to 16 the slots are in
// the same allocation as the set: a Subscribe or Unsubscribe on a topic
// already published then allocates one object for the topic's new
// copy-on-write list and its cached set, rather than a slice and a set.
// The sizes are those of the allocator's size classes (96 to 208 bytes).
func newSet(n int) *matchSet {
	switch {
	case n <= 2:
		return setOf(n, func(s *setWith[[2]atomic.Pointer[Subscription]]) slots { return s.room[:] })
	case n <= 4:
		return setOf(n, func(s *setWith[[4]atomic.Pointer[Subscription]]) slots { return s.room[:] })
	case n <= 8:
		return setOf(n, func(s *setWith[[8]atomic.Pointer[Subscription]]) slots { return s.room[:] })
	case n <= 12:
		return setOf(n, func(s *setWith[[12]atomic.Pointer[Subscription]]) slots { return s.room[:] })
	case n <= 16:
		return setOf(n, func(s *setWith[[16]atomic.Pointer[Subscription]]) slots { return s.room[:] })
	}
	return &matchSet{subs: make(slots, n)}
}

// spareSlots is how many slots beyond its n subscriptions a topic's set
// gets (setOfList), for Subscribes in place: a slot is filled once, so a
// subscription churning on the topic uses one per Subscribe, and the set
// is copied once they are all used. As many as it has, like a slice that
// doubles: with half as many, a churn on a topic of ten (root
// BenchmarkChurn/publishing) cost 1,000 ns per cycle instead of 850.
func spareSlots(n int) int { return max(4, n) }

// setOf allocates a setWith and points its subs, n empty slots, at its
// room.
func setOf[A any](n int, room func(*setWith[A]) slots) *matchSet {
	s := new(setWith[A])
	s.subs = room(s)
	return &s.matchSet
}

// setOfList returns a new match set holding list, with spare slots
// after it.
func setOfList(list []*Subscription, spare int) *matchSet {
	set := newSet(len(list) + spare)
	for i, s := range list {
		set.subs[i].Store(s)
	}
	set.used.Store(int32(len(list)))
	return set
}

// filled returns the slots of m that a publish reads: those used when it
// loads used (see matchSet.subs).
func (m *matchSet) filled() slots { return m.subs[:m.used.Load()] }

// list appends the subscriptions of subs, skipping empty slots, to buf.
func list(buf []*Subscription, subs slots) []*Subscription {
	for i := range subs {
		if s := subs[i].Load(); s != nil {
			buf = append(buf, s)
		}
	}
	return buf
}

func (b *Bus) stripeOf(h uint64) *stripe { return &b.stripes[h>>(64-stripeBits)] }

// valid reports whether m, possibly nil, is the match set of topic at the
// given generation of its stripe.
//
// A set's topic is, when the topic has plain subscriptions, the text of
// one of their patterns (see setTopic): a topic that is a constant in the
// program is then the very same string as the publisher's, and comparing
// the pointers first saves the call that compares the bytes.
func (m *matchSet) valid(topic string, gen uint64) bool {
	return m != nil && current(m.gen, gen) && len(m.topic) == len(topic) &&
		(unsafe.StringData(m.topic) == unsafe.StringData(topic) || m.topic == topic)
}

// current reports whether a match set stamped with generation set is
// current when its stripe is at generation stripe: when they are equal,
// or when set is one ahead. A set one ahead is the one a subscriber
// changing the topic has computed and cached, with the stripe's and the
// tree's locks held, just before moving the stripe to its generation
// (putLocked): it is the topic's set from then on, and a publish that
// starts meanwhile runs concurrently with the Subscribe or Unsubscribe,
// so it may see either set. No one else stamps a set ahead of its
// stripe. In unsigned arithmetic an older set is a huge distance ahead.
func current(set, stripe uint64) bool { return set-stripe <= 1 }

// setTopic returns the string a match set of topic keeps: the pattern of
// one of its plain subscriptions, which Subscribe copied already, or else
// a copy, so that the cache does not keep alive a larger string that the
// publisher's topic was cut from. (The pattern stays the set's topic when
// that subscription's slot is cleared in place: the set keeps the string
// alive, not the subscription.)
func setTopic(topic string, plain []*Subscription) string {
	if len(plain) > 0 {
		return plain[0].pat.text
	}
	return strings.Clone(topic)
}

// lookup returns the subscriptions that match topic, in subscription order,
// each once, apart from the members of queue groups, which come as groups.
// The slices must not be modified. They may hold subscriptions that
// have been unsubscribed since, and empty slots: callers skip nil and check
// Subscription.active.
//
// PublishEvent has its own copy of the cache hit path; everything else is
// in lookupSlow.
func (b *Bus) lookup(topic string) (slots, []*groupMatch, error) {
	b.mustBeNew()
	h := hashString(b.seed, topic)
	st := b.stripeOf(h)
	// Load the generations before reading the index, so that a result
	// computed while a change is under way is stamped stale.
	gen := st.gen.Load()
	if m := b.cache[h&b.cacheMask].Load(); m.valid(topic, gen) {
		return m.filled(), m.groups, nil
	}
	return b.lookupSlow(topic, h, st, gen)
}

// cached is PublishEvent's look in the cache once its topic's address
// has missed in byAddr, whose slot for it is as: it returns the topic's
// valid match set, or nil. A set found by hashing the bytes is put in
// byAddr when its topic is the publisher's very string.
func (b *Bus) cached(topic string, as uint64) *matchSet {
	h := hashString(b.seed, topic)
	m := b.cache[h&b.cacheMask].Load()
	if !m.valid(topic, b.stripeOf(h).gen.Load()) {
		return nil
	}
	if unsafe.StringData(m.topic) == unsafe.StringData(topic) {
		b.byAddr[as].Store(m)
	}
	return m
}

// addrSlot is the slot of byAddr for a topic at address p of length n.
//
// Hashing a topic's bytes was a fifth of a cached publish. Topics are
// mostly constants of the program, which the linker stores once, and a
// match set keeps, as its topic, the pattern string of a subscription
// (setTopic): a publish of a constant topic then passes the very string
// the set holds, and equal addresses and lengths mean equal strings, Go
// strings being immutable. So publishers look there first, by address,
// and hash the bytes only when it misses; a topic built anew for every
// publish always misses there, which costs it a multiplication and a
// load. The slots hold sets of the main cache only: they are cleared with
// them (refreshLocked, sweepLocked, Close), and a set found there is
// checked against its generation like any other.
func (b *Bus) addrSlot(p *byte, n int) uint64 {
	return (uint64(uintptr(unsafe.Pointer(p))) ^ uint64(n)) * 0x9e3779b97f4a7c15 >> 32 & b.cacheMask
}

// forgetAddr clears the byAddr slot of m, if it holds m.
func (b *Bus) forgetAddr(m *matchSet) {
	b.byAddr[b.addrSlot(unsafe.StringData(m.topic), len(m.topic))].CompareAndSwap(m, nil)
}

// lookupSlow computes what lookup did not find in the cache and caches it.
func (b *Bus) lookupSlow(topic string, h uint64, st *stripe, gen uint64) (slots, []*groupMatch, error) {
	// Only topics that passed validation enter the cache, so a hit needs
	// no validation.
	if err := validate(topic, b.sep, false); err != nil {
		return nil, nil, err
	}
	st.mu.RLock()
	set := st.m[topic]
	st.mu.RUnlock()
	// A set stamped current is the topic's whole match set, made by
	// putLocked at this generation: the tree added nothing to it then,
	// so it needs no walk, and it is cached as it is, with no
	// allocation. (A publisher that missed because a subscriber was
	// changing the topic finds it here, or in the cache, once the
	// subscriber's lock is free.) A set refreshLocked did not stamp,
	// because a queue group or the tree adds to it, has gen 0, which is
	// also every stripe's first generation: a publisher that loaded that
	// one before the set was made would take a group's members for plain
	// subscriptions and deliver to each (TestStaleGenerationSet).
	//
	// A set stamped current for gen may be written in place: it is
	// cached itself, never copied. One that is not may still be written
	// in place, if it is stamped current for the stripe's generation now,
	// which is later than gen: the copy made here is then stamped stale
	// (gen), so that only this publish uses it, and it reads the slots in
	// use (filled), as any publish does, so that it never meets a
	// subscription made after it started (TestLookupSlowReadsOnlyUsedSlots).
	stamped := set != nil && set.gen != 0 && current(set.gen, gen)
	var plain []*Subscription
	if set != nil && !stamped {
		var buf [16]*Subscription
		plain = list(buf[:0], set.filled())
	}
	subs := plain
	if !stamped && b.tree.count.Load() > 0 {
		// Merged on the stack when it fits: the set below copies it.
		var merged [16]*Subscription
		b.tree.mu.RLock()
		subs = b.withTreeLocked(topic, plain, merged[:0])
		b.tree.mu.RUnlock()
	}
	// Checked after reading the index, not before: Close sets closed
	// before it empties the index, so an index found emptied by Close is
	// seen here. Checked first, a publish could find no subscriber left
	// and return nil for an event that reached no one.
	if b.closed.Load() {
		return nil, nil, errClosed("publish")
	}
	if stamped {
		b.cacheSet(h, set)
		return set.filled(), nil, nil
	}
	subs, groups := splitGroups(subs)
	m := setOfList(subs, 0)
	m.groups, m.path = groups, pathOf(m.subs, groups)
	if b.cacheOn { // else the set is this publish's only: no topic to copy
		m.topic, m.gen, m.stripe = setTopic(topic, plain), gen, b.stripeIndex(h)
		b.cacheSet(h, m)
	}
	return m.filled(), groups, nil
}

// cacheSet puts m in the cache slot of hash h.
func (b *Bus) cacheSet(h uint64, m *matchSet) {
	if !b.cacheOn {
		return
	}
	if old := b.cache[h&b.cacheMask].Swap(m); old != nil && old != m {
		b.forgetAddr(old)
	}
}

func (b *Bus) stripeIndex(h uint64) uint8 { return uint8(h >> (64 - stripeBits)) }

// withTreeLocked returns the plain subscriptions of topic merged with the
// tree's that match it: in subscription order, each once even if several
// paths of the tree matched it. It returns plain itself when the tree adds
// nothing, and otherwise merges them in dst's memory if it has room (a
// caller that copies the result can pass a buffer on its stack), else in
// a new slice. b.tree.mu must be held for reading.
func (b *Bus) withTreeLocked(topic string, plain, dst []*Subscription) []*Subscription {
	if b.tree.size == 0 {
		return plain
	}
	var buf [16]*Subscription
	wild := b.tree.matchLocked(topic, b.sep, buf[:0])
	if len(wild) == 0 {
		return plain
	}
	merged := dst[:0]
	if cap(merged) < len(plain)+len(wild) {
		merged = make([]*Subscription, 0, len(plain)+len(wild))
	}
	merged = append(append(merged, plain...), wild...)
	slices.SortFunc(merged, func(x, y *Subscription) int { return cmp.Compare(x.id, y.id) })
	return slices.Clip(slices.Compact(merged))
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
		h := hashString(b.seed, s.pat.text)
		st := b.stripeOf(h)
		st.mu.Lock()
		defer st.mu.Unlock()
		if b.closed.Load() {
			return errClosed(fmt.Sprintf("subscribe %q", s.pat.text))
		}
		old := st.m[s.pat.text]
		var buf [16]*Subscription
		live := buf[:0]
		if old != nil {
			live = list(live, old.subs)
		}
		live = append(live, s)
		if b.addInPlaceLocked(st, old, s, live) {
			return nil
		}
		b.putLocked(st, s.pat.text, h, setOfList(live, spareSlots(len(live)))) // copy on write
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
		h := hashString(b.seed, s.pat.text)
		st := b.stripeOf(h)
		st.mu.Lock()
		defer st.mu.Unlock()
		old := st.m[s.pat.text]
		if old == nil {
			return
		}
		var buf [16]*Subscription
		live := list(buf[:0], old.subs)
		i := slices.Index(live, s)
		if i < 0 {
			return
		}
		live = slices.Delete(live, i, i+1)
		if b.removeInPlaceLocked(st, old, s, live, h) {
			return
		}
		var set *matchSet
		if len(live) > 0 {
			set = setOfList(live, spareSlots(len(live))) // copy on write
		}
		b.putLocked(st, s.pat.text, h, set)
		return
	}
	b.tree.mu.Lock()
	defer b.tree.mu.Unlock()
	if b.tree.removeLocked(s, s.pat.segs) {
		b.bumpAll()
		b.sweepLocked()
	}
}

// inPlace reports whether set, the set of a topic in st's map, may have
// its slots written: it is stamped with the stripe's generation now, so it
// is the topic's whole match set (the tree adds nothing to it and it has
// no queue group). No copy of its slots is ever taken for current: a
// publisher copies a set only when it is not current for the generation
// the publisher loaded (lookupSlow), which is then stale, and stamps the
// copy with that generation; refreshLocked copies only sets it leaves
// unstamped (gen 0); and the stripe's generation never goes back. st.mu
// must be held for writing.
func inPlace(st *stripe, set *matchSet) bool {
	return set != nil && set.gen != 0 && set.gen == st.gen.Load()
}

// addInPlaceLocked puts s into set, the set of its topic in st's map, in
// place if it can: set may be written (inPlace), s is no group member,
// the slot at used is free (so that s comes after every subscription of
// set, as in a copy) and the set's delivery path stays what it is (live,
// set's subscriptions and then s, would take the same). It stores s, then
// raises used: a publish that starts after that loads the new used and
// sees s; one under way loaded used before and does not, as it would not
// see a new set (a handler that subscribes does not get the event being
// delivered: TestHandlerSubscribeMissesEventUnderWay). st.mu must be
// held for writing.
func (b *Bus) addInPlaceLocked(st *stripe, set *matchSet, s *Subscription, live []*Subscription) bool {
	if !inPlace(st, set) || s.opts.Group != "" || pathOfList(live, nil) != set.path {
		return false
	}
	j := int(set.used.Load())
	if j == len(set.subs) {
		return false
	}
	set.subs[j].Store(s)
	set.used.Store(int32(j + 1))
	return true
}

// removeInPlaceLocked takes s out of set, the set of its topic in st's
// map, in place if it can: set may be written (inPlace), some subscription
// stays (live, those left once s is out), the cleared slots do not then
// outnumber the subscriptions, the delivery path stays what it is, s is
// not in the first slot, and the cache holds no other set of the topic.
// s is inactive already, so a publish that still finds it skips it; the
// cleared slot lets it be collected.
//
// The first slot stays: the lone subscriber's path of PublishEvent finds
// the subscription it called there if its handler panics. A set of the
// topic other than set in the cache is a copy a late publisher made
// (lookupSlow), still holding s: copy on write replaces it
// (refreshLocked), so that it does not keep s alive
// (TestStaleCacheCopyReleasesUnsubscribed). st.mu must be held for
// writing.
func (b *Bus) removeInPlaceLocked(st *stripe, set *matchSet, s *Subscription, live []*Subscription, h uint64) bool {
	used := int(set.used.Load())
	if !inPlace(st, set) || len(live) == 0 || used-len(live) > len(live) ||
		pathOfList(live, nil) != set.path {
		return false
	}
	if m := b.cache[h&b.cacheMask].Load(); m != nil && m != set && m.topic == set.topic {
		return false
	}
	for i := 1; i < used; i++ {
		if set.subs[i].Load() == s {
			set.subs[i].Store(nil)
			return true
		}
	}
	return false
}

// putLocked makes set, nil for none, the plain subscriptions of topic,
// whose hash is h, bumps the stripe's generation and brings the cache up
// to date. set is new: no publisher has seen it yet. st.mu must be held
// for writing.
func (b *Bus) putLocked(st *stripe, topic string, h uint64, set *matchSet) {
	if set == nil {
		delete(st.m, topic)
		st.m = shrink(st.m, &st.peak)
	} else {
		set.topic = set.subs[0].Load().pat.text // as setTopic: a new set has no empty slot
		set.path = pathOf(set.subs, nil)
		set.stripe = b.stripeIndex(h)
		st.m[topic] = set
		st.peak = max(st.peak, len(st.m))
	}
	// The new set goes into the cache stamped with the next generation
	// before the stripe moves to it, and publishers take a set one
	// generation ahead as current (see current): they never see the
	// stripe's generation ahead of the cached set, so they never miss and
	// wait for this lock. Bumping first made every publisher that came in
	// between miss, block on st.mu and be woken by Unlock: two thirds of
	// a Subscribe on a busy topic. The tree's read lock keeps bumpAll out
	// from the load to the store, which would otherwise lose its bump.
	b.tree.mu.RLock()
	gen := st.gen.Load() + 1
	b.refreshLocked(topic, h, set, gen)
	st.gen.Store(gen)
	b.tree.mu.RUnlock()
}

// refreshLocked brings the cached match set of topic up to date after a
// change to its plain subscriptions, now set (nil for none), stamping the
// new one with gen, if the topic is in the cache: its publishers then go
// on hitting the cache instead of each computing the set again (which a
// subscription churning on a busy topic would make them do after every
// change), and an unsubscribed subscription is not kept alive by a cache
// slot. A topic not in the cache is left out of it, so that subscribing
// to many topics does not evict the ones being published.
//
// When the tree adds nothing to the topic and it has no queue group, set
// is the whole match set: stamped with gen, it is what the cache holds
// (and what lookupSlow caches later), so that the change allocates one
// object, set, rather than a set besides. The stripe's lock must be held
// for writing and the tree's for reading (the only lock order that nests
// the two).
func (b *Bus) refreshLocked(topic string, h uint64, set *matchSet, gen uint64) {
	slot := &b.cache[h&b.cacheMask]
	m := slot.Load()
	cached := m != nil && m.topic == topic
	if !cached && b.tree.size > 0 {
		return // not worth a walk of the tree
	}
	var plain []*Subscription
	if set != nil {
		var buf [16]*Subscription
		plain = list(buf[:0], set.subs)
	}
	var fresh *matchSet
	if subs := b.withTreeLocked(topic, plain, nil); len(subs) > 0 {
		switch {
		case len(subs) == len(plain) && !hasGroup(subs):
			// The tree added nothing (withTreeLocked returned plain
			// itself), and no subscription is a group member.
			set.gen = gen
			fresh = set
		case cached:
			text := m.topic
			if len(plain) > 0 {
				text = plain[0].pat.text // as setTopic
			}
			subs, groups := splitGroups(subs)
			fresh = setOfList(subs, 0)
			fresh.topic, fresh.gen, fresh.groups, fresh.path, fresh.stripe = text, gen, groups, pathOf(fresh.subs, groups), b.stripeIndex(h)
		}
	}
	// A publisher may have stored a set computed before this change in
	// the meantime; one computed after it has gen.
	for cached && m != nil && m.topic == topic && m.gen < gen {
		if slot.CompareAndSwap(m, fresh) {
			b.forgetAddr(m)
			return
		}
		m = slot.Load()
	}
}

// sweepSlots is how many slots of the match cache a change to the tree
// sweeps.
const sweepSlots = 32

// sweepLocked clears the stale match sets from the next sweepSlots slots
// of the cache, going round. A change to the tree makes every cached set
// stale, and a set of a removed pattern subscription would keep it alive
// until a publish overwrote its slot: sweeping a few slots per removal
// clears the whole cache once every len(cache)/sweepSlots removals,
// without making any one of them pay for the whole cache. b.tree.mu must
// be held for writing.
func (b *Bus) sweepLocked() {
	if !b.cacheOn {
		return
	}
	for range min(len(b.cache), sweepSlots) {
		slot := &b.cache[b.tree.sweep&b.cacheMask]
		b.tree.sweep++
		if m := slot.Load(); m != nil && m.gen != b.stripes[m.stripe].gen.Load() && slot.CompareAndSwap(m, nil) {
			b.forgetAddr(m)
		}
	}
}

// shrinkMin is the size under which a map is not worth rebuilding.
const shrinkMin = 64

// shrink returns m, or a copy of it sized for what it holds now once it
// has lost three quarters of the most entries it has held (*peak, which
// the caller raises on every insert): a Go map never gives back the table
// it grew to, however many entries are deleted, so a map that once held
// 200,000 topics would keep megabytes for good. The copy costs at most a
// third of the deletes since the last one, so that its cost is amortised
// over them; it happens on unsubscribing, never on a publish.
func shrink[K comparable, V any](m map[K]V, peak *int) map[K]V {
	if *peak < shrinkMin || len(m) > *peak/4 {
		return m
	}
	c := make(map[K]V, len(m))
	for k, v := range m {
		c[k] = v
	}
	*peak = len(c)
	return c
}

// The padding of stripe assumes these sizes.
var _ = [1]struct{}{}[unsafe.Sizeof(stripe{})-128]

// matchSet.stripe holds a stripe's index.
var _ = [1]struct{}{}[stripeBits/9]
