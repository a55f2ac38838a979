package bridge_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/internal/redistest"
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
				lat := &latencies{d: make([]time.Duration, 0, b.N)}
				send := setupClusterBridge(b, c, m.opts, lat)
				buf := make([]byte, benchPayload)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := range b.N {
					send(i, stamp(buf))
				}
				lat.wait(b, b.N)
				elapsed := time.Since(start)
				b.StopTimer()
				lat.report(b, elapsed)
			})
		}
	})
	b.Run("Latency", func(b *testing.B) {
		for _, m := range modes {
			b.Run(m.name, func(b *testing.B) {
				lat := &latencies{d: make([]time.Duration, 0, b.N), got: make(chan struct{}, 1)}
				send := setupClusterBridge(b, c, m.opts, lat)
				buf := make([]byte, benchPayload)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := range b.N {
					send(i, stamp(buf))
					<-lat.got
				}
				elapsed := time.Since(start)
				b.StopTimer()
				lat.report(b, elapsed)
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
// i-th event.
func setupClusterBridge(b *testing.B, c *redistest.Cluster, opts func(bridge.Direction) *bridge.Options, lat *latencies) func(int, []byte) {
	sendBus, recvBus := bus.New(nil), bus.New(nil)
	big := b.N + 1024
	mk := func(d bridge.Direction) *bridge.Options {
		o := opts(d)
		o.OutboxMaxEvents, o.OutboxMaxBytes = big, big*256
		o.ImportQueueSize, o.ImportTopicQueueSize = big, big
		o.OnError = func(err error) { b.Error(err) }
		return o
	}
	sender, err := bridge.New(sendBus, c.Client(b), mk(bridge.Export))
	if err != nil {
		b.Fatal(err)
	}
	receiver, err := bridge.New(recvBus, c.Client(b), mk(bridge.Import))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx := context.Background()
		_ = sender.Close(ctx)
		_ = receiver.Close(ctx)
		if s := receiver.Stats(); s.ImportDropped != 0 || s.GapEvents != 0 || s.Duplicates != 0 {
			b.Errorf("receiver lost or reordered events: %+v", s)
		}
	})
	if _, err := recvBus.Subscribe("bench.*", func(_ context.Context, e bus.Event) {
		lat.add(e.Payload.([]byte))
	}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := receiver.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	bg := context.Background()
	topics := make([]string, clusterBenchTopics)
	for k := range topics {
		topics[k] = clusterBenchTopic(k)
	}
	return func(i int, p []byte) { _ = sendBus.Publish(bg, topics[i%clusterBenchTopics], p) }
}
