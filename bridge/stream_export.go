package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/busline/bus/bridge/internal/queue"

	"github.com/busline/bus/bridge/internal/wire"
	"github.com/redis/go-redis/v9"
)

// Fields of a stream entry. See "Stream entries" in the package
// documentation.
const (
	fieldTopic  = "topic"
	fieldData   = "data"
	fieldSource = "source"
)

// streamExport is the export side of one durable route: its own outbox
// and the flusher goroutine that appends what it holds to the stream.
//
// The outbox is the pub/sub routes' type, one per route: the flusher then
// knows the stream of every item, and an item's channel (Prefix + topic)
// keeps its two other roles, numbering the envelopes per topic and being
// what the envelope's MAC covers. A shared outbox would need the stream in
// each item.
type streamExport struct {
	br  *Bridge
	r   *streamRoute
	out *queue.Outbox

	inflight queue.Inflight // the batch being sent, for Stats

	// flushing runs the flusher: its context is cancelled when Close or
	// RemoveRoute gives up. drain is closed when either stops the route
	// (stopping, protected by st.mu, says it was). left counts the
	// exports of the batch the flusher gave up on, taken by whoever
	// counts them as unsent first.
	flushing *group
	drain    chan struct{}
	stopping bool
	left     atomic.Int64
	settled  signal        // notified after each batch (runFlusher)
	exited   chan struct{} // closed when the flusher returns

	back  backoff
	call  *caller // makes the pipelines and reads, so that Close need not wait for them
	batch []queue.Export
	arena []byte
	spans []span
	args  []redis.XAddArgs
}

func newStreamExport(br *Bridge, r *streamRoute) *streamExport {
	return &streamExport{
		br:       br,
		r:        r,
		out:      br.newOutbox(),
		back:     backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax},
		flushing: newGroup(context.Background()),
		drain:    make(chan struct{}),
		exited:   make(chan struct{}),
	}
}

// flushLoop is the flusher goroutine of the route: it appends the outbox
// to the stream in pipelined batches of XADD, in order, until Close.
func (x *streamExport) flushLoop() {
	defer close(x.exited)
	x.call = newCaller()
	defer x.call.close()
	x.br.runFlusher(x.out, &x.batch, x.br.cfg.BatchSize, x.drain, x.flushing.ctx, &x.settled, x.send)
}

// send appends the batch to the stream, retrying what failed for lack of
// Redis until it is sent, refused or stale. It returns false when Close
// gave up, after counting what was left.
//
// A pipeline cut by a broken connection may have added some entries
// before it broke. Before sending again, the flusher looks for its
// enveloped entries at the end of the stream (dropApplied) and does not
// send those twice. What it cannot see there (raw entries, or entries
// buried under other writers' since) is sent again, with the same
// envelope sequence number: readers of Stream routes drop such copies.
func (x *streamExport) send() bool {
	br, st := x.br, x.br.st
	x.build()
	x.inflight.Set(x.batch)
	abandoned := false
	defer func() {
		x.inflight.Reset()
		if !abandoned {
			// A pipeline given up on may still read the batch.
			clear(x.batch)
			clear(x.args)
		}
	}()

	pending := make([]int, len(x.batch))
	for i := range pending {
		pending[i] = i
	}
	o := outage{br: br, out: x.out, back: &x.back, call: x.call, key: x.r.key, conn: x.r.sendConn}
	for {
		ctx := x.flushing.ctx
		var cmds []redis.Cmder
		var err error
		if !x.call.do(ctx, func() {
			cmds, err = br.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, i := range pending {
					p.XAdd(ctx, &x.args[i])
				}
				return nil
			})
		}) {
			// Close gave up while Redis had the pipeline.
			abandoned = true
			x.left.Add(int64(len(pending)))
			return false
		}
		keep := pending[:0]
		for j, i := range pending {
			cerr := err
			if j < len(cmds) {
				cerr = cmds[j].Err()
			}
			var rerr redis.Error
			switch {
			case cerr == nil:
				br.c.exported.Add(1)
				br.c.exportMessages.Add(1)
				st.exported.Add(1)
				x.r.c.exported.Add(1)
				x.r.sendConn.up()
			case errors.As(cerr, &rerr):
				br.c.exportRejected.Add(1)
				x.r.c.exportRejected.Add(1)
				br.rep.drop(ErrPublish, 1, fmt.Errorf("%w: XADD %q: %w", ErrPublish, x.r.key, cerr))
			default:
				keep = append(keep, i)
			}
		}
		pending = keep
		if len(pending) == 0 {
			x.back.reset()
			return true
		}
		if ctx.Err() != nil {
			x.left.Add(int64(len(pending)))
			return false
		}
		if !o.wait(ctx, err) {
			x.left.Add(int64(len(pending)))
			return false
		}
		// A stream keeps what it is given: unlike pub/sub, there is no
		// need to wait for the readers (ResumeDelay) before sending
		// again.
		pending = x.dropApplied(ctx, pending)
		if len(pending) == 0 {
			return true
		}
		if pending = br.dropStale(x.batch, pending); len(pending) == 0 {
			return true
		}
	}
}

// build makes the XADD arguments of the batch, with the envelopes laid out
// in one arena.
func (x *streamExport) build() {
	br, r := x.br, x.r
	x.arena, x.spans = br.layEnvelopes(x.arena[:0], x.spans[:0], x.batch)
	spans := x.spans
	x.args = x.args[:0]
	for i := range x.batch {
		it := &x.batch[i]
		topic := strings.TrimPrefix(it.Channel, br.cfg.Prefix)
		var values []any
		if it.Raw {
			values = []any{fieldTopic, topic, fieldData, it.Payload, fieldSource, br.id}
		} else {
			values = []any{fieldTopic, topic, fieldData, x.arena[spans[i].start:spans[i].end:spans[i].end]}
		}
		x.args = append(x.args, redis.XAddArgs{
			Stream: r.key,
			MaxLen: r.maxLen,
			Approx: r.maxLen > 0,
			Values: values,
		})
	}
}

// dropApplied returns pending without the exports that the stream already
// holds: those of a pipeline that Redis executed before the connection
// broke. It recognises its own enveloped entries among the last ones of
// the stream by source, channel, sequence number and export time (the
// time tells a restarted exporter's numbers from the previous run's). If
// the stream cannot be read, it returns pending as it is.
func (x *streamExport) dropApplied(ctx context.Context, pending []int) []int {
	br, st := x.br, x.br.st
	enveloped := 0
	for _, i := range pending {
		if !x.batch[i].Raw {
			enveloped++
		}
	}
	if enveloped == 0 {
		return pending
	}
	// Other writers may have added entries since: look a little further
	// back than the batch.
	var last []redis.XMessage
	var err error
	if !x.call.do(ctx, func() {
		last, err = br.rdb.XRevRangeN(ctx, x.r.key, "+", "-", int64(2*len(pending)+64)).Result()
	}) || err != nil {
		return pending // if Close gave up, the next pipeline sees it
	}
	type mark struct {
		channel string
		seq     uint64
		at      int64
	}
	ours := map[mark]bool{}
	for _, m := range last {
		topic, _ := m.Values[fieldTopic].(string)
		data, _ := m.Values[fieldData].(string)
		channel := br.cfg.Prefix + topic
		// No key: only the fields are needed, and they are ours if the
		// source is.
		env, err := wire.DecodeEnvelope(channel, []byte(data), nil, 0)
		if err == nil && env.Source == br.id {
			ours[mark{channel, env.Seq, env.Time}] = true
		}
	}
	keep := pending[:0]
	for _, i := range pending {
		it := &x.batch[i]
		if !it.Raw && ours[mark{it.Channel, it.Seq, it.At}] {
			br.c.exported.Add(1)
			br.c.exportMessages.Add(1)
			st.exported.Add(1)
			x.r.c.exported.Add(1)
			continue
		}
		keep = append(keep, i)
	}
	return keep
}
