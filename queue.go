package bus

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// queued is one event waiting in an asynchronous queue, with the context
// of its publisher.
type queued struct {
	ctx context.Context
	e   Event
}

// offerResult is what became of an event offered to one subscription.
type offerResult uint8

const (
	accepted offerResult = iota // delivered, or queued for delivery
	gone                        // the subscription no longer takes events
	full                        // the queue is full and the caller asked not to wait
	dropped                     // lost to the overflow policy (counted)
)

// queue is the bounded FIFO of an asynchronous subscription: a ring
// allocated once, filled by publishers and drained in batches by the
// subscription's worker goroutine.
//
// A ring behind a mutex was chosen over a channel of events: the worker
// takes a whole batch per lock, DropOldest needs to remove from the front,
// and Close needs to count what is left, none of which a channel offers.
// The worker is woken through wake only when it has found the queue empty
// and said so (idle), that is on the empty→non-empty transition: a busy
// worker costs publishers no signal at all, and an idle one no polling.
type queue struct {
	mu        sync.Mutex // protects the fields up to wake
	buf       []queued   // the ring; len(buf) is the capacity
	head, n   int
	highWater int
	closed    bool          // takes no more events
	idle      bool          // the worker waits on wake
	space     chan struct{} // closed when room appears; nil when no publisher waits
	// fullSince is when the queue was first seen full, zero while it has
	// room; slowReported says the current full spell was reported.
	fullSince    time.Time
	slowReported bool
	// Drops not reported yet, the last report and the last topic dropped.
	unreported uint64
	lastReport time.Time
	lastTopic  string

	wake chan struct{} // capacity 1

	// left counts the events of the worker's current batch not started
	// yet; discardBit is or-ed in by discardAll, after which the worker
	// starts no more of them. One word, so that the worker claiming an
	// event and Close discarding agree on who counts it.
	left atomic.Int64
}

const discardBit = 1 << 62

func newQueue(capacity int) *queue {
	return &queue{buf: make([]queued, capacity), wake: make(chan struct{}, 1)}
}

// push offers *e to the queue of s. With skipIfFull a full queue answers
// full at once; otherwise s's overflow policy decides.
func (q *queue) push(ctx context.Context, e *Event, s *Subscription, skipIfFull bool) (offerResult, error) {
	b := s.bus
	q.mu.Lock()
	var reports [2]*DeliveryError
	for q.n == len(q.buf) && !q.closed {
		if skipIfFull {
			q.mu.Unlock()
			return full, nil
		}
		reports[0] = q.fullLocked(s, e.Topic)
		switch s.opts.Overflow {
		case DropNewest:
			reports[1] = q.droppedLocked(s, e.Topic, 1)
			q.mu.Unlock()
			b.reportAll(reports[:])
			return dropped, nil
		case DropOldest:
			q.buf[q.head] = queued{}
			q.head = (q.head + 1) % len(q.buf)
			q.n--
			reports[1] = q.droppedLocked(s, e.Topic, 1)
		default: // Block
			ch := q.space
			if ch == nil {
				ch = make(chan struct{})
				q.space = ch
			}
			q.mu.Unlock()
			b.reportAll(reports[:])
			reports = [2]*DeliveryError{}
			if id := s.workerID.Load(); id != 0 && id == goid() {
				q.mu.Lock()
				q.countDropLocked(s, 1)
				q.mu.Unlock()
				return dropped, fmt.Errorf("bus: publish %q: the handler of %q (subscribed at %s) publishes into its own full queue: %w",
					e.Topic, s.pat.text, s.Where(), ErrWouldDeadlock)
			}
			select {
			case <-ch:
			case <-ctx.Done():
				q.mu.Lock()
				q.countDropLocked(s, 1)
				q.mu.Unlock()
				return dropped, fmt.Errorf("bus: publish %q: queue of %q full: %w", e.Topic, s.pat.text, context.Cause(ctx))
			}
			q.mu.Lock()
		}
	}
	if q.closed {
		q.mu.Unlock()
		b.reportAll(reports[:])
		return gone, nil
	}
	q.buf[(q.head+q.n)%len(q.buf)] = queued{ctx: ctx, e: *e}
	q.n++
	q.lastTopic = e.Topic
	q.highWater = max(q.highWater, q.n)
	wake := q.idle
	q.idle = false
	q.mu.Unlock()
	if wake {
		q.signal()
	}
	b.reportAll(reports[:])
	return accepted, nil
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// fullLocked notes that a publisher found the queue full and returns the
// report of a slow subscriber once the queue has stayed full for
// Options.SlowAfter.
func (q *queue) fullLocked(s *Subscription, topic string) *DeliveryError {
	slowAfter := s.bus.slowAfter
	if slowAfter < 0 {
		return nil
	}
	now := time.Now()
	if q.fullSince.IsZero() {
		q.fullSince = now
		return nil
	}
	if q.slowReported || now.Sub(q.fullSince) < slowAfter {
		return nil
	}
	q.slowReported = true
	return &DeliveryError{Topic: topic, Pattern: s.pat.text, Err: ErrSlowSubscriber, Where: s.Where(),
		Detail: fmt.Sprintf("queue of %d full for %v", len(q.buf), now.Sub(q.fullSince).Round(time.Millisecond))}
}

// countDropLocked counts n events dropped by s.
func (q *queue) countDropLocked(s *Subscription, n uint64) {
	s.dropped.Add(n)
	s.bus.dropped.add(n)
}

// droppedLocked counts n dropped events and returns a report of the drops
// not reported yet, at most once per Options.DropReportInterval.
func (q *queue) droppedLocked(s *Subscription, topic string, n uint64) *DeliveryError {
	q.countDropLocked(s, n)
	q.unreported += n
	q.lastTopic = topic
	return q.dueReportLocked(s, false)
}

// dueReportLocked returns the report of the unreported drops if the
// interval has passed, or if force is set.
func (q *queue) dueReportLocked(s *Subscription, force bool) *DeliveryError {
	if q.unreported == 0 {
		return nil
	}
	now := time.Now()
	if !force && now.Sub(q.lastReport) < s.bus.dropReportInterval {
		return nil
	}
	r := &DeliveryError{Topic: q.lastTopic, Pattern: s.pat.text, Err: ErrDropped, Count: q.unreported, Where: s.Where(),
		Detail: fmt.Sprintf("policy %v, queue capacity %d", s.opts.Overflow, len(q.buf))}
	q.unreported = 0
	q.lastReport = now
	return r
}

// take moves up to len(batch) events into batch, waiting while the queue
// is empty and open. It returns 0 once the queue is closed and empty.
func (q *queue) take(s *Subscription, batch []queued) int {
	q.mu.Lock()
	for q.n == 0 {
		if q.closed {
			r := q.dueReportLocked(s, true)
			q.mu.Unlock()
			s.bus.reportAll([]*DeliveryError{r})
			return 0
		}
		q.idle = true
		q.mu.Unlock()
		<-q.wake
		q.mu.Lock()
	}
	k := min(q.n, len(batch))
	for i := range k {
		j := (q.head + i) % len(q.buf)
		batch[i] = q.buf[j]
		q.buf[j] = queued{} // let the payload go
	}
	q.head = (q.head + k) % len(q.buf)
	q.n -= k
	q.left.Store(int64(k))
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	q.fullSince, q.slowReported = time.Time{}, false
	r := q.dueReportLocked(s, false)
	q.mu.Unlock()
	s.bus.reportAll([]*DeliveryError{r})
	return k
}

// claim is called by the worker before it starts an event of its batch:
// false means Close discarded the rest.
func (q *queue) claim() bool {
	for {
		v := q.left.Load()
		if v&discardBit != 0 {
			return false
		}
		if q.left.CompareAndSwap(v, v-1) {
			return true
		}
	}
}

// close makes the queue take no more events. The worker handles what is
// queued, then stops.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	wake := q.idle
	q.idle = false
	q.mu.Unlock()
	if wake {
		q.signal()
	}
}

// discardAll closes the queue and drops every event not started yet,
// queued or in the worker's batch; it returns how many, which it counts
// as dropped.
func (q *queue) discardAll(s *Subscription) uint64 {
	q.close()
	q.mu.Lock()
	n := uint64(q.n)
	for q.n > 0 {
		q.buf[q.head] = queued{}
		q.head = (q.head + 1) % len(q.buf)
		q.n--
	}
	n += uint64(q.left.Or(discardBit) &^ discardBit)
	q.countDropLocked(s, n)
	q.unreported += n
	r := q.dueReportLocked(s, true)
	q.mu.Unlock()
	s.bus.reportAll([]*DeliveryError{r})
	return n
}

// depth returns the number of queued events and the high-water mark.
func (q *queue) depth() (n, highWater int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.highWater
}
