package bridge_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// The tests in this file add at run time a sharded route whose channel the
// ACL user may not read: ACLRules knows only the routes it is given, so
// a route added later may be refused by Redis (NOPERM). The refusal must
// stay that route's.

// shardACLClient makes, on every node of c, an ACL user with the rules of
// ACLRules and ClusterACLRules for opts, its channel rules replaced by
// channels (such as "&sa:ok.*"), and returns a cluster client logged in as
// that user, closed at cleanup.
func shardACLClient(t *testing.T, c *redistest.Cluster, opts *bridge.Options, channels ...string) *redis.ClusterClient {
	t.Helper()
	rules, err := bridge.ACLRules(opts, '.')
	if err != nil {
		t.Fatal(err)
	}
	args := []any{"ACL", "SETUSER", "shardbridge", "on", ">s3cret"}
	for _, r := range append(rules, bridge.ClusterACLRules()...) {
		if strings.HasPrefix(r, "&") {
			continue
		}
		args = append(args, r)
		if r == "resetchannels" {
			for _, ch := range channels {
				args = append(args, ch)
			}
		}
	}
	setUser(t, c, args...)
	o := c.ClusterOptions()
	o.Username, o.Password = "shardbridge", "s3cret"
	cc := redis.NewClusterClient(o)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// setUser runs ACL SETUSER args on every node of c.
func setUser(t *testing.T, c *redistest.Cluster, args ...any) {
	t.Helper()
	for _, rdb := range nodeClients(t, c) {
		if err := rdb.Do(clusterCtx(t), args...).Err(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
}

// startRefusing starts a cluster and a bridge on it, as an ACL user that
// may read only the channels of topics "ok.*", importing one exact route
// on node i per topic prefix of oks (such as "ok.a"). It returns the
// cluster, the instance, the topics of its routes, and a topic on node i
// the user may not read.
func startRefusing(t *testing.T, prefix string, i int, oks ...string) (*redistest.Cluster, *instance, []string, string) {
	t.Helper()
	c := redistest.StartCluster(t, 3)
	var topics []string
	var routes []bridge.Route
	for _, p := range oks {
		topic := topicOnNode(t, c, prefix, p, i)
		topics = append(topics, topic)
		routes = append(routes, bridge.Route{Pattern: topic, Direction: bridge.Import})
	}
	opts := clusterOptions(prefix, routes...)
	in := newInstance(t, shardACLClient(t, c, opts, "&"+prefix+"ok.*"), opts)
	return c, in, topics, topicOnNode(t, c, prefix, "no", i)
}

// refusedRoute adds an import route on topic, which the ACL user may not
// read, and checks that RouteReady and Ready return the refusal: an
// ErrSubscribe naming the SSUBSCRIBE of its channel and NOPERM.
func refusedRoute(t *testing.T, br *bridge.Bridge, prefix, topic string) bridge.RouteID {
	t.Helper()
	id, err := br.AddRoute(bridge.Route{Pattern: topic, Direction: bridge.Import})
	if err != nil {
		t.Fatal(err)
	}
	ctx := clusterCtx(t)
	want := `SSUBSCRIBE "` + bridge.ShardChannel(prefix, topic, 0) + `"`
	err = br.RouteReady(ctx, id)
	if !errors.Is(err, bridge.ErrSubscribe) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("RouteReady of the refused route = %v, want ErrSubscribe naming %s and NOPERM", err, want)
	}
	if err := br.Ready(ctx); !errors.Is(err, bridge.ErrSubscribe) || !strings.Contains(err.Error(), want) {
		t.Fatalf("Ready with a refused route = %v, want ErrSubscribe naming %s", err, want)
	}
	return id
}

// TestAddRouteShardedRefusedKeepsOthers adds at run time a sharded route
// the ACL user may not read, on the node of two routes Redis accepted:
// RouteReady and Ready return the refusal, and the two others keep
// receiving on the node's connection without a break (every message
// published meanwhile reached the bridge and was delivered, once), after a
// reconnect too; removing the refused route makes the bridge ready again.
func TestAddRouteShardedRefusedKeepsOthers(t *testing.T) {
	const prefix = "sa:"
	c, in, oks, denied := startRefusing(t, prefix, 0, "ok.a", "ok.b")
	okA, okB := oks[0], oks[1]
	recA, recB := record(t, in.bus, okA), record(t, in.bus, okB)
	admin := c.Client(t)
	ctx := clusterCtx(t)

	// Publish on both channels while the route is added and refused,
	// counting what Redis passed on to a subscriber.
	var published, missed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }); <-done }
	t.Cleanup(halt)
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			for _, topic := range []string{okA, okB} {
				n, err := admin.SPublish(ctx, bridge.ShardChannel(prefix, topic, 0), "x").Result()
				if err != nil {
					t.Error(err)
					return
				}
				published.Add(1)
				if n != 1 {
					missed.Add(1)
				}
			}
		}
	}()
	for published.Load() < 20 {
		time.Sleep(time.Millisecond)
	}
	id := refusedRoute(t, in.bridge, prefix, denied)
	time.Sleep(200 * time.Millisecond) // the refused route is retried meanwhile
	halt()
	if n := missed.Load(); n != 0 {
		t.Errorf("%d of %d messages published while the route was refused had no subscriber", n, published.Load())
	}
	total := int(published.Load())
	recA.waitFor(t, total/2)
	recB.waitFor(t, total/2)
	time.Sleep(50 * time.Millisecond)
	if a, b := recA.len(), recB.len(); a+b != total {
		t.Errorf("delivered %d + %d, want %d in all", a, b, total)
	}
	if st := in.bridge.Stats(); st.Reconnects != 0 || st.ShardRebuilds != 0 {
		t.Errorf("Reconnects %d, ShardRebuilds %d after a refused route, want 0 0 (%s)", st.Reconnects, st.ShardRebuilds, in.errs)
	}

	// A new connection to the node asks for the refused channel after
	// the others: still refused, the others receive.
	if err := nodeClients(t, c)[0].Do(ctx, "CLIENT", "KILL", "USER", "shardbridge").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return in.bridge.Stats().Reconnects >= 1 }, "no reconnect after CLIENT KILL")
	before := recA.len()
	eventually(t, func() bool {
		n, err := admin.SPublish(ctx, bridge.ShardChannel(prefix, okA, 0), "x").Result()
		return err == nil && n == 1
	}, "%s not subscribed again after the reconnect (%s)", okA, in.errs)
	recA.waitFor(t, before+1)
	if err := in.bridge.RouteReady(ctx, id); !errors.Is(err, bridge.ErrSubscribe) {
		t.Errorf("RouteReady of the refused route after a reconnect = %v, want ErrSubscribe", err)
	}

	if _, err := in.bridge.RemoveRoute(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := in.bridge.Ready(ctx); err != nil {
		t.Errorf("Ready after removing the refused route = %v, want nil", err)
	}
}

// TestAddRouteShardedRefusedAlone: a refused sharded route is retried on
// its own, on the node's connection: once the ACL user may read its
// channel, the route becomes ready and receives, with no reconnect, no
// rebuild and no change of the routes.
func TestAddRouteShardedRefusedAlone(t *testing.T) {
	const prefix = "sb:"
	c, in, _, later := startRefusing(t, prefix, 1, "ok")
	rec := record(t, in.bus, later)
	id := refusedRoute(t, in.bridge, prefix, later)

	setUser(t, c, "ACL", "SETUSER", "shardbridge", "&"+prefix+"no.*")
	eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return in.bridge.RouteReady(ctx, id) == nil
	}, "the route still refused once the user may read its channel (%s)", in.errs)
	ctx := clusterCtx(t)
	if err := in.bridge.Ready(ctx); err != nil {
		t.Fatalf("Ready once the route is accepted: %v", err)
	}
	if err := c.Client(t).SPublish(ctx, bridge.ShardChannel(prefix, later, 0), "x").Err(); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)
	if st := in.bridge.Stats(); st.Reconnects != 0 || st.ShardRebuilds != 0 {
		t.Errorf("Reconnects %d, ShardRebuilds %d, want 0 0: the refused route was not retried alone (%s)", st.Reconnects, st.ShardRebuilds, in.errs)
	}
	if n := countClients(t, nodeClients(t, c)[1], "ssub="); n != 1 {
		t.Errorf("%d sharded connections on the node, want 1", n)
	}
}

// TestRemoveRouteShardedRefusedReady removes a sharded route Redis
// refused: Ready no longer returns its refusal.
func TestRemoveRouteShardedRefusedReady(t *testing.T) {
	_, in, _, denied := startRefusing(t, "sc:", 2, "ok")
	id, err := in.bridge.AddRoute(bridge.Route{Pattern: denied, Direction: bridge.Import})
	if err != nil {
		t.Fatal(err)
	}
	ctx := clusterCtx(t)
	if err := in.bridge.RouteReady(ctx, id); !errors.Is(err, bridge.ErrSubscribe) {
		t.Fatalf("RouteReady of the refused route = %v, want ErrSubscribe", err)
	}
	if _, err := in.bridge.RemoveRoute(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := in.bridge.Ready(ctx); err != nil {
		t.Errorf("Ready after removing the refused route = %v, want nil", err)
	}
}

// TestRegroupShardedRefusedAlone gives a node's connected loop, by a
// regroup, the slot of a channel Redis refused, together with a channel of
// that slot the ACL user may read: the slot moves to the node, the bridge's
// client learns the new layout, and a route on the readable channel is
// added. The regroup must ask for the refused channel alone. Redis refuses
// an SSUBSCRIBE whole, so in one with the refused channel the new route
// would be refused too, reported, and subscribed only after the retry
// backoff: ReconnectMin is long here, so that this fails for sure.
func TestRegroupShardedRefusedAlone(t *testing.T) {
	const prefix, partitions, src, dst = "sr:", 16, 0, 1
	c := redistest.StartCluster(t, 3)
	chanOf := func(topic string) string { return bridge.ShardChannel(prefix, topic, partitions) }
	on := func(i int) func(string) bool {
		return func(topic string) bool { return owner(t, c, chanOf(topic)) == i }
	}
	// ok, the route added last, and refused, which the user may not
	// read, share a partition tag, hence a slot, served by src.
	ok := topicWhere(t, "ok", on(src))
	part := bridge.Partition(ok, partitions)
	refused := topicWhere(t, "no", func(topic string) bool { return bridge.Partition(topic, partitions) == part })
	// A route on each node from the start, so that each has a loop: the
	// refused route is added to src's, and dst's gains the slot.
	onSrc := topicWhere(t, "ok", func(topic string) bool { return on(src)(topic) && bridge.Partition(topic, partitions) != part })
	onDst := topicWhere(t, "ok", on(dst))
	opts := clusterOptions(prefix,
		bridge.Route{Pattern: onSrc, Direction: bridge.Import},
		bridge.Route{Pattern: onDst, Direction: bridge.Import})
	opts.Partitions = partitions
	opts.ReconnectMin, opts.ReconnectMax = 30*time.Second, 30*time.Second
	cc := shardACLClient(t, c, opts, "&"+prefix+"{*}.ok.*")
	in := newInstance(t, cc, opts)
	ctx := clusterCtx(t)

	refusedID, err := in.bridge.AddRoute(bridge.Route{Pattern: refused, Direction: bridge.Import})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.bridge.RouteReady(ctx, refusedID); !errors.Is(err, bridge.ErrSubscribe) || !strings.Contains(err.Error(), "NOPERM") {
		t.Fatalf("RouteReady of the refused route = %v, want ErrSubscribe and NOPERM", err)
	}

	// src holds no subscription in the slot (its only channel there was
	// refused), so it ends none when the slot moves: the bridge learns
	// the move from its client's layout only, at the next route change.
	moveSlot(t, c, bridge.HashSlot(chanOf(ok)), src, dst)
	eventually(t, func() bool {
		cc.ReloadState(ctx)
		node, err := cc.MasterForKey(ctx, chanOf(ok))
		return err == nil && node.Options().Addr == c.Node(dst).Addr()
	}, "the bridge's client to see the slot on node %d", dst)

	rec := record(t, in.bus, ok)
	id, err := in.bridge.AddRoute(bridge.Route{Pattern: ok, Direction: bridge.Import})
	if err != nil {
		t.Fatal(err)
	}
	// Far below the retry backoff (15 to 30 s).
	soon, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := in.bridge.RouteReady(soon, id); err != nil {
		t.Fatalf("RouteReady of %s, which the user may read, in the slot of a refused channel = %v, want nil (%s)", ok, err, in.errs)
	}
	for _, err := range in.errs.all() {
		if strings.Contains(err.Error(), chanOf(ok)) {
			t.Errorf("reported %v: %s was refused", err, chanOf(ok))
		}
	}
	if err := in.bridge.RouteReady(ctx, refusedID); !errors.Is(err, bridge.ErrSubscribe) {
		t.Errorf("RouteReady of the refused route after the move = %v, want ErrSubscribe", err)
	}

	admin := c.Client(t)
	const n = 50
	for i := range n {
		got, err := admin.SPublish(ctx, chanOf(ok), strconv.Itoa(i)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got != 1 {
			t.Fatalf("message %d reached %d subscribers, want 1", i, got)
		}
	}
	rec.waitOrdered(t, n)
	time.Sleep(50 * time.Millisecond)
	if got := rec.len(); got != n {
		t.Errorf("delivered %d of %s, want %d", got, ok, n)
	}
	checkAccounting(t, in.bridge)
	// src's connection, whose loop lost the slot with the refused channel
	// in it, stays up: it has no subscription of that channel to end.
	for _, err := range in.errs.all() {
		if errors.Is(err, bridge.ErrDisconnected) || strings.Contains(err.Error(), "MOVED") {
			t.Errorf("reported %v", err)
		}
	}
}
