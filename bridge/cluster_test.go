package bridge_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/bustest"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// The tests in this file run against a real Redis Cluster of three masters
// that they form themselves (redistest.StartCluster, about two seconds).
// TestClusterBridge shares one cluster between subtests that leave it
// unchanged; the tests that restart a node or move a slot have their own.

// clusterCtx returns a context for the commands of a test (on a cluster
// or not), bounded by waitTimeout.
func clusterCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// nodeClients returns a plain client per node of c, closed at cleanup.
func nodeClients(t *testing.T, c *redistest.Cluster) []*redis.Client {
	var nodes []*redis.Client
	for i := range c.Len() {
		nodes = append(nodes, c.Node(i).Client(t))
	}
	return nodes
}

// owner returns the index of the node serving channel's slot.
func owner(t *testing.T, c *redistest.Cluster, channel string) int {
	t.Helper()
	i := c.NodeForSlot(clusterCtx(t), bridge.HashSlot(channel))
	if i < 0 {
		t.Fatalf("no node serves the slot of %q", channel)
	}
	return i
}

// plainSubscriber subscribes with classic SUBSCRIBE and PSUBSCRIBE on one
// node and counts what it receives.
type plainSubscriber struct {
	ps   *redis.PubSub
	msgs chan *redis.Message
}

func subscribePlain(t *testing.T, rdb *redis.Client, channels []string, patterns []string) *plainSubscriber {
	t.Helper()
	ctx := clusterCtx(t)
	ps := rdb.Subscribe(ctx)
	t.Cleanup(func() { _ = ps.Close() })
	if len(channels) > 0 {
		if err := ps.Subscribe(ctx, channels...); err != nil {
			t.Fatal(err)
		}
	}
	if len(patterns) > 0 {
		if err := ps.PSubscribe(ctx, patterns...); err != nil {
			t.Fatal(err)
		}
	}
	for range len(channels) + len(patterns) {
		if _, err := ps.Receive(ctx); err != nil { // the confirmations
			t.Fatal(err)
		}
	}
	return &plainSubscriber{ps: ps, msgs: nil}
}

// count reads what arrived within d.
func (p *plainSubscriber) count(d time.Duration) int {
	n := 0
	deadline := time.Now().Add(d)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return n
		}
		msg, err := p.ps.ReceiveTimeout(context.Background(), left)
		if err != nil {
			return n
		}
		if _, ok := msg.(*redis.Message); ok {
			n++
		}
	}
}

// countClients returns the number of connections to one node whose CLIENT
// LIST field (such as "ssub=") is not zero.
func countClients(t *testing.T, rdb *redis.Client, field string) int {
	t.Helper()
	list, err := rdb.ClientList(clusterCtx(t)).Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(list, field) {
		t.Fatalf("CLIENT LIST has no %s field:\n%s", field, list)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, field); ok && v != "0" {
				n++
			}
		}
	}
	return n
}

// clusterOptions returns test options on a cluster with its own prefix.
func clusterOptions(prefix string, routes ...bridge.Route) *bridge.Options {
	o := testOptions(nil, routes...)
	o.Prefix = prefix
	return o
}

// exchange publishes n events on topic through from and checks that to
// receives exactly them, in order.
func exchange(t *testing.T, from, to *instance, topic string, n int) {
	t.Helper()
	rec := record(t, to.bus, topic)
	for i := range n {
		publish(t, from.bus, topic, strconv.Itoa(i))
	}
	events := rec.waitOrdered(t, n)
	for i, e := range events {
		if !e.Remote() || e.Meta.Source != from.bridge.InstanceID() {
			t.Fatalf("%s: event %d not from %s: %+v", topic, i, from.bridge.InstanceID(), e)
		}
		if got := atoi(t, e.Payload); got != i {
			t.Fatalf("%s: event %d carries %d (order per publisher)", topic, i, got)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if rec.len() != n {
		t.Fatalf("%s: %d events, want %d", topic, rec.len(), n)
	}
}

func TestClusterBridge(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	t.Run("Sharded", func(t *testing.T) { testClusterSharded(t, c) })
	t.Run("Partitions", func(t *testing.T) { testClusterPartitions(t, c) })
	t.Run("PatternFallback", func(t *testing.T) { testClusterPatternFallback(t, c) })
	t.Run("ClassicPubSub", func(t *testing.T) { testClusterClassic(t, c) })
	t.Run("RawInterop", func(t *testing.T) { testClusterRawInterop(t, c) })
	t.Run("KeySlot", func(t *testing.T) { testClusterKeySlot(t, c) })
	t.Run("ACL", func(t *testing.T) { testClusterACL(t, c) })
	t.Run("Connections", func(t *testing.T) { testClusterConnections(t, c) })
}

// testClusterACL runs two bridges as an ACL user made, on every node, from
// ACLRules and ClusterACLRules alone: sharded exact routes and a pattern
// route both carry events, and nothing is refused.
func testClusterACL(t *testing.T, c *redistest.Cluster) {
	ctx := clusterCtx(t)
	routes := []bridge.Route{{Pattern: "acl.exact"}, {Pattern: "acl.p.*"}}
	rules, err := bridge.ACLRules(clusterOptions("acl:", routes...), '.')
	if err != nil {
		t.Fatal(err)
	}
	rules = append(rules, bridge.ClusterACLRules()...)
	for _, rdb := range nodeClients(t, c) {
		args := []any{"ACL", "SETUSER", "clusterbridge", "on", ">s3cret"}
		for _, r := range rules {
			args = append(args, r)
		}
		if err := rdb.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER %q: %v", rules, err)
		}
	}
	client := func() *redis.ClusterClient {
		o := c.ClusterOptions()
		o.Username, o.Password = "clusterbridge", "s3cret"
		cc := redis.NewClusterClient(o)
		t.Cleanup(func() { _ = cc.Close() })
		return cc
	}
	a := newInstance(t, client(), clusterOptions("acl:", routes...))
	b := newInstance(t, client(), clusterOptions("acl:", routes...))
	exchange(t, a, b, "acl.exact", 20)
	exchange(t, b, a, "acl.p.x", 20)
	for _, in := range []*instance{a, b} {
		if strings.Contains(in.errs.String(), "NOPERM") {
			t.Errorf("%s: refused:\n%s", in.bridge.InstanceID(), in.errs)
		}
	}
}

// testClusterSharded exchanges events both ways between two bridges on
// exact routes, and checks on the nodes that they travel by sharded
// pub/sub: the channels are shard channels of the node serving their slot
// only, not classic channels, and a classic SUBSCRIBE on that node or
// another sees nothing of the events.
func testClusterSharded(t *testing.T, c *redistest.Cluster) {
	ctx := clusterCtx(t)
	routes := []bridge.Route{{Pattern: "orders.created"}, {Pattern: "orders.paid"}, {Pattern: "users.signup"}}
	a := newInstance(t, c.Client(t), clusterOptions("s:", routes...))
	b := newInstance(t, c.Client(t), clusterOptions("s:", routes...))
	want := []string{"s:orders.created", "s:orders.paid", "s:users.signup"}
	if got := b.bridge.ShardChannels(); !slices.Equal(got, want) {
		t.Fatalf("ShardChannels() = %v, want %v", got, want)
	}
	if chans, pats := b.bridge.RedisSubscriptions(); len(chans)+len(pats) != 0 {
		t.Fatalf("classic subscriptions on a cluster: %v %v", chans, pats)
	}

	nodes := nodeClients(t, c)
	owners := map[int]bool{}
	for _, ch := range want {
		o := owner(t, c, ch)
		owners[o] = true
		for i, rdb := range nodes {
			shard, err := rdb.PubSubShardChannels(ctx, "s:*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if has := slices.Contains(shard, ch); has != (i == o) {
				t.Errorf("node %d (owner of %s: %d): PUBSUB SHARDCHANNELS = %v", i, ch, o, shard)
			}
			classic, err := rdb.PubSubChannels(ctx, "s:*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(classic) != 0 {
				t.Errorf("node %d: classic channels %v", i, classic)
			}
			if i == o {
				n, err := rdb.PubSubShardNumSub(ctx, ch).Result()
				if err != nil {
					t.Fatal(err)
				}
				if n[ch] != 2 {
					t.Errorf("node %d: PUBSUB SHARDNUMSUB %s = %d, want 2 (both bridges)", i, ch, n[ch])
				}
			}
		}
	}
	if len(owners) < 2 {
		t.Logf("the three channels share %d node(s)", len(owners))
	}

	// Classic subscribers on every node, for every channel: sharded
	// messages must not reach them.
	var plain []*plainSubscriber
	for _, rdb := range nodes {
		plain = append(plain, subscribePlain(t, rdb, want, []string{"s:*"}))
	}

	const n = 200
	exchange(t, a, b, "orders.created", n)
	exchange(t, b, a, "orders.paid", n)
	exchange(t, a, b, "users.signup", n)
	for i, p := range plain {
		if got := p.count(100 * time.Millisecond); got != 0 {
			t.Errorf("classic subscriber on node %d received %d sharded messages", i, got)
		}
	}
	for name, in := range map[string]*instance{"a": a, "b": b} {
		checkAccounting(t, in.bridge)
		s := in.bridge.Stats()
		if s.Reconnects != 0 || s.ShardRebuilds != 0 || s.ExportRejected != 0 {
			t.Errorf("%s: %+v", name, s)
		}
	}
	if got := a.bridge.Stats().Exported + b.bridge.Stats().Exported; got != 3*n {
		t.Errorf("exported %d in total, want %d", got, 3*n)
	}
}

// testClusterPartitions routes many topics with partition tags: their
// channels carry the documented tag, fall into at most Partitions slots on
// more than one node, each bridge holds one sharded connection per node,
// and events flow on every topic.
func testClusterPartitions(t *testing.T, c *redistest.Cluster) {
	const topics, partitions = 60, 8
	var routes []bridge.Route
	for k := range topics {
		routes = append(routes, bridge.Route{Pattern: fmt.Sprintf("sensor.t%d", k)})
	}
	optsA := clusterOptions("p:", routes...)
	optsA.Partitions = partitions
	optsB := clusterOptions("p:", routes...)
	optsB.Partitions = partitions
	optsB.InstanceID = "partitions-b"
	a := newInstance(t, c.Client(t), optsA)
	b := newInstance(t, c.Client(t), optsB)

	slots, nodesUsed := map[int]bool{}, map[int]bool{}
	chans := b.bridge.ShardChannels()
	if len(chans) != topics {
		t.Fatalf("%d shard channels, want %d", len(chans), topics)
	}
	for k := range topics {
		topic := fmt.Sprintf("sensor.t%d", k)
		ch := bridge.ShardChannel("p:", topic, partitions)
		wantCh := "p:{" + strconv.Itoa(bridge.Partition(topic, partitions)) + "}." + topic
		if ch != wantCh || !slices.Contains(chans, ch) {
			t.Fatalf("channel of %s = %q, want %q among %v", topic, ch, wantCh, chans)
		}
		slots[bridge.HashSlot(ch)] = true
		nodesUsed[owner(t, c, ch)] = true
	}
	if len(slots) < 2 || len(slots) > partitions {
		t.Errorf("%d topics in %d slots, want 2 to %d", topics, len(slots), partitions)
	}
	if len(nodesUsed) < 2 {
		t.Errorf("%d topics on %d node(s), want them spread", topics, len(nodesUsed))
	}

	// One sharded connection per node and bridge: CLIENT LIST shows the
	// connections holding shard subscriptions (ssub=N).
	for i, rdb := range nodeClients(t, c) {
		conns := countClients(t, rdb, "ssub=")
		want := 0
		if nodesUsed[i] {
			want = 2
		}
		if conns != want {
			t.Errorf("node %d: %d connections with shard subscriptions, want %d", i, conns, want)
		}
	}

	rec := record(t, b.bus, "sensor.*")
	const perTopic = 20
	for i := range perTopic {
		for k := range topics {
			publish(t, a.bus, fmt.Sprintf("sensor.t%d", k), strconv.Itoa(i))
		}
	}
	events := rec.waitOrdered(t, topics*perTopic)
	next := map[string]int{}
	for _, e := range events {
		if got := atoi(t, e.Payload); got != next[e.Topic] {
			t.Fatalf("%s: got %d, want %d", e.Topic, got, next[e.Topic])
		}
		next[e.Topic]++
	}
	if len(next) != topics {
		t.Fatalf("events on %d topics, want %d", len(next), topics)
	}
	checkAccounting(t, b.bridge)
}

// testClusterPatternFallback checks that a pattern route, which Redis
// cannot shard, works on a cluster with classic PSUBSCRIBE and PUBLISH,
// whose messages every node sees.
func testClusterPatternFallback(t *testing.T, c *redistest.Cluster) {
	route := bridge.Route{Pattern: "chat.*"}
	opts := func() *bridge.Options {
		o := clusterOptions("f:", route)
		o.CoalesceBytes = -1 // the plain subscribers count messages
		return o
	}
	a := newInstance(t, c.Client(t), opts())
	b := newInstance(t, c.Client(t), opts())
	if got := b.bridge.ShardChannels(); len(got) != 0 {
		t.Fatalf("ShardChannels() = %v for a pattern route", got)
	}
	if _, pats := b.bridge.RedisSubscriptions(); !slices.Equal(pats, []string{"f:chat.*"}) {
		t.Fatalf("patterns %v", pats)
	}
	// Two connections (one per bridge) hold a pattern subscription:
	// CLIENT LIST shows psub=1 for each.
	psubs := 0
	var plain []*plainSubscriber
	for _, rdb := range nodeClients(t, c) {
		psubs += countClients(t, rdb, "psub=")
		plain = append(plain, subscribePlain(t, rdb, []string{"f:chat.room1"}, nil))
	}
	if psubs != 2 {
		t.Errorf("%d connections with pattern subscriptions over the nodes, want 2 (one per bridge)", psubs)
	}
	const n = 50
	exchange(t, a, b, "chat.room1", n)
	exchange(t, b, a, "chat.room2", n)
	// Classic PUBLISH reaches every node: each plain subscriber of
	// chat.room1 gets every event.
	for i, p := range plain {
		if got := p.count(200 * time.Millisecond); got != n {
			t.Errorf("classic subscriber on node %d received %d messages, want %d", i, got, n)
		}
	}
}

// testClusterClassic checks Options.ClassicPubSub: exact routes on a
// cluster use SUBSCRIBE and PUBLISH on Prefix + topic, as on a single
// server, and keep the order of each publisher's events although go-redis
// would spread keyless PUBLISHes over the nodes.
func testClusterClassic(t *testing.T, c *redistest.Cluster) {
	ctx := clusterCtx(t)
	opts := func() *bridge.Options {
		o := clusterOptions("c:", bridge.Route{Pattern: "jobs.done"}, bridge.Route{Pattern: "jobs.failed"})
		o.ClassicPubSub = true
		o.Partitions = 16 // ignored with ClassicPubSub
		return o
	}
	a := newInstance(t, c.Client(t), opts())
	b := newInstance(t, c.Client(t), opts())
	if got := b.bridge.ShardChannels(); len(got) != 0 {
		t.Fatalf("ShardChannels() = %v with ClassicPubSub", got)
	}
	if chans, _ := b.bridge.RedisSubscriptions(); !slices.Equal(chans, []string{"c:jobs.done", "c:jobs.failed"}) {
		t.Fatalf("classic channels %v", chans)
	}
	subscribers := 0
	for _, rdb := range nodeClients(t, c) {
		n, err := rdb.PubSubNumSub(ctx, "c:jobs.done").Result()
		if err != nil {
			t.Fatal(err)
		}
		subscribers += int(n["c:jobs.done"])
		if shard, err := rdb.PubSubShardChannels(ctx, "c:*").Result(); err != nil || len(shard) != 0 {
			t.Fatalf("shard channels %v, %v", shard, err)
		}
	}
	if subscribers != 2 {
		t.Errorf("%d classic subscribers of c:jobs.done over the nodes, want 2", subscribers)
	}
	exchange(t, a, b, "jobs.done", 300)
	exchange(t, b, a, "jobs.failed", 300)
	for _, in := range []*instance{a, b} {
		if s := in.bridge.Stats(); s.Duplicates != 0 || s.Gaps != 0 {
			t.Errorf("reordered events: %+v", s)
		}
	}
}

// testClusterRawInterop checks that a plain Redis client takes part in a
// raw sharded route by the documented channel naming: its SPUBLISH reaches
// the bridge, and its SSUBSCRIBE receives the bridge's exports.
func testClusterRawInterop(t *testing.T, c *redistest.Cluster) {
	ctx := clusterCtx(t)
	const partitions = 16
	opts := clusterOptions("r:", bridge.Route{Pattern: "alerts.disk", Raw: true, Codec: bridge.Text()})
	opts.Partitions = partitions
	in := newInstance(t, c.Client(t), opts)
	rec := record(t, in.bus, "alerts.disk")
	ch := bridge.ShardChannel("r:", "alerts.disk", partitions)

	cc := c.Client(t)
	ps := cc.SSubscribe(ctx, ch)
	t.Cleanup(func() { _ = ps.Close() })
	if _, err := ps.Receive(ctx); err != nil { // confirmation
		t.Fatal(err)
	}
	if err := cc.SPublish(ctx, ch, "disk full").Err(); err != nil {
		t.Fatal(err)
	}
	if e := rec.waitFor(t, 1)[0]; e.Payload != "disk full" || e.Meta.Source != bridge.RawSource {
		t.Fatalf("imported %+v", e)
	}
	publish(t, in.bus, "alerts.disk", "disk ok")
	for {
		msg, err := ps.ReceiveTimeout(ctx, waitTimeout)
		if err != nil {
			t.Fatal(err)
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			continue
		}
		if m.Channel != ch {
			t.Fatalf("message on %q, want %q", m.Channel, ch)
		}
		if m.Payload == "disk full" {
			continue // the first message, which the client sent itself
		}
		if m.Payload != "disk ok" {
			t.Fatalf("plain SSUBSCRIBE got %q", m.Payload)
		}
		break
	}
	// The bridge dropped its own raw echo, and imported the plain
	// client's message once.
	eventually(t, func() bool { return in.bridge.Stats().EchoesDropped == 1 }, "echo")
	if rec.len() != 2 { // its own local event, and the plain client's
		t.Fatalf("%d local events, want 2", rec.len())
	}
}

// testClusterKeySlot checks HashSlot against CLUSTER KEYSLOT.
func testClusterKeySlot(t *testing.T, c *redistest.Cluster) {
	ctx := clusterCtx(t)
	rdb := c.Node(0).Client(t)
	names := []string{"", "a", "foo", "app:orders.created", "{user1000}.following", "foo{}{bar}", "foo{{bar}}zap",
		"foo{bar}{zap}", "{", "}", "{}", "x{y", "é{ü}", "p:{7}.sensor.t1", strings.Repeat("long", 100)}
	for k := range 200 {
		names = append(names, bridge.ShardChannel("app:", "topic."+strconv.Itoa(k), 64))
	}
	for _, name := range names {
		want, err := rdb.ClusterKeySlot(ctx, name).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got := bridge.HashSlot(name); got != int(want) {
			t.Errorf("HashSlot(%q) = %d, CLUSTER KEYSLOT says %d", name, got, want)
		}
	}
}

// topicOnNode returns the first topic prefix+".N" whose sharded channel
// (without partitions) is served by node i.
func topicOnNode(t *testing.T, c *redistest.Cluster, chanPrefix, topicPrefix string, i int) string {
	t.Helper()
	return topicWhere(t, topicPrefix, func(topic string) bool {
		return owner(t, c, bridge.ShardChannel(chanPrefix, topic, 0)) == i
	})
}

// topicWhere returns the first topic topicPrefix+".N" for which ok holds.
func topicWhere(t *testing.T, topicPrefix string, ok func(topic string) bool) string {
	t.Helper()
	for k := range 1000 {
		if topic := topicPrefix + "." + strconv.Itoa(k); ok(topic) {
			return topic
		}
	}
	t.Fatalf("no topic %s.N fits", topicPrefix)
	return ""
}

// TestClusterNodeRestart kills the node that serves an imported channel and
// restarts it. The importer notices (ErrDisconnected), resubscribes by
// itself once the node is back and reports the possible gap; exports made
// while the node was down are held and sent, never counted as refused
// (the node answers CLUSTERDOWN for a while after it restarts); and events
// flow again, complete and in order.
func TestClusterNodeRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a cluster node: several seconds")
	}
	c := redistest.StartCluster(t, 3)
	const topic = "orders.created"
	i := owner(t, c, bridge.ShardChannel("n:", topic, 0))
	outage := topicOnNode(t, c, "n:", "outage", i)
	routes := []bridge.Route{{Pattern: topic}, {Pattern: outage}}
	a := newInstance(t, c.Client(t), clusterOptions("n:", routes...))
	b := newInstance(t, c.Client(t), clusterOptions("n:", routes...))
	exchange(t, a, b, topic, 50)

	c.Node(i).Kill()
	eventually(t, func() bool { return b.errs.count(bridge.ErrDisconnected) > 0 }, "the importer to notice")
	const held = 20
	for k := range held {
		publish(t, a.bus, outage, strconv.Itoa(k))
	}
	c.Node(i).Restart()
	c.WaitOK()

	ready(t, b.bridge)
	eventually(t, func() bool { return a.bridge.Stats().Exported == 50+held }, "the held exports to be sent: %v",
		func() string { return fmt.Sprintf("%+v", a.bridge.Stats()) })
	if s := a.bridge.Stats(); s.ExportRejected != 0 || s.OutboxDropped != 0 {
		t.Fatalf("exports refused or dropped across the restart: %+v\n%s", s, a.errs)
	}
	eventually(t, func() bool { return b.bridge.Stats().Reconnects >= 1 }, "a reconnect to be counted")
	if b.errs.count(bridge.ErrPossibleGap) == 0 {
		t.Errorf("no ErrPossibleGap reported after resubscribing:\n%s", b.errs)
	}
	exchange(t, a, b, topic, 100)
	exchange(t, b, a, topic, 100)
	checkAccounting(t, b.bridge)
}

// TestClusterSlotMigration moves the slot of an imported channel to
// another node, as resharding does. The node that loses the slot ends the
// subscription with an unsolicited SUNSUBSCRIBE; the bridge rebuilds that
// shard's subscription on the new node (Stats.ShardRebuilds) by itself, and
// events flow again.
func TestClusterSlotMigration(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	ctx := clusterCtx(t)
	const topic = "orders.created"
	ch := bridge.ShardChannel("m:", topic, 0)
	slot := bridge.HashSlot(ch)
	src := owner(t, c, ch)
	dst := (src + 1) % 3
	route := bridge.Route{Pattern: topic}
	a := newInstance(t, c.Client(t), clusterOptions("m:", route))
	b := newInstance(t, c.Client(t), clusterOptions("m:", route))
	exchange(t, a, b, topic, 20)

	moveSlot(t, c, slot, src, dst)

	eventually(t, func() bool { return b.bridge.Stats().ShardRebuilds >= 1 }, "a rebuild")
	dstClient := c.Node(dst).Client(t)
	eventually(t, func() bool {
		n, err := dstClient.PubSubShardNumSub(ctx, ch).Result()
		return err == nil && n[ch] == 2
	}, "both bridges to subscribe on the new node")
	ready(t, b.bridge)
	ready(t, a.bridge)
	exchange(t, a, b, topic, 100)
	exchange(t, b, a, topic, 100)
	checkAccounting(t, b.bridge)
}

// moveSlot moves slot, which holds no keys, from node src to node dst of c,
// a cluster of three nodes, as resharding does, and waits until the nodes
// agree.
func moveSlot(t *testing.T, c *redistest.Cluster, slot, src, dst int) {
	t.Helper()
	ids := make([]string, 3)
	for k := range ids {
		id, err := c.Node(k).CLI("CLUSTER", "MYID")
		if err != nil {
			t.Fatal(err)
		}
		ids[k] = id
	}
	s := strconv.Itoa(slot)
	for _, step := range []struct {
		node int
		args []string
	}{
		{dst, []string{"CLUSTER", "SETSLOT", s, "IMPORTING", ids[src]}},
		{src, []string{"CLUSTER", "SETSLOT", s, "MIGRATING", ids[dst]}},
		{dst, []string{"CLUSTER", "SETSLOT", s, "NODE", ids[dst]}},
		{src, []string{"CLUSTER", "SETSLOT", s, "NODE", ids[dst]}},
		{3 - src - dst, []string{"CLUSTER", "SETSLOT", s, "NODE", ids[dst]}},
	} {
		if out, err := c.Node(step.node).CLI(step.args...); err != nil {
			t.Fatalf("node %d: %v: %s", step.node, err, out)
		}
	}
	eventually(t, func() bool { return c.NodeForSlot(clusterCtx(t), slot) == dst }, "the slot to move")
}

// TestClusterDurablePartitions runs durable routes on a cluster with
// Options.Partitions set: partitions tag sharded channels only, so the
// entries must still name their topic and reach the importer (every entry
// was once filtered out, its topic read as "{0}.dp.orders").
func TestClusterDurablePartitions(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	for _, tc := range []struct {
		name       string
		partitions int
		route      bridge.Route
	}{
		{"stream", 1, bridge.Route{Pattern: "dp.orders", Delivery: bridge.Stream}},
		{"stream 8 partitions", 8, bridge.Route{Pattern: "dp.orders", Delivery: bridge.Stream, Stream: "dp8"}},
		{"group", 1, bridge.Route{Pattern: "dp.orders", Delivery: bridge.Group, Group: "dp", Stream: "dpg"}},
		{"stream pattern", 1, bridge.Route{Pattern: "dp.*", Delivery: bridge.Stream, Stream: "dpp"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 50
			newSide := func(d bridge.Direction, id string) (*bus.Bus, *bridge.Bridge) {
				b := bus.New(nil)
				r := tc.route
				r.Direction = d
				opts := testOptions(nil, r)
				opts.Partitions = tc.partitions
				opts.InstanceID = id
				opts.StreamBlock = 100 * time.Millisecond
				return b, newBridge(t, b, c.Client(t), opts)
			}
			expBus, exp := newSide(bridge.Export, "exp-"+tc.name)
			impBus, imp := newSide(bridge.Import, "imp-"+tc.name)
			ready(t, exp)
			ready(t, imp)
			rec := bustest.Record(t, impBus, "dp.*")
			for i := range n {
				if err := expBus.Publish(context.Background(), "dp.orders", i); err != nil {
					t.Fatal(err)
				}
			}
			rec.WaitN(n)
			// Counted once the local publish returned, after the
			// recorder saw the event.
			eventually(t, func() bool { return imp.Stats().Imported == n }, "Imported to reach %d", n)
			if s := imp.Stats(); s.Filtered != 0 {
				t.Errorf("filtered %d entries, want 0", s.Filtered)
			}
		})
	}
}
