package bus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestModelAccounting drives a bus with random operations and checks, at
// the end of each round, that every event offered to a subscription was
// handled or counted as dropped, that counts agree with what handlers and
// readers saw, and that each publisher's events arrive in order.
//
// Subscriptions of every kind (synchronous, Track, Once, asynchronous with
// each policy, SubscribeChan with readers that keep reading or stop, queue
// groups) come and go while several goroutines publish with contexts that
// may end; subscriptions end by Unsubscribe, UnsubscribeWait with a
// deadline, Once, or Close with a random deadline, which may come while
// publishers still run.
//
// In half the rounds handlers fail too: HandlerFunc subscriptions, some
// asynchronous ones with a retry policy, fail some events once and some
// always. Their events are then handled (the handler succeeded, or failed
// with no retry policy), dead-lettered, abandoned by Close, or dropped,
// and the same bounds hold for the sum.
//
// A logical clock orders what the test did: an event was surely offered to
// a subscription if its Publish ran inside the subscription's life (after
// Subscribe returned, before its end was asked for), and possibly offered
// if the two overlap. Surely ≤ handled + dropped ≤ possibly, exactly, per
// subscription and per queue group.
func TestModelAccounting(t *testing.T) {
	budget := 3 * time.Second
	if testing.Short() {
		budget = time.Second
	}
	start := time.Now()
	rounds := 0
	for ; rounds < 5 || time.Since(start) < budget; rounds++ {
		seed := uint64(time.Now().UnixNano())
		if s := os.Getenv("BUS_MODEL_SEED"); s != "" {
			seed, _ = strconv.ParseUint(s, 10, 64)
		}
		if !runModel(t, seed) {
			t.Fatalf("round %d failed; rerun with BUS_MODEL_SEED=%d (the seed fixes the operations, not the interleaving: run it a few times)", rounds, seed)
		}
		if rounds >= 200 {
			break
		}
	}
	t.Logf("%d rounds", rounds)
}

// modelClock orders the test's own steps.
type modelClock struct{ n atomic.Int64 }

func (c *modelClock) tick() int64 { return c.n.Add(1) }

const never = int64(1) << 62

// modelEvent is one Publish of the model.
type modelEvent struct {
	pub, seq   int
	topic      string
	start, end int64
	err        error
}

// modelSub is one subscription of the model and what its handler or
// reader saw.
type modelSub struct {
	id         int
	pattern    string
	opts       SubscribeOptions
	isChan     bool
	stops      int // a reader that stops reading after this many events; 0: never
	match      func(string) bool
	s          *Subscription
	readerDone chan struct{}

	called          int64 // Subscribe called
	start           int64 // Subscribe returned
	endAsked        int64 // Unsubscribe or UnsubscribeWait called, or never
	endReturned     int64
	explicitlyEnded bool
	discarding      bool // ended by the Unsubscribe of a SubscribeChan

	failing  bool // a HandlerFunc that fails some events
	retrying bool // ... with a retry policy

	mu       sync.Mutex
	got      [][2]int // (publisher, seq) in handling order
	attempts map[[2]int]int
}

// fail is the HandlerFunc of a failing subscription: by the event and the
// subscription, an event fails always, fails its first attempt, or
// succeeds. What it records is what counts as handled: every call without
// a retry policy, the successes with one.
func (m *modelSub) fail(ctx context.Context, e Event) error {
	v := e.Payload.([2]int)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.attempts == nil {
		m.attempts = map[[2]int]int{}
	}
	m.attempts[v]++
	var err error
	switch (v[0]*31 + v[1]*7 + m.id) % 4 {
	case 0:
		err = errModel
	case 1:
		if m.attempts[v] == 1 {
			err = errModel
		}
	}
	if err == nil || !m.retrying {
		m.got = append(m.got, v)
	}
	return err
}

var errModel = errors.New("model failure")

// modelDeadLetter is the dead-letter topic of the model's retrying
// subscriptions; in rounds where handlers fail, no pattern matches it
// (modelPattern).
const modelDeadLetter = "dl"

// modelPattern returns p for the round: where handlers fail, "**" becomes
// "{t,u}.**", which matches every topic of the model but not the dead
// letters.
func modelPattern(p string, failing bool) string {
	if failing && p == "**" {
		return "{t,u}.**"
	}
	return p
}

func (m *modelSub) record(e Event) {
	v := e.Payload.([2]int)
	m.mu.Lock()
	m.got = append(m.got, v)
	m.mu.Unlock()
}

var modelTopics = []string{"t.a", "t.b", "t.a.x", "u.a", "u.b.c"}

var modelPatterns = []string{"t.a", "t.*", "t.**", "**", "t.{a,b}", "*.a", "u.**", "t.a.x", "u.b.c", "[tu].a"}

// modelGroups maps a group name to the pattern of all its members.
var modelGroups = map[string]string{"g1": "t.*", "g2": "**"}

// runModel runs one round and reports whether every check passed.
func runModel(t *testing.T, seed uint64) bool {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var clock modelClock
	withStats := rng.IntN(2) == 0
	readersStop := rng.IntN(2) == 0 // some SubscribeChan readers stop reading
	// Drawn apart, so that a round without failing handlers is the
	// same for a seed as before they existed.
	failing := rand.New(rand.NewPCG(seed, 2)).IntN(2) == 0 // some handlers fail
	var errMu sync.Mutex
	var reports []error
	b := New(&Options{Stats: withStats, SlowAfter: -1, OnError: func(err error) {
		errMu.Lock()
		reports = append(reports, err)
		errMu.Unlock()
	}})

	var subsMu sync.Mutex
	var subs []*modelSub
	policies := []Overflow{Block, DropNewest, DropOldest}
	ok := true
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("seed %d (failing handlers: %v): "+format, append([]any{seed, failing}, args...)...)
		ok = false
	}

	subscribe := func(r *rand.Rand) {
		m := &modelSub{id: len(subs), endAsked: never, endReturned: never}
		m.pattern = modelPattern(modelPatterns[r.IntN(len(modelPatterns))], failing)
		kind := r.IntN(6)
		switch kind {
		case 0: // plain synchronous
		case 1:
			m.opts.Track = true
		case 2, 3:
			m.opts.Queue = 1 + r.IntN(4)
			m.opts.Overflow = policies[r.IntN(3)]
		case 4, 5:
			m.isChan = true
			m.opts.Queue = 1 + r.IntN(4)
			m.opts.Overflow = policies[r.IntN(3)]
			if readersStop && r.IntN(3) == 0 {
				m.stops = 1 + r.IntN(5)
			}
		}
		if r.IntN(5) == 0 {
			m.opts.Once = true
		}
		if r.IntN(4) == 0 {
			names := []string{"g1", "g2"}
			m.opts.Group = names[r.IntN(2)]
			m.pattern = modelPattern(modelGroups[m.opts.Group], failing)
		}
		if failing && !m.isChan && r.IntN(2) == 0 {
			m.failing = true
			if m.opts.Queue > 0 && r.IntN(3) != 0 {
				m.retrying = true
				m.opts.Retry = &RetryPolicy{Attempts: 1 + r.IntN(3), Initial: time.Duration(10+r.IntN(100)) * time.Microsecond,
					Max: 200 * time.Microsecond, Jitter: 0.5, DeadLetter: modelDeadLetter}
			}
		}
		slow := r.IntN(3) == 0
		var err error
		m.called = clock.tick()
		if m.isChan {
			var ch <-chan Event
			m.s, ch, err = b.SubscribeChan(m.pattern, &m.opts)
			if err == nil {
				m.readerDone = make(chan struct{})
				go func() {
					defer close(m.readerDone)
					n := 0
					for e := range ch {
						m.record(e)
						if n++; m.stops > 0 && n >= m.stops {
							return // stops reading; the bus must still close ch
						}
						if slow {
							time.Sleep(20 * time.Microsecond)
						}
					}
				}()
			}
		} else if m.failing {
			m.s, err = b.SubscribeFuncWith(m.pattern, func(ctx context.Context, e Event) error {
				err := m.fail(ctx, e)
				if slow {
					time.Sleep(20 * time.Microsecond)
				}
				return err
			}, &m.opts)
		} else {
			m.s, err = b.SubscribeWith(m.pattern, func(ctx context.Context, e Event) {
				m.record(e)
				if slow {
					time.Sleep(20 * time.Microsecond)
				}
			}, &m.opts)
		}
		m.start = clock.tick()
		if err != nil {
			fail("subscribe %q %+v: %v", m.pattern, m.opts, err)
			return
		}
		m.match, _ = CompilePattern(m.pattern, '.')
		subsMu.Lock()
		subs = append(subs, m)
		subsMu.Unlock()
	}

	// Publishers.
	const publishers = 3
	perPublisher := 100 + rng.IntN(200)
	ctxKinds := rng.IntN(3) // 0: Background only (no ctx drops), 1: mixed, 2: mostly short
	events := make([][]modelEvent, publishers)
	pubSeeds := make([]uint64, publishers)
	for p := range pubSeeds {
		pubSeeds[p] = rng.Uint64()
	}
	// A few subscriptions exist before publishing starts.
	for range 3 + rng.IntN(5) {
		subscribe(rng)
	}
	var pubWG sync.WaitGroup
	for p := range publishers {
		pubWG.Go(func() {
			r := rand.New(rand.NewPCG(pubSeeds[p], 1))
			for i := range perPublisher {
				ev := modelEvent{pub: p, seq: i, topic: modelTopics[r.IntN(len(modelTopics))]}
				pctx, cancel := ctx, context.CancelFunc(func() {})
				switch {
				case ctxKinds == 0:
				case ctxKinds == 1 && r.IntN(4) == 0, ctxKinds == 2 && r.IntN(4) != 0:
					switch r.IntN(3) {
					case 0:
						pctx, cancel = context.WithCancel(ctx)
						cancel()
					default:
						pctx, cancel = context.WithTimeout(ctx, time.Duration(r.IntN(300))*time.Microsecond)
					}
				}
				ev.start = clock.tick()
				ev.err = b.Publish(pctx, ev.topic, [2]int{p, i})
				ev.end = clock.tick()
				cancel()
				events[p] = append(events[p], ev)
				if r.IntN(20) == 0 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		})
	}

	// The lifecycle: subscribe, unsubscribe, wait, and close at a random
	// point, maybe while publishers still run.
	closeAfter := rng.IntN(60)
	var closeStart, closeEnd int64
	var closeErr error
	closeBudget := []time.Duration{0, 200 * time.Microsecond, 2 * time.Millisecond, 50 * time.Millisecond}[rng.IntN(4)]
	for step := 0; ; step++ {
		if step == closeAfter {
			break
		}
		switch rng.IntN(4) {
		case 0, 1:
			subscribe(rng)
		case 2, 3:
			subsMu.Lock()
			var live []*modelSub
			for _, m := range subs {
				if !m.explicitlyEnded {
					live = append(live, m)
				}
			}
			subsMu.Unlock()
			if len(live) == 0 {
				break
			}
			m := live[rng.IntN(len(live))]
			m.explicitlyEnded = true
			m.discarding = m.isChan
			m.endAsked = clock.tick()
			if rng.IntN(2) == 0 {
				m.s.Unsubscribe()
			} else {
				wctx, cancel := context.WithTimeout(ctx, time.Duration(rng.IntN(500))*time.Microsecond)
				if err := m.s.UnsubscribeWait(wctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
					fail("UnsubscribeWait: %v", err)
				}
				cancel()
			}
			m.endReturned = clock.tick()
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Microsecond)
	}
	cctx, cancel := context.WithTimeout(ctx, closeBudget)
	closeStart = clock.tick()
	closeErr = b.Close(cctx)
	closeEnd = clock.tick()
	cancel()
	done := make(chan struct{})
	go func() { pubWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(waitLimit):
		t.Fatalf("seed %d: publishers still running %v after Close", seed, waitLimit)
	}
	for _, m := range subs {
		select {
		case <-m.s.Done():
		case <-time.After(waitLimit):
			t.Fatalf("seed %d: subscription %d (%q %+v chan=%v) not done %v after Close", seed, m.id, m.pattern, m.opts, m.isChan, waitLimit)
		}
		if m.readerDone != nil {
			select {
			case <-m.readerDone:
			case <-time.After(waitLimit):
				t.Fatalf("seed %d: the channel of subscription %d not closed %v after Close", seed, m.id, waitLimit)
			}
		}
	}

	// Publish results.
	var okPublishes uint64
	for p := range events {
		for _, ev := range events[p] {
			switch {
			case ev.err == nil:
				okPublishes++
			case errors.Is(ev.err, ErrClosed):
				if ev.end < closeStart {
					fail("publish %d/%d returned %v before Close started", ev.pub, ev.seq, ev.err)
				}
			case errors.Is(ev.err, context.Canceled), errors.Is(ev.err, context.DeadlineExceeded):
			default:
				fail("publish %d/%d: unexpected error %v", ev.pub, ev.seq, ev.err)
			}
		}
	}

	// Close's count: "N queued events not delivered", "M failed events
	// abandoned between attempts", or both.
	var lost, abandonedByClose uint64
	if closeErr != nil {
		if !errors.Is(closeErr, context.DeadlineExceeded) && !errors.Is(closeErr, ErrRetryAbandoned) {
			fail("Close = %v", closeErr)
		}
		for part := range strings.SplitSeq(strings.TrimPrefix(closeErr.Error(), "bus: close: "), ", ") {
			var n uint64
			if _, err := fmt.Sscanf(part, "%d", &n); err != nil {
				fail("Close's error %q has no count: %v", closeErr, err)
			}
			if strings.Contains(part, "abandoned") {
				abandonedByClose = n
			} else {
				lost = n
			}
		}
		if errors.Is(closeErr, ErrRetryAbandoned) != (abandonedByClose > 0) {
			fail("Close = %v: ErrRetryAbandoned without a count, or the reverse", closeErr)
		}
	}

	// Per subscription, and per group.
	type interval struct{ called, start, endAsked, endReturned int64 }
	life := func(m *modelSub) interval {
		iv := interval{m.called, m.start, min(m.endAsked, closeStart), min(m.endReturned, closeEnd)}
		if m.opts.Once {
			// Once ends itself at a time the test does not know.
			iv.endAsked = m.start
		}
		return iv
	}
	var sumDropped, sumDelivered, sumFailed, sumDead, sumAbandoned uint64
	deliveredCounted := true
	groups := make(map[string][]*modelSub)
	for _, m := range subs {
		st := m.s.Stats()
		sumDropped += st.Dropped
		sumDelivered += st.Delivered
		sumFailed += st.Failed
		sumDead += st.DeadLettered
		sumAbandoned += st.Abandoned
		if !m.retrying && st.DeadLettered+st.Abandoned+st.Retried > 0 {
			fail("sub %d without retries: %+v", m.id, st)
		}
		if !m.failing && st.Failed > 0 {
			fail("sub %d never fails: %+v", m.id, st)
		}
		counted := m.opts.Queue > 0 || withStats
		if !counted {
			deliveredCounted = false
		}
		if counted && st.Delivered != uint64(len(m.got)) {
			fail("sub %d (%q %+v chan=%v stops=%d): Delivered %d, but %d handled", m.id, m.pattern, m.opts, m.isChan, m.stops, st.Delivered, len(m.got))
		}
		if st.Queued != 0 {
			fail("sub %d: %d still queued after Done", m.id, st.Queued)
		}
		// Per-publisher order.
		last := map[int]int{}
		for _, v := range m.got {
			if prev, seen := last[v[0]]; seen && v[1] <= prev {
				fail("sub %d: event %d/%d after %d/%d: out of publish order or twice", m.id, v[0], v[1], v[0], prev)
			}
			last[v[0]] = v[1]
		}
		if m.opts.Group != "" {
			groups[m.opts.Group] = append(groups[m.opts.Group], m)
			continue
		}
		iv := life(m)
		surely, possibly := 0, 0
		for p := range events {
			for _, ev := range events[p] {
				if !m.match(ev.topic) {
					continue
				}
				if ev.start > iv.start && ev.end < iv.endAsked {
					surely++
				}
				if ev.start < iv.endReturned && ev.end > iv.called {
					possibly++
				}
			}
		}
		// Handled, or ended otherwise after failing: each event once.
		handled := uint64(len(m.got)) + st.DeadLettered + st.Abandoned
		if m.opts.Once {
			if handled+st.Dropped > 1 {
				fail("Once sub %d: %d handled, %d dropped", m.id, handled, st.Dropped)
			}
			// Offered one event surely if one was published inside its
			// life; then, unless something was discarded, it got it.
			firstSure := false
			for p := range events {
				for _, ev := range events[p] {
					if m.match(ev.topic) && ev.start > m.start && ev.end < min(m.endAsked, closeStart) {
						firstSure = true
					}
				}
			}
			if firstSure && handled+st.Dropped != 1 {
				fail("Once sub %d (%+v chan=%v): offered an event, %d handled, %d dropped", m.id, m.opts, m.isChan, handled, st.Dropped)
			}
			if firstSure && closeErr == nil && !m.discarding && m.stops == 0 && handled != 1 && st.Dropped == 0 {
				fail("Once sub %d (%+v chan=%v): offered an event and nothing discarded, but %d handled", m.id, m.opts, m.isChan, handled)
			}
			continue
		}
		if got := int(handled + st.Dropped); got < surely || got > possibly {
			var ticks []string
			for _, v := range m.got {
				ev := events[v[0]][v[1]]
				ticks = append(ticks, fmt.Sprintf("%s@%d-%d", ev.topic, ev.start, ev.end))
			}
			fail("sub %d (%q %+v chan=%v stops=%d) life %v, close %d-%d: handled %d + dropped %d = %d, want between %d (surely offered) and %d (possibly); handled %v",
				m.id, m.pattern, m.opts, m.isChan, m.stops, iv, closeStart, closeEnd, handled, st.Dropped, got, surely, possibly, ticks)
		}
		// A subscription that only Close ended was offered every event
		// whose Publish returned nil after it was subscribed: Close makes
		// the publishes it overtakes fail.
		if !m.explicitlyEnded {
			nilPublishes := 0
			for p := range events {
				for _, ev := range events[p] {
					if m.match(ev.topic) && ev.start > m.start && ev.err == nil {
						nilPublishes++
					}
				}
			}
			if int(handled+st.Dropped) < nilPublishes {
				fail("sub %d (%q %+v chan=%v stops=%d), ended by Close: %d publishes returned nil, but handled %d + dropped %d",
					m.id, m.pattern, m.opts, m.isChan, m.stops, nilPublishes, handled, st.Dropped)
			}
		}
	}
	for name, members := range groups {
		seen := map[[2]int]bool{}
		var total uint64
		for _, m := range members {
			st := m.s.Stats()
			total += uint64(len(m.got)) + st.Dropped + st.DeadLettered + st.Abandoned
			for _, v := range m.got {
				if seen[v] {
					fail("group %s: event %v handled twice", name, v)
				}
				seen[v] = true
			}
		}
		match, _ := CompilePattern(modelPattern(modelGroups[name], failing), '.')
		surely, possibly := 0, 0
		for p := range events {
			for _, ev := range events[p] {
				if !match(ev.topic) {
					continue
				}
				inside, overlaps := false, false
				for _, m := range members {
					iv := life(m)
					if ev.start > iv.start && ev.end < iv.endAsked {
						inside = true
					}
					if ev.start < iv.endReturned && ev.end > iv.called {
						overlaps = true
					}
				}
				if inside {
					surely++
				}
				if overlaps {
					possibly++
				}
			}
		}
		if int(total) < surely || int(total) > possibly {
			var desc []string
			for _, m := range members {
				desc = append(desc, fmt.Sprintf("sub %d %+v chan=%v stops=%d life=%v: handled %d, %+v", m.id, m.opts, m.isChan, m.stops, life(m), len(m.got), m.s.Stats()))
			}
			fail("group %s: handled + dropped = %d, want between %d and %d; close at %d-%d, %d events per publisher; members:\n%s", name, total, surely, possibly, closeStart, closeEnd, perPublisher, strings.Join(desc, "\n"))
		}
	}

	// The bus's totals agree with the subscriptions'.
	bs := b.Stats()
	if bs.Dropped != sumDropped {
		fail("Stats.Dropped %d, subscriptions' sum %d", bs.Dropped, sumDropped)
	}
	if deliveredCounted && bs.Delivered != sumDelivered {
		fail("Stats.Delivered %d, subscriptions' sum %d", bs.Delivered, sumDelivered)
	}
	if withStats && bs.Published != okPublishes+sumDead {
		fail("Stats.Published %d, %d publishes returned nil, %d dead letters", bs.Published, okPublishes, sumDead)
	}
	if bs.Queued != 0 || bs.Subscriptions != 0 {
		fail("after Close: %+v", bs)
	}
	if lost > sumDropped {
		fail("Close counts %d not delivered, only %d dropped", lost, sumDropped)
	}
	if abandonedByClose > sumAbandoned {
		fail("Close counts %d abandoned, the subscriptions %d", abandonedByClose, sumAbandoned)
	}
	if bs.Failed != sumFailed || bs.DeadLettered != sumDead || bs.Abandoned != sumAbandoned {
		fail("bus %+v, subscriptions' sums: %d failed, %d dead-lettered, %d abandoned", bs, sumFailed, sumDead, sumAbandoned)
	}
	// Every drop report names a count, and the reports never exceed the
	// drops.
	errMu.Lock()
	var reported uint64
	for _, err := range reports {
		var de *DeliveryError
		switch {
		case errors.As(err, &de) && errors.Is(err, ErrDropped):
			reported += de.Count
		case failing && (errors.Is(err, errModel) && de != nil && de.Attempt > 0):
		default:
			fail("unexpected report %v", err)
		}
	}
	errMu.Unlock()
	if reported > sumDropped {
		fail("%d drops reported, %d counted", reported, sumDropped)
	}
	return ok
}
