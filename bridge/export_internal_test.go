package bridge

import (
	"context"
	"testing"
	"time"
)

// TestGate checks the gate the pub/sub flusher calls Redis through: a
// call runs on the caller's goroutine and counts; none starts once the
// gate is closed or its context has ended; and closing it during a call
// returns at once with what the exporter owes, the call's result then not
// counting.
func TestGate(t *testing.T) {
	ctx := context.Background()

	var g gate
	ran := false
	if !g.do(ctx, func() { ran = true }) || !ran {
		t.Fatal("an open gate did not run the call, or did not count it")
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if g.do(cancelled, func() { t.Error("a call started after its context ended") }) {
		t.Error("a call with an ended context counted")
	}

	g.owe(3)
	if owed, busy := g.close(); busy || owed != 3 {
		t.Errorf("closing an idle gate: owed %d, busy %v; want 3, false", owed, busy)
	}
	if g.do(ctx, func() { t.Error("a call started on a closed gate") }) {
		t.Error("a call on a closed gate counted")
	}

	// Closed during a call, as Close does when Redis is frozen.
	var h gate
	h.owe(7)
	started, release, counted := make(chan struct{}), make(chan struct{}), make(chan bool)
	go func() {
		counted <- h.do(ctx, func() {
			close(started)
			<-release
		})
	}()
	<-started
	begin := time.Now()
	owed, busy := h.close()
	if !busy || owed != 7 {
		t.Errorf("closing a gate during a call: owed %d, busy %v; want 7, true", owed, busy)
	}
	if d := time.Since(begin); d > 100*time.Millisecond {
		t.Errorf("close waited %v for the call", d)
	}
	close(release)
	if <-counted {
		t.Error("the call given up on counted")
	}
}
