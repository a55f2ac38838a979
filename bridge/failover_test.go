package bridge_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// recoveryBound is how soon after a replica's promotion routes must flow
// again.
const recoveryBound = 5 * time.Second

// failoverOptions are the options the failover tests run with: the
// defaults but for a backoff capped at one second and as long a
// ResumeDelay, which let a bridge follow a failover within seconds (see
// DESIGN.md, "Retries and failover").
func failoverOptions(route bridge.Route) *bridge.Options {
	return &bridge.Options{
		Prefix:          "app:",
		Routes:          []bridge.Route{route},
		ReconnectMin:    50 * time.Millisecond,
		ReconnectMax:    time.Second,
		ResumeDelay:     time.Second,
		OutboxMaxEvents: 1 << 20,
	}
}

// flow publishes numbered events on topic at one every millisecond or so
// on a bus whose bridge exports them, and records when the receiving bus
// gets each.
type flow struct {
	published atomic.Uint64
	stop      chan struct{}
	done      chan struct{}

	mu       sync.Mutex
	received []time.Time
}

func startFlow(t *testing.T, from, to *bus.Bus, topic string) *flow {
	t.Helper()
	f := &flow{stop: make(chan struct{}), done: make(chan struct{})}
	if _, err := to.Subscribe(topic, func(context.Context, bus.Event) {
		f.mu.Lock()
		f.received = append(f.received, time.Now())
		f.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(f.done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-f.stop:
				return
			case <-tick.C:
			}
			if err := from.Publish(context.Background(), topic, i); err != nil {
				t.Error(err)
				return
			}
			f.published.Add(1)
		}
	}()
	t.Cleanup(f.end)
	return f
}

// end stops publishing.
func (f *flow) end() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

func (f *flow) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.received)
}

// firstAfter waits until an event arrives after t0 and returns when.
func (f *flow) firstAfter(t *testing.T, t0 time.Time) time.Time {
	t.Helper()
	var at time.Time
	eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i := len(f.received) - 1; i >= 0 && f.received[i].After(t0); i-- {
			at = f.received[i]
		}
		return !at.IsZero()
	}, "an event after the failover")
	return at
}

// checkFailoverAccounting stops the flow and checks that every event
// published is accounted for: by the exporter, exported or dropped; by the
// importer, imported or reported missing in a GapError.
func checkFailoverAccounting(t *testing.T, f *flow, exp, imp *bridge.Bridge) {
	t.Helper()
	f.end()
	published := f.published.Load()
	eventually(t, func() bool {
		s := exp.Stats()
		return s.Exported+s.OutboxDropped+s.ExportRejected == published
	}, "the exporter to account for %d events: %+v", published, func() any { return exp.Stats() })
	eventually(t, func() bool {
		s := imp.Stats()
		return s.Imported+s.GapEvents >= published && s.ImportDepth == 0
	}, "the importer to account for %d events", published)
	e, i := exp.Stats(), imp.Stats()
	t.Logf("published %d; exporter: exported %d, dropped %d, outages %d; importer: imported %d, missing %d in %d gaps, duplicates %d, rebuilds %d",
		published, e.Exported, e.OutboxDropped, e.ExportOutages, i.Imported, i.GapEvents, i.Gaps, i.Duplicates, i.ShardRebuilds)
	if i.Imported+i.GapEvents != published {
		t.Errorf("published %d, imported %d + reported missing %d = %d", published, i.Imported, i.GapEvents, i.Imported+i.GapEvents)
	}
	if got := uint64(f.count()); got != i.Imported {
		t.Errorf("the bus got %d events, the bridge imported %d", got, i.Imported)
	}
}

// TestClusterKillMaster kills (SIGKILL) the master that serves a sharded
// route's slot, in a cluster of three masters with a replica each and a
// two-second node timeout: once the replica is promoted, the exports held
// meanwhile must go to it and the SSUBSCRIBE import must move to it,
// within recoveryBound, and every event be accounted for.
func TestClusterKillMaster(t *testing.T) {
	c := redistest.StartClusterWith(t, &redistest.ClusterOptions{Masters: 3, ReplicasPerMaster: 1, NodeTimeout: 2 * time.Second})
	const topic = "fo.orders"
	expBus, impBus := bus.New(nil), bus.New(nil)
	expOpts := failoverOptions(bridge.Route{Pattern: topic, Direction: bridge.Export})
	impOpts := failoverOptions(bridge.Route{Pattern: topic, Direction: bridge.Import})
	expOpts.Partitions, impOpts.Partitions = 1, 1 // every topic in one slot, on one master
	exp := newBridge(t, expBus, c.Client(t), expOpts)
	imp := newBridge(t, impBus, c.Client(t), impOpts)
	ready(t, exp)
	ready(t, imp)
	chans := imp.ShardChannels()
	if len(chans) != 1 {
		t.Fatalf("ShardChannels = %q", chans)
	}
	slot := redistest.KeySlot(chans[0])
	old := c.MasterOf(slot)

	f := startFlow(t, expBus, impBus, topic)
	failover(t, f, func() time.Duration {
		old.Kill()
		_, took := c.WaitMaster(slot, old)
		return took
	})
	checkFailoverAccounting(t, f, exp, imp)
}

// TestClusterKillMasterLoss forces what TestClusterKillMaster avoids:
// after the kill, the exporter sends to the promoted replica as soon as it
// answers (ResumeDelay of a millisecond), while the importer comes back
// only after a reconnect backoff of six seconds, so the events sent in
// between are lost to it (pub/sub keeps nothing). They must be reported
// missing, with their count, in GapErrors once the source's next event
// arrives: imported + reported missing == published, some missing.
func TestClusterKillMasterLoss(t *testing.T) {
	c := redistest.StartClusterWith(t, &redistest.ClusterOptions{Masters: 3, ReplicasPerMaster: 1, NodeTimeout: 2 * time.Second})
	const topic = "fo.orders"
	expBus, impBus := bus.New(nil), bus.New(nil)
	expOpts := failoverOptions(bridge.Route{Pattern: topic, Direction: bridge.Export})
	expOpts.ResumeDelay = time.Millisecond
	impOpts := failoverOptions(bridge.Route{Pattern: topic, Direction: bridge.Import})
	impOpts.ReconnectMin, impOpts.ReconnectMax = 6*time.Second, 6*time.Second
	expOpts.Partitions, impOpts.Partitions = 1, 1
	exp := newBridge(t, expBus, c.Client(t), expOpts)
	imp, impErrs := newBridgeLog(t, impBus, c.Client(t), impOpts)
	ready(t, exp)
	ready(t, imp)
	slot := redistest.KeySlot(imp.ShardChannels()[0])
	old := c.MasterOf(slot)

	f := startFlow(t, expBus, impBus, topic)
	eventually(t, func() bool { return f.count() > 200 }, "events to flow")
	old.Kill()
	_, took := c.WaitMaster(slot, old)
	promoted := time.Now()
	t.Logf("replica promoted %v after the kill", took)
	t.Logf("flowing again %v after the promotion", f.firstAfter(t, promoted).Sub(promoted))
	n := f.count()
	eventually(t, func() bool { return f.count() > n+200 }, "events to flow after the failover")
	checkFailoverAccounting(t, f, exp, imp)
	s := imp.Stats()
	if s.GapEvents == 0 || s.Gaps == 0 {
		t.Errorf("importer: %d events missing in %d gaps, want some: the exporter resumed before the importer", s.GapEvents, s.Gaps)
	}
	if impErrs.count(bridge.ErrGap) == 0 {
		t.Errorf("no GapError reported; reported: %v", impErrs)
	}
}

// TestClusterKillMasterStream is TestClusterKillMaster for a durable
// route: the master that holds the route's stream is killed, the stream
// continues on the promoted replica (without what it had not replicated:
// the reader reports those entries missing in a GapError), and the
// exporter and the reader move to it within recoveryBound.
func TestClusterKillMasterStream(t *testing.T) {
	c := redistest.StartClusterWith(t, &redistest.ClusterOptions{Masters: 3, ReplicasPerMaster: 1, NodeTimeout: 2 * time.Second})
	const topic = "fo.orders"
	expBus, impBus := bus.New(nil), bus.New(nil)
	exp := newBridge(t, expBus, c.Client(t), failoverOptions(bridge.Route{Pattern: topic, Direction: bridge.Export, Delivery: bridge.Stream}))
	impOpts := failoverOptions(bridge.Route{Pattern: topic, Direction: bridge.Import, Delivery: bridge.Stream})
	impOpts.InstanceID = "importer"
	impOpts.StreamBlock = 200 * time.Millisecond
	imp := newBridge(t, impBus, c.Client(t), impOpts)
	ready(t, exp)
	ready(t, imp)
	slot := redistest.KeySlot(bridge.StreamKey("app:", topic))
	old := c.MasterOf(slot)

	f := startFlow(t, expBus, impBus, topic)
	failover(t, f, func() time.Duration {
		old.Kill()
		_, took := c.WaitMaster(slot, old)
		return took
	})
	checkFailoverAccounting(t, f, exp, imp)
}

// TestClusterGracefulFailover moves the routes' slot to its replica with
// CLUSTER FAILOVER, the graceful manual failover, on a sharded route and
// a Stream route: routes must flow again within recoveryBound and every
// event be accounted for.
func TestClusterGracefulFailover(t *testing.T) {
	c := redistest.StartClusterWith(t, &redistest.ClusterOptions{Masters: 3, ReplicasPerMaster: 1, NodeTimeout: 2 * time.Second})
	for _, tc := range []struct {
		name     string
		delivery bridge.Delivery
		topic    string
	}{
		{"sharded", bridge.PubSub, "gf.orders"},
		{"stream", bridge.Stream, "gs.orders"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expBus, impBus := bus.New(nil), bus.New(nil)
			expOpts := failoverOptions(bridge.Route{Pattern: tc.topic, Direction: bridge.Export, Delivery: tc.delivery})
			impOpts := failoverOptions(bridge.Route{Pattern: tc.topic, Direction: bridge.Import, Delivery: tc.delivery})
			expOpts.Partitions, impOpts.Partitions = 1, 1
			impOpts.InstanceID = "importer-" + tc.name
			impOpts.StreamBlock = 200 * time.Millisecond
			exp := newBridge(t, expBus, c.Client(t), expOpts)
			imp := newBridge(t, impBus, c.Client(t), impOpts)
			ready(t, exp)
			ready(t, imp)
			key := bridge.StreamKey("app:", tc.topic)
			if tc.delivery == bridge.PubSub {
				key = imp.ShardChannels()[0]
			}
			slot := redistest.KeySlot(key)

			f := startFlow(t, expBus, impBus, tc.topic)
			failover(t, f, func() time.Duration {
				return c.Failover(c.ReplicasOf(c.MasterOf(slot))[0])
			})
			checkFailoverAccounting(t, f, exp, imp)
			c.WaitOK()
		})
	}
}

// TestSentinelKillMaster kills (SIGKILL) the master of a Sentinel
// deployment (one replica, three sentinels) under bridges on go-redis
// FailoverClients: once the sentinels have promoted the replica, exports
// and the pub/sub import must flow again within recoveryBound, and every
// event be accounted for. With go-redis's default retries the client hides
// the outage from the exporter, which may send to the new master before
// the importer has resubscribed (a run here lost 1,585 events that way):
// the events lost are reported in a GapError.
// Without retries (MaxRetries -1) the exporter sees the outage and waits
// ResumeDelay, and none are lost in practice. The Stream case runs a
// durable route through the same failover: the entries the replica had
// not received are reported missing.
func TestSentinelKillMaster(t *testing.T) {
	for _, tc := range []struct {
		name       string
		maxRetries int
		delivery   bridge.Delivery
	}{
		{"DefaultRetries", 0, bridge.PubSub},
		{"NoRetries", -1, bridge.PubSub},
		{"Stream", -1, bridge.Stream},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := redistest.StartSentinel(t, nil)
			client := func() *redis.Client {
				o := d.FailoverOptions()
				o.MaxRetries = tc.maxRetries
				rdb := redis.NewFailoverClient(o)
				t.Cleanup(func() { _ = rdb.Close() })
				return rdb
			}
			const topic = "fo.orders"
			expBus, impBus := bus.New(nil), bus.New(nil)
			exp := newBridge(t, expBus, client(), failoverOptions(bridge.Route{Pattern: topic, Direction: bridge.Export, Delivery: tc.delivery}))
			impOpts := failoverOptions(bridge.Route{Pattern: topic, Direction: bridge.Import, Delivery: tc.delivery})
			impOpts.InstanceID = "importer"
			impOpts.StreamBlock = 200 * time.Millisecond
			imp := newBridge(t, impBus, client(), impOpts)
			ready(t, exp)
			ready(t, imp)

			f := startFlow(t, expBus, impBus, topic)
			failover(t, f, func() time.Duration {
				old := d.KillMaster()
				if old == nil {
					t.Fatal("no sentinel answered")
				}
				_, took := d.WaitFailover(old)
				return took
			})
			checkFailoverAccounting(t, f, exp, imp)
		})
	}
}

// failover waits for events to flow, runs kill (which kills a master,
// waits for its replica's promotion and returns how long that took after
// the kill), and requires events to flow again within recoveryBound of the
// promotion; then it waits for more, so that every gap is seen.
func failover(t *testing.T, f *flow, kill func() time.Duration) {
	t.Helper()
	eventually(t, func() bool { return f.count() > 200 }, "events to flow")
	took := kill()
	promoted := time.Now()
	t.Logf("replica promoted %v after the kill", took)
	recovery := f.firstAfter(t, promoted).Sub(promoted)
	t.Logf("flowing again %v after the promotion", recovery)
	if recovery > recoveryBound {
		t.Errorf("flowing again %v after the promotion, want at most %v", recovery, recoveryBound)
	}
	n := f.count()
	eventually(t, func() bool { return f.count() > n+200 }, "events to flow after the failover")
}

// newBridge makes a bridge from b to rdb, closed at cleanup, and closes b
// after it.
func newBridge(t *testing.T, b *bus.Bus, rdb redis.UniversalClient, opts *bridge.Options) *bridge.Bridge {
	t.Helper()
	br, _ := newBridgeLog(t, b, rdb, opts)
	return br
}

// newBridgeLog is newBridge that also returns what the bridge reports.
func newBridgeLog(t *testing.T, b *bus.Bus, rdb redis.UniversalClient, opts *bridge.Options) (*bridge.Bridge, *errLog) {
	t.Helper()
	errs := &errLog{}
	opts.OnError = errs.add
	br, err := bridge.New(b, rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeBridge(br); err != nil {
			t.Errorf("Close: %v", err)
		}
		_ = b.Close(context.Background())
		t.Logf("reported: %v", errs)
	})
	return br, errs
}
