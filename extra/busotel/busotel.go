package busotel

import (
	"fmt"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// System is the value of the messaging.system attribute of every span and
// metric of this package. OpenTelemetry registers no value for Redis pub/sub
// or streams, and what crosses Redis is Busline's envelope.
const System = "busline"

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/busline/bus/extra/busotel"

// Options configures a Telemetry. A nil *Options and the zero value of each
// field mean the defaults documented on the field.
type Options struct {
	// TracerProvider makes the tracer of the spans. Nil means
	// otel.GetTracerProvider(), which follows a later
	// otel.SetTracerProvider.
	TracerProvider trace.TracerProvider

	// MeterProvider makes the meter of the metrics. Nil means
	// otel.GetMeterProvider(), which follows a later
	// otel.SetMeterProvider.
	MeterProvider metric.MeterProvider

	// Propagator injects trace context into the headers of exported
	// events and extracts it from imported ones. Nil means
	// otel.GetTextMapPropagator(), which propagates nothing until
	// otel.SetTextMapPropagator is called: set it to
	// propagation.TraceContext{} (W3C traceparent and tracestate), or a
	// composite with it, on every instance.
	Propagator propagation.TextMapPropagator
}

// Telemetry makes the spans and the metrics of a bus and its bridges. Make
// one with New and share it: all its methods are safe for concurrent use.
type Telemetry struct {
	tracer trace.Tracer
	meter  metric.Meter
	prop   propagation.TextMapPropagator

	importLatency   metric.Float64Histogram
	processDuration metric.Float64Histogram

	// routes caches what the spans and histograms of each route need,
	// keyed by routeKey.
	routes sync.Map
}

// New returns a Telemetry configured by opts (nil means the defaults). It
// fails only when the meter refuses to create the histograms.
func New(opts *Options) (*Telemetry, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
	if o.MeterProvider == nil {
		o.MeterProvider = otel.GetMeterProvider()
	}
	if o.Propagator == nil {
		o.Propagator = otel.GetTextMapPropagator()
	}
	t := &Telemetry{
		tracer: o.TracerProvider.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		meter:  o.MeterProvider.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL)),
		prop:   o.Propagator,
	}
	var err error
	t.importLatency, err = t.meter.Float64Histogram("busline.bridge.import.latency", metric.WithUnit("s"),
		metric.WithDescription("Time from the publish of an event on its source instance (its envelope's time) to its local publish on this one."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	if err != nil {
		return nil, fmt.Errorf("busotel: %w", err)
	}
	t.processDuration, err = t.meter.Float64Histogram("messaging.process.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of the handler calls of subscriptions with the Middleware of busotel."),
		metric.WithExplicitBucketBoundaries(latencyBuckets...))
	if err != nil {
		return nil, fmt.Errorf("busotel: %w", err)
	}
	return t, nil
}

// latencyBuckets are the histograms' bucket boundaries, in seconds: from
// 100 µs (a bridged event through a local Redis takes a few tens of µs
// more than that) to 10 s (an outage).
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// systemAttr is messaging.system.
var systemAttr = semconv.MessagingSystemKey.String(System)

// attrs returns kv with systemAttr first.
func attrs(kv ...attribute.KeyValue) []attribute.KeyValue {
	return append([]attribute.KeyValue{systemAttr}, kv...)
}
