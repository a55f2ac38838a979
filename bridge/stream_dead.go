package bridge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/plural"
	"github.com/redis/go-redis/v9"
)

// When handling fails, on durable import routes: a reader publishes each
// entry with a ctx of bus.WithFailureFunc, so that it learns, before
// PublishEvent returns, whether a synchronous subscriber failed. A failed
// entry is published again per Route.Retry (publish), and after the last
// attempt it is dead-lettered or, on a Group route with deliveries left,
// left pending for the next delivery (settleGroup, deadLetterStream). An
// entry is recorded as done (XACK, checkpoint) only once it was handled
// or dead-lettered.

// DeadKey returns the Redis key of the dead-letter stream of the durable
// route whose stream is named name (Route.Stream, or the route's
// Pattern) under prefix: prefix + "dead:" + name. It is where the route's
// entries go whose handling failed for good (see "When handling fails"
// in the documentation of Delivery).
func DeadKey(prefix, name string) string { return prefix + "dead:" + name }

// The fields a dead-letter entry adds to the fields of the entry that
// failed (topic, data, source, and any other a foreign writer put there),
// all of them text.
const (
	// FieldDeadError is the last failure: the error the handler
	// returned, or "panic: " and the panic value.
	FieldDeadError = "dead-error"
	// FieldDeadDeliveries is the number of times the entry was
	// delivered, in decimal: the delivery count of XPENDING on a Group
	// route, 1 on a Stream route.
	FieldDeadDeliveries = "dead-deliveries"
	// FieldDeadAttempts is the number of attempts of its last delivery.
	FieldDeadAttempts = "dead-attempts"
	// FieldDeadConsumer is the consumer name (Group routes) or the
	// InstanceID (Stream routes) of the bridge that dead-lettered it.
	FieldDeadConsumer = "dead-consumer"
	// FieldDeadGroup is the consumer group, on Group routes.
	FieldDeadGroup = "dead-group"
	// FieldDeadStream is the key of the stream the entry came from,
	// where a replay adds it again.
	FieldDeadStream = "dead-stream"
	// FieldDeadID is the entry's ID in that stream.
	FieldDeadID = "dead-id"
	// FieldDeadTime is when it was dead-lettered, in RFC 3339 with
	// nanoseconds, UTC.
	FieldDeadTime = "dead-time"
)

// DeadFieldPrefix starts the name of every field that FieldDeadError and
// the like add: a replay leaves those fields out.
const DeadFieldPrefix = "dead-"

// defaultMaxDeliveries is the default of Route.MaxDeliveries.
const defaultMaxDeliveries = 5

// retryPolicy is a Route.Retry with the defaults of bus.RetryPolicy filled
// in; nil means one attempt.
type retryPolicy struct {
	attempts       int
	initial, limit time.Duration
	multiplier     float64
	jitter         float64
}

// newRetryPolicy checks p and fills in the defaults, those of
// bus.RetryPolicy: 3 attempts, 100ms, 10s, a multiplier of 2.
func newRetryPolicy(p *bus.RetryPolicy) (retryPolicy, error) {
	if p == nil {
		return retryPolicy{attempts: 1}, nil
	}
	switch {
	case p.DeadLetter != "":
		return retryPolicy{}, errors.New("a dead-letter topic (DeadLetter) set: a durable route's dead letters go to its dead-letter stream")
	case p.Attempts < 0 || p.Initial < 0 || p.Max < 0:
		return retryPolicy{}, errors.New("negative attempts or delay")
	case p.Max > 0 && p.Max < p.Initial:
		return retryPolicy{}, fmt.Errorf("the longest delay (Max %v) is below the first (Initial %v)", p.Max, p.Initial)
	case p.Multiplier != 0 && !(p.Multiplier >= 1 && p.Multiplier <= math.MaxFloat64):
		return retryPolicy{}, fmt.Errorf("multiplier %v: want at least 1", p.Multiplier)
	case !(p.Jitter >= 0 && p.Jitter <= 1):
		return retryPolicy{}, fmt.Errorf("jitter %v: want between 0 and 1", p.Jitter)
	}
	rp := retryPolicy{attempts: p.Attempts, initial: p.Initial, limit: p.Max, multiplier: p.Multiplier, jitter: p.Jitter}
	setDefault(&rp.attempts, 3)
	setDefault(&rp.initial, 100*time.Millisecond)
	setDefault(&rp.limit, max(10*time.Second, rp.initial))
	if rp.multiplier == 0 {
		rp.multiplier = 2
	}
	return rp, nil
}

// delay returns the wait before attempt n+1, jitter included.
func (p *retryPolicy) delay(n int) time.Duration {
	d := min(float64(p.initial)*math.Pow(p.multiplier, float64(n-1)), float64(p.limit))
	if p.jitter > 0 {
		d *= 1 - p.jitter*rand.Float64()
	}
	return time.Duration(d)
}

// failure is what one publish of an entry learnt through
// bus.WithFailureFunc: the first failed handling reported before the
// publish returned.
type failure struct {
	mu     sync.Mutex // protects the fields below
	sealed bool       // the publish returned: later reports are not its own
	err    string     // the first failure, "" if none
}

// record is the function of bus.WithFailureFunc. A report that comes
// once the publish returned is an asynchronous subscription's, which
// retries and dead-letters by itself (its RetryPolicy): it does not make
// the entry fail.
func (f *failure) record(de *bus.DeliveryError) {
	msg := failureText(de)
	f.mu.Lock()
	if !f.sealed && f.err == "" {
		f.err = msg
	}
	f.mu.Unlock()
}

// seal ends the publish and returns its first failure, "" if none.
func (f *failure) seal() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sealed = true
	return f.err
}

// failureText says what failed in de, for a dead letter: what the
// handler returned, or the panic.
func failureText(de *bus.DeliveryError) string {
	switch {
	case de.Cause != nil:
		return de.Cause.Error()
	case errors.Is(de.Err, bus.ErrHandlerPanic):
		return fmt.Sprintf("panic: %v", de.Value)
	}
	return de.Error()
}

// publish publishes it, decoded from the entry m, on the local bus, again
// after each failed attempt per the route's Retry, and says what became
// of the entry. The entry counts once as imported, at its first publish.
func (sr *streamReader) publish(it *importItem, m redis.XMessage) entryOutcome {
	br, st, r := sr.br, sr.st, sr.r
	for n := 1; ; n++ {
		f := &failure{}
		ok, err := br.publishLocalCtx(bus.WithFailureFunc(sr.handling.ctx, f.record), it, m.ID, r.key)
		last := f.seal()
		switch {
		case err != nil && n == 1:
			// The bus is closed: nothing handled the entry, so it is
			// not recorded as handled either.
			br.c.received.Add(^uint64(0))
			fallthrough
		case err != nil:
			br.rep.report(busError(fmt.Sprintf("bridge: publish %q on the bus", it.topic), err))
			return entryStopped
		case !ok:
			return entryDone // dropped, and counted, by publishLocalCtx
		case n == 1:
			br.c.imported.Add(1)
			it.route.c.imported.Add(1)
			st.imported.Add(1)
		}
		if last == "" {
			return entryDone
		}
		st.failed.Add(1)
		sr.lastErr, sr.attempts = last, n
		if n >= r.retry.attempts {
			return entryFailed
		}
		if !sleep(sr.reading.ctx, r.retry.delay(n)) {
			st.abandoned.Add(1)
			br.rep.report(fmt.Errorf("bridge: entry %s of %q left for a later delivery after %s, the bridge closing: %w: %s",
				m.ID, r.key, plural.Of(uint64(n), "attempt"), bus.ErrRetryAbandoned, last))
			return entryAbandoned
		}
		st.retried.Add(1)
	}
}

// settleGroup decides the fate of the entry m of a Group route after the
// last attempt of its delivery failed: dead-lettered and acknowledged once
// it has been delivered Route.MaxDeliveries times (XPENDING says), left
// pending otherwise, for a member (perhaps this one) to claim after
// ClaimIdle.
func (sr *streamReader) settleGroup(ctx context.Context, m redis.XMessage) {
	br, st, r := sr.br, sr.st, sr.r
	var pend []redis.XPendingExt
	var err, callErr error // callErr is the call's: not read here if do gives up on it
	if sr.saves.do(ctx, func() {
		pend, callErr = br.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: r.key, Group: r.group, Start: m.ID, End: m.ID, Count: 1}).Result()
	}) {
		err = callErr
	} else {
		err = ctx.Err()
	}
	switch {
	case ctx.Err() != nil:
		st.abandoned.Add(1) // Close: pending still
		return
	case err != nil:
		br.rep.report(fmt.Errorf("%w: XPENDING %q group %q %s: %w", ErrStreamRead, r.key, r.group, m.ID, err))
		st.redelivered.Add(1) // pending still: the next delivery decides
		return
	case len(pend) == 0 || pend[0].Consumer != st.consumer:
		// Another member claimed it during our retries (ClaimIdle is
		// shorter than they take): it is theirs now.
		st.redelivered.Add(1)
		return
	case pend[0].RetryCount < r.maxDeliveries:
		st.redelivered.Add(1)
		return
	}
	if err := sr.writeDead(ctx, m, pend[0].RetryCount); err != nil {
		if ctx.Err() != nil {
			st.abandoned.Add(1)
			return
		}
		br.rep.report(fmt.Errorf("%w: entry %s of %q to %q: %w", ErrDeadLetter, m.ID, r.key, r.deadKey, err))
		st.redelivered.Add(1)
		return
	}
	sr.deadLettered(m, pend[0].RetryCount)
}

// deadLetterStream writes the entry m of a Stream route, whose last
// attempt failed, to the dead-letter stream, trying again with backoff
// until it can. It returns false, the entry counted as abandoned, when
// the bridge closes first.
func (sr *streamReader) deadLetterStream(ctx context.Context, m redis.XMessage) bool {
	for {
		err := sr.writeDead(ctx, m, 1)
		if err == nil {
			sr.deadLettered(m, 1)
			return true
		}
		if ctx.Err() == nil {
			sr.br.rep.report(fmt.Errorf("%w: entry %s of %q to %q: %w", ErrDeadLetter, m.ID, sr.r.key, sr.r.deadKey, err))
		}
		if !sleep(ctx, sr.back.next()) {
			sr.st.abandoned.Add(1)
			return false
		}
	}
}

// deadLettered counts and reports the entry m as dead-lettered.
func (sr *streamReader) deadLettered(m redis.XMessage, deliveries int64) {
	r := sr.r
	sr.st.deadLettered.Add(1)
	sr.back.reset()
	sr.br.rep.report(fmt.Errorf("%w: entry %s of %q to %q after %s (%s in the last): %s", ErrDeadLettered, m.ID, r.key, r.deadKey,
		plural.Of(uint64(deliveries), "delivery"), plural.Of(uint64(sr.attempts), "attempt"), sr.lastErr))
}

// writeDead adds the entry m to the route's dead-letter stream, with the
// fields saying why, and on a Group route acknowledges it: in one
// MULTI/EXEC, except on a cluster, where the two keys may live on
// different nodes and the entry is added, then acknowledged (a crash in
// between makes a second dead letter at the next delivery, never none).
func (sr *streamReader) writeDead(ctx context.Context, m redis.XMessage, deliveries int64) error {
	br, st, r := sr.br, sr.st, sr.r
	consumer := br.cfg.InstanceID
	if r.Delivery == Group {
		consumer = st.consumer
	}
	vals := make([]any, 0, 2*len(m.Values)+16)
	for _, k := range []string{fieldTopic, fieldData, fieldSource} {
		if v, ok := m.Values[k]; ok {
			vals = append(vals, k, v)
		}
	}
	others := make([]string, 0, len(m.Values))
	for k := range m.Values {
		if k != fieldTopic && k != fieldData && k != fieldSource && !strings.HasPrefix(k, DeadFieldPrefix) {
			others = append(others, k)
		}
	}
	slices.Sort(others)
	for _, k := range others {
		vals = append(vals, k, m.Values[k])
	}
	vals = append(vals,
		FieldDeadError, sr.lastErr,
		FieldDeadDeliveries, strconv.FormatInt(deliveries, 10),
		FieldDeadAttempts, strconv.Itoa(sr.attempts),
		FieldDeadConsumer, consumer)
	if r.Delivery == Group {
		vals = append(vals, FieldDeadGroup, r.group)
	}
	vals = append(vals, FieldDeadStream, r.key, FieldDeadID, m.ID, FieldDeadTime, time.Now().UTC().Format(time.RFC3339Nano))
	add := &redis.XAddArgs{Stream: r.deadKey, Values: vals, MaxLen: r.maxLen, Approx: true}

	var err error
	write := func() {
		switch {
		case r.Delivery != Group:
			err = br.rdb.XAdd(ctx, add).Err()
		case br.shards.cc != nil:
			if err = br.rdb.XAdd(ctx, add).Err(); err == nil {
				err = br.rdb.XAck(ctx, r.key, r.group, m.ID).Err()
			}
		default:
			_, err = br.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.XAdd(ctx, add)
				p.XAck(ctx, r.key, r.group, m.ID)
				return nil
			})
		}
	}
	// err is written by the call: read only when do saw it return.
	if !sr.saves.do(ctx, write) {
		return ctx.Err()
	}
	return err
}
