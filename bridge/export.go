package bridge

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/plural"
	"github.com/busline/bus/bridge/internal/queue"
	"github.com/busline/bus/bridge/internal/wire"
)

// exportHandler returns the local subscription handler of export route r,
// pub/sub or durable, which exports the events r must export. It runs on
// the publisher's goroutine and never waits for Redis: export encodes the
// payload and queues it in the route's outbox.
func (br *Bridge) exportHandler(r *route) bus.Handler {
	return func(ctx context.Context, e bus.Event) {
		// An event that came from Redis is never sent back: instances
		// mirroring the same topics would otherwise ping-pong.
		if e.Remote() {
			return
		}
		// The live export routes before r: a topic they match is theirs
		// to export, so that overlapping routes export an event once. A
		// route being removed is skipped: its own handler, which ran
		// before this one, may have seen it removed and left the event
		// to r (the table without it may not be stored yet).
		t := br.table.Load()
		for _, o := range t.exports {
			if o.id >= r.id {
				break
			}
			if !o.removed.Load() && o.match(e.Topic) {
				return
			}
		}
		// Counted in, then r.removed checked: RemoveRoute sets removed,
		// then waits for calls to drop to 0 (quiesce), so that a call
		// either sees removed or is waited for.
		r.calls.Add(1)
		defer r.calls.Add(-1)
		if r.removed.Load() {
			// RemoveRoute took r out: the topic is a later route's now,
			// or nobody's, and then the event is not sent.
			if !t.exportedBy(e.Topic, r) {
				br.c.outboxUnsent.Add(1)
			}
			return
		}
		if br.cfg.Hooks.Export != nil {
			e = br.hookExport(ctx, r, e)
		}
		br.export(r, e)
	}
}

// quiesce waits until no handler call of export route r, removed, is
// under way, or ctx ends, and reports whether none is. It polls: a
// route is removed rarely, and a call lasts as long as an encoding.
func (r *route) quiesce(ctx context.Context) bool {
	for d := 50 * time.Microsecond; r.calls.Load() != 0; d = min(2*d, 10*time.Millisecond) {
		if !sleep(ctx, d) {
			return false
		}
	}
	return true
}

// exportedBy reports whether an export route of t other than r, and not
// being removed, matches topic.
func (t *routeTable) exportedBy(topic string, r *route) bool {
	for _, o := range t.exports {
		if o != r && !o.removed.Load() && o.match(topic) {
			return true
		}
	}
	return false
}

// encodeExport turns e into the item an export route queues, counting and
// reporting what cannot be exported; ok is false then. Pub/sub and durable
// exports share it. It runs on the publisher's goroutine.
func (br *Bridge) encodeExport(r *route, e bus.Event) (it queue.Export, ok bool) {
	if br.closing.Load() {
		br.c.outboxUnsent.Add(1)
		return it, false
	}
	var (
		data        []byte
		contentType string
		lent        bool
		err         error
	)
	if r.lender != nil {
		data, contentType, lent, err = r.lender.encodeLent(e.Payload)
	} else {
		data, contentType, err = r.codec.Encode(e.Payload)
	}
	if err != nil {
		br.c.encodeErrors.Add(1)
		r.c.encodeErrors.Add(1)
		br.rep.drop(ErrEncode, 1, chain(ErrEncode, fmt.Sprintf("topic %q", e.Topic), err))
		return it, false
	}
	it = queue.Export{
		Channel:     r.channel(br.cfg.Prefix, e.Topic),
		Payload:     data,
		Lent:        lent,
		ContentType: contentType,
		Raw:         r.Raw,
		Route:       r,
		NoSeq:       r.reply,
	}
	if e.Meta != nil {
		it.Headers = e.Meta.Headers
		if e.Meta.ReplyTo != "" && br.cfg.Replies {
			it.Headers = br.requestHeaders(e.Meta)
		}
		if e.Meta.ContentType != "" && contentType == ContentTypeBytes {
			// The publisher knows better what its bytes are.
			it.ContentType = e.Meta.ContentType
		}
	}
	if r.Format == CloudEvents {
		it.CloudEvent, it.Topic = true, e.Topic
		if len(it.Headers) > 0 {
			if err := br.checkCloudEvent(e.Topic, &it); err != nil {
				br.c.encodeErrors.Add(1)
				r.c.encodeErrors.Add(1)
				br.rep.drop(ErrEncode, 1, err)
				return it, false
			}
		}
	} else if !r.Raw && (len(it.Headers) > 0 || len(it.ContentType) > wire.MaxTypeLen || !wire.Printable(it.ContentType)) {
		env := wire.Envelope{Source: br.id, ContentType: it.ContentType, Headers: it.Headers}
		if err := env.Validate(); err != nil {
			br.c.encodeErrors.Add(1)
			r.c.encodeErrors.Add(1)
			br.rep.drop(ErrEncode, 1, chain(ErrEncode, fmt.Sprintf("topic %q", e.Topic), err))
			return it, false
		}
	}
	if n := br.messageLen(&it); n > br.cfg.MaxMessageBytes {
		br.c.encodeErrors.Add(1)
		r.c.encodeErrors.Add(1)
		br.rep.drop(ErrEncode, 1, &wrapped{
			msg:  fmt.Sprintf("bridge: encode: topic %q: message too large: %s, limit %d (Options.MaxMessageBytes)", e.Topic, plural.Of(uint64(n), "byte"), br.cfg.MaxMessageBytes),
			errs: []error{ErrEncode, ErrTooLarge},
		})
		return it, false
	}
	return it, true
}

// messageLen returns the length of the message it makes alone, as a
// receiver checks it against MaxMessageBytes: the payload of a raw
// export, the whole envelope (signature included) of an enveloped one,
// its sequence number counted at its longest since the outbox has not
// numbered it yet. A batch is never longer than MaxMessageBytes either
// (see flusher.build), so what passes here reaches every receiver with
// the same options.
func (br *Bridge) messageLen(it *queue.Export) int {
	if it.Raw {
		return len(it.Payload)
	}
	env := br.envelopeOf(it)
	env.Seq = math.MaxUint64
	return wire.EnvelopeLen(&env, len(br.key) > 0)
}

// newEpoch draws the epoch of a Bridge: random, never 0 (which means none).
func newEpoch() uint64 {
	for {
		var b [8]byte
		_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
		if e := binary.BigEndian.Uint64(b[:]); e != 0 {
			return e
		}
	}
}

// newOutbox returns an outbox with the options' bounds.
func (br *Bridge) newOutbox() *queue.Outbox {
	cfg := &br.cfg
	out := queue.NewOutbox(cfg.OutboxMaxEvents, cfg.OutboxMaxBytes, cfg.OutboxPolicy == OutboxDropNewest)
	out.SetSeqBudget(seqBudget)
	return out
}

// export encodes e and queues it in the outbox of r, marked for echo
// suppression when it may come back without a recognisable envelope (a
// durable route's raw entries say their source instead).
func (br *Bridge) export(r *route, e bus.Event) {
	it, ok := br.encodeExport(r, e)
	if !ok {
		return
	}
	if br.echo.Load() != nil && !r.durable() {
		if ir := br.table.Load().importRoute(e.Topic); ir != nil && unrecognised(r, ir) {
			it.Echo = true
		}
	}
	if br.push(r.out, it) {
		r.c.queued.Add(1)
	}
}

// push queues it in out, counting what the outbox refused (closed) or
// dropped to make room (full), and reports whether out took it.
func (br *Bridge) push(out *queue.Outbox, it queue.Export) bool {
	dropped, ok := out.Push(it)
	if !ok {
		br.c.outboxUnsent.Add(1)
		return false
	}
	if dropped > 0 {
		br.c.outboxOverflow.Add(uint64(dropped))
		br.rep.drop(ErrOutboxFull, uint64(dropped), nil)
	}
	return true
}

// channel returns the channel of topic: the route's one channel for an
// exact route (with its partition tag on a cluster), otherwise
// prefix+topic, from the route's cache when the topic was exported lately.
func (r *route) channel(prefix, topic string) string {
	if !r.isPattern {
		return r.redisName
	}
	return r.channels.get(prefix, topic)
}

// channelCacheSize is the number of slots of a channelCache, and
// channelCacheWays how many of them a topic may take (the slots of its
// set).
const (
	channelCacheSize = 4096
	channelCacheWays = 4
)

// channelCache remembers the channels of the topics a pattern route
// exported lately, so that a steady stream to a thousand topics builds no
// string per export: a 4-way set-associative table of channelCacheSize
// slots, where a hash of the topic picks a set of channelCacheWays slots,
// and a topic not in its set takes an empty slot of it, or else the one
// the hash picks. A direct-mapped table of 1024 slots lost a third of
// 1024 busy topics to collisions (3 allocations per export, where 2 are
// the bus's and the codec's); with 1024 sets of 4, about 4 sets in 1000
// see a fifth topic.
//
// It is safe for concurrent use (publishers export on their own
// goroutines); a lookup costs a hash and up to channelCacheWays atomic
// loads, a miss two allocations. Two publishers missing at once may both
// store: one store is lost, which costs a later miss, never a wrong
// channel (a slot holds a topic with its own channel).
type channelCache struct {
	seed  maphash.Seed
	slots [channelCacheSize]atomic.Pointer[topicChannel]
}

// topicChannel is a slot's entry: a topic, its channel, and the topic's
// hash, compared first so that the other entries of a set cost no string
// comparison.
type topicChannel struct {
	hash           uint64
	topic, channel string
}

func (c *channelCache) get(prefix, topic string) string {
	h := maphash.String(c.seed, topic)
	set := c.slots[h%(channelCacheSize/channelCacheWays)*channelCacheWays:][:channelCacheWays]
	var empty *atomic.Pointer[topicChannel]
	for i := range set {
		tc := set[i].Load()
		if tc == nil {
			if empty == nil {
				empty = &set[i]
			}
			continue
		}
		if tc.hash == h && tc.topic == topic {
			return tc.channel
		}
	}
	if empty == nil {
		empty = &set[h>>32%channelCacheWays]
	}
	ch := prefix + topic
	empty.Store(&topicChannel{h, topic, ch})
	return ch
}

// housekeeping is how often the flusher expires old exports and reports
// drops held back, when nothing else wakes it.
const housekeeping = 500 * time.Millisecond

// runFlusher is the loop of a flusher goroutine, shared by the pub/sub
// outbox and those of durable routes. It waits for exports, or for the
// housekeeping tick, which expires stale ones and reports drops held back;
// takes them from out into *batch, take at a time and in order; and
// hands each batch to send. It returns once drain is closed and out is
// empty, when stop ends, or when send reports that Close gave up.
//
// After each batch, and each expiry, it notifies settled, for RemoveRoute
// waiting for a route's exports (awaitSettled).
func (br *Bridge) runFlusher(out *queue.Outbox, batch *[]queue.Export, take int, drain <-chan struct{}, stop context.Context, settled *signal, send func() bool) {
	tick := time.NewTicker(housekeeping)
	defer tick.Stop()
	draining := false
	for {
		select {
		case <-out.Wake():
		case <-tick.C:
			br.expireOutbox(out)
			br.rep.flush()
			settled.notify()
			continue
		case <-drain:
			draining = true
		case <-stop.Done():
			return
		}
		for {
			var expired int
			*batch, expired = out.Take(*batch, take, br.cutoff())
			br.expired(expired)
			if len(*batch) == 0 {
				break
			}
			if !send() {
				return
			}
			out.Settle()
			settled.notify()
		}
		if draining {
			return
		}
	}
}

// awaitSettled waits until the exports pushed to out so far, up to
// position mark, are settled (sent, refused or dropped), and returns true,
// or false if ctx ended first. settled is the flusher's signal, exited
// closed when the flusher returned (what it left is Close's to count).
func awaitSettled(ctx context.Context, out *queue.Outbox, settled *signal, exited <-chan struct{}) (mark uint64, ok bool) {
	mark = out.Mark()
	for {
		changed := settled.wait()
		if out.Settled(mark) {
			return mark, true
		}
		select {
		case <-changed:
		case <-exited:
			return mark, true
		case <-ctx.Done():
			return mark, false
		}
	}
}

// cutoff returns the export time before which exports are stale, in unix
// nanoseconds, or 0 when they never are.
func (br *Bridge) cutoff() int64 {
	if br.cfg.OutboxMaxAge < 0 {
		return 0
	}
	return time.Now().Add(-br.cfg.OutboxMaxAge).UnixNano()
}

// expireOutbox drops the exports of out older than OutboxMaxAge.
func (br *Bridge) expireOutbox(out *queue.Outbox) {
	if c := br.cutoff(); c != 0 {
		br.expired(out.Expire(c))
	}
}

func (br *Bridge) expired(n int) {
	if n > 0 {
		br.c.outboxExpired.Add(uint64(n))
		br.rep.drop(ErrExpired, uint64(n), nil)
	}
}

// A caller makes an exporter's calls to Redis on a goroutine of its own,
// so that the exporter can stop waiting for one when its context ends.
// go-redis does not interrupt a read when the context of the call is
// cancelled (only a deadline reaches the socket, and only with
// ContextTimeoutEnabled): a call to a frozen or silently unreachable
// server would hold the exporter, and Close, until the client's
// ReadTimeout and its retries, about 10 s with the defaults. With a
// caller, Close returns when its context ends and counts the call's
// exports as not sent, whatever Redis later makes of them.
//
// The call given up on goes on until go-redis returns (one read timeout:
// its retries stop, since their context is cancelled); then the caller's
// goroutine returns, if close was called. Once do gave up, the exporter
// must not touch what the call uses. One exporter goroutine uses a
// caller: do is not safe for concurrent use.
type caller struct {
	calls chan func()
	done  chan struct{}
	owed  bool // a call given up on has not signalled done yet
}

// newCaller starts a caller's goroutine; close stops it.
func newCaller() *caller {
	c := &caller{calls: make(chan func()), done: make(chan struct{}, 1)}
	go func() {
		for f := range c.calls {
			f()
			c.done <- struct{}{}
		}
	}()
	return c
}

// do runs f on the caller's goroutine and waits until it returns, or until
// ctx ends: then do returns false at once, leaving f to go on alone. It
// does not start f if ctx has ended already. A nil caller runs f on the
// calling goroutine (for tests of an exporter's parts).
func (c *caller) do(ctx context.Context, f func()) bool {
	if ctx.Err() != nil {
		return false
	}
	if c == nil {
		f()
		return true
	}
	if c.owed {
		// The call given up on still runs: wait for it, so that its
		// signal is not taken for that of f.
		select {
		case <-c.done:
			c.owed = false
		case <-ctx.Done():
			return false
		}
	}
	c.calls <- f // never waits: the last call has returned
	select {
	case <-c.done:
		return true
	case <-ctx.Done():
		select {
		case <-c.done: // returned meanwhile: its result counts
			return true
		default:
			c.owed = true
			return false
		}
	}
}

// close lets the caller's goroutine return once its call, if any, has.
func (c *caller) close() { close(c.calls) }

// A gate lets an exporter call Redis on its own goroutine and still be
// given up on by Close, without a caller's goroutine: handing each call
// to a caller and waiting for it cost two goroutine switches per flush
// (an event sent alone took 9% more CPU and its reply 8% longer, see
// BenchmarkExportLatency). The exporter calls
// do; Close, once its context has ended, calls close (see
// publisher.wait): if a call is under way, Close does not wait for it
// (go-redis may hold it for a read timeout, see caller) but counts as
// unsent the exports the exporter said it would leave (owe), and the
// call's result, whenever it comes, does not count: do returns false and
// the exporter returns without counting anything.
//
// One exporter goroutine calls do and owe; close may be called from any
// goroutine. The zero gate is open and idle. A mutex rather than atomics:
// do takes it twice per call, uncontended, next to a round trip to Redis.
type gate struct {
	mu     sync.Mutex // protects the fields below
	busy   bool       // a call is under way
	closed bool       // given up on: no call starts, the one under way does not count
	owed   int        // exports left unsent if the call under way is given up on
}

var (
	_ redisCalls = (*gate)(nil)
	_ redisCalls = (*caller)(nil)
)

// redisCalls is how an exporter makes its calls to Redis so that Close can
// give up on one: a caller or a gate.
type redisCalls interface {
	// do runs f, a call to Redis, and reports whether it completed and
	// counts: false if ctx ended or the exporter was given up on first.
	do(ctx context.Context, f func()) bool
}

// owe records how many exports the exporter leaves unsent if its next
// calls are given up on.
func (g *gate) owe(n int) {
	g.mu.Lock()
	g.owed = n
	g.mu.Unlock()
}

// do runs f on the calling goroutine, unless ctx has ended or the gate is
// closed, and reports whether f ran and the gate was not closed meanwhile.
func (g *gate) do(ctx context.Context, f func()) bool {
	if ctx.Err() != nil {
		return false
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return false
	}
	g.busy = true
	g.mu.Unlock()
	f()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.busy = false
	return !g.closed
}

// close closes the gate. If a call is under way it returns what the
// exporter owes and busy true: the call's result will not count, and
// whoever closed the gate counts owed as unsent. Otherwise the exporter
// starts no call any more, and counts what it leaves itself.
func (g *gate) close() (owed int, busy bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	return g.owed, g.busy
}

// span locates a message in the flusher's arena.
type span struct{ start, end int }

// outage holds an exporter (a flusher of the pub/sub outbox, or of a
// durable route's) through an outage of Redis, for one batch. Both run
// the same loop: report the outage once, back off, expire the outbox
// while waiting, ping until Redis answers; then the exporter drops the
// exports of its batch that went stale (dropStale).
type outage struct {
	br   *Bridge
	out  *queue.Outbox // the exporter's outbox
	call redisCalls    // the exporter's, for the pings
	key  string        // on a cluster, a channel or key of the batch: its slot's master is pinged
	back *backoff      // the exporter's; reset by the exporter once it sends again
	down bool          // reported for this batch
	conn *conn         // the exporter's state, for Connections
}

// wait reports the outage, err being why the batch could not be sent,
// unless reported already for this batch, and waits until Redis answers
// a PING: on a cluster, the master of o.key's slot. It returns false if
// ctx ended first.
func (o *outage) wait(ctx context.Context, err error) bool {
	br := o.br
	if !o.down {
		o.down = true
		br.c.exportOutages.Add(1)
		br.rep.report(fmt.Errorf("%w: %w", ErrRedisDown, err))
	}
	o.conn.down(err)
	for {
		if cc := br.shards.cc; cc != nil {
			// A node that does not answer may be gone for good, its
			// replica promoted: go-redis would keep sending its slots'
			// commands there from its cached layout until its periodic
			// reload (a minute). Reload it now (in the background, while
			// the exporter backs off).
			cc.ReloadState(ctx)
		}
		if !sleep(ctx, o.back.next()) {
			return false
		}
		br.expireOutbox(o.out)
		br.rep.flush()
		var err error
		if !o.call.do(ctx, func() { err = o.ping(ctx) }) {
			return false
		}
		if err == nil {
			o.conn.up()
			return true
		}
		o.conn.down(err)
	}
}

// ping sends a PING to Redis; on a cluster, to the master of o.key's slot
// in go-redis's view of the layout (any node would answer a plain PING,
// the dead master's slots not yet moved).
func (o *outage) ping(ctx context.Context) error {
	br := o.br
	cc := br.shards.cc
	if cc == nil || o.key == "" {
		return br.rdb.Ping(ctx).Err()
	}
	node, err := cc.MasterForKey(ctx, o.key)
	if err != nil {
		return err
	}
	return node.Ping(ctx).Err()
}

// dropStale returns pending, indexes in batch, without the exports that
// went stale while Redis was away, which it counts and reports: they are
// dropped in the batch as in the outbox.
func (br *Bridge) dropStale(batch []queue.Export, pending []int) []int {
	c := br.cutoff()
	if c == 0 {
		return pending
	}
	keep, expired := pending[:0], 0
	for _, i := range pending {
		if batch[i].At < c {
			expired++
		} else {
			keep = append(keep, i)
		}
	}
	br.expired(expired)
	return keep
}

// envelopeOf returns the envelope of enveloped export it.
func (br *Bridge) envelopeOf(it *queue.Export) wire.Envelope {
	return wire.Envelope{
		Source:      br.id,
		Epoch:       br.epoch,
		Seq:         it.Seq,
		Time:        it.At,
		ContentType: it.ContentType,
		Headers:     it.Headers,
		Payload:     it.Payload,
	}
}

// layEnvelopes appends to arena the envelope of every item of batch that
// is not raw, and to spans where each lies in arena (a zero span for a raw
// item). Offsets rather than slices, since arena may move while it grows.
// Durable routes use it: their entries are never coalesced.
func (br *Bridge) layEnvelopes(arena []byte, spans []span, batch []queue.Export) ([]byte, []span) {
	for i := range batch {
		spans = append(spans, span{})
		it := &batch[i]
		if it.Raw {
			continue
		}
		start := len(arena)
		if it.CloudEvent {
			arena = br.appendCloudEvent(arena, it)
		} else {
			env := br.envelopeOf(it)
			arena = wire.AppendEnvelope(arena, it.Channel, &env, br.key)
		}
		spans[i] = span{start, len(arena)}
	}
	return arena, spans
}
