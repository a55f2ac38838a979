package bus

import (
	"context"
	"sync/atomic"
)

// Queue groups.
//
// Members of a group are ordinary subscriptions in the index. A match set
// keeps them apart from the other subscriptions, as data: one groupMatch
// per group, in the order of the group's first member, listing the members
// that match that topic (nats-server's sublist result keeps plain and queue
// subscribers in separate slices the same way). Delivering to a group picks
// one member round robin. A member joining or leaving bumps a generation
// like any subscription change, so the groupMatches are rebuilt; and a
// member that leaves between being picked and being given the event
// answers gone, so the next member gets it: an event is neither lost nor
// delivered twice.

// groupMatch is what one queue group holds in a match set.
type groupMatch struct {
	name    string
	members []*Subscription // the members that match the topic, in subscription order
	// rr picks the member to try first. It is the group's counter, not the
	// match set's: match sets are rebuilt whenever a subscription changes
	// (or a cache slot is reused, or the cache is off), and a counter of
	// their own would start again at every rebuild, sending every event to
	// the same member.
	rr *atomic.Uint64
}

// groupCounter returns the round-robin counter of the queue group name,
// making it on first use. Counters live as long as the bus: one per group
// name ever used.
func (b *Bus) groupCounter(name string) *atomic.Uint64 {
	b.groupsMu.Lock()
	defer b.groupsMu.Unlock()
	c := b.groupNext[name]
	if c == nil {
		if b.groupNext == nil {
			b.groupNext = make(map[string]*atomic.Uint64)
		}
		c = new(atomic.Uint64)
		b.groupNext[name] = c
	}
	return c
}

// hasGroup reports whether a subscription of subs belongs to a queue
// group. It neither locks nor allocates.
func hasGroup(subs []*Subscription) bool {
	for _, s := range subs {
		if s.opts.Group != "" {
			return true
		}
	}
	return false
}

// splitGroups returns the subscriptions of subs that belong to no queue
// group, in order, and the groups of the others. It returns subs itself,
// and no groups, when subs holds no group member.
func splitGroups(subs []*Subscription) ([]*Subscription, []*groupMatch) {
	if !hasGroup(subs) {
		return subs, nil
	}
	plain := make([]*Subscription, 0, len(subs))
	var groups []*groupMatch
	for _, s := range subs {
		name := s.opts.Group
		if name == "" {
			plain = append(plain, s)
			continue
		}
		var g *groupMatch
		for _, c := range groups {
			if c.name == name {
				g = c
				break
			}
		}
		if g == nil {
			g = &groupMatch{name: name, rr: s.groupNext}
			groups = append(groups, g)
		}
		g.members = append(g.members, s)
	}
	return plain, groups
}

// active reports whether some member of g still takes events.
func (g *groupMatch) active() bool {
	for _, m := range g.members {
		if m.active.Load() {
			return true
		}
	}
	return false
}

// deliverGroup gives *e to one member of g: the next one round robin that
// is active and has room, or, when all queues are full, the first active
// one, whose overflow policy then applies.
func (b *Bus) deliverGroup(ctx context.Context, g *groupMatch, e *Event) error {
	n := uint64(len(g.members))
	for {
		start := g.rr.Add(1)
		var fallback *Subscription
		for k := range n {
			m := g.members[(start+k)%n]
			res, err := m.offer(ctx, e, true)
			switch res {
			case full:
				if fallback == nil {
					fallback = m
				}
			case gone:
			default:
				return err
			}
		}
		if fallback == nil {
			// No active member left: like a topic without subscribers,
			// unless Close ended them.
			if b.closed.Load() {
				return errClosed("publish")
			}
			return nil
		}
		if res, err := fallback.offer(ctx, e, false); res != gone {
			return err
		}
		// The fallback left meanwhile: look again.
	}
}

// deliverGroups delivers *e to each of groups, after the other
// subscriptions, and returns the first error, or firstErr if there was one
// already.
func (b *Bus) deliverGroups(ctx context.Context, e *Event, groups []*groupMatch, firstErr error) error {
	for _, g := range groups {
		if err := b.deliverGroup(ctx, g, e); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
