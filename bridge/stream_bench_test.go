package bridge_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// BenchmarkRoutes sends events from one bus to another through one Redis,
// end to end, over each kind of route: PubSub, Stream (XADD, then XREAD
// with a checkpoint per batch) and Group (XADD, then XREADGROUP and one
// XACK per batch). Throughput publishes b.N events in a burst; Latency one
// at a time, waiting for each. Both report events/s and the p50 and p99
// latency from Publish to the subscriber on the other bus.
//
//	go test -run '^$' -bench Routes -benchtime 100000x ./bridge/
func BenchmarkRoutes(b *testing.B) {
	srv := benchServer(b)
	kinds := []bridge.Delivery{bridge.PubSub, bridge.Stream, bridge.Group}
	b.Run("Throughput", func(b *testing.B) {
		for _, d := range kinds {
			b.Run(d.String(), func(b *testing.B) {
				lat := newLatencies(b, false)
				benchBurst(b, lat, setupRoute(b, srv, lat, d), nil)
			})
		}
	})
	b.Run("Latency", func(b *testing.B) {
		for _, d := range kinds {
			b.Run(d.String(), func(b *testing.B) {
				lat := newLatencies(b, true)
				benchOneByOne(b, lat, setupRoute(b, srv, lat, d), nil)
			})
		}
	})
}

// benchRun numbers the runs, so that each uses streams of its own.
var benchRun atomic.Int64

// setupRoute makes a sending and a receiving bus, each with a bridge over
// its own client, joined by one route of kind d on the exact topic
// bench.x, and returns the function that publishes one payload.
func setupRoute(b *testing.B, srv *redistest.Server, lat *latencies, d bridge.Delivery) func([]byte) {
	prefix := fmt.Sprintf("bench%d:", benchRun.Add(1))
	ids := map[bridge.Direction]string{bridge.Export: "sender", bridge.Import: "receiver"}
	client := func() redis.UniversalClient { return srv.Client(b) }
	sendBus := bridgePair(b, client, func(dir bridge.Direction) *bridge.Options {
		return &bridge.Options{
			Prefix:      prefix,
			InstanceID:  ids[dir],
			Routes:      []bridge.Route{{Pattern: "bench.x", Direction: dir, Delivery: d, MaxLen: int64(b.N + 1024)}},
			StreamBlock: 50 * time.Millisecond,
		}
	}, "bench.x", lat)
	bg := context.Background()
	return func(p []byte) { _ = sendBus.Publish(bg, "bench.x", p) }
}
