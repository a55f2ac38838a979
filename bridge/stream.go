package bridge

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Delivery says how a Route carries events through Redis. The zero
// Delivery is PubSub.
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
}

// streams holds the durable routes of a Bridge, their goroutines and
// counters. A Bridge without durable routes has none (Bridge.st is nil).
type streams struct {
	br      *Bridge
	exports map[*route]*streamExport // durable export routes
	readers []*streamReader          // durable import routes
	keys    map[string]bool          // stream keys of the import routes
	cp      Checkpointer
	// consumer is the consumer name of Group routes.
	consumer string

	exported, imported, acked, claimed, resumes, trimmed atomic.Uint64

	ctx    context.Context // the readers'; cancelled when Close starts
	cancel context.CancelFunc
	// closeCtx is Close's context, set before cancel is called: readers
	// save their last position and acknowledge with it.
	closeCtx    context.Context
	flushCtx    context.Context // the flushers'; cancelled when Close gives up
	flushCancel context.CancelFunc
	drain       chan struct{} // closed by Close: flush what is left, then exit
	wg          sync.WaitGroup
	flushLeft   atomic.Int64 // exports of the batches flushers gave up on

	mu      sync.Mutex // protects the fields below
	waiting int        // readers that have not found their start yet
	err     error      // why the last attempt to start a reader failed
}

// addStreamRoute takes the durable route rt, the i-th of Options.Routes,
// into the bridge. It is called by compileRoutes.
func (br *Bridge) addStreamRoute(i int, rt *route) error {
	if rt.Delivery > Group {
		return fmt.Errorf("%w: route %d (%q): unknown delivery %d", ErrInvalidOptions, i, rt.Pattern, rt.Delivery)
	}
	st := br.st
	if st == nil {
		st = &streams{
			br:       br,
			exports:  map[*route]*streamExport{},
			keys:     map[string]bool{},
			cp:       br.cfg.Checkpointer,
			consumer: br.cfg.Consumer,
			drain:    make(chan struct{}),
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
	sr := &streamRoute{route: rt, key: StreamKey(br.cfg.Prefix, name), maxLen: rt.MaxLen, group: rt.Group}
	switch {
	case sr.maxLen == 0:
		sr.maxLen = defaultMaxLen
	case sr.maxLen < 0:
		sr.maxLen = 0
	}
	if sr.group == "" {
		sr.group = defaultGroup
	}
	if rt.Direction.exports() {
		st.exports[rt] = newStreamExport(br, sr)
	}
	if rt.Direction.imports() {
		if st.keys[sr.key] {
			return fmt.Errorf("%w: route %d (%q): another durable import route reads stream %q", ErrInvalidOptions, i, rt.Pattern, sr.key)
		}
		if rt.Delivery == Stream && br.cfg.Checkpointer == nil && br.cfg.idGenerated {
			return fmt.Errorf("%w: route %d (%q): a Stream import route keeps its position under InstanceID: set one that survives restarts, or a Checkpointer", ErrInvalidOptions, i, rt.Pattern)
		}
		st.keys[sr.key] = true
		st.readers = append(st.readers, &streamReader{br: br, st: st, r: sr})
	}
	return nil
}

// StreamKey returns the Redis key of the stream named name (Route.Stream,
// or the route's Pattern) under prefix: prefix + "stream:" + name.
func StreamKey(prefix, name string) string { return prefix + "stream:" + name }

// start starts the goroutines of the durable routes. It is called by New
// once the bridge is otherwise running.
func (st *streams) start() {
	st.ctx, st.cancel = context.WithCancel(context.Background())
	st.flushCtx, st.flushCancel = context.WithCancel(context.Background())
	st.waiting = len(st.readers)
	for _, x := range st.exports {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			x.flushLoop()
		}()
	}
	for _, r := range st.readers {
		st.wg.Add(1)
		go func() {
			defer st.wg.Done()
			r.run()
		}()
	}
}

// ready reports whether every durable import route knows where it starts
// reading, so that events exported after that reach it.
func (st *streams) ready() (bool, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.waiting == 0, st.err
}

// setStart records that a reader found its start (err nil) or failed to
// (a refusal Ready reports).
func (st *streams) setStart(started bool, err error) {
	st.mu.Lock()
	if started {
		st.waiting--
		st.err = nil
	} else {
		st.err = err
	}
	st.mu.Unlock()
	st.br.changed.notify()
}

// stop makes the readers stop after the entry each is handling and makes
// later exports of durable routes fail. ctx is Close's.
func (st *streams) stop(ctx context.Context) {
	st.closeCtx = ctx
	st.cancel()
	close(st.drain)
}

// wait waits until the durable routes' goroutines have returned:
// readers after saving their position or acknowledging what they handled,
// flushers after sending what their outboxes held. If ctx ends first, it
// makes them give up. It returns the number of exports not sent.
func (st *streams) wait(ctx context.Context) int {
	br := st.br
	done := make(chan struct{})
	go func() {
		st.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		st.flushCancel()
		br.deliverCancel()
		<-done
	}
	st.flushCancel()
	n := int(st.flushLeft.Load())
	for _, x := range st.exports {
		n += x.out.Close()
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
