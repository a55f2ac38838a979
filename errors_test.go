package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestErrorMessages: every error the bus makes says "bus: " once, wraps its
// sentinel, and counts in correct English.
func TestErrorMessages(t *testing.T) {
	closed := New(nil)
	if err := closed.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b := New(&Options{OnError: func(error) {}})
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	held, g := fullQueue(t, b, "held")
	_, subErr := closed.Subscribe("a", func(context.Context, Event) {})
	_, nilErr := b.Subscribe("a", nil)
	_, typedNilErr := SubscribeTyped[int](b, "a", nil)
	_, optErr := b.SubscribeWith("a", func(context.Context, Event) {}, &SubscribeOptions{Queue: -1})
	_, syncDropErr := b.SubscribeWith("a", func(context.Context, Event) {}, &SubscribeOptions{Overflow: DropNewest})
	_, numSubErr := closed.NumSub("a")
	for _, tc := range []struct {
		err      error
		sentinel error
		want     string
	}{
		{closed.Publish(ctx, "a", nil), ErrClosed, "bus: publish: closed"},
		{subErr, ErrClosed, `bus: subscribe "a": closed`},
		{closed.Close(ctx), ErrClosed, "bus: close: closed"},
		{numSubErr, ErrClosed, `bus: numsub "a": closed`},
		{nilErr, ErrNilHandler, `bus: subscribe "a": nil handler`},
		{typedNilErr, ErrNilHandler, `bus: subscribe "a": nil handler`},
		{optErr, ErrInvalidOption, "bus: subscribe: negative queue capacity -1: invalid option"},
		{syncDropErr, ErrInvalidOption, "bus: subscribe: overflow policy DropNewest without a queue (SubscribeOptions.Queue is 0): invalid option"},
		{publishWithin(t, b, cancelled, "held", 3), context.Canceled, `bus: publish "held": queue of "held" full: context canceled`},
		{(&DeliveryError{Topic: "t", Pattern: "p", Err: ErrDropped, Count: 1}), ErrDropped, `bus: events dropped: topic "t", pattern "p": 1 event`},
		{(&DeliveryError{Topic: "t", Pattern: "p", Err: ErrDropped, Count: 2}), ErrDropped, `bus: events dropped: topic "t", pattern "p": 2 events`},
	} {
		if tc.err == nil || tc.err.Error() != tc.want || !errors.Is(tc.err, tc.sentinel) {
			t.Errorf("error %v, want %q wrapping %v", tc.err, tc.want, tc.sentinel)
		}
		if n := strings.Count(fmt.Sprint(tc.err), "bus: "); n != 1 {
			t.Errorf("%q: %d prefixes", tc.err, n)
		}
	}
	short, cancelShort := context.WithTimeout(ctx, time.Millisecond)
	defer cancelShort()
	if err := b.Close(short); err == nil || err.Error() != "bus: close: 1 queued event not delivered: context deadline exceeded" {
		t.Errorf("Close = %v, want 1 queued event not delivered", err)
	}
	g.open()
	waitFor(t, held.Done(), "Done")
}

// TestZeroBus: every method of a Bus not made by New panics with a message
// that says so, instead of an index out of range.
func TestZeroBus(t *testing.T) {
	nop := func(context.Context, Event) {}
	for name, f := range map[string]func(b *Bus){
		"Publish":            func(b *Bus) { _ = b.Publish(ctx, "t", nil) },
		"PublishEvent":       func(b *Bus) { _ = b.PublishEvent(ctx, Event{Topic: "t"}) },
		"Subscribe":          func(b *Bus) { _, _ = b.Subscribe("t", nop) },
		"SubscribeWith":      func(b *Bus) { _, _ = b.SubscribeWith("t", nop, &SubscribeOptions{Queue: 1}) },
		"SubscribeChan":      func(b *Bus) { _, _, _ = b.SubscribeChan("t", nil) },
		"SubscribeTyped":     func(b *Bus) { _, _ = SubscribeTyped(b, "t", func(context.Context, Event, int) {}) },
		"SubscribeTypedWith": func(b *Bus) { _, _ = SubscribeTypedWith(b, "t", func(context.Context, Event, int) {}, nil) },
		"Close":              func(b *Bus) { _ = b.Close(ctx) },
		"Stats":              func(b *Bus) { _ = b.Stats() },
		"NumSub":             func(b *Bus) { _, _ = b.NumSub("t") },
		"NumPat":             func(b *Bus) { _ = b.NumPat() },
		"Patterns":           func(b *Bus) { _ = b.Patterns() },
		"Topics":             func(b *Bus) { _ = b.Topics() },
		"Separator":          func(b *Bus) { _ = b.Separator() },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); fmt.Sprint(r) != "bus: Bus must be created with New" {
					t.Fatalf("recovered %v, want the New message", r)
				}
			}()
			f(&Bus{})
		})
	}
}
