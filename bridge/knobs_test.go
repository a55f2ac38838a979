package bridge

import "testing"

// SetSeqBudget sets the memory budget of the sequence bookkeeping of the
// bridges made from now on (each reader's seq.Tracker and each outbox's
// wire.Counter), for tests that run past it in a few seconds, and puts it
// back at cleanup. Tests that use it must not run in parallel.
func SetSeqBudget(t testing.TB, bytes int) {
	old := seqBudget
	seqBudget = bytes
	t.Cleanup(func() { seqBudget = old })
}
