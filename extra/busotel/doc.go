// Package busotel instruments Busline with OpenTelemetry: traces that follow
// each event from its publisher through Redis to the handlers of every other
// instance, and metrics over the counters of a Bus and a Bridge.
//
// It is a module of its own, so that the bus and the bridge never depend on
// OpenTelemetry. Create one Telemetry with New and plug it in where it is
// wanted:
//
//	tel, err := busotel.New(nil) // the global TracerProvider, MeterProvider and propagator
//	br, err := bridge.New(b, rdb, &bridge.Options{Routes: routes, Hooks: tel.BridgeHooks()})
//	reg, err := tel.ObserveBus(b)      // and tel.ObserveBridge(br); reg.Unregister when done
//	sub, err := b.SubscribeWith("orders.*", handle, &bus.SubscribeOptions{
//		Middleware: []bus.Middleware{tel.Middleware("billing")}, // handler spans
//	})
//	err = tel.Publish(ctx, b, "orders.created", order) // a send span (opt-in)
//
// # Traces
//
// The bridge's hooks (BridgeHooks) give each exported event a "create" span
// (kind PRODUCER) on the publisher's goroutine, a child of the span in the
// publisher's ctx, and inject its context into the event's headers with the
// propagator (W3C traceparent and tracestate with propagation.TraceContext):
// every envelope carries its own headers, the events of a coalesced batch
// and the entries of a stream included, so each event keeps its own trace.
// The importing instance extracts them and publishes the event locally in a
// "process" span (kind CONSUMER) whose parent is the creation context, also
// added as a link as the messaging conventions recommend, so that one trace
// crosses the instances; the handlers' spans (Middleware) are its children.
//
// The span names and attributes follow the OpenTelemetry messaging semantic
// conventions (semconv v1.40.0): the name is "{operation} {destination}",
// where the destination is the Redis channel or stream key of an exact route
// and the route's pattern (messaging.destination.template) for a pattern
// route; messaging.operation.type is create, send or process;
// messaging.destination.name is the channel or stream key;
// messaging.message.id is "source:sequence" of the event's envelope, known on
// import only (the bridge numbers an export once it is queued, after its
// span); messaging.consumer.group.name names the group of a Group route.
// messaging.system is "busline" (the value of System): OpenTelemetry
// registers no value for Redis pub/sub or streams, and what crosses Redis is
// Busline's envelope, which only Busline reads.
//
// Export spans are "create" spans, not "send": the bridge sends later, from
// its flusher, in pipelines and batches, and a span per event around the
// queueing is the per-message creation context the conventions define for
// batch sending. The sending itself (pipelines, outages) is in the bridge's
// metrics, not in spans. Older conventions (v1.24 and before) called "send"
// "publish".
//
// Raw routes carry no headers: traces do not cross them. Their imports still
// get a process span, the root of a trace of its own.
//
// With no propagator configured, OpenTelemetry's global one propagates
// nothing: call otel.SetTextMapPropagator(propagation.TraceContext{}) (or
// propagation.NewCompositeTextMapPropagator(propagation.TraceContext{},
// propagation.Baggage{})) at start-up, or set Options.Propagator.
//
// # Metrics
//
// ObserveBus and ObserveBridge register observable instruments over
// bus.Stats and bridge.Stats, read once per collection: counters for what
// the stats count since New and gauges for depths. The names follow the
// messaging conventions where they define one (messaging.client.sent.messages,
// messaging.client.consumed.messages, messaging.process.duration) and are
// busline.* otherwise. BridgeHooks also records the latency of each import
// (busline.bridge.import.latency: from the publisher's clock, Meta.Time, to
// the local publish) and Middleware the duration of each handler call
// (messaging.process.duration). Attributes are bounded: a route's pattern or
// channel, a subscription's name, never a topic of a pattern route.
//
// With none of this configured, the bus and the bridge pay nothing: their
// hooks are nil checks, and publishing keeps its zero-allocation paths.
package busotel
