package bus

import (
	"context"
	"fmt"
	"reflect"
)

// TypedHandler handles events whose payload has type T. v is e.Payload
// converted to T. The rules of Handler apply.
type TypedHandler[T any] func(ctx context.Context, e Event, v T)

// SubscribeTyped is Subscribe for handlers that want the payload as a T
// without a type assertion of their own. An event whose payload is not a T
// (for a non-interface T, a nil payload neither) is not passed to h: it is
// reported to Options.OnError as a *DeliveryError wrapping ErrPayloadType,
// naming both types. The type check costs no allocation; only the report
// uses reflection.
//
//go:noinline
func SubscribeTyped[T any](b *Bus, pattern string, h TypedHandler[T]) (*Subscription, error) {
	b.mustBeNew()
	if h == nil {
		return nil, errorf(ErrNilHandler, "subscribe %q", pattern)
	}
	return b.subscribe(pattern, typed(b, pattern, h), nil, nil, 1)
}

// SubscribeTypedWith is SubscribeTyped with the options of SubscribeWith:
// an asynchronous queue, a queue group, Once, Track.
//
//go:noinline
func SubscribeTypedWith[T any](b *Bus, pattern string, h TypedHandler[T], opts *SubscribeOptions) (*Subscription, error) {
	b.mustBeNew()
	if h == nil {
		return nil, errorf(ErrNilHandler, "subscribe %q", pattern)
	}
	return b.subscribe(pattern, typed(b, pattern, h), nil, opts, 1)
}

// typed wraps h in a Handler that checks the payload's type.
func typed[T any](b *Bus, pattern string, h TypedHandler[T]) Handler {
	return func(ctx context.Context, e Event) {
		v, ok := e.Payload.(T)
		if !ok {
			b.report(&DeliveryError{Topic: e.Topic, Pattern: pattern, Err: ErrPayloadType,
				Detail: fmt.Sprintf("want %v, got %T", reflect.TypeFor[T](), e.Payload)})
			return
		}
		h(ctx, e, v)
	}
}
