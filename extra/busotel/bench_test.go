package busotel_test

import (
	"context"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/extra/busotel"
	"github.com/busline/bus/redistest"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkBridgedEvent measures one event from a publisher on one
// instance to a handler on another, through a real redis-server, one at a
// time: without tracing (off), and with the bridge's hooks making a create
// and a process span per event and carrying the context in its headers,
// with the SDK's batch processor and an exporter that discards (on). The
// difference is the cost of tracing a bridged event, both sides together
// (they share this process).
func BenchmarkBridgedEvent(b *testing.B) {
	srv := redistest.Start(b, nil)
	for _, tc := range []struct {
		name  string
		trace bool
	}{{"off", false}, {"on", true}} {
		b.Run(tc.name, func(b *testing.B) {
			route := bridge.Route{Pattern: "bench.x"}
			outOpts, inOpts := options(nil, oneWay(route, bridge.Export)), options(nil, oneWay(route, bridge.Import))
			if tc.trace {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				tel, err := busotel.New(&busotel.Options{TracerProvider: tp, MeterProvider: noop.NewMeterProvider(), Propagator: propagation.TraceContext{}})
				if err != nil {
					b.Fatal(err)
				}
				outOpts.Hooks, inOpts.Hooks = tel.BridgeHooks(), tel.BridgeHooks()
			}
			a := newInstance(b, srv.Client(b), outOpts)
			c := newInstance(b, srv.Client(b), inOpts)
			got := make(chan struct{}, 1)
			sub, err := c.bus.Subscribe("bench.x", func(context.Context, bus.Event) { got <- struct{}{} })
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Unsubscribe()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := a.bus.Publish(ctx, "bench.x", "payload"); err != nil {
					b.Fatal(err)
				}
				select {
				case <-got:
				case <-time.After(waitTimeout):
					b.Fatal("the event did not arrive")
				}
			}
		})
	}
}
