package bus

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkAsyncThroughput: the publisher pushes b.N events and waits until
// every subscriber has handled them all; ns/op is the cost per event.
// "chan" is the baseline: a buffered channel of Event and one goroutine
// ranging over it, with the same capacity.
func BenchmarkAsyncThroughput(b *testing.B) {
	const capacity = 1024
	p := &payload{}
	b.Run("chan", func(b *testing.B) {
		ch := make(chan Event, capacity)
		var n atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for e := range ch {
				nopSink(ctx, e)
				n.Add(1)
			}
		}()
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			ch <- Event{Topic: "t", Payload: p}
		}
		for n.Load() < int64(b.N) {
			time.Sleep(time.Microsecond)
		}
		b.StopTimer()
		close(ch)
		<-done
	})
	for _, subs := range []int{1, 10} {
		b.Run(fmt.Sprintf("bus/subs=%d", subs), func(b *testing.B) {
			bus := New(nil)
			var n atomic.Int64
			for range subs {
				if _, err := bus.SubscribeWith("t", func(ctx context.Context, e Event) {
					nopSink(ctx, e)
					n.Add(1)
				}, &SubscribeOptions{Queue: capacity}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				_ = bus.Publish(ctx, "t", p)
			}
			for n.Load() < int64(b.N*subs) {
				time.Sleep(time.Microsecond)
			}
			b.StopTimer()
			_ = bus.Close(ctx)
		})
	}
}

// BenchmarkAsyncParallelPublishers: publishers on every core into one
// asynchronous subscriber, and the same with a channel.
func BenchmarkAsyncParallelPublishers(b *testing.B) {
	const capacity = 1024
	p := &payload{}
	b.Run("chan", func(b *testing.B) {
		ch := make(chan Event, capacity)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for e := range ch {
				nopSink(ctx, e)
			}
		}()
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				ch <- Event{Topic: "t", Payload: p}
			}
		})
		close(ch)
		<-done
	})
	b.Run("bus", func(b *testing.B) {
		bus := New(nil)
		if _, err := bus.SubscribeWith("t", nopSink, &SubscribeOptions{Queue: capacity}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_ = bus.Publish(ctx, "t", p)
			}
		})
		_ = bus.Close(ctx)
	})
}

// BenchmarkAsyncIdleLatency measures publish→handler latency to a worker
// that is parked: each event is published after the previous one was
// handled and the worker has gone idle. It reports the p50 and p99 in
// microseconds; ns/op includes the idle wait.
func BenchmarkAsyncIdleLatency(b *testing.B) {
	type stamp struct{ t time.Time }
	measure := func(b *testing.B, publish func(*stamp), handled *atomic.Int64) {
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			s := &stamp{t: time.Now()}
			publish(s)
			for handled.Load() <= int64(i) {
				runtime.Gosched() // let the woken goroutine have this core too
			}
			lat = append(lat, time.Duration(latNanos.Load()))
			time.Sleep(20 * time.Microsecond) // let the worker park
		}
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
	}
	b.Run("chan", func(b *testing.B) {
		ch := make(chan Event, 64)
		var handled atomic.Int64
		done := make(chan struct{})
		go func() {
			defer close(done)
			for e := range ch {
				latNanos.Store(int64(time.Since(e.Payload.(*stamp).t)))
				handled.Add(1)
			}
		}()
		measure(b, func(s *stamp) { ch <- Event{Topic: "t", Payload: s} }, &handled)
		close(ch)
		<-done
	})
	b.Run("bus", func(b *testing.B) {
		bus := New(nil)
		var handled atomic.Int64
		if _, err := bus.SubscribeWith("t", func(ctx context.Context, e Event) {
			latNanos.Store(int64(time.Since(e.Payload.(*stamp).t)))
			handled.Add(1)
		}, &SubscribeOptions{Queue: 64}); err != nil {
			b.Fatal(err)
		}
		measure(b, func(s *stamp) { _ = bus.Publish(ctx, "t", s) }, &handled)
		_ = bus.Close(ctx)
	})
}

var latNanos atomic.Int64
