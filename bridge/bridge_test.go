package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: every bridge
// joins its goroutines in Close, and go-redis leaves none once its clients
// are closed (redistest closes them in t.Cleanup).
func TestMain(m *testing.M) {
	// go-redis logs every failed dial; the tests that kill Redis cause
	// hundreds. The bridge reports what matters through OnError.
	redis.SetLogger(quietLogger{})
	goleak.VerifyTestMain(m)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// waitTimeout bounds every wait for events in these tests. It is a
// deadline for correctness, not a speed measurement: the events normally
// arrive in milliseconds.
const waitTimeout = 20 * time.Second

// recorder records the events of one bus subscription.
type recorder struct {
	mu     sync.Mutex
	events []bus.Event
}

func record(t testing.TB, b *bus.Bus, pattern string) *recorder {
	t.Helper()
	r := &recorder{}
	if _, err := b.Subscribe(pattern, func(_ context.Context, e bus.Event) {
		r.mu.Lock()
		r.events = append(r.events, e)
		r.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *recorder) snapshot() []bus.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// waitFor waits until the recorder holds at least n events and returns them.
func (r *recorder) waitFor(t testing.TB, n int) []bus.Event {
	t.Helper()
	eventually(t, func() bool { return r.len() >= n }, "waiting for %d events, have %d", n, r.len)
	return r.snapshot()
}

// waitOrdered waits, as waitFor, until the recorder holds at least n
// events and returns them, but checks at every poll that each topic's
// events so far carry the numbers 0, 1, 2... in order (see seqOf), and
// fails at once on the first one out of place. Events delivered out of
// order are often followed by events dropped as duplicates, which never
// arrive: waiting for them would fail only after waitTimeout, or, in a test
// whose handler blocks, not at all.
func (r *recorder) waitOrdered(t testing.TB, n int) []bus.Event {
	t.Helper()
	var events []bus.Event
	eventually(t, func() bool {
		events = r.snapshot()
		if err := inOrderPerTopic(events); err != nil {
			t.Fatalf("after %d of %d events: %v", len(events), n, err)
		}
		return len(events) >= n
	}, "waiting for %d events in order, have %d", n, r.len)
	return events
}

// inOrderPerTopic checks that the events of each topic carry the numbers
// 0, 1, 2... in order.
func inOrderPerTopic(events []bus.Event) error {
	next := map[string]int{}
	for i, e := range events {
		got, ok := seqOf(e.Payload)
		if !ok {
			return fmt.Errorf("event %d on %s: payload %#v has no number", i, e.Topic, e.Payload)
		}
		if want := next[e.Topic]; got != want {
			return fmt.Errorf("event %d on %s carries %d, want %d: order per topic lost", i, e.Topic, got, want)
		}
		next[e.Topic]++
	}
	return nil
}

// seqOf returns the number a test payload ends with: "7", "busy-7",
// "answer 7" and "orders.created-7" carry 7.
func seqOf(payload any) (int, bool) {
	var s string
	switch p := payload.(type) {
	case string:
		s = p
	case []byte:
		s = string(p)
	default:
		return 0, false
	}
	head := strings.TrimRightFunc(s, func(r rune) bool { return '0' <= r && r <= '9' })
	n, err := strconv.Atoi(s[len(head):])
	return n, err == nil
}

// eventually polls cond until it holds or waitTimeout passes.
func eventually(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			for i, a := range args {
				switch f := a.(type) {
				case func() int:
					args[i] = f()
				case func() bridge.Stats:
					args[i] = f()
				}
			}
			t.Fatalf("timed out: "+format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// errLog collects what a bridge reports to OnError.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errLog) add(err error) {
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errLog) count(target error) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, err := range l.errs {
		if errors.Is(err, target) {
			n++
		}
	}
	return n
}

// all returns what was reported so far.
func (l *errLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

func (l *errLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, err := range l.errs {
		fmt.Fprintln(&b, err)
	}
	return b.String()
}

// testOptions returns options with short timings for tests.
func testOptions(log *errLog, routes ...bridge.Route) *bridge.Options {
	o := &bridge.Options{
		Prefix:       "app:",
		Routes:       routes,
		PingInterval: 200 * time.Millisecond,
		PingTimeout:  time.Second,
		ReconnectMin: 10 * time.Millisecond,
		ReconnectMax: 100 * time.Millisecond,
		ResumeDelay:  -1,
	}
	if log != nil {
		o.OnError = log.add
	}
	return o
}

// instance is a bus with its bridge to Redis.
type instance struct {
	bus    *bus.Bus
	bridge *bridge.Bridge
	errs   *errLog
}

// newInstance makes a bus and a bridge over rdb, waits until the bridge's
// subscriptions are confirmed, and closes both at cleanup.
func newInstance(t testing.TB, rdb redis.UniversalClient, opts *bridge.Options) *instance {
	t.Helper()
	in := &instance{bus: bus.New(nil), errs: &errLog{}}
	if opts.OnError == nil {
		opts.OnError = in.errs.add
	}
	br, err := bridge.New(in.bus, rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	in.bridge = br
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := br.Close(ctx); err != nil && !errors.Is(err, bridge.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
		_ = in.bus.Close(ctx)
	})
	ready(t, br)
	return in
}

func ready(t testing.TB, br *bridge.Bridge) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := br.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
}

func newBus() *bus.Bus { return bus.New(nil) }

func publish(t testing.TB, b *bus.Bus, topic string, payload any) {
	t.Helper()
	if err := b.Publish(context.Background(), topic, payload); err != nil {
		t.Fatal(err)
	}
}

// TestMirrorBothWays runs two buses in one process, each with its own Redis
// client and bridge, both mirroring the same pattern both ways. Each
// instance gets every event exactly once (its own from the local bus, the
// other's through Redis), in publishing order, and nothing ping-pongs:
// each bridge exports only what was published on its own bus.
func TestMirrorBothWays(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "orders.**"}
	a := newInstance(t, srv.Client(t), testOptions(nil, route))
	b := newInstance(t, srv.Client(t), testOptions(nil, route))
	recA := record(t, a.bus, "orders.**")
	recB := record(t, b.bus, "orders.**")

	const n = 300
	var wg sync.WaitGroup
	for _, in := range []struct {
		inst  *instance
		topic string
	}{{a, "orders.created"}, {b, "orders.paid.eu"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				publish(t, in.inst.bus, in.topic, fmt.Sprintf("%s-%d", in.topic, i))
			}
		}()
	}
	waitGroup(t, &wg, "the publishers")

	for _, c := range []struct {
		name          string
		rec           *recorder
		self, other   *instance
		local, remote string
	}{
		{"a", recA, a, b, "orders.created", "orders.paid.eu"},
		{"b", recB, b, a, "orders.paid.eu", "orders.created"},
	} {
		events := c.rec.waitOrdered(t, 2*n)
		var local, remote []string
		for _, e := range events {
			switch {
			case e.Topic == c.local && !e.Remote():
				local = append(local, e.Payload.(string))
			case e.Topic == c.remote && e.Remote():
				if e.Meta.Source != c.other.bridge.InstanceID() {
					t.Errorf("%s: remote event from %q, want %q", c.name, e.Meta.Source, c.other.bridge.InstanceID())
				}
				if e.Meta.ContentType != bridge.ContentTypeText {
					t.Errorf("%s: content type %q", c.name, e.Meta.ContentType)
				}
				remote = append(remote, e.Payload.(string))
			default:
				t.Errorf("%s: unexpected event %+v", c.name, e)
			}
		}
		for i := range n {
			if want := fmt.Sprintf("%s-%d", c.local, i); i >= len(local) || local[i] != want {
				t.Fatalf("%s: local event %d: got %v, want %q", c.name, i, at(local, i), want)
			}
			if want := fmt.Sprintf("%s-%d", c.remote, i); i >= len(remote) || remote[i] != want {
				t.Fatalf("%s: remote event %d: got %v, want %q (order per publisher)", c.name, i, at(remote, i), want)
			}
		}
		if len(local) != n || len(remote) != n {
			t.Errorf("%s: %d local and %d remote events, want %d each", c.name, len(local), len(remote), n)
		}
	}

	// Wait for each bridge to see its own echo, then check that nothing
	// more arrives or is exported: no ping-pong.
	eventually(t, func() bool {
		return a.bridge.Stats().EchoesDropped == n && b.bridge.Stats().EchoesDropped == n
	}, "echoes")
	time.Sleep(200 * time.Millisecond)
	for name, in := range map[string]*instance{"a": a, "b": b} {
		s := in.bridge.Stats()
		if s.Exported != n || s.Imported != n || s.Received != 2*n {
			t.Errorf("%s: exported %d, imported %d, received %d; want %d, %d, %d", name, s.Exported, s.Imported, s.Received, n, n, 2*n)
		}
	}
	if got := recA.len() + recB.len(); got != 4*n {
		t.Errorf("%d events in total, want %d", got, 4*n)
	}
	checkAccounting(t, a.bridge)
	checkAccounting(t, b.bridge)
}

// checkAccounting checks that every message the bridge received is counted
// exactly once, once its queue is empty.
func checkAccounting(t testing.TB, br *bridge.Bridge) {
	t.Helper()
	// A message is counted as received when it is read, and in one of
	// the other counters a moment later (once ingested, or delivered):
	// wait for the counters to settle, and fail if they never add up.
	deadline := time.Now().Add(waitTimeout)
	for {
		s := br.Stats()
		sum := s.Imported + s.Filtered + s.DuplicateCopies + s.EchoesDropped + s.Duplicates +
			s.DecodeErrors + s.SignatureRejected + s.Replayed + s.ImportDropped
		if sum == s.Received && s.ImportDepth == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("received %d messages, counters add up to %d, %d still queued: %+v", s.Received, sum, s.ImportDepth, s)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func at(s []string, i int) any {
	if i < len(s) {
		return s[i]
	}
	return "nothing"
}
