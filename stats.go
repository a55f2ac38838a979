package bus

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Stats are the counters of a whole bus. Every field counts since New.
type Stats struct {
	// Published counts the calls of Publish and PublishEvent that
	// returned nil: a publish that returned an error (a bad topic, a
	// closed bus, a Block wait whose ctx ended) is not counted. The
	// publishes of dead letters count too (each also in DeadLettered).
	// Counted only with Options.Stats; zero otherwise.
	Published uint64
	// Delivered counts the events whose handling ended in the handler,
	// over all subscriptions: the handler call returned (with an error or
	// not) or panicked, as the last attempt for a subscription with a
	// RetryPolicy. Synchronous deliveries are counted only with
	// Options.Stats; asynchronous ones always.
	Delivered uint64
	// Dropped counts events that a subscription did not get because its
	// queue was full (DropNewest, DropOldest, a Block publish whose ctx
	// ended or whose queue closed while it waited, a publish that would
	// have deadlocked), because Close ran out of time before they were
	// handled, or because the Unsubscribe of a SubscribeChan subscription
	// discarded them. Every event offered to a subscription is either
	// delivered, dead-lettered, abandoned, or counted here.
	Dropped uint64
	// Panics counts recovered handler panics.
	Panics uint64
	// Failed counts handler calls that failed: a HandlerFunc that returned
	// an error, and every recovered panic (also in Panics). With retries,
	// each failed attempt counts.
	Failed uint64
	// Retried counts the attempts after the first made by subscriptions
	// with a RetryPolicy.
	Retried uint64
	// DeadLettered counts the events that failed their last attempt and
	// were published to their dead-letter topic. They are not in Delivered.
	DeadLettered uint64
	// Abandoned counts the events whose remaining attempts Close cut
	// short (or whose dead letter it kept from being published). They are
	// not in Delivered.
	Abandoned uint64
	// LateReplies counts the replies that found no request waiting for
	// them: every reply to a request after the first, and replies that
	// came after their Request had returned (its context ended, or the bus
	// closed). They are dropped, delivered to nobody. Always counted.
	LateReplies uint64
	// Subscriptions is the number of active subscriptions.
	Subscriptions int
	// Queued is the number of events waiting in asynchronous queues.
	Queued int
}

// SubscriptionStats are the counters of one subscription.
type SubscriptionStats struct {
	// Delivered counts the events whose handling ended in the handler
	// (it returned, with an error or not, or panicked, on the last attempt
	// with a RetryPolicy); for SubscribeChan, the events the reader
	// received. For a synchronous subscription it is counted only with
	// Options.Stats.
	Delivered uint64
	// Dropped counts the events of this subscription counted in
	// Stats.Dropped. Where Delivered is counted, Delivered + DeadLettered
	// + Abandoned + Dropped is the number of events offered to the
	// subscription.
	Dropped uint64
	// Panics counts recovered panics of the handler.
	Panics uint64
	// Failed, Retried, DeadLettered and Abandoned count as their
	// namesakes in Stats do, for this subscription.
	Failed, Retried, DeadLettered, Abandoned uint64
	// Queued is the number of events waiting in the queue now; HighWater
	// the largest it has been. Both are zero for synchronous ones.
	Queued, HighWater int
	// Capacity is the capacity of the queue; zero when synchronous.
	Capacity int
}

// counter is a striped counter: concurrent increments land on different
// cache lines, so counting never makes publishers on different cores
// contend. Reading sums the stripes.
type counter struct {
	stripes []paddedUint64
}

type paddedUint64 struct {
	n atomic.Uint64
	_ [56]byte
}

// newCounter returns a counter with perProc stripes per processor, rounded
// up to a power of two and capped at 64. Stripes are picked by hashing, so
// more stripes than processors make two publishers meet on one less often.
func newCounter(perProc int) counter {
	n := 1
	for n < perProc*runtime.GOMAXPROCS(0) && n < 64 {
		n *= 2
	}
	return counter{stripes: make([]paddedUint64, n)}
}

// add adds d to the stripe picked by the address of a local variable:
// goroutines run on stacks of their own, so concurrent publishers mostly
// pick different stripes. math/rand/v2 was measured at 5 ns, a quarter of a
// publish; the address costs a multiplication.
func (c *counter) add(d uint64) {
	var local byte
	h := uint64(uintptr(unsafe.Pointer(&local))>>10) * 0x9e3779b97f4a7c15
	c.stripes[h>>58&uint64(len(c.stripes)-1)].n.Add(d)
}

func (c *counter) load() uint64 {
	var sum uint64
	for i := range c.stripes {
		sum += c.stripes[i].n.Load()
	}
	return sum
}
