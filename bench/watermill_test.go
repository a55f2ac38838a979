package bench

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
)

// github.com/ThreeDotsLabs/watermill, pubsub/gochannel: topics are exact;
// each subscriber reads a channel of *message.Message and must Ack each
// message; Publish copies the message and starts a goroutine per message
// plus one per subscriber to deliver it.
//
// In the synchronous scenarios it runs with BlockPublishUntilSubscriberAck,
// its own mode in which Publish returns once every subscriber has acked:
// handlers still run on the subscribers' goroutines, but the publisher waits
// for them, which is what those scenarios measure. The asynchronous ones use
// the default (Publish returns at once).
//
// A message carries []byte, not a Go value: the *payload travels in the
// message's context (PreserveContext). Messages get a fixed UUID rather
// than watermill.NewUUID(), sparing watermill that cost.

type payloadKey struct{}

const wmUUID = "00000000-0000-0000-0000-000000000000"

type watermillRouter struct{ g *gochannel.GoChannel }

func newWatermill(tb testing.TB) router {
	g := gochannel.NewGoChannel(gochannel.Config{
		OutputChannelBuffer:            asyncQueue,
		BlockPublishUntilSubscriberAck: true,
		PreserveContext:                true,
	}, nil)
	tb.Cleanup(func() { _ = g.Close() })
	return &watermillRouter{g}
}

// watermillRead acks every message of ch, calling h with its payload,
// until ch is closed; then it closes done.
func watermillRead(ch <-chan *message.Message, h func(p *payload), done chan<- struct{}) {
	defer close(done)
	for m := range ch {
		h(m.Context().Value(payloadKey{}).(*payload))
		m.Ack()
	}
}

func (r *watermillRouter) subscribe(pattern string) (func(), error) {
	if err := exactOnly(pattern); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := r.g.Subscribe(ctx, pattern)
	if err != nil {
		cancel()
		return nil, err
	}
	done := make(chan struct{})
	go watermillRead(ch, func(p *payload) { atomic.AddInt64(&p.n, 1) }, done)
	return func() {
		cancel() // watermill then closes ch
		<-done
	}, nil
}

func (r *watermillRouter) publish(topic string, p *payload) {
	m := message.NewMessage(wmUUID, nil)
	m.SetContext(context.WithValue(context.Background(), payloadKey{}, p))
	_ = r.g.Publish(topic, m)
}

func newWatermillAsync(tb testing.TB, subs int, h func(p *payload)) func(p *payload) {
	g := gochannel.NewGoChannel(gochannel.Config{
		OutputChannelBuffer: asyncQueue,
		PreserveContext:     true,
	}, nil)
	var dones []chan struct{}
	for range subs {
		ch, err := g.Subscribe(context.Background(), "t")
		if err != nil {
			tb.Fatal(err)
		}
		done := make(chan struct{})
		dones = append(dones, done)
		go watermillRead(ch, h, done)
	}
	tb.Cleanup(func() {
		_ = g.Close()
		for _, d := range dones {
			<-d
		}
	})
	return func(p *payload) {
		m := message.NewMessage(wmUUID, nil)
		m.SetContext(context.WithValue(context.Background(), payloadKey{}, p))
		_ = g.Publish("t", m)
	}
}
