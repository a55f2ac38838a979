package bridge

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/busline/bus/bridge/internal/queue"
	"github.com/busline/bus/bridge/internal/wire"
	"github.com/redis/go-redis/v9"
)

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
	gate     gate           // the flusher's calls to Redis, which Close can give up on
	conn     *conn          // the flusher's state, for Connections
	settled  signal         // notified after each batch (runFlusher)
	exited   chan struct{}  // closed when the flusher returns
}

func newPublisher(br *Bridge) *publisher {
	p := &publisher{
		br:     br,
		out:    br.newOutbox(),
		drain:  make(chan struct{}),
		exited: make(chan struct{}),
		g:      newGroup(context.Background()),
		conn:   newConn(ConnExporter, redisAddr(br.rdb), ""),
	}
	return p
}

func (p *publisher) start() { p.g.run(p.flushLoop) }

func (p *publisher) ready() (bool, error) { return true, nil }

func (p *publisher) stop(context.Context) { close(p.drain) }

// wait waits until the outbox is flushed, or ctx ends: then the flusher
// gives up, and what it held and what the outbox holds are unsent. The
// flusher returns at once then, unless Redis has its call: wait does not
// wait for that one (see gate), and counts what the flusher owes.
func (p *publisher) wait(ctx context.Context) int {
	defer p.g.cancel()
	select {
	case <-p.exited:
	case <-ctx.Done():
		p.g.cancel()
		if owed, busy := p.gate.close(); busy {
			// The batch of the call under way is counted unsent
			// here, so Stats no longer counts it as waiting
			// (OutboxDepth). The flusher sets nothing after this
			// call: it returns once Redis answers.
			p.inflight.Reset()
			return p.out.Close() + owed
		}
		<-p.exited
	}
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
	defer close(p.exited)
	br := p.br
	f := flusher{br: br, p: p, back: backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}, gate: &p.gate}
	f.pipe, f.fill, f.cmds = f.pipeline, f.fillPipeline, newPubCmds(br.rdb)
	br.runFlusher(p.out, &f.batch, br.flushTake(), p.drain, p.g.ctx, &p.settled, f.send)
}

// flushed waits until the exports queued so far are sent, refused or
// dropped, and returns true, or false when ctx ends first; mark is the
// position of the last of them.
func (p *publisher) flushed(ctx context.Context) (mark uint64, ok bool) {
	return awaitSettled(ctx, p.out, &p.settled, p.exited)
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

// flusher holds the flusher goroutine's reusable memory.
type flusher struct {
	br      *Bridge
	p       *publisher
	back    backoff
	gate    *gate  // the pipelines and pings go through it, so that Close need not wait for them
	o       outage // of the batch being sent: a field, as a local it would escape (its wait's ping closure) once per batch
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

	// The pipeline call through the gate (pipeline, made once into
	// pipe, as fillPipeline into fill: a method value made per call
	// allocates): its context, messages and runs, and its results; cmds
	// are the reusable commands, nil on a cluster (see pubCmds).
	pipe  func()
	fill  func(redis.Pipeliner) error
	cmds  *pubCmds
	pctx  context.Context
	pmsgs [][]byte
	pruns []run
	pcmds []redis.Cmder
	perr  error
}

// run is the exports one message carries: pending[start : start+n].
type run struct{ start, n int }

// send publishes the batch, retrying what failed for lack of Redis until
// it is sent, refused or stale. It returns false when the flusher must
// stop (Close gave up), after recording what was left in p.left.
func (f *flusher) send() bool {
	br, p := f.br, f.p
	p.inflight.Set(f.batch)
	abandoned := false
	defer func() {
		p.inflight.Reset()
		if !abandoned {
			// A pipeline given up on may still read the batch.
			f.done()
		}
	}()

	f.pending = f.pending[:0]
	for i := range f.batch {
		f.pending = append(f.pending, i)
	}
	if br.cfg.CoalesceBytes > 0 {
		f.group()
	}
	f.o = outage{br: br, out: p.out, back: &f.back, call: f.gate, conn: p.conn}
	o := &f.o
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
			var ok bool
			ok, err = f.publish(ctx, f.msgs[k0:k0+len(runs)], runs, &keep)
			if !ok {
				// Close gave up while Redis had the pipeline: it and
				// every later one are not sent.
				abandoned = true
				p.left = len(keep) + len(f.pending) - runs[0].start
				return false
			}
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
		o.key = f.batch[f.pending[0]].Channel
		f.gate.owe(len(f.pending))
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

// publish sends msgs, the messages of runs, in one pipeline and accounts
// for each: exported, rejected by Redis (counted and reported), or, when
// Redis could not be reached, appended to *keep. It returns the error of
// the first message not sent for lack of Redis, or nil. It returns
// ok false, having counted nothing, if ctx ended before Redis answered.
func (f *flusher) publish(ctx context.Context, msgs [][]byte, runs []run, keep *[]int) (ok bool, down error) {
	br := f.br
	f.pctx, f.pmsgs, f.pruns = ctx, msgs, runs
	f.gate.owe(len(*keep) + len(f.pending) - runs[0].start) // as send counts them if this fails
	if !f.gate.do(ctx, f.pipe) {
		return false, nil
	}
	cmds, err := f.pcmds, f.perr
	f.pcmds, f.perr, f.pmsgs, f.pruns = nil, nil, nil, nil
	if err == nil {
		n := 0
		for _, r := range runs {
			n += r.n
			br.countExported(f.batch, f.pending[r.start:r.start+r.n])
		}
		br.c.exported.Add(uint64(n))
		br.c.exportMessages.Add(uint64(len(msgs)))
		f.p.conn.up()
		return true, nil
	}
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
			br.countExported(f.batch, f.pending[r.start:r.start+r.n])
		case errors.As(cerr, &rerr) && !transientReply(cerr):
			br.c.exportRejected.Add(n)
			for _, i := range f.pending[r.start : r.start+r.n] {
				routeOf(&f.batch[i]).c.exportRejected.Add(1)
			}
			br.rep.drop(ErrPublish, n, fmt.Errorf("%w: %q: %w", ErrPublish, f.batch[f.pending[r.start]].Channel, cerr))
		default:
			*keep = append(*keep, f.pending[r.start:r.start+r.n]...)
			if down == nil {
				down = cerr
			}
		}
	}
	return true, down
}

// pipeline sends pmsgs in one pipeline.
func (f *flusher) pipeline() {
	ctx, msgs := f.pctx, f.pmsgs
	if f.cmds == nil {
		f.pcmds, f.perr = f.br.rdb.Pipelined(ctx, f.fill)
		return
	}
	for k, msg := range msgs {
		f.cmds.set(ctx, k, f.channel(k), msg)
	}
	f.pcmds, f.perr = f.cmds.exec(ctx, len(msgs))
}

// fillPipeline queues the commands of pipeline on p, on a cluster.
func (f *flusher) fillPipeline(p redis.Pipeliner) error {
	for k, msg := range f.pmsgs {
		f.br.shards.publish(f.pctx, p, f.channel(k), msg)
	}
	return nil
}

// channel returns the channel of pmsgs[k].
func (f *flusher) channel(k int) string { return f.batch[f.pending[f.pruns[k].start]].Channel }

// keptArena is the most arena memory the flusher keeps between batches
// that need far less, once a burst is over: a burst grows it to
// megabytes, which an idle bridge should not hold on to.
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
// uses less than a quarter of it and, for the arena, the burst is over
// (the outbox is empty). Within a burst the arena is kept, however small
// a batch: making a new one for every batch smaller than a quarter of it,
// and growing it again for the next large one, cost a third of the
// events/s of 16 KiB payloads.
func (f *flusher) shrink() {
	if cap(f.arena) > keptArena && 4*len(f.arena) < cap(f.arena) && f.idle() {
		f.arena = nil
	}
	if limit := f.br.cfg.BatchSize; cap(f.batch) > limit && 4*len(f.batch) < cap(f.batch) {
		f.batch = nil
	}
}

// idle reports whether the outbox is empty: a burst is over. A flusher
// without a publisher (in tests) is always idle.
func (f *flusher) idle() bool {
	if f.p == nil {
		return true
	}
	n, _ := f.p.out.Depth()
	return n == 0
}

// build makes the messages of the pending exports, in their order: raw
// payloads as they are, and envelopes laid out in one arena, runs of
// exports to one channel coalesced into batches (see coalesce). With remember set,
// messages that may come back without a recognisable envelope are
// remembered for echo suppression, before they are sent, since the echo
// can arrive before the pipeline returns; retries do not remember them
// again.
//
// It plans the runs first, adding up the bytes their messages take, and
// makes the arena that large at once (see reserve): appending to a
// growing arena copied it at every doubling, and a burst of large
// payloads spent half its time there (growslice).
func (f *flusher) build(remember bool) {
	br := f.br
	limit := min(br.cfg.CoalesceBytes, br.cfg.MaxMessageBytes)
	signed := len(br.key) > 0
	f.spans, f.runs = f.spans[:0], f.runs[:0]
	need := 0
	for j := 0; j < len(f.pending); {
		it := &f.batch[f.pending[j]]
		n, size := 1, 0
		switch {
		case it.Raw:
		case it.CloudEvent:
			// Not counted: a CloudEvent's length is known only once
			// encoded, and the arena grows for it.
		case limit > 0 && !it.Echo:
			n, size = f.coalesce(j, limit)
		default:
			env := br.envelopeOf(it)
			size = wire.EnvelopeLen(&env, signed)
		}
		f.runs = append(f.runs, run{j, n})
		need += size
		j += n
	}
	f.reserve(need)
	for _, r := range f.runs {
		it := &f.batch[f.pending[r.start]]
		start := len(f.arena)
		switch {
		case it.Raw:
		case it.CloudEvent:
			f.arena = br.appendCloudEvent(f.arena, it)
		case r.n > 1:
			f.envs = f.envs[:0]
			for _, i := range f.pending[r.start : r.start+r.n] {
				f.envs = append(f.envs, br.envelopeOf(&f.batch[i]))
			}
			f.arena = wire.AppendBatch(f.arena, it.Channel, f.envs, br.key)
			clear(f.envs) // let the payloads be collected
		default:
			env := br.envelopeOf(it)
			f.arena = wire.AppendEnvelope(f.arena, it.Channel, &env, br.key)
		}
		// Offsets rather than slices, since arena may move if a
		// CloudEvent makes it grow.
		f.spans = append(f.spans, span{start, len(f.arena)})
	}
	f.msgs = f.msgs[:0]
	var now time.Time // read once, if an echo is remembered
	for k, r := range f.runs {
		it := &f.batch[f.pending[r.start]]
		msg := it.Payload
		if !it.Raw {
			s := f.spans[k]
			msg = f.arena[s.start:s.end:s.end]
		}
		f.msgs = append(f.msgs, msg)
		if remember && it.Echo {
			if now.IsZero() {
				now = time.Now()
			}
			br.echo.Load().Remember(it.Channel, msg, now)
		}
	}
}

// reserve empties the arena, making it hold at least need bytes. An arena
// too small is replaced, not grown (what it holds is sent already), by
// one with a quarter more room, so that a burst whose batches vary in
// size settles on one arena rather than making one per batch; shrink lets
// go of it once the burst is over.
func (f *flusher) reserve(need int) {
	if cap(f.arena) < need {
		f.arena = make([]byte, 0, need+need/4)
	}
	f.arena = f.arena[:0]
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
// envelope. size is the most bytes the message takes.
func (f *flusher) coalesce(j, limit int) (n, size int) {
	br := f.br
	first := &f.batch[f.pending[j]]
	env := br.envelopeOf(first)
	size = wire.BatchOverhead(br.id, first.Seq, len(br.key) > 0) + wire.BatchEventLen(&env)
	for n = 1; j+n < len(f.pending) && n < wire.MaxBatchEvents; n++ {
		it := &f.batch[f.pending[j+n]]
		if it.Raw || it.Echo || it.CloudEvent || it.Seq != first.Seq+uint64(n) || it.Channel != first.Channel {
			break
		}
		env := br.envelopeOf(it)
		ev := wire.BatchEventLen(&env)
		if size+ev > limit {
			break
		}
		size += ev
	}
	if n == 1 {
		size = wire.EnvelopeLen(&env, len(br.key) > 0)
	}
	return n, size
}
