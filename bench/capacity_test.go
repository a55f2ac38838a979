package bench

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/redis/go-redis/v9"
)

// BenchmarkCapacity measures what SCALING.md's capacity model is built
// from: redis-server's CPU time per event (redis-ns/ev, from INFO cpu) and
// the CPU time of the benchmark's process per event (go-ns/ev: the sending
// and the receiving bridges, their buses and go-redis clients, from
// getrusage; 0 outside Linux), the events per Redis message (ev/msg: how
// much coalescing gathered) and the events/s of a burst through
// Busline's bridge on one redis-server,
// varying one thing at a time from a base case (64-byte payloads, one
// receiving instance, one busy topic, no other pattern subscriptions,
// pub/sub, coalescing on):
//
//   - payload=N: N-byte payloads;
//   - receivers=N: N receiving instances (each a bus and a bridge with its
//     own connection), so that Redis writes each message N times;
//   - patterns=N: another client holds N PSUBSCRIBE patterns that match
//     nothing (Redis tries every pattern against every PUBLISH);
//   - topics=N: events spread over N topics in turn, each its own channel
//     (coalescing batches per channel);
//   - stream: a durable Stream route (XADD, XREAD) instead of pub/sub.
//
// Each case runs with coalescing on and off (-uncoalesced). run.sh skips
// it (it is a model's input, not a comparison); run it with
//
//	go test -run '^$' -bench '^BenchmarkCapacity$' -benchtime 20000x .
func BenchmarkCapacity(b *testing.B) {
	for _, c := range capacityCases() {
		// A redis-server of its own for each case: one that held
		// 1,000 patterns keeps paying for them once they are gone
		// (SCALING.md), and no case should pay for another's.
		srv := bridgeServer(b)
		admin := srv.Client(b)
		for _, coalesce := range []int{0, -1} {
			n := c.name
			if coalesce < 0 {
				n += "/busline-uncoalesced"
			} else {
				n += "/busline"
			}
			b.Run(n, func(b *testing.B) {
				var got atomic.Int64
				send, sender := c.setup(b, func() redis.UniversalClient { return srv.Client(b) }, coalesce, &got)
				buf := make([]byte, c.payload)
				want := int64(b.N * c.receivers)
				st0, cpu0, proc0 := sender.Stats(), redisCPU(b, admin), processCPU()
				b.ReportAllocs()
				b.ResetTimer()
				start := time.Now()
				for i := range b.N {
					send(c.topic(i), buf)
				}
				waitFor(b, "every event", func() bool { return got.Load() >= want })
				elapsed := time.Since(start)
				b.StopTimer()
				reportRedisCPU(b, cpu0, redisCPU(b, admin))
				b.ReportMetric(float64(processCPU()-proc0)/float64(b.N), "go-ns/ev")
				reportCoalescing(b, st0, sender.Stats())
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
				if g := got.Load(); g != want {
					b.Fatalf("%d events received, want %d", g, want)
				}
			})
		}
	}
}

// capacityCase is one configuration of BenchmarkCapacity.
type capacityCase struct {
	name                       string
	payload, receivers, topics int
	patterns                   int
	delivery                   bridge.Delivery
}

func capacityCases() []capacityCase {
	base := capacityCase{name: "base", payload: bridgePayload, receivers: 1, topics: 1}
	cs := []capacityCase{base}
	for _, v := range []struct {
		name string
		set  func(c *capacityCase)
	}{
		{"payload=1024", func(c *capacityCase) { c.payload = 1024 }},
		{"payload=16384", func(c *capacityCase) { c.payload = 16384 }},
		{"receivers=4", func(c *capacityCase) { c.receivers = 4 }},
		{"patterns=1000", func(c *capacityCase) { c.patterns = 1000 }},
		{"topics=1000", func(c *capacityCase) { c.topics = 1000 }},
		{"stream", func(c *capacityCase) { c.delivery = bridge.Stream }},
	} {
		c := base
		c.name = v.name
		v.set(&c)
		cs = append(cs, c)
	}
	return cs
}

func (c capacityCase) topic(i int) string {
	if c.topics == 1 {
		return "cap.t0"
	}
	return "cap.t" + strconv.Itoa(i%c.topics)
}

// setup starts the sender and the receivers, and the idle pattern
// subscriptions; received events are counted in got.
func (c capacityCase) setup(tb testing.TB, client func() redis.UniversalClient, coalesce int, got *atomic.Int64) (func(topic string, p []byte), *bridge.Bridge) {
	routes := []string{"cap.t0"}
	if c.topics > 1 {
		routes = []string{"cap.*"}
	}
	tune := func(o *bridge.Options) {
		o.CoalesceBytes = coalesce
		if c.delivery != bridge.PubSub {
			for i := range o.Routes {
				o.Routes[i].Delivery = c.delivery
				o.Routes[i].Stream = "cap" + strconv.FormatInt(streamSeq.Add(1), 10)
			}
		}
	}
	if c.patterns > 0 {
		ps := client().(*redis.Client).PSubscribe(context.Background())
		for i := range c.patterns {
			if err := ps.PSubscribe(context.Background(), "idle:"+strconv.Itoa(i)+":*"); err != nil {
				tb.Fatal(err)
			}
		}
		tb.Cleanup(func() { _ = ps.Close() })
	}
	var stream string
	tuneSide := func(o *bridge.Options) {
		tune(o)
		if c.delivery != bridge.PubSub {
			// A Stream importer keeps its position under its
			// InstanceID: each side gets one of its own.
			o.InstanceID = "cap-" + strconv.FormatInt(streamSeq.Add(1), 10)
			if stream == "" {
				stream = o.Routes[0].Stream
			}
			for i := range o.Routes {
				o.Routes[i].Stream = stream // sender and receivers meet
			}
		}
	}
	for range c.receivers {
		rb, _ := bridgeSide(tb, client(), bridge.Import, routes, tuneSide)
		if _, err := rb.Subscribe("cap.*", func(context.Context, bus.Event) { got.Add(1) }); err != nil {
			tb.Fatal(err)
		}
	}
	sb, sender := bridgeSide(tb, client(), bridge.Export, routes, tuneSide)
	send := func(topic string, p []byte) { _ = sb.Publish(bg, topic, p) }
	// One event goes through before the timer starts.
	send(c.topic(0), make([]byte, c.payload))
	waitFor(tb, "the first event", func() bool { return got.Load() == int64(c.receivers) })
	got.Store(0)
	return send, sender
}

func TestCapacityScenario(t *testing.T) {
	srv := bridgeServer(t)
	for _, c := range capacityCases() {
		t.Run(c.name, func(t *testing.T) {
			var got atomic.Int64
			send, _ := c.setup(t, func() redis.UniversalClient { return srv.Client(t) }, 0, &got)
			buf := make([]byte, c.payload)
			for i := range 100 {
				send(c.topic(i), buf)
			}
			want := int64(100 * c.receivers)
			waitFor(t, "every event", func() bool { return got.Load() >= want })
			time.Sleep(5 * time.Millisecond) // duplicates would arrive right behind
			if g := got.Load(); g != want {
				t.Fatalf("%d events received, want %d", g, want)
			}
		})
	}
}
