package bridge

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"sync/atomic"
	"time"

	"github.com/busline/bus/bridge/internal/queue"

	"github.com/busline/bus/bridge/internal/wire"

	bus "github.com/busline/bus"
	"github.com/redis/go-redis/v9"
)

// exportHandler returns the local subscription handler of export route r,
// pub/sub or durable, which exports the events r must export. It runs on
// the publisher's goroutine and never waits for Redis: export encodes the
// payload and queues it in the route's outbox.
func (br *Bridge) exportHandler(r *route) bus.Handler {
	// The export routes before r: a topic they match is theirs to export,
	// so that overlapping routes export an event once.
	var earlier []*route
	for _, e := range br.exports {
		if e == r {
			break
		}
		earlier = append(earlier, e)
	}
	return func(_ context.Context, e bus.Event) {
		// An event that came from Redis is never sent back: instances
		// mirroring the same topics would otherwise ping-pong.
		if e.Remote() {
			return
		}
		for _, o := range earlier {
			if o.match(e.Topic) {
				return
			}
		}
		br.export(r, e)
	}
}

// encodeExport turns e into the item an export route queues, counting and
// reporting what cannot be exported; ok is false then. Pub/sub and durable
// exports share it. It runs on the publisher's goroutine.
func (br *Bridge) encodeExport(r *route, e bus.Event) (it queue.Export, ok bool) {
	if br.closing.Load() {
		br.c.outboxUnsent.Add(1)
		return it, false
	}
	data, contentType, err := r.codec.Encode(e.Payload)
	if err != nil {
		br.c.encodeErrors.Add(1)
		br.rep.drop(ErrEncode, 1, chain(ErrEncode, fmt.Sprintf("topic %q", e.Topic), err))
		return it, false
	}
	if len(data) > br.cfg.MaxMessageBytes {
		br.c.encodeErrors.Add(1)
		br.rep.drop(ErrEncode, 1, fmt.Errorf("%w: topic %q: %d-byte payload over MaxMessageBytes", ErrEncode, e.Topic, len(data)))
		return it, false
	}
	it = queue.Export{
		Channel:     r.channel(br.cfg.Prefix, e.Topic),
		Payload:     data,
		ContentType: contentType,
		At:          time.Now().UnixNano(),
		Raw:         r.Raw,
	}
	if e.Meta != nil {
		it.Headers = e.Meta.Headers
		if e.Meta.ContentType != "" && contentType == ContentTypeBytes {
			// The publisher knows better what its bytes are.
			it.ContentType = e.Meta.ContentType
		}
	}
	if !r.Raw && (len(it.Headers) > 0 || len(it.ContentType) > wire.MaxTypeLen) {
		env := wire.Envelope{Source: br.id, ContentType: it.ContentType, Headers: it.Headers}
		if err := env.Validate(); err != nil {
			br.c.encodeErrors.Add(1)
			br.rep.drop(ErrEncode, 1, chain(ErrEncode, fmt.Sprintf("topic %q", e.Topic), err))
			return it, false
		}
	}
	return it, true
}

// export encodes e and queues it in the outbox of r, marked for echo
// suppression when it may come back without a recognisable envelope (a
// durable route's raw entries say their source instead).
func (br *Bridge) export(r *route, e bus.Event) {
	it, ok := br.encodeExport(r, e)
	if !ok {
		return
	}
	if br.echo != nil && !r.durable() {
		if ir := br.importRoute(e.Topic); ir != nil && (r.Raw || ir.Raw) {
			it.Echo = true
		}
	}
	br.push(r.out, it)
}

// push queues it in out, counting what the outbox refused (closed) or
// dropped to make room (full).
func (br *Bridge) push(out *queue.Outbox, it queue.Export) {
	dropped, ok := out.Push(it)
	if !ok {
		br.c.outboxUnsent.Add(1)
		return
	}
	if dropped > 0 {
		br.c.outboxOverflow.Add(uint64(dropped))
		br.rep.drop(ErrOutboxFull, uint64(dropped), nil)
	}
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

// channelCacheSize is the number of slots of a channelCache.
const channelCacheSize = 1024

// channelCache remembers the channels of the topics a pattern route
// exported lately, so that a steady stream to a few hundred topics builds
// no string per export: a direct-mapped table of channelCacheSize slots
// indexed by a hash of the topic, where a topic replaces the one in its
// slot. It is safe for concurrent use (publishers export on their own
// goroutines); a lookup costs a hash and an atomic load, a miss two
// allocations.
type channelCache struct {
	seed  maphash.Seed
	slots [channelCacheSize]atomic.Pointer[topicChannel]
}

type topicChannel struct{ topic, channel string }

func (c *channelCache) get(prefix, topic string) string {
	slot := &c.slots[maphash.String(c.seed, topic)&(channelCacheSize-1)]
	if tc := slot.Load(); tc != nil && tc.topic == topic {
		return tc.channel
	}
	ch := prefix + topic
	slot.Store(&topicChannel{topic, ch})
	return ch
}

// housekeeping is how often the flusher expires old exports and reports
// drops held back, when nothing else wakes it.
const housekeeping = 500 * time.Millisecond

// coalesceWindow is how many times BatchSize exports the pub/sub flusher
// takes from the outbox at once when exports coalesce: grouped by channel,
// they make at most as many messages (for as many channels), sent
// BatchSize messages per round trip, and fewer the fewer the channels.
// The wider the window, the more topics busy at once still coalesce (with
// 1024 topics in turn, 8 gave about 700k events/s here, 32 about 950k);
// the price is the flusher's memory during a burst (see shrink).
const coalesceWindow = 32

// publisher is the transport of the pub/sub exports (those of sharded
// routes included): one outbox, which the publishers' goroutines fill,
// and one flusher goroutine that sends it with PUBLISH or SPUBLISH. Every
// Bridge has one.
type publisher struct {
	br       *Bridge
	out      *queue.Outbox
	inflight queue.Inflight // the batch the flusher is sending, for Stats
	g        *group         // the flusher; its context is cancelled when Close gives up
	drain    chan struct{}  // closed by stop: flush what is left, then exit
	left     int            // exports of the batch the flusher gave up on; written before it returns
}

func newPublisher(br *Bridge) *publisher {
	cfg := &br.cfg
	p := &publisher{
		br:    br,
		out:   queue.NewOutbox(cfg.OutboxMaxEvents, cfg.OutboxMaxBytes, cfg.OutboxPolicy == OutboxDropNewest),
		drain: make(chan struct{}),
		g:     newGroup(context.Background()),
	}
	return p
}

func (p *publisher) start() { p.g.run(p.flushLoop) }

func (p *publisher) ready() (bool, error) { return true, nil }

func (p *publisher) stop(context.Context) { close(p.drain) }

// wait waits until the outbox is flushed, or ctx ends: then the flusher
// gives up, and what it held and what the outbox holds are unsent.
func (p *publisher) wait(ctx context.Context) int {
	p.g.wait(ctx, nil)
	return p.out.Close() + p.left
}

func (p *publisher) stats(s *Stats) {
	n, bytes := p.out.Depth()
	sending, sendingBytes := p.inflight.Load()
	s.OutboxDepth += n + sending
	s.OutboxBytes += bytes + sendingBytes
}

// flushLoop is the flusher goroutine: it sends the outbox to Redis in
// pipelined batches, in order per channel (see group), until Close.
func (p *publisher) flushLoop() {
	br := p.br
	f := flusher{br: br, p: p, back: backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}}
	br.runFlusher(p.out, &f.batch, br.flushTake(), p.drain, p.g.ctx, f.send)
}

// flushTake returns how many exports the pub/sub flusher takes from the
// outbox at once: BatchSize, or coalesceWindow times as many when exports
// coalesce (BatchSize itself if that does not fit an int).
func (br *Bridge) flushTake() int {
	take := br.cfg.BatchSize
	if br.cfg.CoalesceBytes > 0 && take <= math.MaxInt/coalesceWindow {
		take *= coalesceWindow
	}
	return take
}

// runFlusher is the loop of a flusher goroutine, shared by the pub/sub
// outbox and those of durable routes. It waits for exports, or for the
// housekeeping tick, which expires stale ones and reports drops held back;
// takes them from out into *batch, take at a time and in order; and
// hands each batch to send. It returns once drain is closed and out is
// empty, when stop ends, or when send reports that Close gave up.
func (br *Bridge) runFlusher(out *queue.Outbox, batch *[]queue.Export, take int, drain <-chan struct{}, stop context.Context, send func() bool) {
	tick := time.NewTicker(housekeeping)
	defer tick.Stop()
	draining := false
	for {
		select {
		case <-out.Wake():
		case <-tick.C:
			br.expireOutbox(out)
			br.rep.flush()
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
		}
		if draining {
			return
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

// flusher holds the flusher goroutine's reusable memory.
type flusher struct {
	br      *Bridge
	p       *publisher
	back    backoff
	batch   []queue.Export
	pending []int           // indexes in batch of the exports not sent yet
	msgs    [][]byte        // the messages of pending, one per command
	runs    []run           // the exports of each message
	arena   []byte          // where the envelopes of msgs are laid out
	spans   []span          // where each message lies in arena
	envs    []wire.Envelope // the events of the batch being laid out

	// What group uses: the group of each channel, the first position of
	// each group, the group of each export, a copy of the segment.
	groupOf map[string]int
	starts  []int
	groups  []int
	seg     []int
}

// span locates a message in the flusher's arena.
type span struct{ start, end int }

// run is the exports one message carries: pending[start : start+n].
type run struct{ start, n int }

// send publishes the batch, retrying what failed for lack of Redis until
// it is sent, refused or stale. It returns false when the flusher must
// stop (Close gave up), after recording what was left in p.left.
func (f *flusher) send() bool {
	br, p := f.br, f.p
	p.inflight.Set(f.batch)
	defer func() {
		p.inflight.Reset()
		f.done()
	}()

	f.pending = f.pending[:0]
	for i := range f.batch {
		f.pending = append(f.pending, i)
	}
	if br.cfg.CoalesceBytes > 0 {
		f.group()
	}
	o := outage{br: br, out: p.out, back: &f.back}
	for attempt := 0; ; attempt++ {
		f.build(attempt == 0)
		ctx := p.g.ctx
		// What failed for lack of Redis is kept, in order; once a
		// pipeline failed that way, the later pipelines of the batch
		// are not sent but kept too. Appending pending[r.start:] to
		// pending[:len(keep)] never overwrites a run not yet read: keep
		// is never longer than r.start.
		keep := f.pending[:0]
		var err error // the first failure for lack of Redis
		for k0 := 0; k0 < len(f.runs); k0 += br.cfg.BatchSize {
			runs := f.runs[k0:min(k0+br.cfg.BatchSize, len(f.runs))]
			if err != nil {
				for _, r := range runs {
					keep = append(keep, f.pending[r.start:r.start+r.n]...)
				}
				continue
			}
			err = f.publish(ctx, f.msgs[k0:k0+len(runs)], runs, &keep)
		}
		f.pending = keep
		if len(f.pending) == 0 {
			f.back.reset()
			return true
		}

		// Redis is unreachable: hold the batch (and, behind it, the
		// outbox) until it answers again.
		if ctx.Err() != nil {
			p.left = len(f.pending)
			return false
		}
		if !o.wait(ctx, err) {
			p.left = len(f.pending)
			return false
		}
		if d := br.cfg.ResumeDelay; d > 0 && !sleep(ctx, d) {
			p.left = len(f.pending)
			return false
		}
		if f.pending = br.dropStale(f.batch, f.pending); len(f.pending) == 0 {
			return true
		}
	}
}

// outage holds an exporter (a flusher of the pub/sub outbox, or of a
// durable route's) through an outage of Redis, for one batch. Both run
// the same loop: report the outage once, back off, expire the outbox
// while waiting, ping until Redis answers; then the exporter drops the
// exports of its batch that went stale (dropStale).
type outage struct {
	br   *Bridge
	out  *queue.Outbox // the exporter's outbox
	back *backoff      // the exporter's; reset by the exporter once it sends again
	down bool          // reported for this batch
}

// wait reports the outage, err being why the batch could not be sent,
// unless reported already for this batch, and waits until Redis answers
// a PING. It returns false if ctx ended first.
func (o *outage) wait(ctx context.Context, err error) bool {
	br := o.br
	if !o.down {
		o.down = true
		br.c.exportOutages.Add(1)
		br.rep.report(fmt.Errorf("%w: %w", ErrRedisDown, err))
	}
	for {
		if !sleep(ctx, o.back.next()) {
			return false
		}
		br.expireOutbox(o.out)
		br.rep.flush()
		if br.rdb.Ping(ctx).Err() == nil {
			return true
		}
	}
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

// publish sends msgs, the messages of runs, in one pipeline and accounts
// for each: exported, rejected by Redis (counted and reported), or, when
// Redis could not be reached, appended to *keep. It returns the error of
// the first message not sent for lack of Redis, or nil.
func (f *flusher) publish(ctx context.Context, msgs [][]byte, runs []run, keep *[]int) error {
	br := f.br
	cmds, err := br.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for k, msg := range msgs {
			br.shards.publish(ctx, p, f.batch[f.pending[runs[k].start]].Channel, msg)
		}
		return nil
	})
	if err == nil {
		n := 0
		for _, r := range runs {
			n += r.n
		}
		br.c.exported.Add(uint64(n))
		br.c.exportMessages.Add(uint64(len(msgs)))
		return nil
	}
	var down error
	for k, r := range runs {
		cerr := err
		if k < len(cmds) {
			cerr = cmds[k].Err()
		}
		var rerr redis.Error
		switch n := uint64(r.n); {
		case cerr == nil:
			br.c.exported.Add(n)
			br.c.exportMessages.Add(1)
		case errors.As(cerr, &rerr) && !transientReply(cerr):
			br.c.exportRejected.Add(n)
			br.rep.drop(ErrPublish, n, fmt.Errorf("%w: %q: %w", ErrPublish, f.batch[f.pending[r.start]].Channel, cerr))
		default:
			*keep = append(*keep, f.pending[r.start:r.start+r.n]...)
			if down == nil {
				down = cerr
			}
		}
	}
	return down
}

// keptArena is the most arena memory the flusher keeps between batches
// that need far less: a burst grows it to megabytes, which an idle bridge
// should not hold on to.
const keptArena = 1 << 20

// done lets go of what the batch just sent refers to, so that payloads
// and a burst's memory can be collected.
func (f *flusher) done() {
	clear(f.batch)
	// Every message ever built, not only the last attempt's: a retry
	// builds fewer, and those past its end would keep the old arena
	// and raw payloads.
	clear(f.msgs[:cap(f.msgs)])
	f.shrink()
}

// shrink lets go of the batch and arena memory a burst grew, once a batch
// uses less than a quarter of it.
func (f *flusher) shrink() {
	if cap(f.arena) > keptArena && 4*len(f.arena) < cap(f.arena) {
		f.arena = nil
	}
	if limit := f.br.cfg.BatchSize; cap(f.batch) > limit && 4*len(f.batch) < cap(f.batch) {
		f.batch = nil
	}
}

// envelopeOf returns the envelope of enveloped export it.
func (br *Bridge) envelopeOf(it *queue.Export) wire.Envelope {
	return wire.Envelope{
		Source:      br.id,
		Seq:         it.Seq,
		Time:        it.At,
		ContentType: it.ContentType,
		Headers:     it.Headers,
		Payload:     it.Payload,
	}
}

// build makes the messages of the pending exports, in their order: raw
// payloads as they are, and envelopes laid out in one arena, runs of
// exports to one channel coalesced into batches (see coalesce). With remember set,
// messages that may come back without a recognisable envelope are
// remembered for echo suppression, before they are sent, since the echo
// can arrive before the pipeline returns; retries do not remember them
// again.
func (f *flusher) build(remember bool) {
	br := f.br
	limit := min(br.cfg.CoalesceBytes, br.cfg.MaxMessageBytes)
	f.arena, f.spans, f.runs = f.arena[:0], f.spans[:0], f.runs[:0]
	for j := 0; j < len(f.pending); {
		it := &f.batch[f.pending[j]]
		n := 1
		if limit > 0 && !it.Raw && !it.Echo {
			n = f.coalesce(j, limit)
		}
		start := len(f.arena)
		switch {
		case it.Raw:
		case n > 1:
			f.envs = f.envs[:0]
			for _, i := range f.pending[j : j+n] {
				f.envs = append(f.envs, br.envelopeOf(&f.batch[i]))
			}
			f.arena = wire.AppendBatch(f.arena, it.Channel, f.envs, br.key)
			clear(f.envs) // let the payloads be collected
		default:
			env := br.envelopeOf(it)
			f.arena = wire.AppendEnvelope(f.arena, it.Channel, &env, br.key)
		}
		// Offsets rather than slices, since arena may move while it
		// grows.
		f.spans = append(f.spans, span{start, len(f.arena)})
		f.runs = append(f.runs, run{j, n})
		j += n
	}
	f.msgs = f.msgs[:0]
	now := time.Now()
	for k, r := range f.runs {
		it := &f.batch[f.pending[r.start]]
		msg := it.Payload
		if !it.Raw {
			s := f.spans[k]
			msg = f.arena[s.start:s.end:s.end]
		}
		f.msgs = append(f.msgs, msg)
		if remember && it.Echo {
			br.echo.Remember(it.Channel, msg, now)
		}
	}
}

// group reorders the pending exports so that those of one channel follow
// each other, and can be coalesced, keeping the order of each channel:
// between two raw or echo exports, which keep their place (a plain Redis
// subscriber sees them in publishing order), enveloped exports are grouped
// by channel, the channels in the order of their first export. Receivers
// keep the order of each topic, never across topics (each topic has its
// import queue), so this changes nothing they deliver.
func (f *flusher) group() {
	p := f.pending
	for lo := 0; lo < len(p); {
		if it := &f.batch[p[lo]]; it.Raw || it.Echo {
			lo++
			continue
		}
		hi := lo + 1
		for hi < len(p) && !f.batch[p[hi]].Raw && !f.batch[p[hi]].Echo {
			hi++
		}
		f.groupSegment(p[lo:hi])
		lo = hi
	}
}

// groupSegment groups seg, positions of enveloped exports, by channel.
func (f *flusher) groupSegment(seg []int) {
	if len(seg) < 3 {
		return // already grouped
	}
	first := f.batch[seg[0]].Channel
	one := true
	for _, i := range seg[1:] {
		if f.batch[i].Channel != first {
			one = false
			break
		}
	}
	if one {
		return
	}
	if f.groupOf == nil {
		f.groupOf = map[string]int{}
	}
	clear(f.groupOf)
	f.starts, f.groups = f.starts[:0], f.groups[:0]
	for _, i := range seg {
		ch := f.batch[i].Channel
		g, ok := f.groupOf[ch]
		if !ok {
			g = len(f.starts)
			f.groupOf[ch] = g
			f.starts = append(f.starts, 0)
		}
		f.starts[g]++ // a count until turned into a start below
		f.groups = append(f.groups, g)
	}
	if len(f.starts) == len(seg) {
		return // every channel once: nothing to coalesce
	}
	pos := 0
	for g, n := range f.starts {
		f.starts[g] = pos
		pos += n
	}
	f.seg = append(f.seg[:0], seg...)
	for k, i := range f.seg {
		g := f.groups[k]
		seg[f.starts[g]] = i
		f.starts[g]++
	}
}

// coalesce returns how many pending exports from pending[j], an enveloped
// one, fit in one message of at most limit bytes: a run of enveloped
// exports to the same channel with consecutive sequence numbers, none
// remembered for echo suppression (its echo must be recognisable by its
// bytes), at most wire.MaxBatchEvents. A run of one is sent as a plain
// envelope.
func (f *flusher) coalesce(j, limit int) int {
	br := f.br
	first := &f.batch[f.pending[j]]
	env := br.envelopeOf(first)
	size := wire.BatchOverhead(br.id, first.Seq, len(br.key) > 0) + wire.BatchEventLen(&env)
	n := 1
	for ; j+n < len(f.pending) && n < wire.MaxBatchEvents; n++ {
		it := &f.batch[f.pending[j+n]]
		if it.Raw || it.Echo || it.Seq != first.Seq+uint64(n) || it.Channel != first.Channel {
			break
		}
		env := br.envelopeOf(it)
		if size += wire.BatchEventLen(&env); size > limit {
			break
		}
	}
	return n
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
		env := br.envelopeOf(it)
		start := len(arena)
		arena = wire.AppendEnvelope(arena, it.Channel, &env, br.key)
		spans[i] = span{start, len(arena)}
	}
	return arena, spans
}
