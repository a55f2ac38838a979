package bridge

import (
	"sync"
	"sync/atomic"

	"github.com/busline/bus/bridge/internal/wire"
)

// exportItem is one export waiting to be sent.
type exportItem struct {
	channel     string
	payload     []byte
	contentType string
	headers     map[string]string
	at          int64  // unix nanoseconds, when it was exported
	seq         uint64 // per (source, channel); 0 on raw routes
	raw         bool
	echo        bool // remember it for echo suppression when it is sent
}

func (it *exportItem) size() int { return len(it.channel) + len(it.payload) }

// outbox is the bounded FIFO of exports waiting for the flusher. Publishers
// push without ever waiting for Redis; the flusher takes batches.
type outbox struct {
	maxEvents, maxBytes int
	policy              OutboxPolicy

	// wake has room for one token: push leaves one when the outbox goes
	// from empty to non-empty, so the flusher sleeps while it is empty
	// and wakes once per burst.
	wake chan struct{}

	mu     sync.Mutex // protects the fields below
	q      fifo[exportItem]
	bytes  int
	closed bool
	seqs   wire.Counter // numbers the enveloped exports
}

func newOutbox(maxEvents, maxBytes int, policy OutboxPolicy) *outbox {
	return &outbox{
		maxEvents: maxEvents,
		maxBytes:  maxBytes,
		policy:    policy,
		wake:      make(chan struct{}, 1),
	}
}

// push appends it, numbering it if it is enveloped, and returns how many
// exports were dropped to make room (OutboxDropOldest) or instead of it
// (OutboxDropNewest, or an export bigger than the outbox). ok is false when the
// outbox is closed: nothing was queued or dropped.
func (o *outbox) push(it exportItem) (dropped int, ok bool) {
	size := it.size()
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return 0, false
	}
	if size > o.maxBytes {
		o.mu.Unlock()
		return 1, true
	}
	for o.q.len() >= o.maxEvents || o.bytes+size > o.maxBytes {
		if o.policy == OutboxDropNewest {
			o.mu.Unlock()
			return dropped + 1, true
		}
		o.popLocked()
		dropped++
	}
	if !it.raw {
		it.seq = o.seqs.Next(it.channel)
	}
	o.q.push(it)
	o.bytes += size
	wasEmpty := o.q.len() == 1
	o.mu.Unlock()
	if wasEmpty {
		select {
		case o.wake <- struct{}{}:
		default:
		}
	}
	return dropped, true
}

// take moves up to max exports into batch (reusing its memory), after
// dropping the ones exported before cutoff (unix nanoseconds; 0 for none).
func (o *outbox) take(batch []exportItem, max int, cutoff int64) (_ []exportItem, expired int) {
	batch = batch[:0]
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.q.len() > 0 && o.q.front().at < cutoff {
		o.popLocked()
		expired++
	}
	for o.q.len() > 0 && len(batch) < max {
		batch = append(batch, o.popLocked())
	}
	return batch, expired
}

// expire drops the exports made before cutoff and returns how many.
func (o *outbox) expire(cutoff int64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for o.q.len() > 0 && o.q.front().at < cutoff {
		o.popLocked()
		n++
	}
	return n
}

// close makes later pushes fail and empties the outbox, returning how
// many exports it held.
func (o *outbox) close() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.q.len()
	for o.q.len() > 0 {
		o.popLocked()
	}
	o.closed = true
	return n
}

// depth returns the number of exports and payload bytes queued.
func (o *outbox) depth() (n, bytes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.q.len(), o.bytes
}

// inflight describes the batch a flusher is sending, which Stats counts
// with what still waits in its outbox. It is safe for concurrent use.
type inflight struct{ events, bytes atomic.Int64 }

// set records batch as being sent.
func (in *inflight) set(batch []exportItem) {
	size := 0
	for i := range batch {
		size += batch[i].size()
	}
	in.events.Store(int64(len(batch)))
	in.bytes.Store(int64(size))
}

// reset records that nothing is being sent.
func (in *inflight) reset() {
	in.events.Store(0)
	in.bytes.Store(0)
}

// load returns the exports and payload bytes being sent.
func (in *inflight) load() (n, bytes int) {
	return int(in.events.Load()), int(in.bytes.Load())
}

func (o *outbox) popLocked() exportItem {
	it := o.q.pop()
	o.bytes -= it.size()
	return it
}
