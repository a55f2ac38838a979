package bus

import (
	"cmp"
	"slices"
)

// Subscriptions returns a snapshot of the active subscriptions of the bus,
// in subscription order, for monitoring: a page that lists them with
// their Name, Pattern, Where and Stats, or a metrics collector. A
// subscription that ends while Subscriptions runs may or may not be in
// it, and one in it may have ended by the time the caller looks (check
// Active). The subscriptions the bus makes for others, such as the export
// routes of a bridge, are included.
//
// It is safe for concurrent use, also from inside handlers. It takes the
// read locks of the index one after the other, never with a handler
// running, and allocates the returned slice, which the caller owns; it
// costs Publish nothing. It is not meant for a hot path.
func (b *Bus) Subscriptions() []*Subscription {
	b.mustBeNew()
	var out []*Subscription
	for i := range b.stripes {
		st := &b.stripes[i]
		st.mu.RLock()
		for _, set := range st.m {
			out = list(out, set.subs)
		}
		st.mu.RUnlock()
	}
	b.tree.mu.RLock()
	b.tree.root.each(func(s *Subscription) { out = append(out, s) })
	b.tree.mu.RUnlock()
	out = slices.DeleteFunc(out, func(s *Subscription) bool { return !s.active.Load() })
	slices.SortFunc(out, func(x, y *Subscription) int { return cmp.Compare(x.id, y.id) })
	return out
}

// Name returns the label given in SubscribeOptions.Name, or "" if none.
func (s *Subscription) Name() string { return s.opts.Name }

// Group returns the queue group of the subscription (SubscribeOptions.Group),
// or "" if it is in none.
func (s *Subscription) Group() string { return s.opts.Group }

// Overflow returns the policy of the subscription's queue when it is full
// (SubscribeOptions.Overflow). A synchronous subscription, which has no
// queue, returns Block; tell the two apart with Async.
func (s *Subscription) Overflow() Overflow { return s.opts.Overflow }

// Async reports whether the subscription is asynchronous: it has a queue
// and a goroutine of its own (SubscribeOptions.Queue > 0, or SubscribeChan).
func (s *Subscription) Async() bool { return s.q != nil }

// Chan reports whether the subscription was made with SubscribeChan: it
// delivers to a channel rather than to a handler.
func (s *Subscription) Chan() bool { return s.stop != nil }
