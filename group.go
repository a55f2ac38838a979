package bus

import "context"

// Queue groups.
//
// Members of a group are ordinary subscriptions in the index. When a match
// set is computed, the members it holds are replaced by one stand-in per
// group, at the place of the group's first member, listing the members
// that match that topic. Delivering to the stand-in picks one member round
// robin. A member joining or leaving bumps a generation like any
// subscription change, so the stand-ins are rebuilt; and a member that
// leaves between being picked and being given the event answers gone, so
// the next member gets it: an event is neither lost nor delivered twice.

// collapseGroups returns subs with the members of each queue group
// replaced by a stand-in, or subs itself when it holds no group member.
func collapseGroups(subs []*Subscription) []*Subscription {
	grouped := false
	for _, s := range subs {
		if s.opts.Group != "" {
			grouped = true
			break
		}
	}
	if !grouped {
		return subs
	}
	out := make([]*Subscription, 0, len(subs))
	stand := make(map[string]*Subscription)
	for _, s := range subs {
		name := s.opts.Group
		if name == "" {
			out = append(out, s)
			continue
		}
		g := stand[name]
		if g == nil {
			g = &Subscription{bus: s.bus, pat: pattern{text: "group " + name}}
			g.active.Store(true)
			stand[name] = g
			out = append(out, g)
		}
		g.members = append(g.members, s)
	}
	return out
}

// deliverGroup gives *e to one member of the group stand-in g: the next one
// round robin that is active and has room, or, when all queues are full,
// the first active one, whose overflow policy then applies.
func (b *Bus) deliverGroup(ctx context.Context, g *Subscription, e *Event) error {
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
