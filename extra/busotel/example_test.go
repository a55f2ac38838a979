package busotel_test

import (
	"context"
	"fmt"
	"log"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/extra/busotel"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// The setup of a service: the propagator once per process, then one
// Telemetry for the bus, its bridge and its subscriptions.
func Example() {
	otel.SetTextMapPropagator(propagation.TraceContext{}) // W3C traceparent in the events' headers
	tel, err := busotel.New(nil)                          // the global tracer and meter providers
	if err != nil {
		log.Fatal(err)
	}
	b := bus.New(&bus.Options{Stats: true})
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	br, err := bridge.New(b, rdb, &bridge.Options{
		Routes: []bridge.Route{{Pattern: "orders.*"}},
		Hooks:  tel.BridgeHooks(), // create and process spans, import latency
	})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := tel.ObserveBus(b); err != nil {
		log.Fatal(err)
	}
	if _, err := tel.ObserveBridge(br); err != nil {
		log.Fatal(err)
	}
	_, err = b.SubscribeWith("orders.*", func(ctx context.Context, e bus.Event) { /* ... */ },
		&bus.SubscribeOptions{Middleware: []bus.Middleware{tel.Middleware("billing")}})
	if err != nil {
		log.Fatal(err)
	}
}

// A local publish in a send span, and the handler's span as its child.
func ExampleTelemetry_Middleware() {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tel, err := busotel.New(&busotel.Options{TracerProvider: tp})
	if err != nil {
		log.Fatal(err)
	}
	b := bus.New(nil)
	defer b.Close(context.Background())
	_, err = b.SubscribeFuncWith("orders.created", func(context.Context, bus.Event) error { return nil },
		&bus.SubscribeOptions{Middleware: []bus.Middleware{tel.Middleware("billing")}})
	if err != nil {
		log.Fatal(err)
	}
	if err := tel.Publish(context.Background(), b, "orders.created", "order 1"); err != nil {
		log.Fatal(err)
	}
	spans := rec.Ended()
	for _, s := range spans {
		fmt.Println(s.Name(), s.SpanKind())
	}
	fmt.Println("same trace:", spans[0].SpanContext().TraceID() == spans[1].SpanContext().TraceID())
	fmt.Println("handler's parent is the send span:", spans[0].Parent().SpanID() == spans[1].SpanContext().SpanID())
	// Output:
	// process billing consumer
	// send orders.created producer
	// same trace: true
	// handler's parent is the send span: true
}

// The bus's counters read by a metric reader.
func ExampleTelemetry_ObserveBus() {
	reader := sdkmetric.NewManualReader()
	tel, err := busotel.New(&busotel.Options{MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})
	if err != nil {
		log.Fatal(err)
	}
	b := bus.New(&bus.Options{Stats: true})
	defer b.Close(context.Background())
	reg, err := tel.ObserveBus(b)
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Unregister()
	_ = b.Publish(context.Background(), "orders.created", 1)
	_ = b.Publish(context.Background(), "orders.created", 2)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		log.Fatal(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name == "busline.bus.published" {
			fmt.Println(m.Name, m.Unit, m.Data.(metricdata.Sum[int64]).DataPoints[0].Value)
		}
	}
	// Output:
	// busline.bus.published {event} 2
}
