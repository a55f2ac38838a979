package bridge_test

import (
	"context"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestDurableKillRedis kills redis-server (SIGKILL; appendonly yes with
// appendfsync always) while events flow into a stream read by a Stream
// route and a Group route, keeps publishing during the outage, and
// restarts it on the same port. Every bridge recovers by itself. The
// Stream route delivers every event exactly once, in order: entries a
// retried XADD pipeline added twice are dropped by sequence number. The
// Group route delivers every event, and more than once only as often as
// the stream holds extra copies; nothing stays pending.
func TestDurableKillRedis(t *testing.T) {
	srv := redistest.Start(t, &redistest.Options{AppendOnly: true})
	rdb := srv.Client(t)
	ctx := context.Background()
	key := bridge.StreamKey("app:", "ev.*")
	a := newInstance(t, fastFailClient(t, srv), durableOptions("a",
		bridge.Route{Pattern: "ev.*", Delivery: bridge.Stream, Direction: bridge.Export}))
	s := newInstance(t, fastFailClient(t, srv), durableOptions("s",
		bridge.Route{Pattern: "ev.*", Delivery: bridge.Stream, Direction: bridge.Import}))
	g := newInstance(t, fastFailClient(t, srv), durableOptions("g",
		bridge.Route{Pattern: "ev.*", Delivery: bridge.Group, Direction: bridge.Import}))
	rs, rg := record(t, s.bus, "ev.*"), record(t, g.bus, "ev.*")

	var published atomic.Int64
	pub := func(n int) {
		for range n {
			i := published.Add(1) - 1
			publish(t, a.bus, "ev.x", strconv.FormatInt(i, 10))
			time.Sleep(200 * time.Microsecond)
		}
	}
	pub(300)
	srv.Kill()
	pub(300)
	time.Sleep(300 * time.Millisecond)
	srv.Restart()
	pub(300)
	const total = 900

	eventually(t, func() bool { return rs.len() >= total }, "Stream route: %d of %d", rs.len, func() int { return total })
	distinct := func(r *recorder) int {
		m := map[string]bool{}
		for _, p := range payloads(t, r.snapshot()) {
			m[p] = true
		}
		return len(m)
	}
	eventually(t, func() bool { return distinct(rg) == total }, "Group route: %d of %d", func() int { return distinct(rg) }, func() int { return total })
	eventually(t, func() bool { return rdb.XPending(ctx, key, "busline").Val().Count == 0 }, "group entries acknowledged")
	time.Sleep(300 * time.Millisecond) // room for late duplicates to show

	if got := payloads(t, rs.snapshot()); !slices.Equal(got, seqStrings(0, total)) {
		t.Errorf("Stream route delivered %d events, not 0..%d once in order", len(got), total-1)
	}
	extra := int(rdb.XLen(ctx, key).Val()) - total
	if dups := rg.len() - total; dups > extra {
		t.Errorf("Group route handled %d events twice; the stream holds only %d extra copies", dups, extra)
	}
	as, ss, gs := a.bridge.Stats(), s.bridge.Stats(), g.bridge.Stats()
	t.Logf("stream holds %d extra copies; exporter %+v", extra, as)
	t.Logf("Stream importer: %+v", ss)
	t.Logf("Group importer: %+v", gs)
	if as.ExportOutages == 0 || as.StreamExported != total || as.OutboxDropped != 0 {
		t.Errorf("exporter: outages %d, exported %d, dropped %d", as.ExportOutages, as.StreamExported, as.OutboxDropped)
	}
	if ss.Duplicates != uint64(extra) {
		t.Errorf("Stream importer dropped %d duplicates, the stream holds %d", ss.Duplicates, extra)
	}
	// Each importer noticed the outage: a read, a checkpoint or an
	// acknowledgement failed, depending on what it was doing when Redis
	// died.
	for _, in := range []*instance{s, g} {
		if in.errs.count(bridge.ErrStreamRead)+in.errs.count(bridge.ErrCheckpoint)+in.errs.count(bridge.ErrAck) == 0 {
			t.Errorf("%s: outage not reported:\n%s", in.bridge.InstanceID(), in.errs)
		}
		checkAccounting(t, in.bridge)
	}
	// XACK counts the entries it removed from the pending list. An ack
	// that failed during the outage and was retried after the restart
	// has been seen to remove fewer entries than it named (Redis had
	// not kept them pending), so fewer may be counted than handled,
	// never more.
	if gs.StreamAcked > uint64(rg.len()) {
		t.Errorf("group acknowledged %d entries, handled %d", gs.StreamAcked, rg.len())
	}
}
