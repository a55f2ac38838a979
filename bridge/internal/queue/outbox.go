// Package queue holds the bridge's queues: the outbox of exports waiting
// for a flusher, the per-topic queues of imported events waiting for the
// import workers, and the memory of sent raw messages whose echo must be
// dropped. Each owns its lock; fifo, the chunked queue under the first
// two, is not safe for concurrent use and is guarded by its owner's lock.
package queue

import (
	"sync"
	"sync/atomic"

	"github.com/busline/bus/bridge/internal/wire"
)

// Export is one export waiting to be sent.
type Export struct {
	Channel     string
	Payload     []byte
	ContentType string
	Headers     map[string]string
	At          int64  // unix nanoseconds, when it was queued: set by Outbox.Push
	Seq         uint64 // per (source, channel), set by Outbox.Push; 0 on raw routes
	// Route is the bridge's route of the export (a *route), for the
	// route's counters; an interface holding a pointer costs no
	// allocation.
	Route any
	// Topic is the topic of an export of a CloudEvents route (the
	// event's type); "" on other routes.
	Topic string
	// Pos is the export's position in its outbox: 1 for the first export
	// pushed, then 2, 3... Set by Outbox.Push.
	Pos uint64
	// The flags, together in one word (an export is copied into and out
	// of the outbox, and its size is what a burst costs in memory).
	//
	// Lent marks a Payload that is the publisher's memory, valid only
	// until Push returns. Push copies every payload but a big one (see
	// records) and so the lent ones too; it copies a big lent one into
	// memory of its own.
	Lent bool
	Raw  bool
	Echo bool // remember it for echo suppression when it is sent
	// NoSeq leaves an enveloped export unnumbered (Seq 0): a reply, the
	// one message of a channel of its own, which would otherwise fill the
	// sequence counters of sender and receivers with one-off channels.
	NoSeq bool
	// CloudEvent marks an export of a CloudEvents route (see Topic).
	CloudEvent bool
}

// Size is what it counts for in an outbox's byte bound.
func (it *Export) Size() int { return len(it.Channel) + len(it.Payload) }

// Outbox is the bounded FIFO of exports waiting for a flusher. Publishers
// push without ever waiting for Redis; the flusher takes batches. It
// numbers and stamps the exports as they are pushed, under its lock, so
// that their numbers follow the order in which they are sent and their
// times the order of their numbers: on each channel, a later number has a
// later time, which receivers rely on to tell a channel numbered again
// from 1 (the counter forgot it) from a duplicate. Taking the time before
// the number, on the publisher's goroutine, let a concurrent export take
// a number first with a later time. All methods are safe for concurrent
// use.
type Outbox struct {
	maxEvents, maxBytes int
	dropNewest          bool // when full, drop the new export rather than the oldest

	// wake has room for one token: push leaves one when the outbox goes
	// from empty to non-empty, so the flusher sleeps while it is empty
	// and wakes once per burst.
	wake chan struct{}

	mu     sync.Mutex // protects the fields below
	q      records
	bytes  int
	closed bool
	seqs   wire.Counter // numbers the enveloped exports
	lastAt int64        // the time of the last push: times only go up
	clock  clock        // stamps the exports pushed without a time
	pushed uint64       // the exports pushed (the last Pos given)
	// taken is the Pos of the first export of the batch the flusher
	// took and has not settled yet, 0 when none.
	taken uint64
}

// NewOutbox returns an outbox of at most maxEvents exports and maxBytes
// bytes (Export.Size). When full, it drops the oldest exports to make
// room, or with dropNewest the new export.
func NewOutbox(maxEvents, maxBytes int, dropNewest bool) *Outbox {
	return &Outbox{
		maxEvents:  maxEvents,
		maxBytes:   maxBytes,
		dropNewest: dropNewest,
		wake:       make(chan struct{}, 1),
	}
}

// SetSeqBudget sets the memory budget of the outbox's sequence numbers
// (wire.Counter.Budget). Call it before the first Push.
func (o *Outbox) SetSeqBudget(bytes int) {
	o.mu.Lock()
	o.seqs.Budget = bytes
	o.mu.Unlock()
}

// Wake returns the channel on which the outbox leaves a token when it goes
// from empty to non-empty: the flusher waits on it while the outbox is
// empty.
func (o *Outbox) Wake() <-chan struct{} { return o.wake }

// Push appends it, stamping it with the time (At, unless set already;
// later than the exports before it even if the clock went back) and
// numbering it (Seq) if it is not raw, and returns how
// many exports were dropped to make room (oldest first) or instead of it
// (dropNewest, or an export bigger than the outbox). ok is false when the
// outbox is closed: nothing was queued or dropped. It never blocks on
// anything but the outbox's lock. It copies the export's channel and
// payload (a big payload only if lent: see records), so that the caller
// may reuse them; Take gives an empty payload back as nil.
func (o *Outbox) Push(it Export) (dropped int, ok bool) {
	size := it.Size()
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
		if o.dropNewest {
			o.mu.Unlock()
			return dropped + 1, true
		}
		o.dropLocked()
		dropped++
	}
	if it.At == 0 {
		it.At = o.clock.now()
	}
	it.At = max(it.At, o.lastAt+1)
	o.lastAt = it.At
	if !it.Raw && !it.NoSeq {
		it.Seq = o.seqs.Next(it.Channel)
	}
	o.pushed++
	it.Pos = o.pushed
	o.q.push(&it)
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

// Take moves up to max exports into batch (reusing its memory), after
// dropping the ones exported before cutoff (unix nanoseconds; 0 for none).
// Their channels and payloads are the outbox's memory, which nothing
// writes again: they stay valid as long as they are referenced, and
// must not be modified.
func (o *Outbox) Take(batch []Export, max int, cutoff int64) (_ []Export, expired int) {
	batch = batch[:0]
	o.mu.Lock()
	defer o.mu.Unlock()
	for o.q.len() > 0 && o.q.frontAt() < cutoff {
		o.dropLocked()
		expired++
	}
	for o.q.len() > 0 && len(batch) < max {
		batch = append(batch, Export{})
		o.popLocked(&batch[len(batch)-1])
	}
	if len(batch) > 0 {
		o.taken = batch[0].Pos
	}
	return batch, expired
}

// Settle records that the flusher is done with the batch it took last:
// sent, refused or dropped.
func (o *Outbox) Settle() {
	o.mu.Lock()
	o.taken = 0
	o.mu.Unlock()
}

// Mark returns the position of the last export pushed, for Settled.
func (o *Outbox) Mark() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pushed
}

// Settled reports whether every export pushed up to position mark (see
// Mark) has left the outbox and is not in a batch the flusher has not
// settled: each was sent, refused or dropped.
func (o *Outbox) Settled(mark uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.taken != 0 && o.taken <= mark {
		return false
	}
	return o.q.len() == 0 || o.q.frontPos() > mark
}

// Sending reports whether the batch the flusher took and has not settled
// yet has exports pushed up to position mark.
func (o *Outbox) Sending(mark uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.taken != 0 && o.taken <= mark
}

// RemoveFunc drops the queued exports for which drop returns true and
// returns how many; the others keep their order. It takes O(n) under the
// outbox's lock, for a route being removed.
func (o *Outbox) RemoveFunc(drop func(*Export) bool) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, removed := o.q.len(), 0
	for range n {
		var it Export
		o.q.pop(&it)
		if drop(&it) {
			o.bytes -= it.Size()
			removed++
			continue
		}
		o.q.push(&it)
	}
	return removed
}

// Expire drops the exports made before cutoff and returns how many.
func (o *Outbox) Expire(cutoff int64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for o.q.len() > 0 && o.q.frontAt() < cutoff {
		o.dropLocked()
		n++
	}
	return n
}

// Close makes later pushes fail and empties the outbox, returning how
// many exports it held.
func (o *Outbox) Close() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := o.q.len()
	for o.q.len() > 0 {
		o.dropLocked()
	}
	o.closed = true
	return n
}

// Depth returns the number of exports and bytes queued.
func (o *Outbox) Depth() (n, bytes int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.q.len(), o.bytes
}

// Inflight describes the batch a flusher is sending, which Stats counts
// with what still waits in its outbox. Its zero value is nothing being
// sent. It is safe for concurrent use.
type Inflight struct{ events, bytes atomic.Int64 }

// Set records batch as being sent.
func (in *Inflight) Set(batch []Export) {
	size := 0
	for i := range batch {
		size += batch[i].Size()
	}
	in.events.Store(int64(len(batch)))
	in.bytes.Store(int64(size))
}

// Reset records that nothing is being sent.
func (in *Inflight) Reset() {
	in.events.Store(0)
	in.bytes.Store(0)
}

// Load returns the exports and bytes being sent.
func (in *Inflight) Load() (n, bytes int) {
	return int(in.events.Load()), int(in.bytes.Load())
}

// popLocked removes the oldest export into *it.
func (o *Outbox) popLocked(it *Export) {
	o.bytes -= o.q.frontSize()
	o.q.pop(it)
}

// dropLocked removes the oldest export.
func (o *Outbox) dropLocked() {
	var it Export
	o.popLocked(&it)
}
