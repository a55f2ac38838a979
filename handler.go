package bus

import (
	"context"
	"fmt"
	"reflect"
	"runtime/debug"
	"strings"
)

// Handlers that can fail, and middleware.
//
// A subscription made with a HandlerFunc, or with middleware or a retry
// policy, keeps its handler wrapped in its middleware in Subscription.fn;
// every other one keeps its plain Handler, which Publish calls in line.
// So a bus without middleware pays nothing for this file on the publish
// path: a plain synchronous subscription is still called in line, with
// one deferred recover for the whole loop (publish.go).

// HandlerFunc handles the events of one subscription and says whether it
// succeeded: a non-nil error means the event was not handled. The rules of
// Handler apply (it may run concurrently with itself for a synchronous
// subscription, and may publish, subscribe and unsubscribe).
//
// A returned error, like a panic, is counted (Stats.Failed) and reported to
// Options.OnError as a [*DeliveryError] wrapping both ErrHandlerFailed and
// the error, with the topic, the pattern, where the subscription was made
// and the attempt. Publish does not return it: see SubscribeFunc. An
// asynchronous subscription with a RetryPolicy tries the event again.
type HandlerFunc func(ctx context.Context, e Event) error

// Middleware wraps a HandlerFunc in another, for logging, metrics,
// tracing, timeouts and the like, in the style of net/http middleware:
//
//	func logging(next bus.HandlerFunc) bus.HandlerFunc {
//		return func(ctx context.Context, e bus.Event) error {
//			err := next(ctx, e)
//			log.Printf("%s: %v", e.Topic, err)
//			return err
//		}
//	}
//
// A middleware is called once per subscription, when it is made; the
// HandlerFunc it returns is called for every event (every attempt, with
// retries), on the goroutine of the handler, and must not be nil. It may
// change the ctx or the event it passes on, return an error of its own
// without calling next (an event it filters out then counts as failed), or
// turn an error into nil. A panic in next reaches it: a middleware may
// recover it, or let the bus recover and report it.
type Middleware func(next HandlerFunc) HandlerFunc

// SubscribeFunc is Subscribe for a handler that returns an error.
//
// What a synchronous publisher sees: Publish returns once every handler has
// returned, and does not return their errors, nor panics. A handler's error
// is reported to Options.OnError and counted, and the other subscriptions
// still get the event, as with a panic. Returning it from Publish was
// rejected: Publish's error says the event did not reach some subscription
// (a bad topic, a closed bus, a full queue), and a publisher that retries
// on error would give the event again to every subscription that had
// handled it. A caller that must know whether the handlers of one event
// succeeded, such as a bridge deciding to acknowledge a Redis entry,
// publishes with a ctx from WithFailureFunc.
//
//go:noinline
func (b *Bus) SubscribeFunc(pattern string, h HandlerFunc) (*Subscription, error) {
	return b.subscribe(pattern, nil, h, nil, 1)
}

// SubscribeFuncWith is SubscribeFunc with the options of SubscribeWith,
// among which middleware, and retries for an asynchronous subscription.
//
//go:noinline
func (b *Bus) SubscribeFuncWith(pattern string, h HandlerFunc, opts *SubscribeOptions) (*Subscription, error) {
	return b.subscribe(pattern, nil, h, opts, 1)
}

// TypedHandlerFunc is a HandlerFunc that gets the payload as a T, as
// TypedHandler does.
type TypedHandlerFunc[T any] func(ctx context.Context, e Event, v T) error

// SubscribeTypedFunc is SubscribeTyped for a handler that returns an
// error. An event whose payload is not a T is reported (ErrPayloadType) and
// not passed to h; it does not count as failed and is not retried: no
// attempt can give it the right type.
//
//go:noinline
func SubscribeTypedFunc[T any](b *Bus, pattern string, h TypedHandlerFunc[T]) (*Subscription, error) {
	b.mustBeNew()
	if h == nil {
		return nil, errorf(ErrNilHandler, "subscribe %q", pattern)
	}
	return b.subscribe(pattern, nil, typedFunc(b, pattern, h), nil, 1)
}

// SubscribeTypedFuncWith is SubscribeTypedFunc with the options of
// SubscribeWith.
//
//go:noinline
func SubscribeTypedFuncWith[T any](b *Bus, pattern string, h TypedHandlerFunc[T], opts *SubscribeOptions) (*Subscription, error) {
	b.mustBeNew()
	if h == nil {
		return nil, errorf(ErrNilHandler, "subscribe %q", pattern)
	}
	return b.subscribe(pattern, nil, typedFunc(b, pattern, h), opts, 1)
}

// typedFunc wraps h in a HandlerFunc that checks the payload's type.
func typedFunc[T any](b *Bus, pattern string, h TypedHandlerFunc[T]) HandlerFunc {
	return func(ctx context.Context, e Event) error {
		v, ok := e.Payload.(T)
		if !ok {
			b.report(&DeliveryError{Topic: e.Topic, Pattern: pattern, Err: ErrPayloadType,
				Detail: fmt.Sprintf("want %v, got %T", reflect.TypeFor[T](), e.Payload)})
			return nil
		}
		return h(ctx, e, v)
	}
}

// wrap sets s.fn, the handler fn (or s.handler, if fn is nil) inside the
// subscription's middleware inside the bus's, when there is a HandlerFunc,
// a middleware or a retry policy; it leaves a plain Handler alone.
func (s *Subscription) wrap(fn HandlerFunc) error {
	b, o := s.bus, s.opts
	if fn == nil && len(b.middleware) == 0 && len(o.Middleware) == 0 && o.Retry == nil {
		return nil
	}
	if fn == nil {
		h := s.handler
		fn = func(ctx context.Context, e Event) error {
			h(ctx, e)
			return nil
		}
	}
	for _, mws := range [][]Middleware{o.Middleware, b.middleware} {
		for i := len(mws) - 1; i >= 0; i-- {
			if fn = mws[i](fn); fn == nil {
				return errorf(ErrInvalidOption, "subscribe %q: a middleware returned a nil HandlerFunc", s.pat.text)
			}
		}
	}
	s.fn = fn
	if o.Retry != nil {
		p, err := o.Retry.normalize(b.sep)
		if err != nil {
			return err
		}
		s.retry = &p
		o.Retry = &p // a copy of the caller's policy
	}
	return nil
}

// callFunc is callSync for a subscription with fn: it makes the one
// attempt of a synchronous subscription and reports its failure.
func (s *Subscription) callFunc(ctx context.Context, e *Event) {
	if de := s.attempt(ctx, e, 1); de != nil {
		s.bus.report(de)
		s.bus.notifyFailure(ctx, de)
	}
}

// attempt calls s.fn once and returns the report of its failure, counted,
// or nil if it succeeded. It recovers a panic itself, so that the caller
// can retry it like an error.
func (s *Subscription) attempt(ctx context.Context, e *Event, n int) (de *DeliveryError) {
	defer func() {
		if r := recover(); r != nil {
			s.panics.Add(1)
			s.bus.panics.add(1)
			s.countFailed()
			de = &DeliveryError{Topic: e.Topic, Pattern: s.pat.text, Err: ErrHandlerPanic, Value: r, Stack: debug.Stack(),
				Where: s.Where(), Attempt: n}
		}
	}()
	if err := s.fn(ctx, *e); err != nil {
		s.countFailed()
		return &DeliveryError{Topic: e.Topic, Pattern: s.pat.text, Err: ErrHandlerFailed, Cause: err, Where: s.Where(), Attempt: n}
	}
	return nil
}

func (s *Subscription) countFailed() {
	s.failureCounts().failed.Add(1)
	s.bus.failures.failed.add(1)
}

// failureCounters are the bus's counters of failed handling; they are
// written only when something fails.
type failureCounters struct {
	failed, retried, deadLettered, abandoned counter
}

func newFailureCounters() failureCounters {
	return failureCounters{failed: newCounter(1), retried: newCounter(1), deadLettered: newCounter(1), abandoned: newCounter(1)}
}

func (c *failureCounters) load(st *Stats) {
	st.Failed, st.Retried = c.failed.load(), c.retried.load()
	st.DeadLettered, st.Abandoned = c.deadLettered.load(), c.abandoned.load()
}

type failureFuncKey struct{}

// WithFailureFunc returns a copy of ctx that makes the bus call f with the
// report of every handling that ends failed for an event published with
// that ctx: once per subscription whose handler returned an error or
// panicked (a plain Handler's panic included), after its last attempt for
// a subscription with a RetryPolicy, the report then saying whether the
// event was dead-lettered or abandoned. The same report also goes to
// Options.OnError.
//
// For synchronous subscriptions f is called before Publish returns, on the
// publisher's goroutine: a caller that needs to know whether the handlers
// of one event all succeeded, such as a bridge acknowledging a Redis entry
// only once it was handled, publishes with it and checks what f saw. For
// asynchronous ones f is called later, on the subscription's goroutine.
// f may be called concurrently, must not block for long, and must not
// retain or modify the report's fields beyond reading them; a panic in f
// is swallowed. Looking f up costs nothing unless something failed.
func WithFailureFunc(ctx context.Context, f func(*DeliveryError)) context.Context {
	return context.WithValue(ctx, failureFuncKey{}, f)
}

// notifyFailure calls the function of WithFailureFunc in ctx, if any.
func (b *Bus) notifyFailure(ctx context.Context, de *DeliveryError) {
	if ctx == nil {
		return
	}
	f, _ := ctx.Value(failureFuncKey{}).(func(*DeliveryError))
	if f == nil {
		return
	}
	defer func() { _ = recover() }()
	f(de)
}

// wrapErrors is an error of this package that wraps several.
type wrapErrors struct {
	msg  string
	errs []error
}

func (e *wrapErrors) Error() string   { return e.msg }
func (e *wrapErrors) Unwrap() []error { return e.errs }

// closeError is the error of Close: lost queued events, events abandoned
// between attempts, and ctx's error if it ended.
func closeError(ctx context.Context, lost, abandoned uint64) error {
	ended := ctx.Err() != nil
	if lost == 0 && abandoned == 0 && !ended {
		return nil
	}
	var parts []string
	var errs []error
	if lost > 0 || ended {
		parts = append(parts, plural(lost, "queued event")+" not delivered")
	}
	if abandoned > 0 {
		parts = append(parts, plural(abandoned, "failed event")+" abandoned between attempts")
		errs = append(errs, ErrRetryAbandoned)
	}
	msg := "bus: close: " + strings.Join(parts, ", ")
	if ended {
		cause := context.Cause(ctx)
		msg += ": " + strings.TrimPrefix(cause.Error(), "bus: ")
		errs = append(errs, cause)
	}
	return &wrapErrors{msg: msg, errs: errs}
}
