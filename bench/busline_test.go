package bench

import (
	"context"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// Busline through its public API only: a bus with default options.

type busline struct{ b *bus.Bus }

var bg = context.Background()

func newBusline(tb testing.TB) router {
	b := bus.New(nil)
	tb.Cleanup(func() { _ = b.Close(bg) })
	return &busline{b}
}

// buslineLib is Busline in the in-process scenarios (inProcess).
var buslineLib = &lib{name: ours, router: newBusline, queue: newBuslineAsync}

// buslineNoCache is Busline without its match cache, for the tree
// scenario only.
var buslineNoCache = &lib{name: "busline-nocache", router: func(tb testing.TB) router {
	b := bus.New(&bus.Options{MatchCacheSize: -1})
	tb.Cleanup(func() { _ = b.Close(bg) })
	return &busline{b}
}}

func buslineHit(_ context.Context, e bus.Event) { e.Payload.(*payload).n++ }

func (r *busline) subscribe(pattern string) (func(), error) {
	s, err := r.b.Subscribe(pattern, buslineHit)
	if err != nil {
		return nil, err
	}
	return s.Unsubscribe, nil
}

func (r *busline) publish(topic string, p *payload) { _ = r.b.Publish(bg, topic, p) }

// newBuslineAsync: subs asynchronous subscriptions (SubscribeWith, a queue
// of asyncQueue events, the default Block policy, so nothing is dropped).
func newBuslineAsync(tb testing.TB, subs int, h func(p *payload)) func(p *payload) {
	b := bus.New(nil)
	tb.Cleanup(func() { _ = b.Close(bg) })
	for range subs {
		if _, err := b.SubscribeWith("t", func(_ context.Context, e bus.Event) {
			h(e.Payload.(*payload))
		}, &bus.SubscribeOptions{Queue: asyncQueue}); err != nil {
			tb.Fatal(err)
		}
	}
	return func(p *payload) { _ = b.Publish(bg, "t", p) }
}

// setupBridge connects two buses through Redis with package bridge: the
// sender exports topic "bench.x", the receiver imports it. The outbox and
// the import queues are sized to hold a whole burst, as a deployment
// expecting bursts would size them, so that nothing is dropped (the
// default policy is DropOldest). Exports waiting together are coalesced
// into batch messages, as by default.
func setupBridge(tb testing.TB, srv *redistest.Server, recv func([]byte)) (func([]byte), func()) {
	return setupBridgeWith(tb, srv, recv, 0)
}

// setupBridgeUncoalesced is setupBridge with one Redis message per event
// (Options.CoalesceBytes < 0), like the go-redis senders.
func setupBridgeUncoalesced(tb testing.TB, srv *redistest.Server, recv func([]byte)) (func([]byte), func()) {
	return setupBridgeWith(tb, srv, recv, -1)
}

func setupBridgeWith(tb testing.TB, srv *redistest.Server, recv func([]byte), coalesce int) (func([]byte), func()) {
	send, _ := bridgePair(tb, func() redis.UniversalClient { return srv.Client(tb) }, []string{"bench.x"}, "bench.x",
		func(o *bridge.Options) { o.CoalesceBytes = coalesce }, recv)
	return func(p []byte) { send("bench.x", p) }, func() {}
}

// bridgePair connects a sending and a receiving bus through Redis with
// package bridge (bridgeSide): the sender exports the topics, the receiver
// imports them and subscribes pattern on its bus, handing each payload to
// recv. It returns the sender's publish and bridge.
func bridgePair(tb testing.TB, client func() redis.UniversalClient, topics []string, pattern string,
	tune func(*bridge.Options), recv func([]byte)) (send func(topic string, p []byte), sender *bridge.Bridge) {
	sendBus, sender := bridgeSide(tb, client(), bridge.Export, topics, tune)
	recvBus, _ := bridgeSide(tb, client(), bridge.Import, topics, tune)
	if _, err := recvBus.Subscribe(pattern, func(_ context.Context, e bus.Event) {
		recv(e.Payload.([]byte))
	}); err != nil {
		tb.Fatal(err)
	}
	return func(topic string, p []byte) { _ = sendBus.Publish(bg, topic, p) }, sender
}

// bridgeSide makes a bus with a bridge on rdb whose routes are the topics
// (or patterns) in direction d; tune, when not nil, adjusts the options.
// The outbox and the import queues are sized to hold a whole burst, as a
// deployment expecting bursts would size them, so that nothing is dropped
// (the default policy is DropOldest). An importing side is Ready when
// bridgeSide returns; its cleanup fails tb if it lost or repeated an event.
func bridgeSide(tb testing.TB, rdb redis.UniversalClient, d bridge.Direction, topics []string, tune func(*bridge.Options)) (*bus.Bus, *bridge.Bridge) {
	const big = 1 << 22
	o := &bridge.Options{
		Prefix:               "bench:",
		OutboxMaxEvents:      big,
		OutboxMaxBytes:       big * 256,
		ImportQueueSize:      big,
		ImportTopicQueueSize: big,
		OnError:              func(err error) { tb.Error(err) },
	}
	for _, t := range topics {
		o.Routes = append(o.Routes, bridge.Route{Pattern: t, Direction: d})
	}
	if tune != nil {
		tune(o)
	}
	b := bus.New(nil)
	br, err := bridge.New(b, rdb, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = br.Close(bg)
		_ = b.Close(bg)
		if s := br.Stats(); s.ImportDropped != 0 || s.GapEvents != 0 || s.Duplicates != 0 {
			tb.Errorf("bridge lost or repeated events: %+v", s)
		}
	})
	if d != bridge.Export {
		ctx, cancel := context.WithTimeout(bg, 30*time.Second)
		defer cancel()
		if err := br.Ready(ctx); err != nil {
			tb.Fatal(err)
		}
	}
	return b, br
}

// reportCoalescing reports ev/msg, the events per Redis message the
// sender's exports took between two readings of its Stats (1 with
// coalescing off; up to hundreds in a burst with it on).
func reportCoalescing(b *testing.B, before, after bridge.Stats) {
	if m := after.ExportMessages - before.ExportMessages; m > 0 {
		b.ReportMetric(float64(after.Exported-before.Exported)/float64(m), "ev/msg")
	}
}
