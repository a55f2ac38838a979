package bridge

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats are the counters of a Bridge since New. Every export is, in the
// end, exactly one of Exported, ExportRejected, EncodeErrors, OutboxDropped,
// or still waiting (OutboxDepth); every message received on the pub/sub
// connection is exactly one of Imported, Filtered, DuplicateCopies,
// EchoesDropped, Duplicates, DecodeErrors, SignatureRejected, Replayed or
// ImportDropped, or still queued (ImportDepth).
type Stats struct {
	// Exported counts events published to Redis (PUBLISH answered).
	Exported uint64
	// ExportMessages counts the Redis messages behind Exported (PUBLISH
	// commands, and XADDs of durable routes): fewer than the events when
	// exports waiting together were coalesced into batches (see
	// Options.CoalesceBytes).
	ExportMessages uint64
	// ExportRejected counts exports Redis refused, such as with NOPERM.
	ExportRejected uint64
	// EncodeErrors counts payloads the route's Codec could not encode,
	// payloads of a type the route's codec does not carry (Text, Bytes),
	// and exports bigger than Options.MaxMessageBytes.
	EncodeErrors uint64
	// OutboxDepth and OutboxBytes are what waits to be sent now,
	// including the batch being sent.
	OutboxDepth, OutboxBytes int
	// OutboxDropped counts exports dropped before they were sent: the
	// sum of OutboxOverflow, OutboxExpired and OutboxUnsent.
	OutboxDropped uint64
	// OutboxOverflow counts exports dropped because the outbox was full.
	OutboxOverflow uint64
	// OutboxExpired counts exports dropped after Options.OutboxMaxAge.
	OutboxExpired uint64
	// OutboxUnsent counts exports still waiting when Close gave up, and
	// exports made while Close was running.
	OutboxUnsent uint64

	// Received counts the messages read from the pub/sub connection,
	// a batch of coalesced events (see Options.CoalesceBytes) as one per
	// event once it is decoded: a batch that is dropped whole (filtered,
	// malformed, oversized, rejected) counts once.
	Received uint64
	// Imported counts events published on the local bus.
	Imported uint64
	// Filtered counts messages of a Redis glob that the bus pattern
	// behind it does not match.
	Filtered uint64
	// DuplicateCopies counts the extra copies Redis delivers of one
	// message that matches several of the bridge's subscriptions; one
	// copy is imported.
	DuplicateCopies uint64
	// EchoesDropped counts the bridge's own messages coming back.
	EchoesDropped uint64
	// Duplicates counts enveloped events received twice (by sequence
	// number), which happens when a pipeline is retried after a
	// connection broke, or when someone replays recorded messages.
	Duplicates uint64
	// DecodeErrors counts malformed or oversized messages, messages on
	// channels whose topic the bus rejects, and payloads the route's
	// Codec could not decode.
	DecodeErrors uint64
	// SignatureRejected counts messages on enveloped routes rejected
	// because Options.SigningKey is set and they are unsigned, forged or
	// altered.
	SignatureRejected uint64
	// Replayed counts enveloped events rejected as replays (ErrReplay):
	// of an earlier run of their source (an old epoch), or, on pub/sub
	// routes, sent longer ago than Options.ReplayWindow (or that far in
	// the future).
	Replayed uint64
	// ImportDropped counts imported events dropped because the import
	// queue was full (Options.ImportQueueSize, ImportTopicQueueSize,
	// ImportQueueBytes) or the bridge was closing.
	ImportDropped uint64
	// ImportDepth is the number of imported events waiting for delivery,
	// and ImportBytes what they weigh (payload and topic).
	ImportDepth, ImportBytes int

	// Gaps counts the sequence gaps detected, and GapEvents the events
	// they miss in total.
	Gaps, GapEvents uint64
	// ReportsHeld counts the reports to Options.OnError held back by its
	// rate limit (one report per reason and second, then a summary with a
	// count): each drop, gap, duplicate or rejected message that was
	// counted but not reported on its own.
	ReportsHeld uint64
	// Reconnects counts the pub/sub connections made after the first.
	Reconnects uint64
	// ExportOutages counts the times exporting found Redis unreachable.
	ExportOutages uint64
	// ShardRebuilds counts the times the sharded subscriptions of a
	// bridge on a cluster were regrouped because a node stopped serving
	// some of their slots (slot migration, failover).
	ShardRebuilds uint64

	// Durable routes (Route.Delivery Stream or Group) count their events
	// in the counters above too: StreamExported is the part of Exported
	// that went to streams (XADD answered), StreamImported the part of
	// Imported that came from streams. StreamAcked counts entries of
	// Group routes acknowledged (XACK) after they were handled, and
	// StreamClaimed those taken over from other consumers (XAUTOCLAIM).
	// StreamResumes counts the times a durable import route went on from
	// a saved position: a checkpoint found at start, or its last position
	// after a failed read. StreamTrimmed counts entries of Group routes
	// trimmed or deleted from the stream before they were handled.
	StreamExported, StreamImported, StreamAcked, StreamClaimed uint64
	StreamResumes, StreamTrimmed                               uint64

	// What failed handling of durable import routes became (see "When
	// handling fails" in the documentation of Delivery). StreamFailed
	// counts the attempts that failed: a synchronous subscriber returned
	// an error or panicked. StreamRetried counts the attempts made after
	// a failed one (Route.Retry). After the last attempt of a delivery,
	// an entry is dead-lettered (StreamDeadLettered: written to the
	// dead-letter stream, then acknowledged or passed by the checkpoint),
	// left pending for another delivery on a Group route
	// (StreamRedelivered), or, when Close cut its retries short,
	// abandoned (StreamAbandoned: left pending, or behind the checkpoint,
	// for a later run). Each entry so counted was published on the bus
	// and counts in StreamImported, once per delivery; StreamAcked
	// counts the entries handled (dropped ones, counted above, included),
	// not the dead-lettered ones.
	StreamFailed, StreamRetried, StreamDeadLettered uint64
	StreamRedelivered, StreamAbandoned              uint64
}

// counters are the atomic counters behind Stats.
type counters struct {
	exported, exportMessages, exportRejected, encodeErrors      atomic.Uint64
	outboxOverflow, outboxExpired, outboxUnsent                 atomic.Uint64
	received, imported, filtered, duplicateCopies, echoes, dups atomic.Uint64
	decodeErrors, signatureRejected, importDropped, replayed    atomic.Uint64
	reportsHeld                                                 atomic.Uint64
	gaps, gapEvents, reconnects, exportOutages                  atomic.Uint64
	shardRebuilds                                               atomic.Uint64
}

// reporter passes errors to Options.OnError, batching the reports of drops
// and of rejected messages so that a burst of them, a foreign publisher's
// flood included, costs one call per reason and interval: the first
// report of a reason is passed with its details, the next ones within
// dropReportInterval are held back and counted, then summarised in one
// *DropError (with the details of the report that ends the interval).
type reporter struct {
	onError func(error)
	held    *atomic.Uint64 // counts the reports held back (Stats.ReportsHeld)

	mu      sync.Mutex // protects pending and last
	pending map[error]uint64
	last    map[error]time.Time
}

// dropReportInterval is the least time between two reports of drops for
// the same reason.
const dropReportInterval = time.Second

func newReporter(onError func(error), held *atomic.Uint64) *reporter {
	return &reporter{onError: onError, held: held, pending: map[error]uint64{}, last: map[error]time.Time{}}
}

func (r *reporter) report(err error) { r.onError(err) }

// drop records n drops for reason and reports them, unless a report for
// the same reason was made less than dropReportInterval ago: then they wait
// for the next report or for flush. detail, if not nil, describes the drop
// in full and is reported instead of a *DropError when nothing else is
// pending.
func (r *reporter) drop(reason error, n uint64, detail error) {
	if detail == nil {
		r.dropf(reason, n, nil)
		return
	}
	r.dropf(reason, n, func() error { return detail })
}

// dropf is drop with details made by detail (if not nil), which it calls
// only when the details are reported: rejecting a flood of messages must
// not cost a formatted error per message.
func (r *reporter) dropf(reason error, n uint64, detail func() error) {
	now := time.Now()
	r.mu.Lock()
	if now.Sub(r.last[reason]) < dropReportInterval {
		r.pending[reason] += n
		r.mu.Unlock()
		r.held.Add(1)
		return
	}
	held := r.pending[reason]
	delete(r.pending, reason)
	r.last[reason] = now
	r.mu.Unlock()
	switch {
	case detail != nil && held == 0:
		r.onError(detail())
	case detail != nil:
		r.onError(&DropError{Err: reason, Count: held})
		r.onError(detail())
	default:
		r.onError(&DropError{Err: reason, Count: held + n})
	}
}

// flush reports the drops held back.
func (r *reporter) flush() {
	r.mu.Lock()
	pending := r.pending
	r.pending = map[error]uint64{}
	now := time.Now()
	for reason := range pending {
		r.last[reason] = now
	}
	r.mu.Unlock()
	for reason, n := range pending {
		r.onError(&DropError{Err: reason, Count: n})
	}
}
