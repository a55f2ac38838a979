package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Delivery says how a Route carries events through Redis. The zero
// Delivery is PubSub.
//
// # Durable routes
//
// Redis pub/sub forgets a message as soon as it has passed it on: an
// instance that is restarting, or reconnecting, never gets what was
// published meanwhile. A durable route keeps its events in a Redis stream
// instead. Choose per route, with Route.Delivery:
//
//   - PubSub (the default): the fastest, and nothing is kept. For events
//     whose loss an instance survives, because a later one supersedes
//     them: cache invalidation, presence, live views. Losses are reported
//     (ErrPossibleGap, *GapError).
//   - Stream: every instance importing the route gets every event, also
//     those exported while it was down or disconnected, as long as the
//     stream still holds them (Route.MaxLen). For state every instance
//     must see: replicated caches, projections, audit.
//   - Group: each event is handled by one member of a consumer group
//     (Route.Group), acknowledged once handled and taken over by another
//     member if its consumer dies. For work that must happen once per
//     group: sending an email, charging a card. Producers usually export
//     such a route (Direction Export) and workers import it (Import).
//
// The stream of a durable route is the Redis key
//
//	Options.Prefix + "stream:" + Route.Stream   (Route.Stream defaults to Route.Pattern)
//
// One stream per route, not per topic: a pattern route then reads one key
// with one XREAD, needs no registry to find the streams of new topics,
// keeps one consumer group and one pending list per route, and keeps the
// order of events across the route's topics. The price is that exporters
// and importers meet only on the same stream name: the same Pattern, or
// the same Route.Stream (an importer may use a narrower pattern with the
// exporter's Stream: what it does not match is skipped, Stats.Filtered).
// A bridge may have one durable import route per stream. Each entry
// (XADD app:stream:orders.* * topic orders.created data ...) has the fields
//
//	topic   the bus topic (may be left out on a route with an exact topic)
//	data    the envelope, or on a Raw route the payload bytes
//	source  on Raw routes, the InstanceID of the bridge that wrote it
//
// Envelopes are numbered and signed as on pub/sub routes, for the channel
// Prefix + topic. Other clients read and write the stream with the
// ordinary commands: an entry without the envelope's magic is delivered
// as raw bytes, as on pub/sub routes (unless a SigningKey is set):
//
//	redis-cli XADD 'app:stream:notes' '*' topic notes data hi
//	redis-cli XREAD COUNT 10 STREAMS 'app:stream:notes' 0
//
// Exports of durable routes take the path of pub/sub exports, with an
// outbox per route (the same limits and drop policy), sent as pipelined
// XADD ... MAXLEN ~ Route.MaxLen, in batches of Options.BatchSize, in
// order, and sent again as soon as Redis answers after an outage (no
// ResumeDelay: a stream keeps what it is given). An event is durable once
// Redis has answered its XADD (and as durable as Redis's appendfsync
// makes it); until then it is in the process's memory. When a pipeline is
// cut by a broken connection, Redis may have executed part of it: before
// sending again, the exporter looks for its own enveloped entries among
// the last ones of the stream and does not send those twice. A raw entry,
// or one buried by then under many entries of other writers, may be added
// twice (with the same envelope sequence number).
//
// A Stream route reads with XREAD BLOCK Options.StreamBlock COUNT
// BatchSize from the ID of the last entry it handled, publishes the
// entries on the local bus one after the other on its own goroutine, and
// then saves that ID with Options.Checkpointer: by default in the Redis
// hash Prefix + "checkpoint:" + InstanceID, one field per stream key (New
// then requires an InstanceID that survives restarts). A route without a
// checkpoint starts at the end of the stream and saves that position at
// once; a Checkpointer that returns "0" makes it read the whole stream.
// Delivery is at least once: a process that dies after publishing entries
// and before saving delivers them again when it restarts. Within a run,
// entries seen twice (a retried XADD) are dropped by sequence number
// (Stats.Duplicates) and missing ones (trimmed before they were read) are
// reported as a *GapError; handlers that must not see an event twice
// across restarts can key on (Meta.Source, Event.Topic, Meta.Seq).
//
// A Group route creates its group at the end of the stream if it does not
// exist (XGROUP CREATE ... $ MKSTREAM; create it beforehand with ID 0 to
// have older entries handled), and reads as consumer Options.Consumer
// (default InstanceID), a name that must stay the same across restarts:
// a restarted member first reads back the entries delivered to it and
// never acknowledged (XREADGROUP from ID 0), and does so again after any
// failed read, since a read whose answer was lost delivered entries
// nobody saw. It acknowledges a batch with one XACK once each of its
// entries has been published on the local bus and handled, that is once
// every synchronous subscriber has returned without failing (see "When
// handling fails" below): an asynchronous subscriber has only queued the
// event by then, and loses it if the process dies before it ran, so
// subscribe synchronously to a Group route's topics when that matters.
// Every ClaimIdle/2 the member takes over (XAUTOCLAIM) the
// entries that any consumer of the group has left unacknowledged for
// Options.ClaimIdle, and handles them (Stats.StreamClaimed):
// ClaimIdle must be longer than a member takes to handle a batch, or
// entries of a slow member are handled twice. Delivery is at least once
// here too: a member that dies between handling entries and acknowledging
// them has them handled again, by itself after a restart or by another
// member; and a retried XADD's copy of an event may go to another member,
// since members see a share of each source's events, out of order after
// a claim, and check no sequence numbers. Entries trimmed while pending
// are lost, counted (Stats.StreamTrimmed) and reported (ErrTrimmed).
// Redis keeps the consumers of a group until XGROUP DELCONSUMER; stable
// names keep their number down. On a Group route with Direction Both, an
// event is handled by the publisher's local subscribers and by one member
// of the group (dropped as an echo when that is the publisher itself).
//
// # When handling fails
//
// A durable import route publishes each entry with a context of
// bus.WithFailureFunc, and so learns whether a synchronous subscriber
// failed: its HandlerFunc returned an error, or a handler panicked. Such
// an entry is not recorded as handled. The reader publishes it again per
// Route.Retry (nil: no second attempt), waiting between attempts on its
// own goroutine; then:
//
//   - On a Group route, it leaves the entry pending, unacknowledged, so
//     that a member (another, or itself) claims it once it has been idle
//     for ClaimIdle and tries again. Once Redis has delivered it
//     Route.MaxDeliveries times (default 5; the delivery count of XPENDING,
//     which the first read, a restarted member's re-read and each claim
//     raise), the member whose attempts failed last moves it to the
//     dead-letter stream and acknowledges it, in one MULTI/EXEC (on a
//     cluster, where the two keys may be on different nodes, one after the
//     other). The wait between attempts counts in the time a member
//     takes to handle a batch: keep ClaimIdle longer than the retries of
//     an entry, or another member claims it while it is retried.
//   - On a Stream route, it writes the entry to the dead-letter stream
//     after the last attempt, and the checkpoint moves past it only then:
//     until the dead letter is written (retried with backoff, reported as
//     ErrDeadLetter), the route waits.
//
// Nothing is acknowledged, nor passed by a checkpoint, without being
// handled or dead-lettered. The dead-letter stream is the key
// DeadKey(Prefix, Route.Stream or Pattern), Prefix + "dead:" + name; each
// entry there has the fields of the entry that failed (topic, data,
// source) and FieldDeadError (the last failure), FieldDeadDeliveries,
// FieldDeadAttempts, FieldDeadConsumer, FieldDeadGroup, FieldDeadStream
// and FieldDeadID (where it came from) and FieldDeadTime, trimmed like
// the route's stream (MaxLen). Each dead letter is reported
// (ErrDeadLettered) and counted (Stats.StreamDeadLettered). buscat dead
// lists and tails a dead-letter stream, and replays its entries: adds
// them again to the stream they came from, where a Group route handles
// them as new entries (a Stream route's importers drop an enveloped
// replay as a duplicate of an event they saw in their current run).
//
// Close cuts a wait between attempts short: the entry is left pending,
// or behind the checkpoint, for a later delivery, and counted in
// Stats.StreamAbandoned.
//
// Success is judged by the synchronous subscribers only. An asynchronous
// subscriber has only queued the entry's event when PublishEvent returns,
// and the reader does not wait for it: its failures, reported later on
// its own goroutine, do not stop the acknowledgement, and it retries and
// dead-letters by itself with its own bus.RetryPolicy (to the dead-letter
// topic, which a route may carry durably). Waiting would need the bus to
// follow every queued copy of the event to its end, drops and Close's
// discards included, on its hottest paths, and would hold the reader
// behind the slowest subscriber; a handler whose failure must keep the
// entry is one to subscribe synchronously. (A failure an asynchronous
// subscriber reports before PublishEvent has returned counts: such an
// entry is retried rather than acknowledged.)
//
// Subscribe the local handlers of durable import routes before New: a
// route starts publishing what the stream holds for it at once, and an
// event published on the bus before anyone subscribed is gone, yet
// recorded as handled.
//
// Durable routes share the echo rules (a bridge drops its own entries, by
// the envelope's source or the source field, and never exports an
// imported event), codecs, signatures, size limits and counters of pub/sub
// routes: their events count in Exported, Received, Imported and the drop
// counters, and in StreamExported, StreamImported, StreamAcked,
// StreamClaimed and StreamResumes. A failed read, checkpoint or
// acknowledgement is reported (ErrStreamRead, ErrCheckpoint, ErrAck) and
// retried with backoff from the last position: a route survives Redis
// restarting with its data (appendonly) without losing or skipping
// anything. Ready also waits until every durable import route knows where
// it starts. Close stops each route after the entry it is handling, saves
// its position or acknowledges what it handled with Close's context, and
// sends what the outboxes hold; it may wait StreamBlock for a read to
// return. Durable routes use single-key commands only, and work on a
// Redis Cluster too.
//
// An ACL user for durable routes needs the keys of the streams, of the
// checkpoints and of the dead-letter streams, and the commands: XADD and
// PING to export; XREAD, XREVRANGE, HGET and HSET for Stream routes with
// the default Checkpointer; XGROUP CREATE, XREADGROUP, XACK, XAUTOCLAIM
// and, for dead letters, XPENDING, MULTI and EXEC for Group routes; XADD
// for the dead letters of both. For the prefix "app:":
//
//	ACL SETUSER app-bridge on >password resetkeys ~app:stream:* ~app:checkpoint:* ~app:dead:*
//	    -@all +xadd +ping +xread +xrevrange +hget +hset
//	    +xgroup|create +xreadgroup +xack +xautoclaim +xpending +multi +exec
//
// A refused XGROUP CREATE or checkpoint load makes Ready return an error
// wrapping ErrSubscribe (NOPERM); a refused XADD is counted in
// Stats.ExportRejected and reported wrapping ErrPublish.
type Delivery uint8

const (
	// PubSub carries events with PUBLISH and SUBSCRIBE: fast, and
	// forgotten by Redis at once; an instance that is not subscribed
	// when an event is published never gets it.
	PubSub Delivery = iota
	// Stream keeps events in a Redis stream (XADD). Every instance that
	// imports the route reads every event (XREAD), from the last entry
	// it handled, kept by Options.Checkpointer: a restart or a lost
	// connection loses nothing.
	Stream
	// Group keeps events in a Redis stream read by a consumer group
	// (XREADGROUP): each event is handled by one member of
	// Route.Group, acknowledged after it is handled (XACK), and taken
	// over by another member when its consumer dies (XAUTOCLAIM).
	Group
)

// String returns "pubsub", "stream" or "group".
func (d Delivery) String() string {
	switch d {
	case PubSub:
		return "pubsub"
	case Stream:
		return "stream"
	case Group:
		return "group"
	}
	return fmt.Sprintf("Delivery(%d)", uint8(d))
}

// Errors of durable routes, reported to Options.OnError wrapped with
// details. The route retries by itself after each.
var (
	// ErrStreamRead is reported when reading a stream (XREAD,
	// XREADGROUP, XAUTOCLAIM, XGROUP CREATE) fails. The route retries
	// with backoff from its last position: nothing is skipped.
	ErrStreamRead = errors.New("bridge: stream read failed")

	// ErrCheckpoint is reported when Options.Checkpointer fails to load
	// or save a position. A failed save is retried with the next batch;
	// if the process dies first, it re-reads (and delivers again) the
	// entries after the last saved position.
	ErrCheckpoint = errors.New("bridge: stream checkpoint")

	// ErrAck is reported when acknowledging entries of a Group route
	// (XACK) fails. The acknowledgement is retried; if the process dies
	// first, the entries are delivered again, to this consumer after a
	// restart or to another member after Options.ClaimIdle.
	ErrAck = errors.New("bridge: stream acknowledgement failed")

	// ErrTrimmed is reported, with a count, for entries of a Group route
	// that were trimmed from the stream (Route.MaxLen) or deleted while
	// delivered and not yet acknowledged: they are lost.
	ErrTrimmed = errors.New("bridge: pending stream entries trimmed")

	// ErrDeadLettered is reported, with the entry, the stream and the
	// last failure, for each entry a durable route moved to its
	// dead-letter stream (see DeadKey).
	ErrDeadLettered = errors.New("bridge: stream entry dead-lettered")

	// ErrDeadLetter is reported when an entry could not be written to
	// its dead-letter stream (or, on a Group route, acknowledged after
	// it). A Group route leaves the entry pending, to be dead-lettered
	// at its next delivery; a Stream route tries again with backoff, and
	// its checkpoint stays behind the entry meanwhile.
	ErrDeadLetter = errors.New("bridge: dead letter not written")
)

// Defaults of durable routes.
const (
	defaultMaxLen = 100000
	defaultGroup  = "busline"
)

// streamRoute is a durable route with what the bridge works out from it.
type streamRoute struct {
	*route
	key    string // the Redis key of its stream
	maxLen int64  // 0: no trimming
	group  string // Group routes only
	// Import routes: their dead-letter stream, how they retry, and how
	// many deliveries a Group route's entry gets.
	deadKey       string
	retry         retryPolicy
	maxDeliveries int64
}

// streams holds the durable routes of a Bridge, their goroutines and
// counters. A Bridge without durable routes has none (Bridge.st is nil
// until the first is added). Each route has its own goroutines, which
// start when the route is added (or when New is done) and stop when it is
// removed or the bridge closes.
type streams struct {
	br       *Bridge
	cp       Checkpointer
	consumer string // the consumer name of Group routes

	exported, imported, acked, claimed, resumes, trimmed atomic.Uint64
	// What failed handling became (stream_dead.go).
	failed, retried, deadLettered, abandoned, redelivered atomic.Uint64

	mu sync.Mutex // protects the fields below and those of the readers and exporters that say so
	// The durable routes, until they are stopped and have returned: a
	// route RemoveRoute is stopping stays, so that Close waits for it.
	exports map[*route]*streamExport
	readers map[*route]*streamReader
	keys    map[string]bool // stream keys of the import routes, live or stopping
}

// addStreamRoute takes the durable route rt into the bridge: it checks
// it, and registers its reader and exporter, which startStreamRoute
// starts. It is called by compileRoute; what names rt in errors.
func (br *Bridge) addStreamRoute(what string, rt *route) error {
	st := br.st
	if st == nil {
		st = &streams{
			br:       br,
			exports:  map[*route]*streamExport{},
			readers:  map[*route]*streamReader{},
			keys:     map[string]bool{},
			cp:       br.cfg.Checkpointer,
			consumer: br.cfg.Consumer,
		}
		if st.cp == nil {
			st.cp = RedisCheckpointer(br.rdb, br.cfg.Prefix+"checkpoint:"+br.cfg.InstanceID)
		}
		if st.consumer == "" {
			st.consumer = br.cfg.InstanceID
		}
		br.st = st
	}
	name := rt.Stream
	if name == "" {
		name = rt.Pattern
	}
	sr := &streamRoute{route: rt, key: StreamKey(br.cfg.Prefix, name), maxLen: rt.MaxLen, group: rt.Group,
		deadKey: DeadKey(br.cfg.Prefix, name), maxDeliveries: int64(rt.MaxDeliveries)}
	var err error
	if sr.retry, err = newRetryPolicy(rt.Retry); err != nil {
		return fmt.Errorf("%w: %s (%q): Retry: %w", ErrInvalidOptions, what, rt.Pattern, err)
	}
	switch {
	case sr.maxDeliveries == 0:
		sr.maxDeliveries = defaultMaxDeliveries
	case sr.maxDeliveries < 0:
		return fmt.Errorf("%w: %s (%q): negative MaxDeliveries", ErrInvalidOptions, what, rt.Pattern)
	}
	switch {
	case sr.maxLen == 0:
		sr.maxLen = defaultMaxLen
	case sr.maxLen < 0:
		sr.maxLen = 0
	}
	if sr.group == "" {
		sr.group = defaultGroup
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if rt.Direction.imports() {
		if st.keys[sr.key] {
			return fmt.Errorf("%w: %s (%q): another durable import route reads stream %q", ErrInvalidOptions, what, rt.Pattern, sr.key)
		}
		if rt.Delivery == Stream && br.cfg.Checkpointer == nil && br.cfg.idGenerated {
			return fmt.Errorf("%w: %s (%q): a Stream import route keeps its position under InstanceID: set one that survives restarts, or a Checkpointer", ErrInvalidOptions, what, rt.Pattern)
		}
		st.keys[sr.key] = true
		st.readers[rt] = &streamReader{br: br, st: st, r: sr, reading: newGroup(context.Background()), handling: newHandlerContext(br.deliver.ctx)}
	}
	if rt.Direction.exports() {
		x := newStreamExport(br, sr)
		st.exports[rt] = x
		rt.out = x.out
	}
	return nil
}

// forgetStreamRoute undoes addStreamRoute for rt, a route AddRoute could
// not add, whose goroutines have not started.
func (br *Bridge) forgetStreamRoute(rt *route) {
	st := br.st
	if st == nil || !rt.durable() {
		return
	}
	st.mu.Lock()
	if sr := st.readers[rt]; sr != nil {
		sr.handling.release()
		delete(st.keys, sr.r.key)
		delete(st.readers, rt)
	}
	delete(st.exports, rt)
	st.mu.Unlock()
}

// startStreamRoute starts the goroutines of r, if it is a durable route
// added once New was done.
func (br *Bridge) startStreamRoute(r *route) {
	if st := br.st; st != nil && r.durable() {
		st.mu.Lock()
		st.startLocked(r)
		st.mu.Unlock()
	}
}

// startLocked starts the reader and the exporter of r. The caller holds
// st.mu.
func (st *streams) startLocked(r *route) {
	if x := st.exports[r]; x != nil {
		x.flushing.run(x.flushLoop)
	}
	if sr := st.readers[r]; sr != nil {
		sr.reading.run(sr.run)
	}
}

// exportOf returns the exporter of durable route r, nil if it has none.
func (st *streams) exportOf(r *route) *streamExport {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.exports[r]
}

// readerReady reports whether the reader of durable import route r found
// where it starts, and if not the refusal that keeps it from that.
func (st *streams) readerReady(r *route) (bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	sr := st.readers[r]
	if sr == nil {
		return false, nil
	}
	return sr.started, sr.err
}

// stopRoute stops durable route r, removed from the table: its reader
// saves its position (or acknowledges) with ctx and returns, its exporter
// sends what its outbox holds until ctx ends. It returns how many exports
// it dropped (counted in OutboxUnsent).
func (st *streams) stopRoute(ctx context.Context, r *route) int {
	st.mu.Lock()
	sr, x := st.readers[r], st.exports[r]
	if sr != nil {
		st.stopReaderLocked(sr, ctx)
	}
	if x != nil {
		x.stopLocked()
	}
	st.mu.Unlock()
	unsent := 0
	if x != nil {
		unsent = x.wait(ctx)
		st.br.c.outboxUnsent.Add(uint64(unsent))
	}
	if sr != nil {
		sr.reading.wait(ctx, sr.handling.cancel)
		// The reader returned: the route's handlers are on their own,
		// and Close must not cancel their context.
		sr.handling.release()
	}
	st.mu.Lock()
	if sr != nil {
		delete(st.readers, r)
		delete(st.keys, sr.r.key)
	}
	delete(st.exports, r)
	st.mu.Unlock()
	st.br.changed.notify()
	return unsent
}

// stopReaderLocked makes sr stop after the entry it is handling, saving
// its position with ctx, unless it is stopping already. The caller holds
// st.mu.
func (st *streams) stopReaderLocked(sr *streamReader, ctx context.Context) {
	if sr.stopping {
		return
	}
	sr.stopping = true
	sr.closeCtx = ctx // read by the reader once reading is cancelled
	sr.reading.cancel()
}

// stopLocked makes the exporter send what its outbox holds and return,
// unless it is stopping already. The caller holds st.mu.
func (x *streamExport) stopLocked() {
	if !x.stopping {
		x.stopping = true
		close(x.drain)
	}
}

// wait waits until the exporter's flusher returned, having sent its
// outbox, or gives up on it when ctx ends, and returns how many exports
// it did not send, counting them once whoever calls it.
func (x *streamExport) wait(ctx context.Context) int {
	x.flushing.wait(ctx, nil)
	return int(x.left.Swap(0)) + x.out.Close()
}

// StreamKey returns the Redis key of the stream named name (Route.Stream,
// or the route's Pattern) under prefix: prefix + "stream:" + name.
func StreamKey(prefix, name string) string { return prefix + "stream:" + name }

// start starts the goroutines of the durable routes added so far. It is
// called by New once the bridge is otherwise running; later routes start
// as they are added.
func (st *streams) start() {
	st.mu.Lock()
	defer st.mu.Unlock()
	for r := range st.exports {
		st.startLocked(r)
	}
	for r, sr := range st.readers {
		if st.exports[r] == nil {
			sr.reading.run(sr.run)
		}
	}
}

// ready reports whether every durable import route knows where it starts
// reading, so that events exported after that reach it.
func (st *streams) ready() (bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	ok := true
	var err error
	for _, sr := range st.readers {
		if sr.stopping {
			continue
		}
		ok = ok && sr.started
		if err == nil {
			err = sr.err
		}
	}
	return ok, err
}

// stop makes the readers stop after the entry each is handling and makes
// the exporters send what they hold and return. ctx is Close's.
func (st *streams) stop(ctx context.Context) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, sr := range st.readers {
		st.stopReaderLocked(sr, ctx)
	}
	for _, x := range st.exports {
		x.stopLocked()
	}
}

// wait waits until the durable routes' goroutines have returned:
// readers after saving their position or acknowledging what they handled,
// flushers after sending what their outboxes held. If ctx ends first, it
// makes them give up. It returns the number of exports not sent.
func (st *streams) wait(ctx context.Context) int {
	st.mu.Lock()
	exports := slices.Collect(maps.Values(st.exports))
	readers := slices.Collect(maps.Values(st.readers))
	st.mu.Unlock()
	n := 0
	for _, x := range exports {
		n += x.wait(ctx)
	}
	// A reader still publishing an entry locally when ctx ends is made
	// to give up by cancelling the handlers' context.
	for _, sr := range readers {
		sr.reading.wait(ctx, sr.handling.cancel)
	}
	return n
}

// stats adds the durable routes' counters to s.
func (st *streams) stats(s *Stats) {
	s.StreamExported = st.exported.Load()
	s.StreamImported = st.imported.Load()
	s.StreamAcked = st.acked.Load()
	s.StreamClaimed = st.claimed.Load()
	s.StreamResumes = st.resumes.Load()
	s.StreamTrimmed = st.trimmed.Load()
	s.StreamFailed, s.StreamRetried = st.failed.Load(), st.retried.Load()
	s.StreamDeadLettered, s.StreamAbandoned = st.deadLettered.Load(), st.abandoned.Load()
	s.StreamRedelivered = st.redelivered.Load()
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, x := range st.exports {
		n, bytes := x.out.Depth()
		sending, sendingBytes := x.inflight.Load()
		s.OutboxDepth += n + sending
		s.OutboxBytes += bytes + sendingBytes
	}
}

// durable reports whether r is a durable route.
func (r *route) durable() bool { return r.Delivery != PubSub }

// minWait keeps computed blocking times positive: BLOCK 0 waits forever.
const minWait = time.Millisecond
