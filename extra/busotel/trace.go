package busotel

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// BridgeHooks returns the hooks that trace the events of a bridge and
// record the latency of its imports: set them as bridge.Options.Hooks. A
// bridge calls them for every event it exports or imports (see the package
// documentation for the spans). The hooks of one Telemetry may serve any
// number of bridges.
func (t *Telemetry) BridgeHooks() bridge.Hooks {
	return bridge.Hooks{Export: t.export, Import: t.importEvent}
}

// routeKey identifies what a route's spans and metrics share.
type routeKey struct {
	pattern  string
	delivery bridge.Delivery
	// destination is the channel or stream key of an exact route; empty
	// for a pattern route, whose destination varies with the topic.
	destination string
}

// routeInfo is what the spans and metrics of a route share, made once.
type routeInfo struct {
	createName, processName string
	// common are the attributes of both spans but the destination's name
	// and the operation.
	common []attribute.KeyValue
	// metric is the attribute set of the route's histogram records.
	metric metric.MeasurementOption
}

// isPattern reports whether a route's pattern has glob metacharacters,
// which topics never have.
func isPattern(p string) bool { return strings.ContainsAny(p, `*?[]{}\`) }

// route returns the routeInfo of info's route, made on first use.
func (t *Telemetry) route(info *bridge.HookInfo) *routeInfo {
	k := routeKey{pattern: info.Pattern, delivery: info.Delivery}
	templ := isPattern(info.Pattern)
	if !templ {
		k.destination = info.Destination
	}
	if ri, ok := t.routes.Load(k); ok {
		return ri.(*routeInfo)
	}
	dest := info.Destination
	common := attrs(attribute.String("busline.delivery", info.Delivery.String()))
	mattrs := attrs()
	if templ {
		// The conventions' low-cardinality stand-in for destinations
		// that vary: the span name and the metrics use it.
		dest = info.Pattern
		common = append(common, semconv.MessagingDestinationTemplate(info.Pattern))
		mattrs = append(mattrs, semconv.MessagingDestinationTemplate(info.Pattern))
	} else {
		mattrs = append(mattrs, semconv.MessagingDestinationName(info.Destination))
	}
	if info.Group != "" {
		common = append(common, semconv.MessagingConsumerGroupName(info.Group))
	}
	ri := &routeInfo{
		createName:  "create " + dest,
		processName: "process " + dest,
		common:      common,
		metric:      metric.WithAttributeSet(attribute.NewSet(mattrs...)),
	}
	v, _ := t.routes.LoadOrStore(k, ri)
	return v.(*routeInfo)
}

// sendOperation is the messaging.operation.name of what carries an export
// of delivery d to Redis.
func sendOperation(d bridge.Delivery) string {
	if d == bridge.PubSub {
		return "publish"
	}
	return "xadd"
}

// export is the Export hook: a create span per event, whose context goes
// into the headers returned.
func (t *Telemetry) export(ctx context.Context, e bus.Event, info bridge.HookInfo) map[string]string {
	ri := t.route(&info)
	ctx, span := t.tracer.Start(ctx, ri.createName, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(ri.common...),
		trace.WithAttributes(
			semconv.MessagingOperationTypeCreate,
			semconv.MessagingOperationName("create"),
			semconv.MessagingDestinationName(info.Destination),
			attribute.String("busline.send.operation", sendOperation(info.Delivery)),
		))
	defer span.End()
	if info.Raw {
		return nil
	}
	c := headerCarrier{}
	if e.Meta != nil {
		c.old = e.Meta.Headers
	}
	t.prop.Inject(ctx, &c)
	return c.out
}

// importEvent is the Import hook: a process span per event, child of the
// creation context its headers carry, and its latency recorded.
func (t *Telemetry) importEvent(ctx context.Context, e bus.Event, info bridge.HookInfo) (context.Context, func(error)) {
	ri := t.route(&info)
	m := e.Meta
	if !m.Time.IsZero() {
		t.importLatency.Record(ctx, time.Since(m.Time).Seconds(), ri.metric)
	}
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(ri.common...),
		trace.WithAttributes(
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(info.Destination),
		),
	}
	if len(m.Headers) > 0 {
		ctx = t.prop.Extract(ctx, &headerCarrier{old: m.Headers})
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	if m.Seq != 0 {
		opts = append(opts, trace.WithAttributes(semconv.MessagingMessageID(m.Source+":"+strconv.FormatUint(m.Seq, 10))))
	}
	if info.Entry != "" {
		opts = append(opts, trace.WithAttributes(attribute.String("busline.stream.entry_id", info.Entry)))
	}
	ctx, span := t.tracer.Start(ctx, ri.processName, opts...)
	return ctx, func(err error) {
		if err != nil {
			fail(span, err)
		}
		span.End()
	}
}

// fail records err on span.
func fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
	span.SetAttributes(semconv.ErrorTypeKey.String(errorType(err)))
}

// errorType is the error.type of err: its Go type, as the conventions
// suggest when there is nothing better.
func errorType(err error) string { return fmt.Sprintf("%T", err) }

// headerCarrier is the propagation.TextMapCarrier of an event's headers:
// it reads old and writes into a copy of it, made on the first Set, so
// that the publisher's map is never modified and an event without trace
// context costs nothing.
type headerCarrier struct {
	old, out map[string]string
}

// Get returns the value of key.
func (c headerCarrier) Get(key string) string {
	if c.out != nil {
		return c.out[key]
	}
	return c.old[key]
}

// Set sets key in the copy.
func (c *headerCarrier) Set(key, value string) {
	if c.out == nil {
		c.out = make(map[string]string, len(c.old)+2)
		maps.Copy(c.out, c.old)
	}
	c.out[key] = value
}

// Keys returns the keys of the headers.
func (c headerCarrier) Keys() []string {
	m := c.out
	if m == nil {
		m = c.old
	}
	return slices.Collect(maps.Keys(m))
}
