package bridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// streamReader is the import side of one durable route: one goroutine
// that reads the route's stream, publishes each entry on the local bus and
// then records that it did (a checkpoint, or XACK).
//
// Entries are published on the reader's goroutine, one after the other:
// the next batch is read once the previous one is handled and recorded.
// Unlike pub/sub imports there is no queue that could overflow, since
// Redis holds what is not read yet; a slow subscriber slows its route
// down and nothing else.
type streamReader struct {
	br *Bridge
	st *streams
	r  *streamRoute
	// in is the ingest path: on Stream routes, its sequence checks drop
	// the copies of an entry that a retried XADD pipeline added twice,
	// and report gaps. Group members see a share of each source's
	// events, out of order after a claim, so neither check applies to
	// them.
	in   ingest
	back backoff
	// got is the event of the entry being handled that in accepted, if
	// any (has).
	got importItem
	has bool

	// Group routes: IDs handled and not yet acknowledged.
	unacked []string

	// The last failure of the entry being handled and its number of
	// attempts, for its dead letter (stream_dead.go).
	lastErr  string
	attempts int

	// reading runs the reader: its context is cancelled when Close or
	// RemoveRoute stops it. handling is the context of the local
	// handlers (see handlerContext). closeCtx is the context of the
	// Close or RemoveRoute that stops the reader, set before reading is
	// cancelled: the reader saves its last position and acknowledges with
	// it.
	reading  *group
	handling handlerContext
	closeCtx context.Context

	// The reader's calls to Redis on Stream routes, so that Close need
	// not wait for a frozen server (see caller): reads, and checkpoint
	// saves, which have their own, since a read given up on may hold
	// the first until its block and read timeouts end.
	reads, saves *caller

	// Protected by st.mu: whether the reader found its start, why its
	// last attempt failed, whether it is being stopped.
	started, stopping bool
	err               error
}

// handlerContext is the context a durable import route passes to the
// local handlers: cancelled when the import workers' context is
// (Bridge.deliver, when Close gives up on them), or when RemoveRoute
// gives up on the route's handlers. It is not a child of the workers'
// context but follows it (context.AfterFunc), so that release can detach
// it when the route is removed: otherwise the workers' context would hold
// every removed route's context until Close, and Close would cancel a
// context that handlers of a long-removed route may still hold
// (asynchronous subscribers, goroutines they started).
type handlerContext struct {
	ctx    context.Context
	cancel context.CancelFunc
	// release stops following the workers' context: once it has run,
	// nothing but the handlers holds ctx, and only cancel ends it.
	release func() bool
}

// newHandlerContext returns a handler context that ends with parent.
func newHandlerContext(parent context.Context) handlerContext {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	return handlerContext{ctx: ctx, cancel: cancel, release: context.AfterFunc(parent, cancel)}
}

// setStart records that the reader found its start (err nil) or failed to
// (a refusal Ready reports).
func (sr *streamReader) setStart(started bool, err error) {
	st := sr.st
	st.mu.Lock()
	if started {
		sr.started, sr.err = true, nil
	} else {
		sr.err = err
	}
	st.mu.Unlock()
	st.br.changed.notify()
}

// run reads until Close or RemoveRoute.
func (sr *streamReader) run() {
	sr.back = backoff{min: sr.br.cfg.ReconnectMin, max: sr.br.cfg.ReconnectMax}
	sr.in = sr.br.newIngest(false, sr.r.Delivery == Group, func(it importItem) { sr.got, sr.has = it, true })
	sr.reads, sr.saves = newCaller(), newCaller()
	defer sr.reads.close()
	defer sr.saves.close()
	if sr.r.Delivery == Group {
		sr.runGroup()
	} else {
		sr.runStream()
	}
}

// resumed records that a read succeeded; after failures (*failed), that
// the route resumed (Stats.StreamResumes).
func (sr *streamReader) resumed(failed *bool) {
	sr.r.readConn.up()
	if *failed {
		*failed = false
		sr.back.reset()
		sr.st.resumes.Add(1)
	}
}

// fail reports err and waits before the next attempt. It returns false
// when the bridge is closing.
func (sr *streamReader) fail(err error) bool {
	ctx := sr.reading.ctx
	if ctx.Err() != nil {
		return false
	}
	sr.br.reportLast(err)
	sr.r.readConn.down(err)
	if cc := sr.br.shards.cc; cc != nil && !isRedisError(err) {
		// The stream's master may be gone for good, its replica
		// promoted: go-redis would keep reading from it, from its
		// cached layout, until its periodic reload (a minute).
		cc.ReloadState(ctx)
	}
	return sleep(ctx, sr.back.next())
}

// runStream reads a Stream route with XREAD from the last entry handled.
func (sr *streamReader) runStream() {
	br, key := sr.br, sr.r.key
	ctx := sr.reading.ctx
	pos, ok := sr.start()
	if !ok {
		return
	}
	saved := pos
	defer func() {
		if pos != saved {
			sr.save(sr.closeCtx, pos)
		}
	}()
	failed := false
	for ctx.Err() == nil {
		args := &redis.XReadArgs{
			Streams: []string{key, pos},
			Count:   int64(br.cfg.BatchSize),
			Block:   br.cfg.StreamBlock,
		}
		var res []redis.XStream
		var err error
		if !sr.reads.do(ctx, func() { res, err = br.rdb.XRead(ctx, args).Result() }) {
			return // Close: what was handled is saved above
		}
		if errors.Is(err, redis.Nil) { // nothing new within StreamBlock
			sr.r.readConn.up() // Redis answered
			continue
		}
		if err != nil {
			failed = true
			if !sr.fail(fmt.Errorf("%w: XREAD %q from %s: %w", ErrStreamRead, key, pos, err)) {
				return
			}
			continue
		}
		sr.resumed(&failed)
		stopped := false
	entries:
		for _, s := range res {
			for _, m := range s.Messages {
				if ctx.Err() != nil {
					break entries
				}
				switch sr.handle(m) {
				case entryStopped:
					stopped = true
					break entries
				case entryAbandoned:
					break entries // the checkpoint stays before it
				case entryFailed:
					if !sr.deadLetterStream(ctx, m) {
						break entries
					}
				}
				pos = m.ID
			}
		}
		if ctx.Err() != nil {
			return // saved with Close's context, above
		}
		if pos != saved && sr.save(ctx, pos) {
			saved = pos
		}
		if stopped {
			<-ctx.Done() // the bus is closed: wait for Close
			return
		}
	}
}

// start returns the position a Stream route reads from: its checkpoint,
// or the current end of the stream, saved at once so that a crash before
// the first entry does not move the start. ok is false when the bridge
// closed first. Its calls to Redis go through the reads caller, so that
// Close need not wait for a frozen server.
func (sr *streamReader) start() (pos string, ok bool) {
	st, key := sr.st, sr.r.key
	ctx := sr.reading.ctx
	for {
		var id string
		var resumed bool
		var err error
		if !sr.reads.do(ctx, func() { id, resumed, err = sr.locate(ctx) }) {
			return "", false
		}
		if err == nil {
			if resumed {
				st.resumes.Add(1)
			}
			sr.setStart(true, nil)
			return id, true
		}
		err = fmt.Errorf("%w: load %q: %w", ErrCheckpoint, key, err)
		if isRefusal(err) {
			sr.setStart(false, chain(ErrSubscribe, "", err))
		}
		if !sr.fail(err) {
			return "", false
		}
	}
}

// locate loads the route's checkpoint (resumed) or, if it has none,
// saves the current end of the stream as the checkpoint and returns it.
func (sr *streamReader) locate(ctx context.Context) (id string, resumed bool, err error) {
	key := sr.r.key
	id, err = sr.st.cp.Load(ctx, key)
	if err != nil || id != "" {
		return id, err == nil, err
	}
	last, err := sr.br.rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return "", false, err
	}
	id = "0-0"
	if len(last) > 0 {
		id = last[0].ID
	}
	return id, false, sr.st.cp.Save(ctx, key, id)
}

// save records pos as the route's checkpoint and reports whether it could.
func (sr *streamReader) save(ctx context.Context, pos string) bool {
	var err, saveErr error // saveErr is the call's: not read here if do gives up on it
	if sr.saves.do(ctx, func() { saveErr = sr.st.cp.Save(ctx, sr.r.key, pos) }) {
		err = saveErr
	} else {
		err = ctx.Err() // Close's context ended: saved or not, we cannot tell
	}
	if err != nil {
		if sr.stopped(ctx) {
			return false // saved again, with Close's context, as the reader returns
		}
		sr.br.rep.report(fmt.Errorf("%w: save %q at %s: %w", ErrCheckpoint, sr.r.key, pos, err))
		return false
	}
	return true
}

// stopped reports whether ctx, that of a call that failed, is the reading
// context Close cancelled, rather than Close's own: the call's failure is
// then not reported, since the reader saves its position or acknowledges
// its entries once more, with Close's context, as it returns.
func (sr *streamReader) stopped(ctx context.Context) bool {
	return ctx.Err() != nil && ctx != sr.closeCtx
}

// isRefusal reports whether err is an error reply from Redis, such as
// NOPERM, rather than a failure to reach it.
func isRefusal(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}

// entryOutcome is what became of an entry a reader handled.
type entryOutcome uint8

const (
	// entryDone: handled, or dropped and counted. The reader records it
	// (XACK, checkpoint).
	entryDone entryOutcome = iota
	// entryFailed: its handling failed at every attempt of this
	// delivery (sr.lastErr says how). The reader dead-letters it, or
	// leaves it pending.
	entryFailed
	// entryAbandoned: Close cut its retries short. It is left
	// unrecorded, counted in Stats.StreamAbandoned.
	entryAbandoned
	// entryStopped: the bus is closed. It is left for a later run,
	// uncounted.
	entryStopped
)

// handle publishes the entry m on the local bus, or drops it, and counts
// it. When the bus is closed, it returns entryStopped without counting
// the entry: the entry is left for a later run.
func (sr *streamReader) handle(m redis.XMessage) entryOutcome {
	br, r := sr.br, sr.r
	c := &br.c
	if m.Values == nil {
		// Delivered to this group before, and deleted or trimmed from
		// the stream since.
		sr.st.trimmed.Add(1)
		br.rep.drop(ErrTrimmed, 1, nil)
		return entryDone
	}
	c.received.Add(1)
	topic, _ := m.Values[fieldTopic].(string)
	if topic == "" && !r.isPattern {
		topic = r.Pattern // a foreign writer may leave out the topic of an exact route
	}
	data, hasData := m.Values[fieldData].(string)
	if topic == "" && hasData && r.Format == CloudEvents {
		topic = cloudEventType(data) // a foreign writer's event names its topic
	}
	if topic == "" || !hasData {
		c.decodeErrors.Add(1)
		br.rep.drop(ErrMalformed, 1, fmt.Errorf("%w: entry %s of %q has no %q or %q field", ErrMalformed, m.ID, r.key, fieldTopic, fieldData))
		return entryDone
	}
	if !r.match(topic) {
		c.filtered.Add(1)
		return entryDone
	}
	src, _ := m.Values[fieldSource].(string)
	sr.has = false
	sr.in.accept(&inbound{
		channel: br.cfg.Prefix + topic, // what envelopes are numbered and signed for
		topic:   topic,
		route:   r.route,
		data:    readOnly(data),
		entry:   m.ID,
		key:     r.key,
		source:  src,
	})
	if !sr.has {
		return entryDone
	}
	it := sr.got
	sr.got = importItem{}
	return sr.publish(&it, m)
}
