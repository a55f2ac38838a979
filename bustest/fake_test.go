package bustest_test

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// fakeTB is a testing.TB that records Errorf and Fatalf instead of failing
// the real test, so that the failure messages can be checked. Fatalf ends
// the goroutine, as the real one does; cleanups are kept and run by run.
// The methods it does not override go to the embedded TB: the real
// test, or nil in examples, where calling one panics.
type fakeTB struct {
	testing.TB

	mu       sync.Mutex // protects the fields below
	errors   []string
	fatal    string
	cleanups []func()
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// messages returns everything reported, fatal last.
func (f *fakeTB) messages() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	msgs := append([]string(nil), f.errors...)
	if f.fatal != "" {
		msgs = append(msgs, "FATAL: "+f.fatal)
	}
	return strings.Join(msgs, "\n")
}

// run calls body with a fakeTB on a goroutine of its own, as go test runs a
// test, waits for it to return or call Fatalf, then runs the cleanups in
// reverse order.
func run(t *testing.T, body func(tb testing.TB)) *fakeTB {
	t.Helper()
	return runFake(&fakeTB{TB: t}, body)
}

// runFake is run for a given fakeTB, which examples need: they have no
// *testing.T.
func runFake(f *fakeTB, body func(tb testing.TB)) *fakeTB {
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return f
}
