package busotel

import (
	"context"
	"fmt"
	"time"

	bus "github.com/busline/bus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// Middleware returns a bus.Middleware that runs each handler call in a
// "process" span (kind CONSUMER), a child of the span in the handler's ctx:
// the publisher's span for a local event (see Publish; asynchronous
// subscriptions keep the publisher's ctx), the bridge's process span for an
// imported one. It records the call's duration in messaging.process.duration
// and marks the span failed when the handler returns an error or panics (the
// panic goes on to the bus, which recovers and reports it).
//
// subscription names the subscription: the span is "process <subscription>"
// with messaging.destination.subscription.name, and so is the histogram's
// attribute. An empty subscription makes the span "process <topic>" and
// leaves the attribute out: use it only where topics are few, since span
// names should be. The topic is always in messaging.destination.name.
//
// Put it in SubscribeOptions.Middleware of the subscriptions to trace, or
// in bus.Options.Middleware for all of them (with an empty name); the
// bridge's own export subscriptions then get spans too. It costs a span and
// a histogram record per call, and two or three allocations.
func (t *Telemetry) Middleware(subscription string) bus.Middleware {
	name := "process " + subscription
	common := attrs(semconv.MessagingOperationTypeProcess, semconv.MessagingOperationName("process"))
	mattrs := attrs(semconv.MessagingOperationName("process"))
	if subscription != "" {
		common = append(common, semconv.MessagingDestinationSubscriptionName(subscription))
		mattrs = append(mattrs, semconv.MessagingDestinationSubscriptionName(subscription))
	}
	mopt := metric.WithAttributeSet(attribute.NewSet(mattrs...))
	return func(next bus.HandlerFunc) bus.HandlerFunc {
		return func(ctx context.Context, e bus.Event) (err error) {
			n := name
			if subscription == "" {
				n = "process " + e.Topic
			}
			ctx, span := t.tracer.Start(ctx, n, trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(common...),
				trace.WithAttributes(semconv.MessagingDestinationName(e.Topic)))
			start := time.Now()
			panicked := true
			defer func() {
				t.processDuration.Record(ctx, time.Since(start).Seconds(), mopt)
				if panicked {
					r := recover()
					span.SetStatus(codes.Error, fmt.Sprint("panic: ", r))
					span.SetAttributes(semconv.ErrorTypeKey.String("panic"))
					span.End()
					panic(r)
				}
				if err != nil {
					fail(span, err)
				}
				span.End()
			}()
			err = next(ctx, e)
			panicked = false
			return err
		}
	}
}

// Publish publishes payload on topic in a "send <topic>" span (kind
// PRODUCER), so that the spans of the handlers (Middleware) and of the
// bridges' exports are its children: the opt-in local part of a trace. It
// returns b.Publish's error, also recorded on the span. The span name has
// the topic in it: use it where topics are few. It costs a span, and the
// allocations of one.
func (t *Telemetry) Publish(ctx context.Context, b *bus.Bus, topic string, payload any) error {
	return t.PublishEvent(ctx, b, bus.Event{Topic: topic, Payload: payload})
}

// PublishEvent is Publish for an event with metadata, published with
// b.PublishEvent.
func (t *Telemetry) PublishEvent(ctx context.Context, b *bus.Bus, e bus.Event) error {
	ctx, span := t.tracer.Start(ctx, "send "+e.Topic, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(systemAttr, semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("publish"),
			semconv.MessagingDestinationName(e.Topic)))
	defer span.End()
	err := b.PublishEvent(ctx, e)
	if err != nil {
		fail(span, err)
	}
	return err
}
