package bus

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// TestWhereIsTheCall: every way of subscribing records the file and line
// of its caller, as runtime.Callers sees it, whether callerPC follows frame
// pointers or falls back to runtime.Callers.
func TestWhereIsTheCall(t *testing.T) {
	b := New(nil)
	defer func() { _ = b.Close(ctx) }()
	h := func(context.Context, Event) {}
	hf := func(context.Context, Event) error { return nil }
	// above returns the file and line just above its call.
	above := func() string { _, file, line, _ := runtime.Caller(1); return fmt.Sprintf("%s:%d", file, line-1) }
	type made struct {
		s    *Subscription
		want string
	}
	var all []made
	add := func(s *Subscription, err error, want string) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, made{s, want})
	}
	s, err := b.Subscribe("w.1", h)
	add(s, err, above())
	s, err = b.SubscribeWith("w.*", h, &SubscribeOptions{Queue: 1})
	add(s, err, above())
	s, err = b.SubscribeFunc("w.3", hf)
	add(s, err, above())
	s, err = b.SubscribeFuncWith("w.4", hf, &SubscribeOptions{Once: true})
	add(s, err, above())
	s, err = SubscribeTyped(b, "w.5", func(context.Context, Event, int) {})
	add(s, err, above())
	s, err = SubscribeTypedWith(b, "w.6", func(context.Context, Event, string) {}, nil)
	add(s, err, above())
	s, err = SubscribeTypedFunc(b, "w.7", func(context.Context, Event, int) error { return nil })
	add(s, err, above())
	s, err = SubscribeTypedFuncWith(b, "w.8", func(context.Context, Event, *payload) error { return nil }, nil)
	add(s, err, above())
	s, _, err = b.SubscribeChan("w.9", nil)
	add(s, err, above())
	// From a goroutine of its own, whose stack has no test frames above.
	done := make(chan made)
	go func() {
		s, err := b.Subscribe("w.10", h)
		want := above()
		if err != nil {
			panic(err)
		}
		done <- made{s, want}
	}()
	all = append(all, <-done)
	for i, m := range all {
		if got := m.s.Where(); got != m.want {
			t.Errorf("%d (%s): Wabove() = %q, want %q", i, m.s.Pattern(), got, m.want)
		}
	}
	if !strings.Contains(all[0].want, "callers_test.go:") {
		t.Errorf("above() = %s, want a line of this file", all[0].want)
	}
}

// TestCallerPCFallback: frame pointers give the PC that runtime.Callers
// gives, from the same call, where callerPC uses them.
func TestCallerPCFallback(t *testing.T) {
	if !fpOK {
		t.Skip("no frame pointers: callerPC is runtime.Callers")
	}
	if fp, rt := pcsOfCaller(); fp != rt || fp == 0 {
		t.Errorf("callerPC = %#x from frame pointers, %#x from runtime.Callers", fp, rt)
	}
}

// pcsOfCaller returns the PC in its caller twice: from callerPC and from
// callersPC.
//
//go:noinline
func pcsOfCaller() (fp, rt uintptr) { return callerPC(2), callersPC(2) }
