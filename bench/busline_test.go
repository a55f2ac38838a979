package bench

import (
	"context"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// Busline through its public API only: a bus with default options.

type busline struct{ b *bus.Bus }

var bg = context.Background()

func newBusline(tb testing.TB) router {
	b := bus.New(nil)
	tb.Cleanup(func() { _ = b.Close(bg) })
	return &busline{b}
}

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
	sendBus, recvBus := bus.New(nil), bus.New(nil)
	const big = 1 << 22
	opts := func(d bridge.Direction) *bridge.Options {
		return &bridge.Options{
			Prefix:               "bench:",
			Routes:               []bridge.Route{{Pattern: "bench.x", Direction: d}},
			OutboxMaxEvents:      big,
			OutboxMaxBytes:       big * 256,
			ImportQueueSize:      big,
			ImportTopicQueueSize: big,
			CoalesceBytes:        coalesce,
			OnError:              func(err error) { tb.Error(err) },
		}
	}
	sender, err := bridge.New(sendBus, srv.Client(tb), opts(bridge.Export))
	if err != nil {
		tb.Fatal(err)
	}
	receiver, err := bridge.New(recvBus, srv.Client(tb), opts(bridge.Import))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = sender.Close(bg)
		_ = receiver.Close(bg)
		_ = sendBus.Close(bg)
		_ = recvBus.Close(bg)
		if s := receiver.Stats(); s.ImportDropped != 0 || s.GapEvents != 0 {
			tb.Errorf("receiver lost events: %+v", s)
		}
	})
	if _, err := recvBus.Subscribe("bench.x", func(_ context.Context, e bus.Event) {
		recv(e.Payload.([]byte))
	}); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()
	if err := receiver.Ready(ctx); err != nil {
		tb.Fatal(err)
	}
	return func(p []byte) { _ = sendBus.Publish(bg, "bench.x", p) }, func() {}
}
