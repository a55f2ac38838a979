package bus

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors. Callers branch on them with [errors.Is]; the errors the
// bus returns wrap them with the details of what went wrong.
var (
	// ErrClosed is wrapped by the errors of Publish, Subscribe and Close
	// once the bus has been closed.
	ErrClosed = errors.New("bus: closed")

	// ErrInvalidTopic is wrapped by a [*SyntaxError] for a topic that
	// breaks the rules of [ValidateTopic].
	ErrInvalidTopic = errors.New("bus: invalid topic")

	// ErrInvalidPattern is wrapped by a [*SyntaxError] for a pattern that
	// breaks the segment rules or the glob syntax.
	ErrInvalidPattern = errors.New("bus: invalid pattern")

	// ErrNilHandler is returned when a subscription is asked for with a
	// nil handler.
	ErrNilHandler = errors.New("bus: nil handler")

	// ErrHandlerPanic is wrapped by the [*DeliveryError] that reports a
	// recovered handler panic to [Options.OnError].
	ErrHandlerPanic = errors.New("bus: handler panicked")

	// ErrPayloadType is wrapped by the [*DeliveryError] that reports an
	// event whose payload does not have the type a [SubscribeTyped]
	// handler expects. The handler is not called for that event.
	ErrPayloadType = errors.New("bus: payload type mismatch")

	// ErrDropped is wrapped by the [*DeliveryError] that reports events
	// an asynchronous subscription lost to a full queue or to Close's
	// deadline; its Count says how many since the previous report.
	ErrDropped = errors.New("bus: events dropped")

	// ErrSlowSubscriber is wrapped by the [*DeliveryError] that reports a
	// subscription whose queue has stayed full for longer than
	// Options.SlowAfter; its Where says where it was subscribed.
	ErrSlowSubscriber = errors.New("bus: slow subscriber")

	// ErrWouldDeadlock is wrapped by the error of an operation that would
	// wait for itself: a handler publishing into its own full Block queue,
	// or waiting for its own subscription to end.
	ErrWouldDeadlock = errors.New("bus: operation would deadlock")

	// ErrInvalidOption is wrapped by the error of a subscription asked for
	// with options out of range.
	ErrInvalidOption = errors.New("bus: invalid option")

	// ErrHandlerFailed is wrapped by the [*DeliveryError] that reports a
	// [HandlerFunc] that returned an error; the error also wraps what the
	// handler returned.
	ErrHandlerFailed = errors.New("bus: handler failed")

	// ErrRetryAbandoned is wrapped by the [*DeliveryError] that reports
	// an event whose retries Close cut short, and by Close's error when it
	// abandoned some.
	ErrRetryAbandoned = errors.New("bus: retries abandoned")

	// ErrNoResponders is wrapped by the error of a Request to a topic that
	// no subscription matches: nobody could answer, so Request returns at
	// once instead of waiting for its context to end.
	ErrNoResponders = errors.New("bus: no responders")

	// ErrNotRequest is wrapped by the error of Reply for an event that
	// carries no reply topic (Meta.ReplyTo): it was not published by
	// Request.
	ErrNotRequest = errors.New("bus: event is not a request")
)

// wrapError is an error of this package that wraps another, usually a
// sentinel, under one "bus: " prefix: fmt.Errorf("bus: subscribe: %w",
// ErrClosed) would say "bus: subscribe: bus: closed".
type wrapError struct {
	msg string
	err error
}

// Error returns the message, with one "bus: " prefix.
func (e *wrapError) Error() string { return e.msg }

// Unwrap returns the wrapped error, so that errors.Is sees the sentinel.
func (e *wrapError) Unwrap() error { return e.err }

// errorf returns an error wrapping err whose message is "bus: ", the
// formatted operation, ": " and err's message without its own "bus: ".
func errorf(err error, format string, args ...any) error {
	return &wrapError{msg: "bus: " + fmt.Sprintf(format, args...) + ": " + strings.TrimPrefix(err.Error(), "bus: "), err: err}
}

// plural returns n and word, with an s unless n is 1: "1 event", "2 events".
func plural(n uint64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// SyntaxError describes why a topic or a pattern was rejected: what, where
// and why. It wraps [ErrInvalidTopic] or [ErrInvalidPattern].
type SyntaxError struct {
	// Input is the rejected topic or pattern, cut to 64 bytes.
	Input string
	// Offset is the byte offset in the input where the problem was found.
	Offset int
	// Reason says what is wrong, for people.
	Reason string
	// Err is ErrInvalidTopic or ErrInvalidPattern.
	Err error
}

// Error returns a one-line description such as
// `bus: invalid topic "a..b" at offset 2: empty segment`.
func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%v %q at offset %d: %s", e.Err, e.Input, e.Offset, e.Reason)
}

// Unwrap returns ErrInvalidTopic or ErrInvalidPattern.
func (e *SyntaxError) Unwrap() error { return e.Err }

// syntaxError builds a *SyntaxError, cutting a long input so that the error
// stays readable and does not retain a large string.
func syntaxError(sentinel error, input string, offset int, reason string) *SyntaxError {
	const maxShown = 64
	if len(input) > maxShown {
		input = input[:maxShown] + "..."
	}
	return &SyntaxError{Input: input, Offset: offset, Reason: reason, Err: sentinel}
}

// DeliveryError reports a problem that happened while an event was being
// delivered to one subscription: a handler panic, a handler that returned an
// error, a payload of the wrong type, or (for asynchronous subscriptions)
// dropped events. The bus passes it to [Options.OnError] (and, for a
// handler that failed, to the function of [WithFailureFunc]); it never
// returns it from Publish.
type DeliveryError struct {
	// Topic is the topic of the event concerned.
	Topic string
	// Pattern is the pattern of the subscription concerned.
	Pattern string
	// Err is the cause: ErrHandlerPanic, ErrPayloadType, or another
	// sentinel of this package.
	Err error
	// Value is the recovered panic value when Err is ErrHandlerPanic.
	Value any
	// Stack is the stack of the panicking goroutine when Err is
	// ErrHandlerPanic.
	Stack []byte
	// Detail adds what the sentinel cannot say, such as the expected and
	// the actual payload type.
	Detail string
	// Count is the number of events concerned, for ErrDropped.
	Count uint64
	// Where is "file:line" of the call that made the subscription, for
	// ErrDropped, ErrSlowSubscriber, ErrHandlerFailed, ErrRetryAbandoned,
	// and ErrHandlerPanic when the handler is a HandlerFunc.
	Where string
	// Cause is the error the handler returned, when Err is
	// ErrHandlerFailed; errors.Is and errors.As see it.
	Cause error
	// Attempt is the number of the attempt that failed, from 1, for the
	// failures of a HandlerFunc and of a subscription with a RetryPolicy;
	// zero otherwise.
	Attempt int
}

// Error returns a one-line description naming the topic, the pattern and
// the cause. The stack is not part of it.
func (e *DeliveryError) Error() string {
	msg := fmt.Sprintf("%v: topic %q, pattern %q", e.Err, e.Topic, e.Pattern)
	if e.Attempt > 0 {
		msg += fmt.Sprintf(": attempt %d", e.Attempt)
	}
	if e.Err == ErrHandlerPanic {
		msg += fmt.Sprintf(": %v", e.Value)
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	if e.Count > 0 {
		msg += ": " + plural(e.Count, "event")
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Where != "" {
		msg += " (subscribed at " + e.Where + ")"
	}
	return msg
}

// Unwrap returns the sentinel and, for ErrHandlerFailed, the handler's
// error, so that errors.Is(err, ErrHandlerPanic) works, and errors.Is and
// errors.As find what a handler returned.
func (e *DeliveryError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}
