package bus

import (
	"slices"
	"sync"
	"sync/atomic"
)

// The wildcard tree holds the subscriptions whose pattern is not a plain
// topic (see index.go for how it sits beside the map of plain topics).

// node is a node of the wildcard tree. Its edges are the literal segments,
// a whole-segment `*` and a whole-segment `**`. The tree is guarded by
// tree.mu; nodes are never read without it.
type node struct {
	children map[string]*node // literal segment edges
	peak     int              // the most children it has had (see shrink)
	star     *node            // `*`: exactly one segment
	globstar *node            // `**`: see tree.match
	// isGlobstar marks the node reached through a `**` edge: it absorbs any
	// number of segments, and the patterns that end on it (a trailing `**`)
	// need at least one segment.
	isGlobstar bool
	// subs are the tree patterns that end at this node.
	subs []*Subscription
	// globs are the patterns with metacharacters inside a segment whose
	// literal prefix leads to this node. Such nodes lie on paths of literal
	// edges only, so a walk reaches each of them at most once.
	globs []*Subscription
}

func (n *node) empty() bool {
	return len(n.children) == 0 && n.star == nil && n.globstar == nil && len(n.subs) == 0 && len(n.globs) == 0
}

// tree holds the subscriptions whose pattern is not a plain topic.
type tree struct {
	mu       sync.RWMutex   // protects root, patterns, peak, size and sweep
	root     node           // never removed
	patterns map[string]int // pattern text -> subscriptions using it
	peak     int            // the most patterns it has held (see shrink)
	size     int            // subscriptions in the tree
	sweep    uint64         // the next cache slot to sweep (Bus.sweepLocked)
	// count is size for readers without the lock, which skip the lock
	// when it is zero. It is written before the generations are bumped,
	// so a reader that loaded a generation and then finds count zero may
	// leave the tree out of a set stamped with that generation.
	count atomic.Int64
}

// insertLocked hangs s on the tree. For a tree pattern segs are all of its
// segments; for a glob, its literal prefix. t.mu must be held for writing.
func (t *tree) insertLocked(s *Subscription, segs []string) {
	n := &t.root
	for _, seg := range segs {
		n = n.child(seg, true)
	}
	if s.pat.kind == kindGlob {
		n.globs = append(n.globs, s)
	} else {
		n.subs = append(n.subs, s)
	}
	if t.patterns == nil {
		t.patterns = make(map[string]int)
	}
	t.patterns[s.pat.text]++
	t.peak = max(t.peak, len(t.patterns))
	t.size++
	t.count.Store(int64(t.size))
}

// child returns the node behind the edge seg, creating it when create is
// set, or nil.
func (n *node) child(seg string, create bool) *node {
	switch seg {
	case "*":
		if n.star == nil && create {
			n.star = &node{}
		}
		return n.star
	case "**":
		if n.globstar == nil && create {
			n.globstar = &node{isGlobstar: true}
		}
		return n.globstar
	}
	c := n.children[seg]
	if c == nil && create {
		if n.children == nil {
			n.children = make(map[string]*node)
		}
		c = &node{}
		n.children[seg] = c
		n.peak = max(n.peak, len(n.children))
	}
	return c
}

// removeLocked takes s off the tree and prunes the nodes left empty. It
// reports whether s was found. t.mu must be held for writing.
func (t *tree) removeLocked(s *Subscription, segs []string) bool {
	if !t.root.remove(s, segs) {
		return false
	}
	if t.patterns[s.pat.text]--; t.patterns[s.pat.text] == 0 {
		delete(t.patterns, s.pat.text)
		t.patterns = shrink(t.patterns, &t.peak)
	}
	t.size--
	t.count.Store(int64(t.size))
	return true
}

func (n *node) remove(s *Subscription, segs []string) bool {
	if len(segs) == 0 {
		list := &n.subs
		if s.pat.kind == kindGlob {
			list = &n.globs
		}
		i := slices.Index(*list, s)
		if i < 0 {
			return false
		}
		*list = slices.Delete(*list, i, i+1)
		if cap(*list) >= shrinkMin && len(*list) <= cap(*list)/4 {
			*list = slices.Clone(*list) // give back what appending grew
		}
		return true
	}
	c := n.child(segs[0], false)
	if c == nil || !c.remove(s, segs[1:]) {
		return false
	}
	if c.empty() {
		switch segs[0] {
		case "*":
			n.star = nil
		case "**":
			n.globstar = nil
		default:
			delete(n.children, segs[0])
			n.children = shrink(n.children, &n.peak)
		}
	}
	return true
}

// matchLocked appends to out every subscription of the tree whose pattern
// matches topic, possibly more than once. t.mu must be held for reading.
//
// It runs the tree as a nondeterministic automaton over the segments of the
// topic, keeping the set of nodes reachable after each segment, so that its
// cost is bounded by segments × nodes however many `**` a pattern holds. A
// plain recursive walk would try every way of splitting the topic among the
// `**` of a pattern, which is exponential in their number.
func (t *tree) matchLocked(topic string, sep byte, out []*Subscription) []*Subscription {
	var bufA, bufB [8]*node
	cur, next := append(bufA[:0], &t.root), bufB[:0]
	for i := 0; ; {
		// A `**` followed by more pattern may match zero segments: the
		// node behind it is reachable without consuming anything.
		for j := 0; j < len(cur); j++ {
			if g := cur[j].globstar; g != nil {
				cur = addNode(cur, g)
			}
		}
		for _, n := range cur {
			for _, s := range n.globs {
				if s.pat.glob.Match(topic) {
					out = append(out, s)
				}
			}
		}
		if i < 0 {
			for _, n := range cur {
				if !n.isGlobstar {
					out = append(out, n.subs...)
				}
			}
			return out
		}
		seg, after := nextSegment(topic, i, sep)
		next = next[:0]
		for _, n := range cur {
			if n.isGlobstar {
				// At least one segment is left: a trailing `**` matches,
				// and the `**` may swallow this segment too.
				out = append(out, n.subs...)
				next = addNode(next, n)
			}
			if n.star != nil {
				next = addNode(next, n.star)
			}
			if c := n.children[seg]; c != nil {
				next = addNode(next, c)
			}
		}
		if len(next) == 0 {
			return out
		}
		cur, next, i = next, cur, after
	}
}

// addNode appends n to set unless it is there already.
func addNode(set []*node, n *node) []*node {
	if slices.Contains(set, n) {
		return set
	}
	return append(set, n)
}

// each calls f for every subscription in the subtree of n.
func (n *node) each(f func(*Subscription)) {
	for _, s := range n.subs {
		f(s)
	}
	for _, s := range n.globs {
		f(s)
	}
	for _, c := range n.children {
		c.each(f)
	}
	if n.star != nil {
		n.star.each(f)
	}
	if n.globstar != nil {
		n.globstar.each(f)
	}
}
