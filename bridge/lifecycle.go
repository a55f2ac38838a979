package bridge

import (
	"context"
	"sync"
)

// A group runs the goroutines of one phase of a component's life, like
// x/sync's errgroup.Group with its context: one context for all of them,
// cancelled once, and one wait, which can give up on them when a deadline
// passes. Components hold a group per phase (reading, flushing,
// delivering) instead of cancel funcs and done channels. Create one with
// newGroup; its methods are safe for concurrent use, but run must not be
// called once wait has been.
type group struct {
	ctx    context.Context // the goroutines'; cancelled by cancel
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newGroup returns a group whose context is a child of parent.
func newGroup(parent context.Context) *group {
	g := &group{}
	g.ctx, g.cancel = context.WithCancel(parent)
	return g
}

// run runs f on a new goroutine of the group.
func (g *group) run(f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// wait waits until every goroutine of the group has returned, and
// releases its context. If ctx ends first, it gives up: it calls giveUp
// (if not nil), cancels the group's context, and then waits for the
// goroutines, which must return promptly once it is cancelled. It reports
// whether it gave up.
func (g *group) wait(ctx context.Context, giveUp func()) (gaveUp bool) {
	defer g.cancel()
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return false
	case <-ctx.Done():
	}
	if giveUp != nil {
		giveUp()
	}
	g.cancel()
	<-done
	return true
}
