package bridge_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestGroupSharesWork runs two members of one consumer group: every event
// is handled by exactly one of them, both take part, and every entry is
// acknowledged.
func TestGroupSharesWork(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	exp := bridge.Route{Pattern: "jobs.*", Delivery: bridge.Stream, Direction: bridge.Export}
	work := bridge.Route{Pattern: "jobs.*", Delivery: bridge.Group, Direction: bridge.Import, Group: "workers"}
	a := newInstance(t, srv.Client(t), durableOptions("a", exp))
	w1 := newInstance(t, srv.Client(t), durableOptions("w1", work))
	w2 := newInstance(t, srv.Client(t), durableOptions("w2", work))
	r1, r2 := record(t, w1.bus, "jobs.*"), record(t, w2.bus, "jobs.*")

	const n = 2000
	for i := range n {
		publish(t, a.bus, "jobs.resize", strconv.Itoa(i))
	}
	eventually(t, func() bool { return r1.len()+r2.len() >= n }, "events handled: %d", func() int { return r1.len() + r2.len() })
	eventually(t, func() bool {
		return w1.bridge.Stats().StreamAcked+w2.bridge.Stats().StreamAcked == n
	}, "acknowledged: %d + %d", func() int { return int(w1.bridge.Stats().StreamAcked) }, func() int { return int(w2.bridge.Stats().StreamAcked) })
	time.Sleep(200 * time.Millisecond)

	seen := map[string]string{}
	for name, r := range map[string]*recorder{"w1": r1, "w2": r2} {
		for _, p := range payloads(t, r.snapshot()) {
			if other, dup := seen[p]; dup {
				t.Fatalf("event %s handled by %s and %s", p, other, name)
			}
			seen[p] = name
		}
	}
	if len(seen) != n {
		t.Fatalf("%d distinct events handled, want %d", len(seen), n)
	}
	if r1.len() == 0 || r2.len() == 0 {
		t.Errorf("one member did all the work: w1 %d, w2 %d", r1.len(), r2.len())
	}
	p, err := rdb.XPending(context.Background(), "app:stream:jobs.*", "workers").Result()
	if err != nil || p.Count != 0 {
		t.Errorf("pending after the run: %+v, %v", p, err)
	}
	for _, w := range []*instance{w1, w2} {
		checkAccounting(t, w.bridge)
	}
}

// TestGroupClaimsFromDeadConsumer lets a consumer take entries and vanish
// without acknowledging them (redis-cli XREADGROUP, then exit), as a
// member killed mid-batch does. A bridge in the same group takes them
// over once they have been idle for ClaimIdle, handles each once and
// acknowledges them.
func TestGroupClaimsFromDeadConsumer(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	key := bridge.StreamKey("app:", "jobs")
	cli := func(args ...string) string {
		t.Helper()
		out, err := srv.CLI(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	cli("XGROUP", "CREATE", key, "workers", "$", "MKSTREAM")
	a := newInstance(t, srv.Client(t), durableOptions("a",
		bridge.Route{Pattern: "jobs", Delivery: bridge.Stream, Direction: bridge.Export}))
	const n = 20
	for i := range n {
		publish(t, a.bus, "jobs", strconv.Itoa(i))
	}
	eventually(t, func() bool { return rdb.XLen(context.Background(), key).Val() == n }, "exported")
	cli("XREADGROUP", "GROUP", "workers", "dead", "COUNT", "100", "STREAMS", key, ">")
	if p := rdb.XPending(context.Background(), key, "workers").Val(); p.Count != n || p.Consumers["dead"] != n {
		t.Fatalf("pending before the claim: %+v", p)
	}

	wbus := newBus()
	rec := record(t, wbus, "jobs")
	w := newInstanceOn(t, wbus, srv.Client(t), durableOptions("w",
		bridge.Route{Pattern: "jobs", Delivery: bridge.Group, Direction: bridge.Import, Group: "workers"}))
	rec.waitOrdered(t, n)
	eventually(t, func() bool { return rdb.XPending(context.Background(), key, "workers").Val().Count == 0 }, "pending entries acknowledged")
	time.Sleep(200 * time.Millisecond)
	if got := payloads(t, rec.snapshot()); !slices.Equal(got, seqStrings(0, n)) {
		t.Fatalf("handled %v", got)
	}
	if s := w.bridge.Stats(); s.StreamClaimed != n || s.StreamAcked != n || s.StreamImported != n {
		t.Errorf("stats: %+v", s)
	}
}

// TestGroupRestartTakesBackItsPending stops a member while its handler is
// blocked in the middle of a batch, so that the rest of the batch stays
// delivered to it and unacknowledged. A new bridge with the same consumer
// name reads its pending entries first: every event is handled. After a
// Close that could acknowledge what was handled, none is handled twice;
// after a Close whose context had expired (a crash, as far as Redis can
// tell), only the events the first member handled may be handled again.
func TestGroupRestartTakesBackItsPending(t *testing.T) {
	for _, graceful := range []bool{true, false} {
		t.Run(map[bool]string{true: "graceful", false: "expired"}[graceful], func(t *testing.T) {
			testGroupRestart(t, graceful)
		})
	}
}

func testGroupRestart(t *testing.T, graceful bool) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	key := bridge.StreamKey("app:", "tasks")
	a := newInstance(t, srv.Client(t), durableOptions("a",
		bridge.Route{Pattern: "tasks", Delivery: bridge.Stream, Direction: bridge.Export}))
	work := bridge.Route{Pattern: "tasks", Delivery: bridge.Group, Direction: bridge.Import}
	opts := func(id string) *bridge.Options {
		o := durableOptions(id, work)
		o.Consumer = "w"        // the stable name; the instance IDs of the runs differ
		o.ClaimIdle = time.Hour // only the restart may take the entries back
		return o
	}

	// All the events are in the stream before the member starts, so
	// that it reads them in one batch.
	if _, err := srv.CLI("XGROUP", "CREATE", key, "busline", "$", "MKSTREAM"); err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		publish(t, a.bus, "tasks", strconv.Itoa(i))
	}
	eventually(t, func() bool { return rdb.XLen(context.Background(), key).Val() == n }, "exported")

	bus1 := newBus()
	first := make(chan string, 1000)
	block := newGate(t)
	if _, err := bus1.Subscribe("tasks", func(_ context.Context, e bus.Event) {
		p := e.Payload.(string)
		first <- p
		if p == "5" {
			block.wait()
		}
	}); err != nil {
		t.Fatal(err)
	}
	w1 := newInstanceOn(t, bus1, srv.Client(t), opts("run1"))
	t.Cleanup(block.open) // before w1's Close, if the test fails first
	eventually(t, func() bool { return len(first) == 6 }, "first member blocked at event 5")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !graceful {
		expired, cancel := context.WithCancel(context.Background())
		cancel()
		ctx = expired
	}
	closed := make(chan error, 1)
	go func() { closed <- w1.bridge.Close(ctx) }()
	time.Sleep(50 * time.Millisecond)
	block.open()
	if err := recv(t, closed, "Close of the first member"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// The rest of the batch stays delivered to w and unacknowledged, and
	// with it, after an expired Close, what w handled.
	want := int64(n - 6)
	if !graceful {
		want = n
	}
	if p := rdb.XPending(context.Background(), key, "busline").Val(); p.Consumers["w"] != want {
		t.Fatalf("%d entries left pending for w, want %d: %+v", p.Consumers["w"], want, p)
	}

	bus2 := newBus()
	rec := record(t, bus2, "tasks")
	w2 := newInstanceOn(t, bus2, srv.Client(t), opts("run2"))
	eventually(t, func() bool { return len(first)+rec.len() >= n }, "all handled")
	eventually(t, func() bool { return rdb.XPending(context.Background(), key, "busline").Val().Count == 0 }, "all acknowledged")
	time.Sleep(200 * time.Millisecond)
	close(first)
	count := map[string]int{}
	for p := range first {
		count[p]++
	}
	for _, p := range payloads(t, rec.snapshot()) {
		count[p]++
	}
	twice := 0
	for i := range n {
		c := count[strconv.Itoa(i)]
		switch {
		case c == 0:
			t.Errorf("event %d never handled", i)
		case c > 1 && (graceful || i > 5):
			t.Errorf("event %d handled %d times", i, c)
		case c > 1:
			twice++
		}
	}
	if !graceful && twice != 6 {
		t.Errorf("%d events handled twice, want the 6 handled before the stop", twice)
	}
	if s := w2.bridge.Stats(); s.StreamClaimed != 0 {
		t.Errorf("restart claimed %d entries, want them read back as its own", s.StreamClaimed)
	}
}
