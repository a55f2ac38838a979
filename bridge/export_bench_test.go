package bridge_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// The export benchmarks measure the sending side alone: from a local
// Publish to Redis's reply to the PUBLISH that carries it, with no
// receiver, so that what the bridge's export path costs is seen apart from
// the importer's (BenchmarkThroughput and BenchmarkLatency measure both).
// They compare it with go-redis publishing the same payloads, pipelined
// by hand in batches of the bridge's BatchSize, or one call at a time.
//
//	go test -run '^$' -bench 'Export(Throughput|Latency)' -benchmem ./bridge/

// replied is a go-redis hook that signals on ch each time a command or a
// pipeline has its reply. It never blocks: one signal is kept.
type replied struct{ ch chan struct{} }

func newReplied() *replied { return &replied{ch: make(chan struct{}, 1)} }

func (h *replied) signal() {
	select {
	case h.ch <- struct{}{}:
	default:
	}
}

func (h *replied) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *replied) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.signal()
		return err
	}
}

func (h *replied) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.signal()
		return err
	}
}

// exportOnly returns a bus whose bridge exports pattern over rdb with
// CoalesceBytes coalesce, its outbox sized for n events of size bytes.
func exportOnly(b *testing.B, rdb redis.UniversalClient, pattern string, coalesce, n, size int) (*bus.Bus, *bridge.Bridge) {
	sendBus := bus.New(nil)
	br, err := bridge.New(sendBus, rdb, &bridge.Options{
		Prefix:          "bench:",
		Routes:          []bridge.Route{{Pattern: pattern, Direction: bridge.Export}},
		CoalesceBytes:   coalesce,
		OutboxMaxEvents: n + 1024,
		OutboxMaxBytes:  (n + 1024) * (size + 256),
		OnError:         func(err error) { b.Error(err) },
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = br.Close(context.Background())
		_ = sendBus.Close(context.Background())
	})
	return sendBus, br
}

// BenchmarkExportThroughput publishes b.N events as fast as it can and
// waits until Redis has answered the PUBLISHes of them all.
func BenchmarkExportThroughput(b *testing.B) {
	srv := benchServer(b)
	for _, sc := range []struct {
		topics, size int
	}{{1, benchPayload}, {1024, benchPayload}, {1, 16 << 10}} {
		for _, tr := range []struct {
			name     string
			coalesce int // 0: go-redis pipelined by hand
		}{{"bridge", 64 << 10}, {"bridge-uncoalesced", -1}, {"go-redis-pipelined", 0}} {
			b.Run(fmt.Sprintf("topics=%d/payload=%d/%s", sc.topics, sc.size, tr.name), func(b *testing.B) {
				payload := make([]byte, sc.size)
				if tr.coalesce == 0 {
					exportPipelined(b, srv, sc.topics, payload)
					return
				}
				sendBus, br := exportOnly(b, srv.Client(b), benchRoute(sc.topics), tr.coalesce, b.N, sc.size)
				names, ctx := benchTopics(sc.topics), context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				start, cpu := time.Now(), processCPU()
				for i := range b.N {
					_ = sendBus.Publish(ctx, names[i%len(names)], payload)
				}
				deadline := start.Add(2 * time.Minute)
				for br.Stats().Exported < uint64(b.N) {
					if time.Now().After(deadline) {
						b.Fatalf("exported %d of %d events", br.Stats().Exported, b.N)
					}
					time.Sleep(100 * time.Microsecond)
				}
				reportRate(b, time.Since(start), processCPU()-cpu)
			})
		}
	}
}

// exportPipelined publishes b.N copies of payload with go-redis, in
// pipelines of the bridge's default BatchSize, copying each as the bridge's
// codec does.
func exportPipelined(b *testing.B, srv *redistest.Server, topics int, payload []byte) {
	rdb, ctx := srv.Client(b), context.Background()
	channels := rawChannels(topics)
	pipe := rdb.Pipeline()
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), processCPU()
	for i := range b.N {
		pipe.Publish(ctx, channels[i%len(channels)], append([]byte(nil), payload...))
		if (i+1)%512 == 0 || i == b.N-1 {
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	reportRate(b, time.Since(start), processCPU()-cpu)
}

// reportRate reports the events/s over elapsed and the CPU time per event
// the process used, cpu (0: not measured): the measure a machine shared
// with other work disturbs least (Redis's own time is not in it).
func reportRate(b *testing.B, elapsed, cpu time.Duration) {
	b.StopTimer()
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/event")
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	b.ReportMetric(0, "ns/op") // per-op time is meaningless for a burst
}

// BenchmarkExportLatency publishes one event at a time and waits for
// Redis's reply to its PUBLISH: the bridge's, through its outbox and
// flusher, or go-redis's call.
func BenchmarkExportLatency(b *testing.B) {
	srv := benchServer(b)
	for _, name := range []string{"bridge", "go-redis-one-call"} {
		b.Run(name, func(b *testing.B) {
			rdb := srv.Client(b)
			h := newReplied()
			rdb.AddHook(h)
			ctx, payload := context.Background(), make([]byte, benchPayload)
			send := func() { _ = rdb.Publish(ctx, "bench:bench.x", payload).Err() }
			if name == "bridge" {
				sendBus, _ := exportOnly(b, rdb, "bench.x", 0, 1024, benchPayload)
				send = func() { _ = sendBus.Publish(ctx, "bench.x", payload) }
			}
			// Whatever the bridge sent on starting has been answered
			// by now: forget its signal.
			time.Sleep(10 * time.Millisecond)
			select {
			case <-h.ch:
			default:
			}
			d := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			for range b.N {
				start := time.Now()
				send()
				<-h.ch
				d = append(d, time.Since(start))
			}
			b.StopTimer()
			if cpu := processCPU() - cpu; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/event")
			}
			slices.Sort(d)
			b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}
