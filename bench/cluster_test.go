package bench

import (
	"strconv"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// BenchmarkClusterThroughput is BridgeThroughput over clusterTopics topics
// (published in turn), on a three-node Redis Cluster (redistest, three
// masters on this machine) beside one redis-server:
//
//   - busline: one redis-server, classic pub/sub (the reference row);
//   - busline-cluster-sharded: the cluster with exact routes and
//     Partitions clusterTopics, so that the topics' channels spread over
//     the nodes (SPUBLISH, SSUBSCRIBE) and a message goes to its node only;
//   - busline-cluster-classic: the cluster with ClassicPubSub (PUBLISH,
//     SUBSCRIBE): every node forwards every message to the others.
//
// Coalescing is on, as by default. redis-ns/ev is the CPU time the
// servers of the row (all three nodes for the cluster rows) spent per
// event, from INFO cpu. All the nodes, both bridges and the
// benchmark share this machine's cores: the sharded route's gain on a
// cluster is in spreading Redis's work over machines, which one machine
// cannot show, and what this measures is the cost of the route itself.
func BenchmarkClusterThroughput(b *testing.B) {
	single := bridgeServer(b)
	c := redistest.StartCluster(b, 3)
	for i := range c.Len() {
		// Measure throughput, not Redis's disconnect policy for slow
		// pub/sub clients (as bridgeServer does).
		if _, err := c.Node(i).CLI("CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0"); err != nil {
			b.Fatal(err)
		}
	}
	admin := []*redis.Client{single.Client(b)}
	var nodes []*redis.Client
	for i := range c.Len() {
		nodes = append(nodes, c.Node(i).Client(b))
	}
	for _, m := range clusterModes(single, c) {
		b.Run(m.name, func(b *testing.B) {
			servers := nodes
			if m.name == "busline" {
				servers = admin
			}
			rc := &receipts{lat: make([]int64, 0, b.N)}
			send := m.setup(b, rc)
			buf := make([]byte, bridgePayload)
			cpu0 := redisCPU(b, servers...)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				send(clusterTopic(i), stamp(buf))
			}
			waitFor(b, "every event", func() bool { return rc.n.Load() >= int64(b.N) })
			elapsed := time.Since(start)
			b.StopTimer()
			reportRedisCPU(b, cpu0, redisCPU(b, servers...))
			rc.report(b, elapsed)
		})
	}
}

// clusterTopics is the number of topics of the cluster scenario.
const clusterTopics = 16

// clusterTopicNames are "bench.t0" to "bench.t15".
var clusterTopicNames = func() []string {
	ts := make([]string, clusterTopics)
	for i := range ts {
		ts[i] = "bench.t" + strconv.Itoa(i)
	}
	return ts
}()

func clusterTopic(i int) string { return clusterTopicNames[i%clusterTopics] }

// clusterMode is a row of the cluster scenario.
type clusterMode struct {
	name  string
	setup func(tb testing.TB, rc *receipts) (send func(topic string, p []byte))
}

func clusterModes(single *redistest.Server, c *redistest.Cluster) []clusterMode {
	pair := func(client func(tb testing.TB) redis.UniversalClient, tune func(*bridge.Options)) func(testing.TB, *receipts) func(string, []byte) {
		return func(tb testing.TB, rc *receipts) func(string, []byte) {
			send := bridgePair(tb, func() redis.UniversalClient { return client(tb) }, clusterTopicNames, "bench.*", tune, rc.recv)
			// One event per topic goes through before the timer
			// starts: every channel is subscribed.
			buf := make([]byte, bridgePayload)
			for _, t := range clusterTopicNames {
				send(t, stamp(buf))
			}
			rc.check(tb, clusterTopics)
			rc.reset()
			return send
		}
	}
	one := func(tb testing.TB) redis.UniversalClient { return single.Client(tb) }
	cluster := func(tb testing.TB) redis.UniversalClient { return c.Client(tb) }
	return []clusterMode{
		{"busline", pair(one, nil)},
		{"busline-cluster-sharded", pair(cluster, func(o *bridge.Options) { o.Partitions = clusterTopics })},
		{"busline-cluster-classic", pair(cluster, func(o *bridge.Options) { o.ClassicPubSub = true })},
	}
}

func TestClusterScenario(t *testing.T) {
	single := bridgeServer(t)
	c := redistest.StartCluster(t, 3)
	for _, m := range clusterModes(single, c) {
		t.Run(m.name, func(t *testing.T) {
			rc := &receipts{}
			send := m.setup(t, rc) // checks one event per topic
			buf := make([]byte, bridgePayload)
			for i := range 1000 {
				send(clusterTopic(i), stamp(buf))
			}
			rc.check(t, 1000)
		})
	}
}
