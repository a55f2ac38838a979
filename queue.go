package bus

import (
	"context"
	"fmt"
	"runtime"
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
// The worker handles its batch in place: the ring has room for capacity
// waiting events and one batch, so that taking a batch moves indexes under
// the lock instead of copying the events out, and publishers, who write
// only beyond the batch, never wait behind a copy. DropOldest is the
// exception: its publishers remove waiting events from the front, next to
// the batch, so its worker copies the batch out into a buffer of its own.
// The worker is woken through wake only when it has found the queue empty
// and said so (idle), that is on the empty→non-empty transition: a busy
// worker costs publishers no signal at all, and an idle one no polling.
type queue struct {
	mu          sync.Mutex  // protects the fields up to wake that newQueue does not set for good
	workerHolds atomic.Bool // the worker holds mu (lockWorker)
	buf         []queued    // the ring: the worker's batch (in place), the waiting events, free slots
	capacity    int         // how many events may wait, the batch not included; set by newQueue
	head, n     int         // the waiting events
	spins       int         // how many times to try mu before Lock (see spinTries); set by newQueue
	// copied is the batch buffer of a DropOldest queue's worker, which
	// copies its batch out (set by newQueue; its contents are the
	// worker's); nil for the others, which handle the batch in place.
	copied    []queued
	highWater int
	closed    bool          // takes no more events
	idle      bool          // the worker waits on wake
	space     chan struct{} // closed when room appears; nil when no publisher waits
	// fullSince is when the queue was first seen full, zero while it has
	// room; slowReported says the current full spell was reported.
	fullSince    time.Time
	slowReported bool
	// abandoned counts the SubscribeChan events whose send to the reader
	// was given up (see Subscription.send).
	abandoned uint64
	// Drops not reported yet, the last report and the last topic dropped.
	unreported uint64
	lastReport time.Time
	lastTopic  string
	// batchTopic is the topic of the last event of the worker's batch: the
	// one a report names when discardAll finds only the batch to drop.
	batchTopic string

	wake chan struct{} // capacity 1

	// selfTick is closed by selfTimer a while after a publisher started to
	// wait; waiting publishers then check whether they are the worker
	// itself. Nil when the timer is not armed.
	selfTick  chan struct{}
	selfTimer *time.Timer

	// left counts the events of the worker's current batch not started
	// yet; discardBit is or-ed in by discardAll, after which the worker
	// starts no more of them. One word, so that the worker claiming an
	// event and Close discarding agree on who counts it. The worker writes
	// it for every event: it has a cache line of its own, away from mu and
	// the indexes that publishers write.
	_    [64]byte
	left atomic.Int64
	_    [56]byte
}

const discardBit = 1 << 62

func newQueue(capacity int, policy Overflow) *queue {
	batch := min(capacity, maxBatch)
	q := &queue{capacity: capacity, wake: make(chan struct{}, 1)}
	if policy == DropOldest {
		q.buf, q.copied = make([]queued, capacity), make([]queued, batch)
	} else {
		q.buf = make([]queued, capacity+batch)
	}
	if runtime.GOMAXPROCS(0) > 1 {
		q.spins = spinTries // with one processor the holder cannot run while we try
	}
	return q
}

// push offers *e to the queue of s. With skipIfFull a full queue answers
// full at once; otherwise s's overflow policy decides.
func (q *queue) push(ctx context.Context, e *Event, s *Subscription, skipIfFull bool) (offerResult, error) {
	b := s.bus
	q.lockPublisher()
	var reports [2]*DeliveryError
	waited := false // a Block publisher waited for room
	for q.n == q.capacity && !q.closed {
		if skipIfFull {
			q.mu.Unlock()
			return full, nil
		}
		reports[0] = q.fullLocked(s, e.Topic)
		switch s.opts.Overflow {
		case DropNewest:
			reports[1] = q.droppedLocked(s, e.Topic, 1)
			q.mu.Unlock()
			b.reportAll(reports[:]...)
			return dropped, nil
		case DropOldest:
			q.buf[q.head] = queued{}
			q.head = q.next(q.head)
			q.n--
			reports[1] = q.droppedLocked(s, e.Topic, 1)
		default: // Block
			ch := q.space
			if ch == nil {
				ch = make(chan struct{})
				q.space = ch
			}
			tick := q.armSelfCheckLocked()
			q.mu.Unlock()
			b.reportAll(reports[:]...)
			reports = [2]*DeliveryError{}
			select {
			case <-ch:
			case <-tick:
				// Still full a while later. The worker frees room unless
				// it is the one waiting here, from its own handler. The
				// check costs microseconds, hence the delay.
				if id := s.workerID.Load(); id != 0 && id == goid() {
					q.mu.Lock()
					q.countDropLocked(s, 1)
					q.mu.Unlock()
					return dropped, errorf(ErrWouldDeadlock, "publish %q: the handler of %q (subscribed at %s) publishes into its own full queue",
						e.Topic, s.pat.text, s.Where())
				}
			case <-ctx.Done():
				q.mu.Lock()
				q.countDropLocked(s, 1)
				q.mu.Unlock()
				return dropped, errorf(context.Cause(ctx), "publish %q: queue of %q full", e.Topic, s.pat.text)
			}
			q.mu.Lock()
			waited = true
		}
	}
	if q.closed {
		if !waited {
			q.mu.Unlock()
			b.reportAll(reports[:]...)
			return gone, nil // never offered: the caller says why
		}
		// The queue was closed while this publisher waited for room: the
		// event was offered and is lost, so it counts as dropped. Close
		// makes it the publisher's error; after Unsubscribe it is
		// reported like any other drop.
		if b.closed.Load() {
			q.countDropLocked(s, 1)
			q.mu.Unlock()
			b.reportAll(reports[:]...)
			return dropped, errorf(ErrClosed, "publish %q: queue of %q full when the bus closed", e.Topic, s.pat.text)
		}
		q.countDropLocked(s, 1)
		q.unreported++
		q.lastTopic = e.Topic
		reports[1] = q.dueReportLocked(s, true) // the worker may have made its last report
		q.mu.Unlock()
		b.reportAll(reports[:]...)
		return dropped, nil
	}
	tail := q.head + q.n
	if tail >= len(q.buf) {
		tail -= len(q.buf)
	}
	q.buf[tail] = queued{ctx: ctx, e: *e}
	q.n++
	q.highWater = max(q.highWater, q.n)
	wake := q.idle
	q.idle = false
	q.mu.Unlock()
	if wake {
		q.signal()
	}
	if reports[0] != nil || reports[1] != nil {
		b.reportAll(reports[:]...)
	}
	return accepted, nil
}

// selfCheckAfter is how long a Block publisher waits before it checks
// whether it is the queue's own worker.
const selfCheckAfter = time.Millisecond

// armSelfCheckLocked returns the channel that selfTimer closes, arming the
// timer if it is not armed. The timer and the channel are made once per
// round of waiting, not per waiting publisher.
func (q *queue) armSelfCheckLocked() <-chan struct{} {
	if q.selfTick == nil {
		q.selfTick = make(chan struct{})
		if q.selfTimer == nil {
			q.selfTimer = time.AfterFunc(selfCheckAfter, q.fireSelfCheck)
		} else {
			q.selfTimer.Reset(selfCheckAfter)
		}
	}
	return q.selfTick
}

func (q *queue) fireSelfCheck() {
	q.mu.Lock()
	if q.selfTick != nil {
		close(q.selfTick)
		q.selfTick = nil
	}
	q.mu.Unlock()
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
		Detail: fmt.Sprintf("queue of %d full for %v", q.capacity, now.Sub(q.fullSince).Round(time.Millisecond))}
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
		Detail: fmt.Sprintf("policy %v, queue capacity %d", s.opts.Overflow, q.capacity)}
	q.unreported = 0
	q.lastReport = now
	return r
}

// take waits while the queue is empty and open, then hands the worker the
// oldest events, at most maxBatch, as a batch: slots of the ring, which
// publishers leave alone until the worker's next take (the worker clears
// them when it is done with them), or, for DropOldest, a copy. It returns
// nil once the queue is closed and empty.
func (q *queue) take(s *Subscription) []queued {
	q.lockWorker()
	for q.n == 0 {
		if q.closed {
			r := q.dueReportLocked(s, true)
			q.unlockWorker()
			s.bus.reportAll(r)
			return nil
		}
		q.idle = true
		q.unlockWorker()
		<-q.wake
		q.lockWorker()
	}
	var batch []queued
	if q.copied != nil {
		batch = q.copied[:min(q.n, len(q.copied))]
		for i := range batch {
			batch[i] = q.buf[q.head]
			q.buf[q.head] = queued{} // let the payload go
			q.head = q.next(q.head)
		}
	} else {
		// A batch in place ends at the end of the ring; the next one
		// starts at 0.
		batch = q.buf[q.head : q.head+min(q.n, maxBatch, len(q.buf)-q.head)]
		if q.head += len(batch); q.head == len(q.buf) {
			q.head = 0
		}
	}
	k := len(batch)
	q.left.Store(int64(k))
	q.n -= k
	q.batchTopic = batch[k-1].e.Topic
	// Waiting publishers are woken once half the queue is free rather
	// than after every batch: they then wait (and pay for a wake-up) once
	// per half queue instead of once per batch.
	if q.space != nil && q.n <= q.capacity/2 {
		close(q.space)
		q.space = nil
	}
	q.fullSince, q.slowReported = time.Time{}, false
	r := q.dueReportLocked(s, false)
	q.unlockWorker()
	s.bus.reportAll(r)
	return batch
}

// next returns the ring index after i; a comparison is cheaper than the
// division of a modulo, and capacities need not be powers of two.
func (q *queue) next(i int) int {
	if i++; i == len(q.buf) {
		return 0
	}
	return i
}

// claim is called by the worker before it starts an event of its batch:
// false means Close discarded the rest. Whether the decrement comes before
// or after discardAll's Or decides, in one total order, which of the two
// counts the event.
func (q *queue) claim() bool {
	return q.left.Add(-1)&discardBit == 0
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
	if q.selfTimer != nil {
		q.selfTimer.Stop()
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
	if q.n > 0 {
		q.lastTopic = q.buf[q.head].e.Topic
	}
	for q.n > 0 {
		q.buf[q.head] = queued{}
		q.head = q.next(q.head)
		q.n--
	}
	// Only the first discard counts the rest of the worker's batch: the
	// worker stops at its next claim, and a second discard (Close after
	// Unsubscribe) must not count the same events again.
	if left := q.left.Or(discardBit); left&discardBit == 0 && left > 0 {
		if n == 0 {
			q.lastTopic = q.batchTopic
		}
		n += uint64(left)
	}
	q.countDropLocked(s, n)
	q.unreported += n
	r := q.dueReportLocked(s, true)
	q.mu.Unlock()
	s.bus.reportAll(r)
	return n
}

// abandon counts the SubscribeChan event whose send to the reader the
// worker gave up after stopReader, as dropped.
func (q *queue) abandon(s *Subscription, topic string) {
	q.mu.Lock()
	q.abandoned++
	q.countDropLocked(s, 1)
	q.unreported++
	q.lastTopic = topic
	q.mu.Unlock()
}

// abandonedCount returns how many events abandon has counted.
func (q *queue) abandonedCount() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.abandoned
}

// depth returns the number of queued events and the high-water mark.
func (q *queue) depth() (n, highWater int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.highWater
}

// spinTries is how many times a publisher or a worker tries q.mu before it
// waits on it like any Lock: about half a microsecond of trying on the
// machine of bench/RESULTS.md (Go offers no pause instruction to space the
// tries). Queues made while GOMAXPROCS is 1 do not try: the holder cannot
// run meanwhile. spinAlways is how many of those tries a
// publisher makes whoever holds the lock; it goes on trying only while
// the worker holds it.
const (
	spinTries  = 1000
	spinAlways = 100
)

// lockPublisher locks q.mu for a publisher, trying before it waits.
// sync.Mutex parks a goroutine at once when its processor has other
// goroutines ready, as it does with many subscribers, and a parked
// publisher then waits behind their workers while every queue it has not
// reached yet runs dry: with ten subscribers on two cores, that cost 2.7
// times as much per event. The worker holds the lock for a few index
// moves (and a copy of its batch with DropOldest), so trying through that
// costs less than parking. Another publisher may hold it for longer
// stretches: trying against it makes the lock change hands on every event
// (two publishers into one queue then cost 1.5 times as much per event),
// so after spinAlways tries a publisher waits unless the worker is the
// holder.
func (q *queue) lockPublisher() {
	for i := range q.spins {
		if q.mu.TryLock() {
			return
		}
		if i >= spinAlways && !q.workerHolds.Load() {
			break
		}
	}
	q.mu.Lock()
}

// lockWorker locks q.mu for the worker, trying before it waits, and says
// so in workerHolds. A worker parked on the lock is readied on the
// publisher's processor, which goes on publishing: the worker waits there
// while its queue fills.
func (q *queue) lockWorker() {
	locked := false
	for range q.spins {
		if locked = q.mu.TryLock(); locked {
			break
		}
	}
	if !locked {
		q.mu.Lock()
	}
	q.workerHolds.Store(true)
}

// unlockWorker undoes lockWorker.
func (q *queue) unlockWorker() {
	q.workerHolds.Store(false)
	q.mu.Unlock()
}
