package bus

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Retries and dead letters, on the worker of an asynchronous subscription
// (worker.go): the worker calls handleQueued for each event of a
// subscription with a HandlerFunc, which tries it, waits, tries again, and
// after the last attempt publishes it to its dead-letter topic. An event
// ends in exactly one of four counts: Delivered (the handler returned, or
// failed with no retry policy), DeadLettered, Abandoned (Close) or Dropped
// (its dead letter could not be published).

// DeadLetterPrefix is the first segment of the default dead-letter topic:
// an event on "orders.created" whose last attempt failed goes to
// "deadletter.orders.created" (with the bus's separator) unless
// RetryPolicy.DeadLetter names another topic. Subscribe to
// "deadletter.**" to see them all.
const DeadLetterPrefix = "deadletter"

// The keys of the Meta.Headers of a dead letter, the event published to a
// dead-letter topic. A dead letter carries the failed event's payload,
// content type and headers, these keys added; its Meta.Source is empty
// and its Meta.Time is when it was dead-lettered, so that it is a local
// event that a bridge exports like any other.
const (
	// HeaderDeadLetterTopic is the topic the event was published on.
	// Its presence marks an event as a dead letter, which is never
	// dead-lettered again.
	HeaderDeadLetterTopic = "deadletter-topic"
	// HeaderDeadLetterPattern is the pattern of the subscription whose
	// handler failed.
	HeaderDeadLetterPattern = "deadletter-pattern"
	// HeaderDeadLetterWhere is "file:line" of the call that made that
	// subscription.
	HeaderDeadLetterWhere = "deadletter-subscribed-at"
	// HeaderDeadLetterError is the last error, as text: what the handler
	// returned, or the panic.
	HeaderDeadLetterError = "deadletter-error"
	// HeaderDeadLetterAttempts is the number of attempts made, in
	// decimal.
	HeaderDeadLetterAttempts = "deadletter-attempts"
	// HeaderDeadLetterTime is when the last attempt failed, in RFC 3339
	// with nanoseconds, UTC.
	HeaderDeadLetterTime = "deadletter-time"
	// HeaderDeadLetterSource is the Meta.Source of the failed event,
	// present when it came from another instance through a bridge.
	HeaderDeadLetterSource = "deadletter-source"
	// HeaderDeadLetterSeq is the Meta.Seq of the failed event, in
	// decimal, present with HeaderDeadLetterSource.
	HeaderDeadLetterSeq = "deadletter-seq"
)

// Defaults of RetryPolicy.
const (
	defaultAttempts   = 3
	defaultInitial    = 100 * time.Millisecond
	defaultMax        = 10 * time.Second
	defaultMultiplier = 2
)

// validate checks p's fields.
func (p *RetryPolicy) validate() error {
	switch {
	case p.Attempts < 0:
		return errorf(ErrInvalidOption, "subscribe: negative retry attempts %d", p.Attempts)
	case p.Initial < 0 || p.Max < 0:
		return errorf(ErrInvalidOption, "subscribe: negative retry delay")
	case p.Max > 0 && p.Max < p.Initial:
		return errorf(ErrInvalidOption, "subscribe: retry Max %v below Initial %v", p.Max, p.Initial)
	case p.Multiplier != 0 && !(p.Multiplier >= 1 && p.Multiplier <= math.MaxFloat64):
		return errorf(ErrInvalidOption, "subscribe: retry Multiplier %v: want at least 1", p.Multiplier)
	case !(p.Jitter >= 0 && p.Jitter <= 1):
		return errorf(ErrInvalidOption, "subscribe: retry Jitter %v: want between 0 and 1", p.Jitter)
	}
	return nil
}

// normalize returns p with its defaults filled in, checking its
// dead-letter topic against the separator sep.
func (p *RetryPolicy) normalize(sep byte) (RetryPolicy, error) {
	n := *p
	if n.Attempts == 0 {
		n.Attempts = defaultAttempts
	}
	if n.Initial == 0 {
		n.Initial = defaultInitial
	}
	if n.Max == 0 {
		n.Max = max(defaultMax, n.Initial)
	}
	if n.Multiplier == 0 {
		n.Multiplier = defaultMultiplier
	}
	if n.DeadLetter != "" {
		if err := ValidateTopic(n.DeadLetter, rune(sep)); err != nil {
			return n, errorf(ErrInvalidOption, "subscribe: retry DeadLetter: %v", err)
		}
	}
	return n, nil
}

// delay returns the wait before attempt n+1, jitter included.
func (p *RetryPolicy) delay(n int) time.Duration {
	d := float64(p.Initial) * math.Pow(p.Multiplier, float64(n-1))
	d = min(d, float64(p.Max))
	if p.Jitter > 0 {
		d *= 1 - p.Jitter*rand.Float64()
	}
	return time.Duration(d)
}

// handleQueued handles q, an event of a subscription with fn, on its
// worker, with retries if s has a policy, and reports whether it counts as
// delivered; the other outcomes count themselves.
func (s *Subscription) handleQueued(q *queued) bool {
	b, p := s.bus, s.retry
	for n := 1; ; n++ {
		de := s.attempt(q.ctx, &q.e, n)
		switch {
		case de == nil:
			return true
		case p == nil:
			b.report(de)
			b.notifyFailure(q.ctx, de)
			return true
		case b.life.Err() != nil:
			return s.abandon(q, de) // Close: no retry, and no dead letter either
		case n >= p.Attempts || q.ctx.Err() != nil:
			return s.deadLetter(q, de)
		}
		d := p.delay(n)
		r := *de // OnError may keep de: the last report is a copy
		r.Detail = retryingDetail + d.String()
		b.report(&r)
		if !s.pause(q.ctx, d) {
			if b.life.Err() != nil {
				return s.abandon(q, de)
			}
			return s.deadLetter(q, de)
		}
		s.failureCounts().retried.Add(1)
		b.failures.retried.add(1)
	}
}

// retryingDetail starts the Detail of the report of a failed attempt that
// will be retried: LogTo logs it as a warning.
const retryingDetail = "retrying in "

// pause waits d, and reports false if Close started or ctx ended first.
//
// retrying is set before life is checked, and Close ends life before it
// looks at retrying: so either Close sees retrying and waits for this
// worker, or the check after the wait sees that Close started. Close
// waits so only once its ctx has ended and it has discarded the queue: the
// worker then abandons the event and exits without calling a handler
// again, so the wait is short.
func (s *Subscription) pause(ctx context.Context, d time.Duration) bool {
	s.retrying.Store(true)
	defer s.retrying.Store(false)
	life := s.bus.life
	if life.Err() != nil {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-life.Done():
	case <-ctx.Done():
	}
	return life.Err() == nil && ctx.Err() == nil
}

// abandon counts and reports q as abandoned after the failure de.
func (s *Subscription) abandon(q *queued, de *DeliveryError) bool {
	s.failureCounts().abandoned.Add(1)
	s.bus.failures.abandoned.add(1)
	r := *de
	r.Err = ErrRetryAbandoned
	r.Detail = "the bus closed after " + plural(uint64(de.Attempt), "attempt") + lastPanic(de)
	s.bus.report(&r)
	s.bus.notifyFailure(q.ctx, &r)
	return false
}

// lastPanic describes the panic of de for a report whose Err is no longer
// ErrHandlerPanic.
func lastPanic(de *DeliveryError) string {
	if de.Err == ErrHandlerPanic {
		return fmt.Sprintf(", the last one panicking: %v", de.Value)
	}
	return ""
}

// deadLetter publishes q to its dead-letter topic after its last failed
// attempt, de, and counts it. It reports whether q counts as delivered:
// only a dead letter that failed again does, since it is not dead-lettered
// twice.
func (s *Subscription) deadLetter(q *queued, de *DeliveryError) bool {
	b := s.bus
	r := *de
	if q.e.Meta != nil && q.e.Meta.Headers[HeaderDeadLetterTopic] != "" {
		r.Detail = "already a dead letter, not dead-lettered again"
		b.report(&r)
		b.notifyFailure(q.ctx, &r)
		return true
	}
	topic := s.retry.DeadLetter
	if topic == "" {
		topic = DeadLetterPrefix + string(b.sep) + q.e.Topic
	}
	e := Event{Topic: topic, Payload: q.e.Payload, Meta: s.deadLetterMeta(q.e, de)}

	// The dead letter must not be lost to the end of the publisher's ctx,
	// which may be what stopped the retries, but must not outlive Close:
	// a Block subscriber of the dead-letter topic could hold the worker.
	ctx, cancel := context.WithCancel(context.WithoutCancel(q.ctx))
	stop := context.AfterFunc(b.life, cancel)
	err := b.PublishEvent(ctx, e)
	stop()
	cancel()

	switch {
	case err == nil:
		s.failureCounts().deadLettered.Add(1)
		b.failures.deadLettered.add(1)
		r.Detail = fmt.Sprintf("dead-lettered to %q after %s", topic, plural(uint64(de.Attempt), "attempt"))
		if q.ctx.Err() != nil && de.Attempt < s.retry.Attempts {
			r.Detail += " (the publisher's ctx ended)"
		}
		b.report(&r)
		b.notifyFailure(q.ctx, &r)
	case b.closed.Load():
		return s.abandon(q, de)
	default:
		// The dead-letter topic is too long, or a subscriber of it
		// refused the event: it is lost, and counted as such.
		s.dropped.Add(1)
		b.dropped.add(1)
		r.Detail = fmt.Sprintf("after %s, the dead letter was lost: %v", plural(uint64(de.Attempt), "attempt"), err)
		b.report(&r)
		b.notifyFailure(q.ctx, &r)
	}
	return false
}

// deadLetterMeta returns the Meta of the dead letter of e after the
// failure de.
func (s *Subscription) deadLetterMeta(e Event, de *DeliveryError) *Meta {
	m := &Meta{Time: time.Now(), Headers: make(map[string]string, 8)}
	if e.Meta != nil {
		m.ContentType = e.Meta.ContentType
		for k, v := range e.Meta.Headers {
			m.Headers[k] = v
		}
		if e.Meta.Source != "" {
			m.Headers[HeaderDeadLetterSource] = e.Meta.Source
			m.Headers[HeaderDeadLetterSeq] = strconv.FormatUint(e.Meta.Seq, 10)
		}
	}
	last := ""
	switch {
	case de.Cause != nil:
		last = de.Cause.Error()
	case de.Err == ErrHandlerPanic:
		last = fmt.Sprintf("panic: %v", de.Value)
	}
	m.Headers[HeaderDeadLetterTopic] = e.Topic
	m.Headers[HeaderDeadLetterPattern] = s.pat.text
	m.Headers[HeaderDeadLetterWhere] = de.Where
	m.Headers[HeaderDeadLetterError] = last
	m.Headers[HeaderDeadLetterAttempts] = strconv.Itoa(de.Attempt)
	m.Headers[HeaderDeadLetterTime] = m.Time.UTC().Format(time.RFC3339Nano)
	return m
}
