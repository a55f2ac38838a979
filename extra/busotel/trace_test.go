package busotel_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/extra/busotel"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// TestTraceCrossesRedis publishes an event in a span on one instance and
// follows it to a handler of another, through a real redis-server, on every
// transport: one trace, with the spans of each side in order (request →
// send → create, then process → the handler's process), the process span a
// child of the create span and linked to it, and the attributes of the
// messaging conventions.
func TestTraceCrossesRedis(t *testing.T) {
	single := func(t *testing.T) (redis.UniversalClient, redis.UniversalClient) {
		srv := redistest.Start(t, nil)
		return srv.Client(t), srv.Client(t)
	}
	for _, tc := range []struct {
		name    string
		servers func(t *testing.T) (redis.UniversalClient, redis.UniversalClient)
		route   bridge.Route
		topic   string
		// dest is the destination's name, span is the name of the
		// spans' destination (the template of a pattern route).
		dest, span string
		group      string
		operation  string
	}{
		{"pubsub", single, bridge.Route{Pattern: "orders.created"}, "orders.created",
			"app:orders.created", "app:orders.created", "", "publish"},
		{"pubsub pattern", single, bridge.Route{Pattern: "orders.*"}, "orders.paid",
			"app:orders.paid", "orders.*", "", "publish"},
		{"stream", single, bridge.Route{Pattern: "orders.created", Delivery: bridge.Stream}, "orders.created",
			bridge.StreamKey("app:", "orders.created"), bridge.StreamKey("app:", "orders.created"), "", "xadd"},
		{"group", single, bridge.Route{Pattern: "orders.created", Delivery: bridge.Group, Group: "billing"}, "orders.created",
			bridge.StreamKey("app:", "orders.created"), bridge.StreamKey("app:", "orders.created"), "billing", "xadd"},
		{"sharded", func(t *testing.T) (redis.UniversalClient, redis.UniversalClient) {
			c := redistest.StartCluster(t, 3)
			return c.Client(t), c.Client(t)
		}, bridge.Route{Pattern: "orders.created"}, "orders.created",
			"app:orders.created", "app:orders.created", "", "publish"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdbA, rdbB := tc.servers(t)
			trA, trB := newTracing(t), newTracing(t)
			// One way: a Group route's events go to one member.
			out, in := tc.route, tc.route
			out.Direction, in.Direction = bridge.Export, bridge.Import
			a := newInstance(t, rdbA, options(trA, out))
			b := newInstance(t, rdbB, options(trB, in))
			got := subscribe(t, b, trB, tc.route.Pattern, "billing")

			ctx, root := trA.root("request")
			if err := trA.tel.Publish(ctx, a.bus, tc.topic, "order 1"); err != nil {
				t.Fatal(err)
			}
			root.End()
			got.wait(t, 1)

			rc := root.SpanContext()
			send := trA.span(t, "send "+tc.topic, inTrace(rc))
			childOf(t, send, rc)
			if send.SpanKind() != trace.SpanKindProducer {
				t.Errorf("send span kind %v", send.SpanKind())
			}
			create := trA.span(t, "create "+tc.span, inTrace(rc))
			childOf(t, create, send.SpanContext())
			if create.SpanKind() != trace.SpanKindProducer {
				t.Errorf("create span kind %v", create.SpanKind())
			}
			wantAttrs(t, create, map[attribute.Key]string{
				semconv.MessagingSystemKey:          busotel.System,
				semconv.MessagingOperationTypeKey:   "create",
				semconv.MessagingDestinationNameKey: tc.dest,
				"busline.send.operation":            tc.operation,
			})

			process := trB.span(t, "process "+tc.span, inTrace(rc))
			childOf(t, process, create.SpanContext())
			if !process.Parent().IsRemote() {
				t.Error("process span: parent not remote")
			}
			if process.SpanKind() != trace.SpanKindConsumer {
				t.Errorf("process span kind %v", process.SpanKind())
			}
			if l := process.Links(); len(l) != 1 || l[0].SpanContext.SpanID() != create.SpanContext().SpanID() {
				t.Errorf("process span links %v, want the create span", l)
			}
			want := map[attribute.Key]string{
				semconv.MessagingSystemKey:          busotel.System,
				semconv.MessagingOperationTypeKey:   "process",
				semconv.MessagingDestinationNameKey: tc.dest,
				semconv.MessagingMessageIDKey:       a.bridge.InstanceID() + ":1",
				"busline.delivery":                  tc.route.Delivery.String(),
			}
			if tc.group != "" {
				want[semconv.MessagingConsumerGroupNameKey] = tc.group
			}
			if tc.span != tc.dest {
				want[semconv.MessagingDestinationTemplateKey] = tc.span
			}
			wantAttrs(t, process, want)
			if tc.route.Delivery != bridge.PubSub {
				id, ok := attr(process, "busline.stream.entry_id")
				if !ok || id == "" {
					t.Error("process span of a stream entry without busline.stream.entry_id")
				}
				if tc.route.Delivery == bridge.Stream {
					// Closing before the checkpoint is saved reports
					// the save failed.
					cp := "app:checkpoint:" + b.bridge.InstanceID()
					waitFor(t, "the checkpoint saved", func() bool {
						return rdbB.HGet(context.Background(), cp, tc.dest).Val() == id
					})
				}
			}

			handler := trB.span(t, "process billing", inTrace(rc))
			childOf(t, handler, process.SpanContext())
			wantAttrs(t, handler, map[attribute.Key]string{
				semconv.MessagingDestinationSubscriptionNameKey: "billing",
				semconv.MessagingDestinationNameKey:             tc.topic,
			})
			if tc.route.Delivery == bridge.Group {
				// Closing before the XACK is made reports it failed.
				waitFor(t, "the entry acknowledged", func() bool { return b.bridge.Stats().StreamAcked == 1 })
			}
			if n := len(trB.rec.Ended()); n != 2 {
				t.Errorf("%d spans on the importer, want 2: %s", n, names(trB.rec.Ended()))
			}
		})
	}
}

// TestBatchKeepsEachTrace makes two events of two traces wait together in
// the outbox (CLIENT PAUSE WRITE holds the flusher's PUBLISH back), so that
// they cross Redis in one batch, which a plain subscriber sees holding both
// trace IDs; on the other side each event's process span is in its own
// trace, the child of its own create span.
func TestBatchKeepsEachTrace(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "batch.*"}
	trA, trB := newTracing(t), newTracing(t)
	a := newInstance(t, srv.Client(t), options(trA, route))
	b := newInstance(t, srv.Client(t), options(trB, route))
	got := subscribe(t, b, trB, "batch.*", "")

	plain := srv.Client(t).Subscribe(context.Background(), "app:batch.x")
	t.Cleanup(func() { _ = plain.Close() })
	if _, err := plain.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	messages := plain.Channel()

	ctx := context.Background()
	if err := srv.Client(t).Do(ctx, "CLIENT", "PAUSE", "300", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	// The first export may leave before the pause holds the flusher
	// back; the next two then wait together.
	if err := a.bus.Publish(ctx, "batch.x", "warm-up"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	var roots []trace.SpanContext
	for _, name := range []string{"first", "second"} {
		rctx, root := trA.root(name)
		if err := a.bus.Publish(rctx, "batch.x", name); err != nil {
			t.Fatal(err)
		}
		root.End()
		roots = append(roots, root.SpanContext())
	}
	got.wait(t, 3)

	together := false
	timeout := time.After(waitTimeout)
	for n := 0; n < 3 && !together; {
		select {
		case m := <-messages:
			p := []byte(m.Payload)
			first, second := bytes.Contains(p, []byte(roots[0].TraceID().String())), bytes.Contains(p, []byte(roots[1].TraceID().String()))
			together = first && second
			n++ // at most three messages carry the three events
		case <-timeout:
			t.Fatalf("no message with both traces within %v", waitTimeout)
		}
	}
	if !together {
		t.Fatalf("the two events did not cross in one batch (stats %+v)", a.bridge.Stats())
	}
	for _, rc := range roots {
		create := trA.span(t, "create batch.*", inTrace(rc))
		childOf(t, create, rc)
		process := trB.span(t, "process batch.*", inTrace(rc))
		childOf(t, process, create.SpanContext())
		handler := trB.span(t, "process batch.x", inTrace(rc))
		childOf(t, handler, process.SpanContext())
	}
}

// TestRawRouteCarriesNoTrace checks what the package documents: a raw
// route has no headers, so its import is the root of a trace of its own.
func TestRawRouteCarriesNoTrace(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "raw.x", Raw: true, Codec: bridge.Text()}
	trA, trB := newTracing(t), newTracing(t)
	a := newInstance(t, srv.Client(t), options(trA, route))
	b := newInstance(t, srv.Client(t), options(trB, route))
	got := subscribe(t, b, trB, "raw.x", "")
	ctx, root := trA.root("request")
	if err := a.bus.Publish(ctx, "raw.x", "plain"); err != nil {
		t.Fatal(err)
	}
	root.End()
	if e := got.wait(t, 1)[0]; e.Meta == nil || len(e.Meta.Headers) != 0 {
		t.Errorf("raw import's meta %+v, want no headers", e.Meta)
	}
	childOf(t, trA.span(t, "create app:raw.x", nil), root.SpanContext())
	process := trB.span(t, "process app:raw.x", nil)
	if process.Parent().IsValid() || len(process.Links()) != 0 {
		t.Errorf("raw import's process span has parent %v, links %v", process.Parent(), process.Links())
	}
}

// TestExportKeepsHeaders checks that the export hook adds trace context to
// a copy of the event's headers, which arrive on the other side with it,
// and leaves the publisher's map alone.
func TestExportKeepsHeaders(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "hdr.x"}
	trA := newTracing(t)
	a := newInstance(t, srv.Client(t), options(trA, route))
	b := newInstance(t, srv.Client(t), options(nil, route))
	got := subscribe(t, b, nil, "hdr.x", "")
	headers := map[string]string{"tenant": "t1"}
	ctx, root := trA.root("request")
	if err := a.bus.PublishEvent(ctx, bus.Event{Topic: "hdr.x", Payload: "p", Meta: &bus.Meta{Headers: headers}}); err != nil {
		t.Fatal(err)
	}
	root.End()
	e := got.wait(t, 1)[0]
	if e.Meta.Headers["tenant"] != "t1" || e.Meta.Headers["traceparent"] == "" {
		t.Errorf("imported headers %v, want tenant and traceparent", e.Meta.Headers)
	}
	if len(headers) != 1 {
		t.Errorf("the publisher's headers were modified: %v", headers)
	}
}

// TestMiddlewareFailures checks the handler spans of a failing handler: an
// error and a panic mark the span failed, and the panic still reaches the
// bus, which reports it.
func TestMiddlewareFailures(t *testing.T) {
	tr := newTracing(t)
	reported := make(chan error, 4)
	b := bus.New(&bus.Options{OnError: func(err error) { reported <- err }})
	defer func() { _ = b.Close(context.Background()) }()
	boom := errors.New("boom")
	for _, tc := range []struct {
		name  string
		h     bus.HandlerFunc
		want  codes.Code
		etype string
	}{
		{"ok", func(context.Context, bus.Event) error { return nil }, codes.Unset, ""},
		{"error", func(context.Context, bus.Event) error { return boom }, codes.Error, "*errors.errorString"},
		{"panic", func(context.Context, bus.Event) error { panic("oops") }, codes.Error, "panic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sub, err := b.SubscribeFuncWith("mw."+tc.name, tc.h, &bus.SubscribeOptions{Middleware: []bus.Middleware{tr.tel.Middleware(tc.name)}})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := b.Publish(context.Background(), "mw."+tc.name, nil); err != nil {
				t.Fatal(err)
			}
			s := tr.span(t, "process "+tc.name, nil)
			if s.Status().Code != tc.want {
				t.Errorf("status %v, want %v", s.Status(), tc.want)
			}
			if got, _ := attr(s, semconv.ErrorTypeKey); got != tc.etype {
				t.Errorf("error.type %q, want %q", got, tc.etype)
			}
			if tc.want == codes.Error {
				select {
				case err := <-reported:
					if !errors.Is(err, bus.ErrHandlerFailed) && !errors.Is(err, bus.ErrHandlerPanic) {
						t.Errorf("reported %v", err)
					}
				case <-time.After(waitTimeout):
					t.Fatal("the failure was not reported")
				}
			}
		})
	}
}
