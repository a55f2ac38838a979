package bridge

import (
	"context"
	"sync"
)

// A transport is one way events travel through Redis for some of the
// routes: classic pub/sub subscriptions (pubsubTransport), sharded pub/sub
// on a cluster (shardSet), Streams and consumer groups (streams), and the
// pub/sub exports' outbox and flusher (publisher). A Bridge holds the list
// of the transports its routes need, and drives each through the same
// phases; none of them is ever nil or half there.
//
// Each transport owns its goroutines and its lock. Methods are called by
// the Bridge only: start once by New; ready and stats at any time, from
// any goroutine; stop then wait once each by Close.
//
// Sending is not a method: not every transport exports (the subscription
// transports only import), and an export must not pay for a dynamic
// call and a lookup. Each export route holds the outbox of the transport
// that sends it (route.out: the publisher's, or a durable route's own),
// and the one export path (Bridge.export) pushes there.
type transport interface {
	// start starts the transport's goroutines.
	start()
	// ready reports whether the transport receives what it should (every
	// subscription confirmed, every reader started), and if not, the
	// error that keeps it from that, if any. A change of either wakes
	// the Bridge's changed signal.
	ready() (ok bool, err error)
	// stop begins the shutdown: stop reading from Redis and let the
	// exports drain. It does not wait; ctx is Close's.
	stop(ctx context.Context)
	// wait waits for the transport's goroutines to return, giving up on
	// what is left to send when ctx ends, and returns how many exports
	// were not sent.
	wait(ctx context.Context) (unsent int)
	// stats adds the transport's counters and queue depths to s.
	stats(s *Stats)
}

var (
	_ transport = (*publisher)(nil)
	_ transport = (*pubsubTransport)(nil)
	_ transport = (*shardSet)(nil)
	_ transport = (*streams)(nil)
)

// signal wakes the goroutines waiting for a change, such as callers of
// Ready waiting for a transport to become ready. Its zero value is ready
// to use; it is safe for concurrent use.
type signal struct {
	mu sync.Mutex // protects ch
	ch chan struct{}
}

// wait returns a channel closed at the next notify. Take it before looking
// at the state it signals changes of, so that no change is missed.
func (s *signal) wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// notify wakes every goroutine waiting.
func (s *signal) notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}
