package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// gate is a handler that records events and, while closed, holds the
// first one until open is called.
type gate struct {
	mu      sync.Mutex
	got     []int
	entered chan struct{} // closed when the first event is being handled
	release chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{entered: make(chan struct{}), release: make(chan struct{})} }

func (g *gate) handle(ctx context.Context, e Event) {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	g.mu.Lock()
	g.got = append(g.got, e.Payload.(int))
	g.mu.Unlock()
}

func (g *gate) open() { close(g.release) }

// fullQueue subscribes a gate to topic with a Block queue of one and fills
// it: the handler holds event 1 and event 2 waits in the queue, so the
// next publish to topic finds the queue full.
func fullQueue(t *testing.T, b *Bus, topic string) (*Subscription, *gate) {
	t.Helper()
	g := newGate()
	s, err := b.SubscribeWith(topic, g.handle, &SubscribeOptions{Queue: 1})
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, topic, 1)
	waitFor(t, g.entered, "handler entered")
	mustPublish(t, b, topic, 2)
	return s, g
}

// asyncAllocs measures the allocations of 100 publishes of p to topic,
// waiting each time until the asynchronous handler counting in n has
// handled them all.
func asyncAllocs(t *testing.T, b *Bus, topic string, p any, n *atomic.Int64) float64 {
	t.Helper()
	want := n.Load()
	deadline := time.Now().Add(waitLimit)
	return testing.AllocsPerRun(50, func() {
		for range 100 {
			_ = b.Publish(ctx, topic, p)
		}
		want += 100
		for n.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d events handled after %v", n.Load(), want, waitLimit)
			}
			time.Sleep(10 * time.Microsecond)
		}
	})
}

func (g *gate) events() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.got)
}

func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestOverflowPolicies fills a queue of 4 behind a handler held on event 1
// and checks, for each policy, exactly which events are handled, dropped,
// counted and reported.
func TestOverflowPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy      Overflow
		wantHandled []int
		wantDropped uint64
		wantErrs    int // publishes that return an error
	}{
		{DropNewest, seq(1, 5), 6, 0},
		{DropOldest, append([]int{1}, seq(8, 11)...), 6, 0},
		{Block, seq(1, 5), 6, 6},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			opts, errs := collectErrors()
			b := New(opts)
			g := newGate()
			s, err := b.SubscribeWith("q", g.handle, &SubscribeOptions{Queue: 4, Overflow: tc.policy})
			if err != nil {
				t.Fatal(err)
			}
			mustPublish(t, b, "q", 1)
			waitFor(t, g.entered, "handler entered") // the worker holds event 1: the queue is empty
			failed := 0
			for i := 2; i <= 11; i++ {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Millisecond)
				err := publishWithin(t, b, ctx, "q", i)
				cancel()
				if err != nil {
					if !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("publish %d: %v, want DeadlineExceeded", i, err)
					}
					failed++
				}
			}
			if st := s.Stats(); st.Queued != 4 || st.HighWater != 4 || st.Capacity != 4 || st.Dropped != tc.wantDropped {
				t.Errorf("stats while held: %+v", st)
			}
			g.open()
			if err := s.UnsubscribeWait(bounded(t)); err != nil {
				t.Fatal(err)
			}
			if got := g.events(); !slices.Equal(got, tc.wantHandled) {
				t.Errorf("handled %v, want %v", got, tc.wantHandled)
			}
			if failed != tc.wantErrs {
				t.Errorf("%d publishes failed, want %d", failed, tc.wantErrs)
			}
			st := s.Stats()
			if st.Dropped != tc.wantDropped || st.Delivered != uint64(len(tc.wantHandled)) {
				t.Errorf("stats %+v, want %d dropped, %d delivered", st, tc.wantDropped, len(tc.wantHandled))
			}
			if bs := b.Stats(); bs.Dropped != tc.wantDropped {
				t.Errorf("bus stats dropped %d, want %d", bs.Dropped, tc.wantDropped)
			}
			// Drops the publisher was not told about are reported, all of
			// them, with where the subscription was made.
			var reported uint64
			for _, err := range errs() {
				var de *DeliveryError
				if errors.As(err, &de) && errors.Is(err, ErrDropped) {
					reported += de.Count
					if !strings.Contains(de.Where, "async_test.go") {
						t.Errorf("drop report without Where: %v", err)
					}
				}
			}
			if wantReported := tc.wantDropped - uint64(tc.wantErrs); reported != wantReported {
				t.Errorf("reported %d drops, want %d: %v", reported, wantReported, errs())
			}
		})
	}
}

// TestDropOldestWhileBatchHeld drops many times a queue's worth while the
// worker holds a batch of the queue's oldest events: the drops must
// neither overwrite the batch nor lose or reorder the events that stay
// (DropOldest publishers remove events next to the batch, so its worker
// copies the batch out; in place, the ring would overwrite it).
func TestDropOldestWhileBatchHeld(t *testing.T) {
	for _, capacity := range []int{1, 4, 200} {
		t.Run(fmt.Sprint("queue=", capacity), func(t *testing.T) {
			b := New(nil)
			defer b.Close(ctx)
			entered := []chan struct{}{make(chan struct{}), make(chan struct{})}
			release := []chan struct{}{make(chan struct{}), make(chan struct{})}
			var got []int
			s, err := b.SubscribeWith("q", func(_ context.Context, e Event) {
				i := e.Payload.(int)
				if i < 2 { // hold events 0 and 1
					close(entered[i])
					<-release[i]
				}
				got = append(got, i) // one worker: no lock needed
			}, &SubscribeOptions{Queue: capacity, Overflow: DropOldest})
			if err != nil {
				t.Fatal(err)
			}
			mustPublish(t, b, "q", 0)
			waitFor(t, entered[0], "handler entered 0")
			for i := 1; i <= capacity; i++ {
				mustPublish(t, b, "q", i) // fills the queue
			}
			close(release[0])
			waitFor(t, entered[1], "handler entered 1") // the worker holds a batch from 1
			batch := min(capacity, maxBatch)
			const drops = 5
			last := capacity + drops*capacity + 7
			for i := capacity + 1; i <= last; i++ {
				mustPublish(t, b, "q", i)
			}
			close(release[1])
			if err := s.UnsubscribeWait(bounded(t)); err != nil {
				t.Fatal(err)
			}
			want := append(seq(0, batch), seq(last-capacity+1, last)...)
			if !slices.Equal(got, want) {
				t.Errorf("handled %v,\nwant %v", got, want)
			}
			st := s.Stats()
			if published := uint64(last + 1); st.Delivered+st.Dropped != published || st.Delivered != uint64(len(want)) {
				t.Errorf("delivered %d + dropped %d, want %d + %d", st.Delivered, st.Dropped, len(want), published-uint64(len(want)))
			}
		})
	}
}

// TestQueueConcurrentPublishers: four publishers into one queue of every
// policy, with a handler that pauses now and then so that the queue fills
// and batches are held while publishers push, drop and wait. Each
// publisher's events arrive in order, and every event is delivered or
// counted as dropped.
func TestQueueConcurrentPublishers(t *testing.T) {
	for _, policy := range []Overflow{Block, DropNewest, DropOldest} {
		for _, capacity := range []int{1, 3, 130, 300} {
			t.Run(fmt.Sprint(policy, "/queue=", capacity), func(t *testing.T) {
				b := New(nil)
				defer b.Close(ctx)
				const publishers, each = 4, 3000
				last := []int{-1, -1, -1, -1} // the worker's alone
				s, err := b.SubscribeWith("q", func(_ context.Context, e Event) {
					v := e.Payload.([2]int)
					if v[1] <= last[v[0]] {
						t.Errorf("publisher %d: event %d after %d", v[0], v[1], last[v[0]])
					}
					last[v[0]] = v[1]
					if v[1]%50 == 0 {
						time.Sleep(20 * time.Microsecond)
					}
				}, &SubscribeOptions{Queue: capacity, Overflow: policy})
				if err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				for p := range publishers {
					wg.Go(func() {
						for i := range each {
							if err := b.Publish(ctx, "q", [2]int{p, i}); err != nil {
								t.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				if err := s.UnsubscribeWait(bounded(t)); err != nil {
					t.Fatal(err)
				}
				st := s.Stats()
				if st.Delivered+st.Dropped != publishers*each {
					t.Errorf("delivered %d + dropped %d, want %d in all", st.Delivered, st.Dropped, publishers*each)
				}
				if policy == Block && st.Dropped != 0 {
					t.Errorf("Block dropped %d", st.Dropped)
				}
			})
		}
	}
}

func TestAsyncOrderAndConcurrency(t *testing.T) {
	b := New(nil)
	const publishers, events = 4, 500
	var mu sync.Mutex
	last := make(map[int]int)
	var bad, n atomic.Int64
	s, err := b.SubscribeWith("seq.*", func(ctx context.Context, e Event) {
		v := e.Payload.([2]int)
		mu.Lock()
		if v[1] != last[v[0]]+1 {
			bad.Add(1)
		}
		last[v[0]] = v[1]
		mu.Unlock()
		n.Add(1)
	}, &SubscribeOptions{Queue: 16})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := 1; i <= events; i++ {
				if err := b.Publish(ctx, fmt.Sprintf("seq.%d", i%3), [2]int{p, i}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	waitGroup(t, &wg, "wg")
	if err := s.UnsubscribeWait(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if bad.Load() != 0 || n.Load() != publishers*events {
		t.Fatalf("%d out of order, %d handled of %d", bad.Load(), n.Load(), publishers*events)
	}
}

func TestPublishDoesNotWaitForAsyncHandler(t *testing.T) {
	b := New(nil)
	g := newGate()
	if _, err := b.SubscribeWith("t", g.handle, &SubscribeOptions{Queue: 8}); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, func() {
		mustPublish(t, b, "t", 1)
		<-g.entered
		mustPublish(t, b, "t", 2) // returns while the handler is held
	})
	g.open()
	if err := b.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if got := g.events(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("got %v", got)
	}
}

func TestBlockSelfPublishDetected(t *testing.T) {
	b := New(nil)
	var errsSeen []error
	var s *Subscription
	done := make(chan struct{})
	s, err := b.SubscribeWith("loop", func(ctx context.Context, e Event) {
		if e.Payload.(int) == 0 {
			// The queue (capacity 1) takes one; the second would wait for
			// this very handler.
			for i := 1; i <= 2; i++ {
				if err := b.Publish(ctx, "loop", i); err != nil {
					errsSeen = append(errsSeen, err)
				}
			}
			close(done)
		}
	}, &SubscribeOptions{Queue: 1})
	if err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, func() {
		mustPublish(t, b, "loop", 0)
		<-done
	})
	if len(errsSeen) != 1 || !errors.Is(errsSeen[0], ErrWouldDeadlock) {
		t.Fatalf("errors %v, want one ErrWouldDeadlock", errsSeen)
	}
	if err := s.UnsubscribeWait(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Dropped != 1 || st.Delivered != 2 {
		t.Fatalf("stats %+v, want 1 dropped, 2 delivered", st)
	}
}

func TestAsyncHandlerReentrancy(t *testing.T) {
	for _, tc := range []struct {
		name string
		body func(b *Bus, self *Subscription) error
	}{
		{"unsubscribe self", func(b *Bus, self *Subscription) error { self.Unsubscribe(); return nil }},
		{"unsubscribe-wait self", func(b *Bus, self *Subscription) error {
			if err := self.UnsubscribeWait(ctx); !errors.Is(err, ErrWouldDeadlock) {
				return fmt.Errorf("UnsubscribeWait from own handler = %v", err)
			}
			return nil
		}},
		{"close", func(b *Bus, self *Subscription) error { return b.Close(ctx) }},
		{"publish", func(b *Bus, self *Subscription) error { return b.Publish(ctx, "other", nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(nil)
			result := make(chan error, 1)
			var self *Subscription
			ready := make(chan struct{})
			self, err := b.SubscribeWith("t", func(ctx context.Context, e Event) {
				<-ready
				result <- tc.body(b, self)
			}, &SubscribeOptions{Queue: 4, Once: true})
			if err != nil {
				t.Fatal(err)
			}
			close(ready)
			mustPublish(t, b, "t", nil)
			select {
			case err := <-result:
				if err != nil {
					t.Error(err)
				}
			case <-time.After(waitLimit):
				t.Fatal("the handler did not run")
			}
			waitFor(t, self.Done(), "Done")
			_ = b.Close(bounded(t))
		})
	}
}

func TestCloseDrainsAndReportsLoss(t *testing.T) {
	t.Run("drained", func(t *testing.T) {
		b := New(nil)
		var n atomic.Int64
		if _, err := b.SubscribeWith("t", func(context.Context, Event) { time.Sleep(100 * time.Microsecond); n.Add(1) }, &SubscribeOptions{Queue: 100}); err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			mustPublish(t, b, "t", i)
		}
		if err := b.Close(bounded(t)); err != nil {
			t.Fatal(err)
		}
		if n.Load() != 100 {
			t.Fatalf("Close returned with %d of 100 handled", n.Load())
		}
		if err := b.Publish(ctx, "t", 0); !errors.Is(err, ErrClosed) {
			t.Fatalf("Publish after Close = %v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		opts, _ := collectErrors()
		b := New(opts)
		g := newGate()
		s, err := b.SubscribeWith("t", g.handle, &SubscribeOptions{Queue: 100})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 50; i++ {
			mustPublish(t, b, "t", i)
		}
		waitFor(t, g.entered, "handler entered")
		cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		err = b.Close(cctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "49 queued events not delivered") {
			t.Fatalf("Close = %v, want 49 not delivered and DeadlineExceeded", err)
		}
		g.open()
		waitFor(t, s.Done(), "Done")
		if got := g.events(); !slices.Equal(got, []int{1}) {
			t.Fatalf("handled %v after the deadline, want only the event under way", got)
		}
		if st := s.Stats(); st.Dropped != 49 || st.Delivered != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestUnsubscribeWaitAndTrack(t *testing.T) {
	b := New(nil)
	for _, opts := range []*SubscribeOptions{{Queue: 4}, {Track: true}} {
		g := newGate()
		s, err := b.SubscribeWith("t", g.handle, opts)
		if err != nil {
			t.Fatal(err)
		}
		go b.Publish(ctx, "t", 1)
		waitFor(t, g.entered, "handler entered")
		short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		if err := s.UnsubscribeWait(short); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%+v: UnsubscribeWait with the handler held = %v", opts, err)
		}
		cancel()
		select {
		case <-s.Done():
			t.Fatalf("%+v: Done closed while the handler runs", opts)
		default:
		}
		g.open()
		if err := s.UnsubscribeWait(bounded(t)); err != nil {
			t.Fatal(err)
		}
	}
	// Untracked synchronous: Done closes at Unsubscribe.
	s := mustSubscribe(t, b, "t", func(context.Context, Event) {})
	s.Unsubscribe()
	waitFor(t, s.Done(), "Done")
}

func TestOnceExactlyOnce(t *testing.T) {
	for _, opts := range []SubscribeOptions{{Once: true}, {Once: true, Queue: 8}, {Once: true, Queue: 1, Overflow: DropNewest}} {
		b := New(nil)
		var n atomic.Int64
		s, err := b.SubscribeWith("t.*", func(context.Context, Event) { n.Add(1) }, &opts)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 200 {
					_ = b.Publish(ctx, "t.x", nil)
				}
			})
		}
		waitGroup(t, &wg, "wg")
		waitFor(t, s.Done(), "Done")
		if n.Load() != 1 || s.Active() {
			t.Fatalf("%+v: %d deliveries, active=%v; want exactly 1", opts, n.Load(), s.Active())
		}
		_ = b.Close(bounded(t))
	}
}

// TestQueueGroupExactlyOnce: every event reaches exactly one member of the
// group, while members of three kinds join and leave under concurrent
// publishers; a plain subscription next to the group gets every event.
func TestQueueGroupExactlyOnce(t *testing.T) {
	b := New(nil)
	const publishers, events = 4, 2000
	var mu sync.Mutex
	seen := make(map[[2]int]int)
	record := func(ctx context.Context, e Event) {
		mu.Lock()
		seen[e.Payload.([2]int)]++
		mu.Unlock()
	}
	kinds := []*SubscribeOptions{
		{Group: "workers"},
		{Group: "workers", Queue: 8},
		{Group: "workers", Queue: 2, Overflow: DropOldest},
	}
	var members []*Subscription
	for _, o := range kinds {
		s, err := b.SubscribeWith("jobs.*", record, o)
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, s)
	}
	var all atomic.Int64
	mustSubscribe(t, b, "jobs.**", func(context.Context, Event) { all.Add(1) })
	var stop atomic.Bool
	var churn sync.WaitGroup
	churn.Go(func() {
		for i := 0; !stop.Load(); i++ {
			s, err := b.SubscribeWith("jobs.{a,b}", record, &SubscribeOptions{Group: "workers", Queue: 4})
			if err != nil {
				t.Error(err)
				return
			}
			time.Sleep(50 * time.Microsecond)
			if err := s.UnsubscribeWait(bounded(t)); err != nil {
				t.Error(err)
			}
		}
	})
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range events {
				if err := b.Publish(ctx, "jobs.a", [2]int{p, i}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	waitGroup(t, &wg, "wg")
	stop.Store(true)
	waitGroup(t, &churn, "churn")
	if err := b.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
	var dropped uint64
	for _, m := range members {
		dropped += m.Stats().Dropped
	}
	if dropped != 0 {
		t.Errorf("%d events dropped although members had room", dropped)
	}
	for p := range publishers {
		for i := range events {
			if c := seen[[2]int{p, i}]; c != 1 {
				t.Fatalf("event %d/%d delivered %d times to the group", p, i, c)
			}
		}
	}
	if all.Load() != publishers*events {
		t.Errorf("plain subscription got %d of %d", all.Load(), publishers*events)
	}
}

func TestSubscribeChan(t *testing.T) {
	b := New(nil)
	s, ch, err := b.SubscribeChan("news.*", &SubscribeOptions{Queue: 16})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range ch {
			got = append(got, e.Topic)
			if len(got) == 3 {
				s.Unsubscribe() // from the reader: the channel closes
			}
		}
	}()
	for _, topic := range []string{"news.a", "news.b", "news.c"} {
		mustPublish(t, b, topic, nil)
	}
	within(t, 5*time.Second, func() { <-done })
	if !slices.Equal(got, []string{"news.a", "news.b", "news.c"}) {
		t.Fatalf("got %q", got)
	}
	// Close closes the channel of a subscription still active, even when
	// its reader has stopped reading.
	_, ch2, err := b.SubscribeChan("x", nil)
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "x", nil)
	mustPublish(t, b, "x", nil)
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := b.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close with an unread channel = %v", err)
	}
	for range ch2 { // drains what was in flight and ends
	}
}

func TestAsyncPanicKeepsWorker(t *testing.T) {
	opts, errs := collectErrors()
	b := New(opts)
	var n atomic.Int64
	s, err := b.SubscribeWith("t", func(ctx context.Context, e Event) {
		if e.Payload.(int)%2 == 0 {
			panic(fmt.Sprint("even ", e.Payload))
		}
		n.Add(1)
	}, &SubscribeOptions{Queue: 16})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		mustPublish(t, b, "t", i)
	}
	if err := s.UnsubscribeWait(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if n.Load() != 5 || s.Stats().Panics != 5 || len(errs()) != 5 || !errors.Is(errs()[0], ErrHandlerPanic) {
		t.Fatalf("handled %d, panics %d, reports %v", n.Load(), s.Stats().Panics, errs())
	}
}

func TestSlowSubscriberReported(t *testing.T) {
	opts, errs := collectErrors()
	opts.SlowAfter = 5 * time.Millisecond
	b := New(opts)
	g := newGate()
	if _, err := b.SubscribeWith("t", g.handle, &SubscribeOptions{Queue: 1, Overflow: DropNewest}); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "t", 1)
	waitFor(t, g.entered, "handler entered")
	deadline := time.Now().Add(5 * time.Second)
	for i := 2; time.Now().Before(deadline); i++ {
		mustPublish(t, b, "t", i)
		var slow *DeliveryError
		for _, err := range errs() {
			if errors.As(err, &slow) && errors.Is(err, ErrSlowSubscriber) {
				break
			}
			slow = nil
		}
		if slow != nil {
			if !strings.Contains(slow.Where, "async_test.go") || slow.Pattern != "t" {
				t.Fatalf("slow report %v lacks where or pattern", slow)
			}
			g.open()
			_ = b.Close(bounded(t))
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no slow-subscriber report")
}

func TestStatsCounters(t *testing.T) {
	b := New(&Options{Stats: true, OnError: func(error) {}})
	sync1 := mustSubscribe(t, b, "a.*", func(context.Context, Event) {})
	async1, err := b.SubscribeWith("a.b", func(ctx context.Context, e Event) {
		if e.Payload == "boom" {
			panic("boom")
		}
	}, &SubscribeOptions{Queue: 8})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		mustPublish(t, b, "a.b", nil)
	}
	mustPublish(t, b, "a.b", "boom")
	mustPublish(t, b, "a.c", nil)
	if err := async1.UnsubscribeWait(bounded(t)); err != nil {
		t.Fatal(err)
	}
	st := b.Stats()
	if st.Published != 7 || st.Delivered != 13 || st.Panics != 1 || st.Subscriptions != 1 || st.Queued != 0 {
		t.Fatalf("bus stats %+v", st)
	}
	if s := sync1.Stats(); s.Delivered != 7 || s.Capacity != 0 {
		t.Fatalf("sync stats %+v", s)
	}
	if s := async1.Stats(); s.Delivered != 6 || s.Panics != 1 {
		t.Fatalf("async stats %+v", s)
	}
}

func TestSubscribeOptionsValidation(t *testing.T) {
	b := New(nil)
	for _, o := range []SubscribeOptions{{Queue: -1}, {Queue: maxQueue + 1}, {Overflow: 9}, {Queue: 1, Overflow: 9},
		{Overflow: DropNewest}, {Overflow: DropOldest}, {Overflow: DropNewest, Group: "g"}, {Overflow: DropOldest, Once: true}} {
		if _, err := b.SubscribeWith("t", func(context.Context, Event) {}, &o); !errors.Is(err, ErrInvalidOption) {
			t.Errorf("%+v: %v, want ErrInvalidOption", o, err)
		}
	}
}

// TestAsyncStress: many goroutines publish, subscribe and unsubscribe
// asynchronous subscriptions of every policy, bounded in count, then Close
// joins every worker (goleak checks in TestMain).
func TestAsyncStress(t *testing.T) {
	b := New(&Options{OnError: func(error) {}})
	policies := []Overflow{Block, DropNewest, DropOldest}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := range 200 {
				s, err := b.SubscribeWith(fmt.Sprintf("s.%d.*", i%5), func(context.Context, Event) {},
					&SubscribeOptions{Queue: 1 + i%4, Overflow: policies[(w+i)%3], Group: []string{"", "g"}[i%2]})
				if err != nil {
					t.Error(err)
					return
				}
				for j := range 5 {
					_ = b.Publish(ctx, fmt.Sprintf("s.%d.x", j), j)
				}
				if i%3 == 0 {
					s.Unsubscribe()
				}
			}
		})
	}
	waitGroup(t, &wg, "wg")
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.Close(cctx); err != nil {
		t.Fatal(err)
	}
}

// TestAsyncAllocs: publishing to an asynchronous subscription and handling
// the event allocates nothing once the queue exists.
func TestAsyncAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	b := New(nil)
	var n atomic.Int64
	if _, err := b.SubscribeWith("t", func(context.Context, Event) { n.Add(1) }, &SubscribeOptions{Queue: 256}); err != nil {
		t.Fatal(err)
	}
	p := &payload{}
	if allocs := asyncAllocs(t, b, "t", p, &n); allocs != 0 {
		t.Errorf("%v allocs per 100 async publishes, want 0", allocs)
	}
	_ = b.Close(bounded(t))
}

// TestGroupSkipsFullMember: a member whose queue is full is passed over in
// favour of members with room, so nothing is dropped.
func TestGroupSkipsFullMember(t *testing.T) {
	b := New(nil)
	g := newGate()
	held, err := b.SubscribeWith("jobs", g.handle, &SubscribeOptions{Group: "w", Queue: 1, Overflow: DropNewest})
	if err != nil {
		t.Fatal(err)
	}
	var other atomic.Int64
	if _, err := b.SubscribeWith("jobs", func(context.Context, Event) { other.Add(1) }, &SubscribeOptions{Group: "w"}); err != nil {
		t.Fatal(err)
	}
	// Round robin starts with either member; publish until the held one
	// has its event in the handler, then ten more.
	for i := 0; ; i++ {
		mustPublish(t, b, "jobs", i)
		select {
		case <-g.entered:
		default:
			continue
		}
		break
	}
	before := other.Load()
	for i := range 10 {
		mustPublish(t, b, "jobs", 100+i)
	}
	if st := held.Stats(); st.Dropped != 0 {
		t.Fatalf("held member dropped %d events although another member had room", st.Dropped)
	}
	// The held member's queue (1) may take one more event; the other
	// member gets the rest.
	if got := other.Load() - before; got < 9 {
		t.Fatalf("the member with room got %d of 10", got)
	}
	g.open()
	if err := b.Close(bounded(t)); err != nil {
		t.Fatal(err)
	}
}

func TestSubscribeTypedWith(t *testing.T) {
	opts, errs := collectErrors()
	b := New(opts)
	var sum atomic.Int64
	s, err := SubscribeTypedWith(b, "n", func(ctx context.Context, e Event, v int) { sum.Add(int64(v)) }, &SubscribeOptions{Queue: 4})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		mustPublish(t, b, "n", i)
	}
	mustPublish(t, b, "n", "five")
	if err := s.UnsubscribeWait(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if sum.Load() != 10 || len(errs()) != 1 || !errors.Is(errs()[0], ErrPayloadType) {
		t.Fatalf("sum %d, reports %v", sum.Load(), errs())
	}
	if !strings.Contains(s.Where(), "async_test.go") {
		t.Fatalf("Where() = %q", s.Where())
	}
}

// TestHighWater: HighWater is the deepest the queue has been, not its depth
// at the last publish.
func TestHighWater(t *testing.T) {
	b := New(nil)
	g := newGate()
	s, err := b.SubscribeWith("q", g.handle, &SubscribeOptions{Queue: 8})
	if err != nil {
		t.Fatal(err)
	}
	mustPublish(t, b, "q", 1)
	waitFor(t, g.entered, "handler entered")
	for i := 2; i <= 6; i++ {
		mustPublish(t, b, "q", i)
	}
	g.open()
	eventually(t, "queue drained", func() bool { return len(g.events()) == 6 })
	mustPublish(t, b, "q", 7) // depth 1 now
	eventually(t, "last event handled", func() bool { return len(g.events()) == 7 })
	if st := s.Stats(); st.HighWater != 5 || st.Queued != 0 {
		t.Fatalf("stats %+v, want HighWater 5 with the queue empty", st)
	}
	if err := s.UnsubscribeWait(bounded(t)); err != nil {
		t.Fatal(err)
	}
}

// TestOnceWhileHandlerRuns: a publish that arrives while a Once
// subscription's handler runs its one event does not call it again.
func TestOnceWhileHandlerRuns(t *testing.T) {
	b := New(nil)
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var got []any
	s, err := b.SubscribeWith("t", func(ctx context.Context, e Event) {
		mu.Lock()
		got = append(got, e.Payload)
		first := len(got) == 1
		mu.Unlock()
		if first { // holds only the first call: a second one returns at once
			close(entered)
			<-release
		}
	}, &SubscribeOptions{Once: true})
	if err != nil {
		t.Fatal(err)
	}
	first := make(chan error, 1)
	go func() { first <- b.Publish(ctx, "t", 1) }()
	waitFor(t, entered, "handler entered")
	mustPublish(t, b, "t", 2) // the Once subscription is taken: not for this one
	close(release)
	waitFor(t, first, "first Publish")
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []any{1}) {
		t.Fatalf("handler got %v, want only [1]", got)
	}
	waitFor(t, s.Done(), "Done")
}

// TestBlockHonoursContext: a Block publish into a full queue returns ctx's
// error soon after ctx ends, counting the event as dropped.
func TestBlockHonoursContext(t *testing.T) {
	b := New(nil)
	s, g := fullQueue(t, b, "q")
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	result := make(chan error, 1)
	go func() { result <- b.Publish(short, "q", 3) }()
	select {
	case err := <-result:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Publish = %v, want DeadlineExceeded", err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("a Block publish whose ctx ended is still waiting after %v", waitLimit)
	}
	if st := s.Stats(); st.Dropped != 1 {
		t.Errorf("stats %+v, want 1 dropped", st)
	}
	g.open()
	if err := s.UnsubscribeWait(bounded(t)); err != nil {
		t.Fatal(err)
	}
}

// TestQueueMemory keeps SubscribeOptions.Queue's account of a queue's
// memory true: 56 bytes per event on 64-bit machines, room for the
// capacity and one batch.
func TestQueueMemory(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the documented sizes are for 64-bit machines")
	}
	if got := unsafe.Sizeof(queued{}); got != 56 {
		t.Errorf("a queued event takes %d bytes; SubscribeOptions.Queue says 56", got)
	}
	for _, tc := range []struct {
		capacity int
		policy   Overflow
		want     int
	}{
		{1, Block, 2},
		{64, DropNewest, 128},
		{1024, Block, 1024 + 128},
		{1024, DropOldest, 1024 + 128},
	} {
		q := newQueue(tc.capacity, tc.policy)
		if got := len(q.buf) + len(q.copied); got != tc.want {
			t.Errorf("queue of %d, %v: %d slots, want %d", tc.capacity, tc.policy, got, tc.want)
		}
	}
}
