package bridge_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// The benchmarks send events from one bus to another through one Redis,
// end to end (published on one side, received on the other), and compare
// the bridge with raw go-redis: one PUBLISH call per event, and PUBLISHes
// pipelined by hand in batches the size of the bridge's. Each reports
// events/s, the p50 and p99 latency from publish to receipt, and the CPU
// time the process (both sides) spent per event: on a machine shared with
// other work, the one of the three that noise moves least.
//
// Throughput publishes b.N events as fast as possible: its latencies
// include queueing behind the burst. It runs with one topic, and with 16
// and 1024 topics published in turn (which splits what can be coalesced
// into one message per topic: with 1024, a flush of up to 16384 exports
// makes up to sixteen events per message). Latency sends one event at a time and
// waits for it, so its latencies are those of an idle system.
//
//	go test -run '^$' -bench . -benchtime 200000x ./bridge/
//
// The server runs without output-buffer limits for pub/sub clients, so
// that a burst measures throughput rather than Redis's disconnect policy.

const benchPayload = 64

// benchServer starts the Redis of a benchmark.
func benchServer(b *testing.B) *redistest.Server {
	return redistest.Start(b, &redistest.Options{Args: []string{"--client-output-buffer-limit", "pubsub 0 0 0"}})
}

// stamp returns a payload carrying the time it was made.
func stamp(buf []byte) []byte {
	binary.LittleEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
	return buf
}

// latencies collects publish-to-receipt times.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
	n  atomic.Int64
	// got receives a token per event, for BenchmarkLatency; nil for
	// BenchmarkThroughput.
	got chan struct{}
}

func (l *latencies) add(payload []byte) {
	d := time.Duration(time.Now().UnixNano() - int64(binary.LittleEndian.Uint64(payload)))
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
	l.n.Add(1)
	if l.got != nil {
		l.got <- struct{}{}
	}
}

func (l *latencies) wait(b *testing.B, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for l.n.Load() < int64(n) {
		if time.Now().After(deadline) {
			b.Fatalf("received %d of %d events", l.n.Load(), n)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// report reports the events/s over elapsed, the latencies, and the CPU
// time per event the process used, cpu (0: not measured).
func (l *latencies) report(b *testing.B, elapsed, cpu time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(len(l.d)), "cpu-ns/event")
	}
	slices.Sort(l.d)
	q := func(p float64) float64 {
		return float64(l.d[int(p*float64(len(l.d)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(float64(len(l.d))/elapsed.Seconds(), "events/s")
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(0, "ns/op") // per-op time is meaningless for a burst
}

// newLatencies returns an empty record for b.N events; with oneByOne, add
// signals each receipt on got.
func newLatencies(b *testing.B, oneByOne bool) *latencies {
	l := &latencies{d: make([]time.Duration, 0, b.N)}
	if oneByOne {
		l.got = make(chan struct{}, 1)
	}
	return l
}

// benchBurst publishes b.N events with send as fast as it can, calls
// flush (if not nil), waits until lat has them all, and reports.
func benchBurst(b *testing.B, lat *latencies, send func([]byte), flush func()) {
	buf := make([]byte, benchPayload)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), processCPU()
	for range b.N {
		send(stamp(buf))
	}
	if flush != nil {
		flush()
	}
	lat.wait(b, b.N)
	elapsed, cpu := time.Since(start), processCPU()-cpu
	b.StopTimer()
	lat.report(b, elapsed, cpu)
}

// benchOneByOne sends b.N events one at a time with send and flush (if not
// nil), waiting for each on lat.got (see newLatencies), and reports.
func benchOneByOne(b *testing.B, lat *latencies, send func([]byte), flush func()) {
	buf := make([]byte, benchPayload)
	b.ReportAllocs()
	b.ResetTimer()
	start, cpu := time.Now(), processCPU()
	for range b.N {
		send(stamp(buf))
		if flush != nil {
			flush()
		}
		// Wait on a channel, not by spinning: a spinning goroutine
		// keeps the scheduler from polling the network, which then
		// waits for sysmon (10 ms).
		<-lat.got
	}
	elapsed, cpu := time.Since(start), processCPU()-cpu
	b.StopTimer()
	lat.report(b, elapsed, cpu)
}

// bridgePair makes a sending and a receiving bus, each with a bridge over
// its own client from client, configured by opts for its direction and
// sized to hold a burst of b.N events without dropping any; subscribes
// pattern on the receiving bus, recording into lat; waits until the
// receiver's subscriptions are confirmed; and returns the sending bus. At
// cleanup it fails the benchmark if the receiver lost, or saw twice, any
// event.
func bridgePair(b *testing.B, client func() redis.UniversalClient, opts func(bridge.Direction) *bridge.Options, pattern string, lat *latencies) *bus.Bus {
	sendBus, recvBus := bus.New(nil), bus.New(nil)
	big := b.N + 1024
	sized := func(d bridge.Direction) *bridge.Options {
		o := opts(d)
		o.OutboxMaxEvents, o.OutboxMaxBytes = big, big*256
		o.ImportQueueSize, o.ImportTopicQueueSize = big, big
		o.OnError = func(err error) { b.Error(err) }
		return o
	}
	sender, err := bridge.New(sendBus, client(), sized(bridge.Export))
	if err != nil {
		b.Fatal(err)
	}
	receiver, err := bridge.New(recvBus, client(), sized(bridge.Import))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx := context.Background()
		_ = sender.Close(ctx)
		_ = receiver.Close(ctx)
		if s := receiver.Stats(); s.ImportDropped != 0 || s.GapEvents != 0 || s.Duplicates != 0 {
			b.Errorf("receiver lost or repeated events: %+v", s)
		}
	})
	if _, err := recvBus.Subscribe(pattern, func(_ context.Context, e bus.Event) {
		lat.add(e.Payload.([]byte))
	}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := receiver.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	return sendBus
}

// transport is one way of sending events from one side to the other.
type transport struct {
	name string
	// setup prepares both sides for topics topics and returns the
	// function sending one payload, to the next topic in turn, and a
	// flush called after the last one (nil for none); received payloads
	// go to lat.
	setup func(b *testing.B, srv *redistest.Server, lat *latencies, topics int) (send func([]byte), flush func())
}

// benchTopics returns the bus topics of a benchmark: bench.x alone, or
// bench.t0, bench.t1, ... The pattern bench.* matches them all.
func benchTopics(n int) []string {
	if n == 1 {
		return []string{"bench.x"}
	}
	t := make([]string, n)
	for i := range t {
		t[i] = "bench.t" + strconv.Itoa(i)
	}
	return t
}

// benchRoute returns the pattern the bridges route: the topic itself when
// there is one, so that both sides SUBSCRIBE like the go-redis receiver,
// otherwise bench.* (PSUBSCRIBE on both sides).
func benchRoute(topics int) string {
	if topics == 1 {
		return "bench.x"
	}
	return "bench.*"
}

var transports = []transport{
	{"bridge", setupBridge},
	{"go-redis-one-call", setupOneCall},
	{"go-redis-pipelined", setupPipelined},
	{"bridge-uncoalesced", setupBridgeUncoalesced},
}

func setupBridge(b *testing.B, srv *redistest.Server, lat *latencies, topics int) (func([]byte), func()) {
	return setupBridgeWith(b, srv, lat, topics, 0)
}

// setupBridgeUncoalesced sends one message per event, as the pipelined
// go-redis sender does (Options.CoalesceBytes < 0).
func setupBridgeUncoalesced(b *testing.B, srv *redistest.Server, lat *latencies, topics int) (func([]byte), func()) {
	return setupBridgeWith(b, srv, lat, topics, -1)
}

func setupBridgeWith(b *testing.B, srv *redistest.Server, lat *latencies, topics, coalesce int) (func([]byte), func()) {
	client := func() redis.UniversalClient { return srv.Client(b) }
	sendBus := bridgePair(b, client, func(d bridge.Direction) *bridge.Options {
		return &bridge.Options{
			Prefix:        "bench:",
			Routes:        []bridge.Route{{Pattern: benchRoute(topics), Direction: d}},
			CoalesceBytes: coalesce,
		}
	}, benchRoute(topics), lat)
	bg := context.Background()
	names, i := benchTopics(topics), 0
	return func(p []byte) {
		_ = sendBus.Publish(bg, names[i%len(names)], p)
		i++
	}, nil
}

// rawReceiver subscribes with plain go-redis and reads with its own
// goroutine, as an application without the bridge would.
func rawReceiver(b *testing.B, srv *redistest.Server, lat *latencies, topics int) {
	ctx := context.Background()
	var ps *redis.PubSub
	if topics == 1 {
		ps = srv.Client(b).Subscribe(ctx, "bench:bench.x")
	} else {
		ps = srv.Client(b).PSubscribe(ctx, "bench:bench.*")
	}
	if _, err := ps.Receive(ctx); err != nil { // the confirmation
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := ps.ReceiveMessage(ctx)
			if err != nil {
				return
			}
			lat.add([]byte(m.Payload))
		}
	}()
	b.Cleanup(func() {
		_ = ps.Close()
		<-done
	})
}

// rawChannels returns the Redis channels of the topics.
func rawChannels(topics int) []string {
	names := benchTopics(topics)
	for i, t := range names {
		names[i] = "bench:" + t
	}
	return names
}

func setupOneCall(b *testing.B, srv *redistest.Server, lat *latencies, topics int) (func([]byte), func()) {
	rawReceiver(b, srv, lat, topics)
	rdb := srv.Client(b)
	ctx := context.Background()
	channels, i := rawChannels(topics), 0
	return func(p []byte) {
		if err := rdb.Publish(ctx, channels[i%len(channels)], p).Err(); err != nil {
			b.Error(err)
		}
		i++
	}, nil
}

func setupPipelined(b *testing.B, srv *redistest.Server, lat *latencies, topics int) (func([]byte), func()) {
	rawReceiver(b, srv, lat, topics)
	rdb := srv.Client(b)
	ctx := context.Background()
	const batch = 512 // the bridge's default BatchSize
	pipe := rdb.Pipeline()
	channels, i, n := rawChannels(topics), 0, 0
	flush := func() {
		if n == 0 {
			return
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Error(err)
		}
		n = 0
	}
	return func(p []byte) {
		// go-redis keeps the argument until Exec: give it its own copy,
		// as the bridge's codec does.
		pipe.Publish(ctx, channels[i%len(channels)], append([]byte(nil), p...))
		i++
		if n++; n == batch {
			flush()
		}
	}, flush
}

// BenchmarkThroughput publishes b.N events in a burst and waits until the
// other side has received them all.
func BenchmarkThroughput(b *testing.B) {
	srv := benchServer(b)
	for _, topics := range []int{1, 16, 1024} {
		for _, tr := range transports {
			b.Run(fmt.Sprintf("topics=%d/%s", topics, tr.name), func(b *testing.B) {
				benchThroughput(b, srv, tr, topics)
			})
		}
	}
}

func benchThroughput(b *testing.B, srv *redistest.Server, tr transport, topics int) {
	lat := newLatencies(b, false)
	send, flush := tr.setup(b, srv, lat, topics)
	benchBurst(b, lat, send, flush)
}

// BenchmarkLatency sends one event at a time and waits for it.
func BenchmarkLatency(b *testing.B) {
	srv := benchServer(b)
	for _, tr := range transports[:2] { // pipelining one event is one call
		b.Run(tr.name, func(b *testing.B) {
			lat := newLatencies(b, true)
			send, flush := tr.setup(b, srv, lat, 1)
			benchOneByOne(b, lat, send, flush)
		})
	}
}
