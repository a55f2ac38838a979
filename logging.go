package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// LogTo returns a function for Options.OnError that logs every error the
// bus reports as one structured record on l (slog.Default() if l is nil):
// the recommended production setting, in place of the default, which
// writes plain lines with the log package.
//
// The message is the kind of problem, fixed, such as "bus: handler
// panicked", so that log queries and alerts can match it; the attributes
// say the rest: "error" (the whole message), and for a [*DeliveryError]
// "topic", "pattern", "where" (where the subscription was made),
// "attempt", "count", "detail", "cause" (what a handler returned), "panic"
// and "stack". The level says how bad it is:
//
//   - Error, for an event lost or not handled: a recovered panic, a
//     failed handler with no retry left (a dead letter, a failure without
//     a RetryPolicy), events dropped (ErrDropped, with their count),
//     retries abandoned by Close, a payload of the wrong type;
//   - Warn, for a degraded service that loses nothing yet: a slow
//     subscriber (its queue full), a failed attempt that will be retried.
//
// An error of another kind (a HandlerFunc's error reported through
// WithFailureFunc, say) is still logged, at Error, with its message. The
// bus batches its reports of drops (Options.DropReportInterval), so a
// burst costs a record per subscription and interval, not per event.
//
// The returned function is safe for concurrent use, as OnError must be;
// it allocates for each record, and records nothing below l's level.
func LogTo(l *slog.Logger) func(error) {
	if l == nil {
		l = slog.Default()
	}
	return func(err error) {
		if err == nil {
			return
		}
		level, msg, attrs := logRecord(err)
		ctx := context.Background()
		if !l.Enabled(ctx, level) {
			return
		}
		l.LogAttrs(ctx, level, msg, attrs...)
	}
}

// logRecord returns how LogTo logs err: its level, message and
// attributes.
func logRecord(err error) (level slog.Level, msg string, attrs []slog.Attr) {
	attrs = []slog.Attr{slog.String("error", err.Error())}
	var de *DeliveryError
	if !errors.As(err, &de) {
		return slog.LevelError, errorKind(err), attrs
	}
	attrs = append(attrs, slog.String("topic", de.Topic), slog.String("pattern", de.Pattern))
	if de.Where != "" {
		attrs = append(attrs, slog.String("where", de.Where))
	}
	if de.Attempt > 0 {
		attrs = append(attrs, slog.Int("attempt", de.Attempt))
	}
	if de.Count > 0 {
		attrs = append(attrs, slog.Uint64("count", de.Count))
	}
	if de.Detail != "" {
		attrs = append(attrs, slog.String("detail", de.Detail))
	}
	if de.Cause != nil {
		attrs = append(attrs, slog.String("cause", de.Cause.Error()))
	}
	if de.Err == ErrHandlerPanic {
		attrs = append(attrs, slog.String("panic", fmt.Sprint(de.Value)))
		if len(de.Stack) > 0 {
			attrs = append(attrs, slog.String("stack", string(de.Stack)))
		}
	}
	level = slog.LevelError
	switch {
	case de.Err == ErrSlowSubscriber:
		level = slog.LevelWarn
	case strings.HasPrefix(de.Detail, retryingDetail):
		level = slog.LevelWarn // the event is not lost yet
	}
	msg = "bus: delivery failed"
	if de.Err != nil {
		msg = de.Err.Error()
	}
	return level, msg, attrs
}

// errorKind returns the message of the first sentinel of this package that
// err wraps, or "bus: error".
func errorKind(err error) string {
	for _, s := range []error{ErrClosed, ErrDropped, ErrRetryAbandoned, ErrHandlerFailed, ErrHandlerPanic,
		ErrWouldDeadlock, ErrPayloadType, ErrSlowSubscriber, ErrInvalidOption, ErrInvalidTopic, ErrInvalidPattern, ErrNilHandler} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "bus: error"
}
