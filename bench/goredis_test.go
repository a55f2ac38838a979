package bench

import (
	"context"
	"testing"

	"github.com/busline/bus/redistest"
)

// Raw github.com/redis/go-redis/v9, as an application without a bridge
// would use it: a receiver that SUBSCRIBEs and reads with a goroutine of
// its own, and a sender that makes one PUBLISH call per event
// (go-redis-one-call) or pipelines PUBLISHes by hand in batches of 512, the
// bridge's default batch size (go-redis-pipelined).

const rawChannel = "bench:bench.x"

// rawReceiver subscribes with plain go-redis and calls recv for every
// message until the cleanup closes the subscription.
func rawReceiver(tb testing.TB, srv *redistest.Server, recv func([]byte)) {
	ctx := context.Background()
	ps := srv.Client(tb).Subscribe(ctx, rawChannel)
	if _, err := ps.Receive(ctx); err != nil { // the confirmation
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := ps.ReceiveMessage(ctx)
			if err != nil {
				return
			}
			recv([]byte(m.Payload))
		}
	}()
	tb.Cleanup(func() {
		_ = ps.Close()
		<-done
	})
}

func setupOneCall(tb testing.TB, srv *redistest.Server, recv func([]byte)) (func([]byte), func()) {
	rawReceiver(tb, srv, recv)
	rdb := srv.Client(tb)
	ctx := context.Background()
	return func(p []byte) {
		if err := rdb.Publish(ctx, rawChannel, p).Err(); err != nil {
			tb.Error(err)
		}
	}, func() {}
}

func setupPipelined(tb testing.TB, srv *redistest.Server, recv func([]byte)) (func([]byte), func()) {
	rawReceiver(tb, srv, recv)
	rdb := srv.Client(tb)
	ctx := context.Background()
	const batch = 512
	pipe := rdb.Pipeline()
	n := 0
	flush := func() {
		if n == 0 {
			return
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Error(err)
		}
		n = 0
	}
	return func(p []byte) {
		// go-redis keeps the argument until Exec: give it its own
		// copy, as the bridge's outbox does.
		pipe.Publish(ctx, rawChannel, append([]byte(nil), p...))
		if n++; n == batch {
			flush()
		}
	}, flush
}
