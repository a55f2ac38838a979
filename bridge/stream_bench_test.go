package bridge_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/internal/redistest"
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
				lat := &latencies{d: make([]time.Duration, 0, b.N)}
				send := setupRoute(b, srv, lat, d)
				buf := make([]byte, benchPayload)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					send(stamp(buf))
				}
				lat.wait(b, b.N)
				elapsed := time.Since(start)
				b.StopTimer()
				lat.report(b, elapsed)
			})
		}
	})
	b.Run("Latency", func(b *testing.B) {
		for _, d := range kinds {
			b.Run(d.String(), func(b *testing.B) {
				lat := &latencies{d: make([]time.Duration, 0, b.N), got: make(chan struct{}, 1)}
				send := setupRoute(b, srv, lat, d)
				buf := make([]byte, benchPayload)
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for range b.N {
					send(stamp(buf))
					<-lat.got
				}
				elapsed := time.Since(start)
				b.StopTimer()
				lat.report(b, elapsed)
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
	sendBus, recvBus := bus.New(nil), bus.New(nil)
	big := b.N + 1024
	prefix := fmt.Sprintf("bench%d:", benchRun.Add(1))
	opts := func(id string, dir bridge.Direction) *bridge.Options {
		return &bridge.Options{
			Prefix:               prefix,
			InstanceID:           id,
			Routes:               []bridge.Route{{Pattern: "bench.x", Direction: dir, Delivery: d, MaxLen: int64(big)}},
			OutboxMaxEvents:      big,
			OutboxMaxBytes:       big * 256,
			ImportQueueSize:      big,
			ImportTopicQueueSize: big,
			StreamBlock:          50 * time.Millisecond,
			OnError:              func(err error) { b.Error(err) },
		}
	}
	sender, err := bridge.New(sendBus, srv.Client(b), opts("sender", bridge.Export))
	if err != nil {
		b.Fatal(err)
	}
	receiver, err := bridge.New(recvBus, srv.Client(b), opts("receiver", bridge.Import))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx := context.Background()
		_ = sender.Close(ctx)
		_ = receiver.Close(ctx)
		if s := receiver.Stats(); s.ImportDropped != 0 || s.GapEvents != 0 {
			b.Errorf("receiver lost events: %+v", s)
		}
	})
	if _, err := recvBus.Subscribe("bench.x", func(_ context.Context, e bus.Event) {
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
	return func(p []byte) { _ = sendBus.Publish(bg, "bench.x", p) }
}
