package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// TestSlowSubscriberDoesNotStallOtherTopics blocks the local subscriber of
// one topic and checks that the events of many other topics keep arriving
// meanwhile, and that the blocked topic's events all arrive, in order, once
// it is released.
func TestSlowSubscriberDoesNotStallOtherTopics(t *testing.T) {
	srv := redistest.Start(t, nil)
	a := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "**", Direction: bridge.Export}))
	b := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "**", Direction: bridge.Import}))

	release := newGate(t)
	var slow []int
	var slowMu sync.Mutex
	if _, err := b.bus.Subscribe("slow", func(_ context.Context, e bus.Event) {
		release.wait()
		slowMu.Lock()
		slow = append(slow, atoi(t, e.Payload))
		slowMu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	fast := record(t, b.bus, "fast.*")

	const slowN, topics, perTopic = 20, 50, 20
	for i := range slowN {
		publish(t, a.bus, "slow", strconv.Itoa(i))
	}
	for i := range perTopic {
		for k := range topics {
			publish(t, a.bus, fmt.Sprintf("fast.t%d", k), strconv.Itoa(i))
		}
	}
	// Every other topic arrives while "slow" is blocked.
	fast.waitOrdered(t, topics*perTopic)
	last := map[string]int{}
	for _, e := range fast.snapshot() {
		i := atoi(t, e.Payload)
		if prev, ok := last[e.Topic]; ok && i != prev+1 {
			t.Fatalf("%s: %d after %d", e.Topic, i, prev)
		}
		last[e.Topic] = i
	}
	release.open()
	eventually(t, func() bool {
		slowMu.Lock()
		defer slowMu.Unlock()
		return len(slow) == slowN
	}, "slow events")
	for i, v := range slow {
		if v != i {
			t.Fatalf("slow events out of order: %v", slow)
		}
	}
}

func atoi(t testing.TB, payload any) int {
	t.Helper()
	var s string
	switch p := payload.(type) {
	case string:
		s = p
	case []byte:
		s = string(p)
	default:
		t.Fatalf("payload %T", payload)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestImportQueueDrops fills the import queue of a blocked topic: the read
// loop keeps reading, drops what does not fit, counts and reports it, and
// delivered plus dropped equals published.
func TestImportQueueDrops(t *testing.T) {
	srv := redistest.Start(t, nil)
	a := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "**", Direction: bridge.Export}))
	opts := testOptions(nil, bridge.Route{Pattern: "**", Direction: bridge.Import})
	opts.ImportTopicQueueSize = 10
	b := newInstance(t, srv.Client(t), opts)

	release := newGate(t)
	var delivered atomic.Int64
	if _, err := b.bus.Subscribe("blocked", func(context.Context, bus.Event) {
		release.wait()
		delivered.Add(1)
	}); err != nil {
		t.Fatal(err)
	}
	const n = 200
	for i := range n {
		publish(t, a.bus, "blocked", strconv.Itoa(i))
	}
	eventually(t, func() bool { return b.bridge.Stats().Received == n }, "messages read")
	release.open()
	eventually(t, func() bool {
		s := b.bridge.Stats()
		return s.ImportDepth == 0 && uint64(delivered.Load())+s.ImportDropped == n
	}, "delivered + dropped = published: delivered %d, stats %+v", func() int { return int(delivered.Load()) }, b.bridge.Stats())
	s := b.bridge.Stats()
	if s.ImportDropped == 0 || s.Imported != uint64(delivered.Load()) {
		t.Errorf("dropped %d, imported %d, delivered %d", s.ImportDropped, s.Imported, delivered.Load())
	}
	if b.errs.count(bridge.ErrImportFull) == 0 {
		t.Error("drops not reported")
	}
	checkAccounting(t, b.bridge)
}

// TestKillRedisMidStream kills redis-server with SIGKILL while events
// flow, keeps publishing during the outage, and restarts it on the same
// port. The bridges recover by themselves; the exports made during the
// outage arrive afterwards, in order per topic; and the counters account
// for every event: delivered plus lost-and-reported-as-gaps equals
// published. With several topics and a small BatchSize, a flush is sent
// in several pipelines, and the outage hits some of them.
func TestKillRedisMidStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		topics    int
		batchSize int
	}{
		{"one topic", 1, 0},
		{"three topics, pipelines of 2", 3, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testKillRedisMidStream(t, tc.topics, tc.batchSize)
		})
	}
}

func testKillRedisMidStream(t *testing.T, topics, batchSize int) {
	srv := redistest.Start(t, nil)
	aOpts := testOptions(nil, bridge.Route{Pattern: "stream.*", Direction: bridge.Export})
	// Resume a second after Redis answers again, so that b has
	// resubscribed by then: pub/sub keeps nothing for absent subscribers.
	aOpts.ResumeDelay = time.Second
	aOpts.BatchSize = batchSize
	pipelines := &pipelineSizes{}
	rdb := fastFailClient(t, srv)
	rdb.AddHook(pipelines)
	a := newInstance(t, rdb, aOpts)
	bOpts := testOptions(nil, bridge.Route{Pattern: "stream.*", Direction: bridge.Import})
	bOpts.ReconnectMax = 50 * time.Millisecond
	b := newInstance(t, srv.Client(t), bOpts)
	rec := record(t, b.bus, "stream.*")

	// Event i goes to topic stream.t<i%topics>, payload i.
	var published atomic.Int64
	pub := func(n int) {
		for range n {
			i := published.Add(1) - 1
			publish(t, a.bus, "stream.t"+strconv.FormatInt(i%int64(topics), 10), strconv.FormatInt(i, 10))
			time.Sleep(200 * time.Microsecond)
		}
	}
	pub(300)
	srv.Kill()
	outageStart := published.Load()
	pub(300)
	outageEnd := published.Load()
	time.Sleep(300 * time.Millisecond)
	srv.Restart()
	pub(300)
	total := published.Load()

	eventually(t, func() bool {
		s := a.bridge.Stats()
		return s.Exported+s.OutboxDropped == uint64(total) && s.OutboxDepth == 0
	}, "a exported everything")
	eventually(t, func() bool {
		s := b.bridge.Stats()
		return s.Imported+s.GapEvents == uint64(total)
	}, "b accounts for every event")

	as, bs := a.bridge.Stats(), b.bridge.Stats()
	t.Logf("a: %+v", as)
	t.Logf("b: %+v", bs)
	if as.OutboxDropped != 0 || as.ExportOutages == 0 {
		t.Errorf("a: dropped %d, outages %d; want 0 and at least 1", as.OutboxDropped, as.ExportOutages)
	}
	// The exports of the outage waited together: they went out
	// coalesced, in far fewer messages than events.
	if outage := uint64(outageEnd - outageStart); as.ExportMessages > as.Exported-outage/2 {
		t.Errorf("a: %d events in %d messages; the %d of the outage were not coalesced", as.Exported, as.ExportMessages, outage)
	}
	if max := pipelines.max(); batchSize > 0 && max > batchSize {
		t.Errorf("a pipeline of %d commands, BatchSize %d", max, batchSize)
	}
	if bs.Reconnects == 0 || b.errs.count(bridge.ErrPossibleGap) == 0 || b.errs.count(bridge.ErrDisconnected) == 0 {
		t.Errorf("b: reconnects %d, reports:\n%s", bs.Reconnects, b.errs)
	}
	got := map[int64]bool{}
	prev := map[string]int64{}
	for _, e := range rec.snapshot() {
		i := int64(atoi(t, e.Payload))
		if p, ok := prev[e.Topic]; ok && i <= p {
			t.Fatalf("%s: event %d after %d: order lost", e.Topic, i, p)
		}
		prev[e.Topic] = i
		got[i] = true
	}
	if uint64(len(got)) != bs.Imported {
		t.Errorf("%d distinct events delivered, %d imported", len(got), bs.Imported)
	}
	for i := outageStart; i < outageEnd; i++ {
		if !got[i] {
			t.Errorf("event %d, published during the outage, never arrived", i)
		}
	}
	for i := outageEnd; i < total; i++ {
		if !got[i] {
			t.Errorf("event %d, published after the restart, never arrived", i)
		}
	}
}

// pipelineSizes is a go-redis hook that records the largest pipeline its
// client sent.
type pipelineSizes struct{ largest atomic.Int64 }

func (h *pipelineSizes) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *pipelineSizes) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineSizes) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for {
			old := h.largest.Load()
			if int64(len(cmds)) <= old || h.largest.CompareAndSwap(old, int64(len(cmds))) {
				break
			}
		}
		return next(ctx, cmds)
	}
}

func (h *pipelineSizes) max() int { return int(h.largest.Load()) }

// fastFailClient returns a client that does not retry by itself, so that an
// outage reaches the bridge at once. With go-redis's defaults (MaxRetries
// 3, DialerRetries 5) a pipeline keeps retrying for about two seconds
// before the bridge sees the failure; the bridge behaves the same either
// way, only later.
func fastFailClient(t testing.TB, srv *redistest.Server) *redis.Client {
	o := srv.ClientOptions()
	o.MaxRetries = -1
	o.DialerRetries = 1
	rdb := redis.NewClient(o)
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// TestOutboxOverflowShowsAsGap fills a small outbox while Redis is down:
// the oldest exports are dropped (OutboxDropOldest), counted and reported by the
// sender, and the receiver reports exactly as many missing events from the
// sequence numbers.
func TestOutboxOverflowShowsAsGap(t *testing.T) {
	srv := redistest.Start(t, nil)
	aOpts := testOptions(nil, bridge.Route{Pattern: "g.*", Direction: bridge.Export})
	aOpts.OutboxMaxEvents = 10
	aOpts.ResumeDelay = time.Second
	a := newInstance(t, fastFailClient(t, srv), aOpts)
	b := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "g.*", Direction: bridge.Import}))
	rec := record(t, b.bus, "g.*")

	publish(t, a.bus, "g.x", "0")
	rec.waitFor(t, 1)
	srv.Kill()
	for i := 1; i <= 30; i++ {
		publish(t, a.bus, "g.x", strconv.Itoa(i))
	}
	srv.Restart()
	eventually(t, func() bool {
		s := b.bridge.Stats()
		return s.Imported+s.GapEvents == 31 && rec.len() == int(s.Imported)
	}, "delivered + missing = published")

	// How many are dropped depends on how many exports the flusher had
	// taken into the batch it was sending when Redis died: that batch is
	// retried, not dropped. Every dropped one is a missing sequence number.
	as, bs := a.bridge.Stats(), b.bridge.Stats()
	if as.OutboxOverflow == 0 || bs.GapEvents != as.OutboxOverflow {
		t.Errorf("overflow %d, gap events %d; want as many missing as dropped", as.OutboxOverflow, bs.GapEvents)
	}
	events := rec.snapshot()
	for i, e := range events[len(events)-10:] {
		if v := atoi(t, e.Payload); v != 21+i {
			t.Errorf("event %d of the last 10 is %d, want %d: the newest are kept", i, v, 21+i)
		}
	}
	// The first gap is reported in detail; one more within a second is
	// summed up in a DropError, flushed by the bridge's housekeeping.
	reported := func() (missing uint64) {
		for _, err := range b.errs.all() {
			var gap *bridge.GapError
			var drop *bridge.DropError
			switch {
			case errors.As(err, &gap):
				missing += gap.Missing()
				if gap.Source != a.bridge.InstanceID() || gap.Channel != "app:g.x" {
					t.Errorf("gap report %+v", gap)
				}
			case errors.As(err, &drop) && errors.Is(drop.Err, bridge.ErrGap):
				missing += drop.Count
			}
		}
		return missing
	}
	eventually(t, func() bool { return reported() == bs.GapEvents }, "gap reports to add up to the %d missing events:\n%s", bs.GapEvents, b.errs)
	if a.errs.count(bridge.ErrOutboxFull) == 0 {
		t.Errorf("overflow not reported:\n%s", a.errs)
	}
}

// TestCloseFlushes publishes a burst and closes at once: Close sends the
// whole outbox before returning.
func TestCloseFlushes(t *testing.T) {
	srv := redistest.Start(t, nil)
	b := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "c.*", Direction: bridge.Import}))
	rec := record(t, b.bus, "c.*")
	ab := bus.New(nil)
	a, err := bridge.New(ab, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "c.*", Direction: bridge.Export}))
	if err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i := range n {
		publish(t, ab, "c.x", strconv.Itoa(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := a.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if s := a.Stats(); s.Exported != n || s.OutboxDepth != 0 {
		t.Errorf("after Close: exported %d, depth %d", s.Exported, s.OutboxDepth)
	}
	rec.waitOrdered(t, n)
	if err := a.Close(ctx); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if err := a.Ready(ctx); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("Ready after Close: %v", err)
	}
	// Exports after Close are not sent and are counted.
	publish(t, ab, "c.x", "late")
	if s := a.Stats(); s.Exported != n {
		t.Errorf("exported %d after Close", s.Exported)
	}
}

// TestCloseGivesUp closes a bridge whose Redis is gone: Close returns when
// its context ends, says how many exports it could not send, and leaves no
// goroutine behind (checked by TestMain).
func TestCloseGivesUp(t *testing.T) {
	srv := redistest.Start(t, nil)
	ab := bus.New(nil)
	log := &errLog{}
	a, err := bridge.New(ab, srv.Client(t), testOptions(log, bridge.Route{Pattern: "**"}))
	if err != nil {
		t.Fatal(err)
	}
	ready(t, a)
	srv.Kill()
	for i := range 50 {
		publish(t, ab, "x", strconv.Itoa(i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = a.Close(ctx)
	if !errors.Is(err, bridge.ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "50 exports") {
		t.Fatalf("Close: %v; want ErrNotSent for 50 exports", err)
	}
	if s := a.Stats(); s.OutboxUnsent != 50 || s.OutboxDropped != 50 || s.Exported != 0 || s.OutboxDepth != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestSourceRestartWithSameID restarts a sender that has a fixed
// InstanceID: its numbering starts again at 1, which the receiver takes for
// a restart, not for duplicates or a gap.
func TestSourceRestartWithSameID(t *testing.T) {
	srv := redistest.Start(t, nil)
	b := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "r.*", Direction: bridge.Import}))
	rec := record(t, b.bus, "r.*")
	for run := range 2 {
		opts := testOptions(nil, bridge.Route{Pattern: "r.*", Direction: bridge.Export})
		opts.InstanceID = "fixed-id"
		a := newInstance(t, srv.Client(t), opts)
		for i := range 3 {
			publish(t, a.bus, "r.x", strconv.Itoa(run*3+i))
		}
		rec.waitFor(t, run*3+3)
		if err := closeBridge(a.bridge); err != nil {
			t.Fatal(err)
		}
	}
	for i, e := range rec.snapshot() {
		if atoi(t, e.Payload) != i || e.Meta.Source != "fixed-id" || e.Meta.Seq != uint64(i%3+1) {
			t.Errorf("event %d: %v from %q seq %d", i, e.Payload, e.Meta.Source, e.Meta.Seq)
		}
	}
	if s := b.bridge.Stats(); s.Gaps != 0 || s.Duplicates != 0 {
		t.Errorf("gaps %d, duplicates %d", s.Gaps, s.Duplicates)
	}
}
