package bridge_test

import (
	"context"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
)

// The helpers in this file bound every wait of the tests with waitTimeout
// and a failure message, so that a bug makes a test fail with a reason
// instead of hanging the test binary until go test's own timeout (which
// names no cause and loses every later test's result).

// recv receives from ch within waitTimeout, or fails the test saying what
// it was waiting for.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		var zero T
		return zero
	}
}

// waitGroup waits for wg within waitTimeout, or fails the test saying
// what it was waiting for. On failure the goroutine waiting for wg is left
// behind: the test has failed already, and goleak names it.
func waitGroup(t testing.TB, wg *sync.WaitGroup, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	recv(t, done, what)
}

// waitCmd waits for cmd to exit within waitTimeout and returns its error;
// if it does not exit in time, it kills it and fails the test.
func waitCmd(t testing.TB, cmd *exec.Cmd, what string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		return err
	case <-timer.C:
		_ = cmd.Process.Kill()
		<-done // Wait returns once the process is killed
		t.Fatalf("timed out after %v waiting for %s; killed it", waitTimeout, what)
		return nil
	}
}

// closeBridge closes br within waitTimeout and returns Close's error. It
// is for the cleanups and error paths of tests that do not check what
// Close returns with a context of their own.
func closeBridge(br *bridge.Bridge) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return br.Close(ctx)
}

// gate holds back the local handlers of a test until the test opens it.
//
// Close waits for the import workers, also those inside a slow handler, so
// a handler blocked on a plain channel that a failing test never closes
// would keep the test's cleanup (and the binary) waiting forever. A gate
// opens by itself when the test ends (register it after the instances it
// blocks, so that its cleanup runs before theirs), and a handler waits at
// most waitTimeout for it.
type gate struct {
	once sync.Once
	ch   chan struct{}
}

func newGate(t testing.TB) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

// open lets every waiting and later handler through. It may be called
// more than once.
func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// wait blocks until the gate is open, or waitTimeout has passed.
func (g *gate) wait() {
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case <-g.ch:
	case <-timer.C:
	}
}
