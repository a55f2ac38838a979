package bus

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

// Subscription is the handle of one subscription, returned by Subscribe.
// Its methods are safe for concurrent use, also from inside its own
// handler.
type Subscription struct {
	// handler and active are read by every delivery: they come first.
	handler Handler
	active  atomic.Bool // true from Subscribe until Unsubscribe or Close
	bus     *Bus
	id      uint64 // subscription order
	pat     pattern
	pc      [1]uintptr // the caller of Subscribe, for reports
}

func (b *Bus) subscribe(text string, h Handler) (*Subscription, error) {
	if b.closed.Load() {
		return nil, errClosed("subscribe")
	}
	if h == nil {
		return nil, fmt.Errorf("bus: subscribe %q: %w", text, ErrNilHandler)
	}
	p, err := parsePattern(text, b.sep)
	if err != nil {
		return nil, err
	}
	s := &Subscription{handler: h, bus: b, id: b.nextID.Add(1), pat: p}
	// Skip runtime.Callers, subscribe and the exported Subscribe* function.
	runtime.Callers(3, s.pc[:])
	s.active.Store(true)
	if err := b.add(s); err != nil {
		s.active.Store(false)
		return nil, err
	}
	return s, nil
}

// Pattern returns the pattern the subscription was made with.
func (s *Subscription) Pattern() string { return s.pat.text }

// Active reports whether the subscription still receives events: it has
// not been unsubscribed and its bus has not been closed.
func (s *Subscription) Active() bool { return s.active.Load() }

// Where returns "file:line" of the call that made the subscription, for
// diagnostics; "" when unknown.
func (s *Subscription) Where() string {
	frame, _ := runtime.CallersFrames(s.pc[:]).Next()
	if frame.File == "" {
		return ""
	}
	return fmt.Sprintf("%s:%d", frame.File, frame.Line)
}

// Unsubscribe stops the subscription. It does not wait for calls of the
// handler that are running. Once it returns, no delivery to the
// subscription begins: a Publish that starts afterwards skips it, and one
// already under way skips it unless it had already decided to call the
// handler. Unsubscribe is idempotent and may be called from any handler,
// the subscription's own included.
func (s *Subscription) Unsubscribe() {
	if !s.active.CompareAndSwap(true, false) {
		return
	}
	s.bus.remove(s)
}
