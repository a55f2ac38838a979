package bench

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/busline/bus/redistest"
)

// github.com/ThreeDotsLabs/watermill-redisstream: watermill over Redis
// streams. Its Publisher makes one XADD call per message; its Subscriber,
// in fan-out mode (no consumer group, like pub/sub), reads with XREAD one
// message per call and waits for each message's Ack before reading the
// next. Streams persist messages, which pub/sub does not: the comparison
// is of moving events between processes, not of equal guarantees.

// streamSeq makes a fresh stream per setup, read from its start, so that
// the subscriber sees every message whenever its first XREAD happens.
var streamSeq atomic.Int64

func setupRedisStream(tb testing.TB, srv *redistest.Server, recv func([]byte)) (func([]byte), func()) {
	stream := "bench:stream:" + strconv.FormatInt(streamSeq.Add(1), 10)
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:         srv.Client(tb),
		FanOutOldestId: "0",
		// Block with a timeout from the first read, so that Close is
		// not held up by an XREAD blocked forever.
		DisableIndefiniteInitialBlock: true,
		// Stop at the first read error instead of sleeping 500 ms and
		// retrying: Close does not wait for the reader, which would
		// otherwise outlive the benchmark. A read error in the middle
		// of a run shows up as missing events.
		ShouldStopOnReadErrors: func(error) bool { return true },
	}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ch, err := sub.Subscribe(context.Background(), stream)
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			recv(m.Payload)
			m.Ack()
		}
	}()
	tb.Cleanup(func() {
		_ = sub.Close()
		<-done
	})
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: srv.Client(tb)}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = pub.Close() })
	return func(p []byte) {
		if err := pub.Publish(stream, message.NewMessage(wmUUID, append([]byte(nil), p...))); err != nil {
			tb.Error(err)
		}
	}, func() {}
}
