package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// These tests pin the defects of issue 12, each with the exact counts: an
// event offered to a subscription is handled, or counted as dropped, and
// whoever drops it says so.

// blockedSender subscribes with SubscribeChan, publishes n events, reads
// the first one and stops reading, so that the worker is left waiting to
// hand over the second.
func blockedSender(t *testing.T, b *Bus, n int) (*Subscription, <-chan Event) {
	t.Helper()
	s, ch, err := b.SubscribeChan("c", &SubscribeOptions{Queue: 16})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		mustPublish(t, b, "c", i)
	}
	select {
	case e := <-ch:
		if e.Payload != 1 {
			t.Fatalf("first event %v, want 1", e.Payload)
		}
	case <-time.After(waitLimit):
		t.Fatal("no event on the channel")
	}
	// The worker has claimed the second event (whether the rest are in its
	// batch or still queued) and waits to hand it over.
	eventually(t, "the worker claims the second event", func() bool {
		return s.Stats().Queued+int(s.q.left.Load()&^discardBit) == n-2
	})
	return s, ch
}

// drain reads ch until it is closed and returns how many events it got.
func drain(t *testing.T, ch <-chan Event) int {
	t.Helper()
	n := 0
	timeout := time.After(waitLimit)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return n
			}
			n++
		case <-timeout:
			t.Fatalf("channel not closed after %v", waitLimit)
		}
	}
}

// TestSubscribeChanUnsubscribeAccounts: Unsubscribe while the worker hands
// an event to a reader that has stopped reading. Every event is either
// received or counted (and reported) as dropped; none is counted as
// delivered without reaching the reader.
func TestSubscribeChanUnsubscribeAccounts(t *testing.T) {
	opts, errs := collectErrors()
	b := New(opts)
	s, ch := blockedSender(t, b, 5)
	s.Unsubscribe()
	// The worker ends without the reader: read only after Done, so that
	// the send it was waiting in cannot succeed after all.
	waitFor(t, s.Done(), "Done after Unsubscribe")
	received := 1 + drain(t, ch)
	st := s.Stats()
	if st.Delivered != uint64(received) || uint64(received)+st.Dropped != 5 {
		t.Fatalf("received %d, stats %+v: want delivered == received and received + dropped == 5", received, st)
	}
	var reported uint64
	for _, err := range errs() {
		var de *DeliveryError
		if errors.As(err, &de) && errors.Is(err, ErrDropped) {
			reported += de.Count
			if de.Topic != "c" {
				t.Errorf("drop report names topic %q, want c: %v", de.Topic, err)
			}
		}
	}
	if reported != st.Dropped {
		t.Fatalf("reported %d drops, counted %d: %v", reported, st.Dropped, errs())
	}
}

// TestSubscribeChanCloseAccounts: Close whose deadline passes while the
// worker waits on a reader that has stopped. Close's count includes the
// event whose send was given up.
func TestSubscribeChanCloseAccounts(t *testing.T) {
	b := New(&Options{OnError: func(error) {}})
	s, ch := blockedSender(t, b, 3)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	err := b.Close(cctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "2 queued events not delivered") {
		t.Fatalf("Close = %v, want 2 queued events not delivered", err)
	}
	received := 1 + drain(t, ch)
	waitFor(t, s.Done(), "Done after Close")
	if st := s.Stats(); received != 1 || st.Delivered != 1 || st.Dropped != 2 {
		t.Fatalf("received %d, stats %+v: want 1 delivered, 2 dropped", received, st)
	}
}

// TestSubscribeChanOnce: the one event of a Once SubscribeChan reaches the
// reader, then the channel closes.
func TestSubscribeChanOnce(t *testing.T) {
	b := New(nil)
	s, ch, err := b.SubscribeChan("c", &SubscribeOptions{Once: true})
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "c", 1)
	mustPublish(t, b, "c", 2) // after Once: not offered
	var got []any
	timeout := time.After(waitLimit)
	for done := false; !done; {
		select {
		case e, ok := <-ch:
			if !ok {
				done = true
				break
			}
			got = append(got, e.Payload)
		case <-timeout:
			t.Fatalf("channel not closed after %v; got %v", waitLimit, got)
		}
	}
	if len(got) != 1 || got[0] != 1 {
		t.Fatalf("Once SubscribeChan received %v, want [1]", got)
	}
	waitFor(t, s.Done(), "Done")
	if st := s.Stats(); st.Delivered != 1 || st.Dropped != 0 {
		t.Fatalf("stats %+v, want 1 delivered", st)
	}
}

// TestBlockPublisherWhenCloseStarts: a Block publisher waiting for room
// when Close starts fails with ErrClosed, and its event counts as dropped.
func TestBlockPublisherWhenCloseStarts(t *testing.T) {
	b := New(&Options{OnError: func(error) {}})
	g := newGate()
	s, err := b.SubscribeWith("q", g.handle, &SubscribeOptions{Queue: 1})
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "q", 1)
	waitFor(t, g.entered, "handler entered")
	mustPublish(t, b, "q", 2) // fills the queue
	result := make(chan error, 1)
	go func() { result <- b.Publish(ctx, "q", 3) }()
	eventually(t, "the publisher waits for room", func() bool {
		s.q.mu.Lock()
		defer s.q.mu.Unlock()
		return s.q.space != nil
	})
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	cerr := b.Close(cctx)
	select {
	case err := <-result:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("waiting Publish = %v, want an error wrapping ErrClosed", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("the waiting Publish did not return")
	}
	if !errors.Is(cerr, context.DeadlineExceeded) || !strings.Contains(cerr.Error(), "1 queued event not delivered") {
		t.Errorf("Close = %v, want 1 queued event not delivered", cerr)
	}
	g.open()
	waitFor(t, s.Done(), "Done")
	if st := s.Stats(); st.Delivered != 1 || st.Dropped != 2 {
		t.Fatalf("stats %+v: want 1 delivered, 2 dropped (one discarded by Close, one refused)", st)
	}
}

// TestStatsPublishedCountsSuccess: a publish whose Block wait ends with
// its ctx returns an error and is not counted as published.
func TestStatsPublishedCountsSuccess(t *testing.T) {
	b := New(&Options{Stats: true, OnError: func(error) {}})
	s, g := fullQueue(t, b, "q")
	short, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
	defer cancel()
	if err := publishWithin(t, b, short, "q", 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish into a full queue = %v, want DeadlineExceeded", err)
	}
	if err := b.Publish(ctx, "a..b", nil); err == nil {
		t.Fatal("Publish of a bad topic succeeded")
	}
	if got := b.Stats().Published; got != 2 {
		t.Fatalf("Stats.Published = %d, want 2: failed publishes are not counted", got)
	}
	g.open()
	if err := s.UnsubscribeWait(bounded(t)); err != nil {
		t.Fatal(err)
	}
}

// A handler that closes the bus keeps the publish from the subscriptions
// after it, and Publish says so: on the inline path (only synchronous
// subscriptions) and on the mixed one (an asynchronous subscription
// first).
func TestCloseFromHandlerOvertakesPublish(t *testing.T) {
	for _, mixed := range []bool{false, true} {
		b := New(nil)
		if mixed {
			if _, err := b.SubscribeWith("t", func(context.Context, Event) {}, &SubscribeOptions{Queue: 1}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := b.Subscribe("t", func(context.Context, Event) { _ = b.Close(bounded(t)) }); err != nil {
			t.Fatal(err)
		}
		called := false
		if _, err := b.Subscribe("t", func(context.Context, Event) { called = true }); err != nil {
			t.Fatal(err)
		}
		if err := b.Publish(ctx, "t", nil); !errors.Is(err, ErrClosed) || called {
			t.Errorf("mixed=%v: Publish = %v, later handler called %v; want ErrClosed and not called", mixed, err, called)
		}
	}
}
