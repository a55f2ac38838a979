package bench

import (
	"strconv"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// BenchmarkCapacityCluster is ClusterThroughput's cluster rows on three
// and on six nodes, the check of SCALING.md's cluster formulas (fitted on
// three nodes, predicting six). run.sh skips it; run it with
//
//	go test -run '^$' -bench CapacityCluster -benchtime 500ms -count 3 .
func BenchmarkCapacityCluster(b *testing.B) {
	single := bridgeServer(b)
	for _, n := range []int{3, 6} {
		b.Run(name("nodes=%d", n), func(b *testing.B) {
			c := startBenchCluster(b, n)
			nodes := nodeClients(b, c)
			for _, m := range clusterModes(single, c)[1:] {
				b.Run(m.name, func(b *testing.B) { clusterBurst(b, m, nodes) })
			}
		})
	}
}

// startBenchCluster starts an n-node cluster whose pub/sub clients have no
// output-buffer limit, as bridgeServer's, so that a burst measures
// throughput rather than Redis's disconnect policy.
func startBenchCluster(b *testing.B, n int) *redistest.Cluster {
	c := redistest.StartCluster(b, n)
	for i := range c.Len() {
		if _, err := c.Node(i).CLI("CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0"); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// nodeClients returns a client of each node of c, for INFO cpu.
func nodeClients(b *testing.B, c *redistest.Cluster) []*redis.Client {
	var cs []*redis.Client
	for i := range c.Len() {
		cs = append(cs, c.Node(i).Client(b))
	}
	return cs
}

// clusterBurst publishes b.N events to the topics in turn with mode m and
// waits for them all; it reports events/s, the latencies, and the CPU
// time per event of the servers (redis-ns/ev) and of this process
// (go-ns/ev), and the coalescing (ev/msg).
func clusterBurst(b *testing.B, m clusterMode, servers []*redis.Client) {
	rc := &receipts{lat: make([]int64, 0, b.N)}
	send, sender := m.setup(b, rc)
	buf := make([]byte, bridgePayload)
	st0, cpu0, proc0 := sender.Stats(), redisCPU(b, servers...), processCPU()
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
	b.ReportMetric(float64(processCPU()-proc0)/float64(b.N), "go-ns/ev")
	reportCoalescing(b, st0, sender.Stats())
	rc.report(b, elapsed)
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
	setup func(tb testing.TB, rc *receipts) (send func(topic string, p []byte), sender *bridge.Bridge)
}

func clusterModes(single *redistest.Server, c *redistest.Cluster) []clusterMode {
	pair := func(client func(tb testing.TB) redis.UniversalClient, tune func(*bridge.Options)) func(testing.TB, *receipts) (func(string, []byte), *bridge.Bridge) {
		return func(tb testing.TB, rc *receipts) (func(string, []byte), *bridge.Bridge) {
			send, sender := bridgePair(tb, func() redis.UniversalClient { return client(tb) }, clusterTopicNames, "bench.*", tune, rc.recv)
			// One event per topic goes through before the timer
			// starts: every channel is subscribed.
			buf := make([]byte, bridgePayload)
			for _, t := range clusterTopicNames {
				send(t, stamp(buf))
			}
			rc.check(tb, clusterTopics)
			rc.reset()
			return send, sender
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
			send, _ := m.setup(t, rc) // checks one event per topic
			buf := make([]byte, bridgePayload)
			for i := range 1000 {
				send(clusterTopic(i), stamp(buf))
			}
			rc.check(t, 1000)
		})
	}
}
