package bridge_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// BenchmarkCluster sends events from one bus to another through a
// three-node Redis Cluster on this machine, end to end, over 16 topics:
//
//   - sharded: exact routes with Partitions 16, so SPUBLISH and SSUBSCRIBE
//     on channels spread over the nodes; a message goes to its node only;
//   - classic: the same exact routes with ClassicPubSub, PUBLISH and
//     SUBSCRIBE: every node forwards every message to the others;
//   - pattern: one pattern route (PSUBSCRIBE), the fallback of routes
//     that cannot be sharded.
//
// Throughput publishes b.N events as fast as possible; Latency one at a
// time, waiting for each. Each reports events/s and the p50 and p99
// latency from publish to receipt.
//
//	go test -run '^$' -bench Cluster -benchtime 100000x ./bridge/
func BenchmarkCluster(b *testing.B) {
	c := redistest.StartCluster(b, 3)
	for i := range c.Len() {
		// Measure throughput, not Redis's disconnect policy for slow
		// pub/sub clients.
		if _, err := c.Node(i).CLI("CONFIG", "SET", "client-output-buffer-limit", "pubsub 0 0 0"); err != nil {
			b.Fatal(err)
		}
	}
	modes := []struct {
		name string
		opts func(d bridge.Direction) *bridge.Options
	}{
		{"sharded", func(d bridge.Direction) *bridge.Options { return clusterBenchOptions(d, false, false) }},
		{"classic", func(d bridge.Direction) *bridge.Options { return clusterBenchOptions(d, true, false) }},
		{"pattern", func(d bridge.Direction) *bridge.Options { return clusterBenchOptions(d, false, true) }},
	}
	b.Run("Throughput", func(b *testing.B) {
		for _, m := range modes {
			b.Run(m.name, func(b *testing.B) {
				lat := newLatencies(b, false)
				benchBurst(b, lat, setupClusterBridge(b, c, m.opts, lat), nil)
			})
		}
	})
	b.Run("Latency", func(b *testing.B) {
		for _, m := range modes {
			b.Run(m.name, func(b *testing.B) {
				lat := newLatencies(b, true)
				benchOneByOne(b, lat, setupClusterBridge(b, c, m.opts, lat), nil)
			})
		}
	})
}

const clusterBenchTopics = 16

func clusterBenchTopic(i int) string { return "bench.t" + strconv.Itoa(i%clusterBenchTopics) }

func clusterBenchOptions(d bridge.Direction, classic, pattern bool) *bridge.Options {
	var routes []bridge.Route
	if pattern {
		routes = []bridge.Route{{Pattern: "bench.*", Direction: d}}
	} else {
		for k := range clusterBenchTopics {
			routes = append(routes, bridge.Route{Pattern: clusterBenchTopic(k), Direction: d})
		}
	}
	return &bridge.Options{
		Prefix:        "cbench:",
		Routes:        routes,
		Partitions:    16,
		ClassicPubSub: classic,
	}
}

// setupClusterBridge starts a sending and a receiving bridge, each with its
// own bus and cluster client, and returns the function that publishes the
// next event, to the topics in turn.
func setupClusterBridge(b *testing.B, c *redistest.Cluster, opts func(bridge.Direction) *bridge.Options, lat *latencies) func([]byte) {
	client := func() redis.UniversalClient { return c.Client(b) }
	sendBus := bridgePair(b, client, opts, "bench.*", lat)
	bg := context.Background()
	topics := make([]string, clusterBenchTopics)
	for k := range topics {
		topics[k] = clusterBenchTopic(k)
	}
	i := 0
	return func(p []byte) {
		_ = sendBus.Publish(bg, topics[i%clusterBenchTopics], p)
		i++
	}
}
