package bus

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPublishFunc is the cost of the HandlerFunc path: a synchronous
// subscription called through Subscription.fn (not in line), without and
// with a middleware, beside a plain Handler as the baseline.
func BenchmarkPublishFunc(b *testing.B) {
	pass := func(next HandlerFunc) HandlerFunc {
		return func(ctx context.Context, e Event) error { return next(ctx, e) }
	}
	nop := func(ctx context.Context, e Event) error { nopSink(ctx, e); return nil }
	for _, tc := range []struct {
		name string
		sub  func(*Bus) error
	}{
		{"Handler", func(bus *Bus) error { _, err := bus.Subscribe("t", nopSink); return err }},
		{"HandlerFunc", func(bus *Bus) error { _, err := bus.SubscribeFunc("t", nop); return err }},
		{"HandlerFunc+middleware", func(bus *Bus) error {
			_, err := bus.SubscribeFuncWith("t", nop, &SubscribeOptions{Middleware: []Middleware{pass}})
			return err
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			bus := New(nil)
			if err := tc.sub(bus); err != nil {
				b.Fatal(err)
			}
			p := &payload{}
			b.ReportAllocs()
			for b.Loop() {
				_ = bus.Publish(ctx, "t", p)
			}
		})
	}
}

// BenchmarkAsyncFunc is BenchmarkAsyncThroughput/bus/subs=1 for a
// HandlerFunc with a retry policy that never has to retry.
func BenchmarkAsyncFunc(b *testing.B) {
	bus := New(nil)
	var n atomic.Int64
	if _, err := bus.SubscribeFuncWith("t", func(ctx context.Context, e Event) error {
		nopSink(ctx, e)
		n.Add(1)
		return nil
	}, &SubscribeOptions{Queue: 1024, Retry: &RetryPolicy{}}); err != nil {
		b.Fatal(err)
	}
	p := &payload{}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = bus.Publish(ctx, "t", p)
	}
	for n.Load() < int64(b.N) {
		time.Sleep(time.Microsecond)
	}
	b.StopTimer()
	_ = bus.Close(ctx)
}
