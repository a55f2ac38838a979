package bridge

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busline/bus/bridge/internal/queue"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/plural"
	"github.com/redis/go-redis/v9"
)

// Bridge mirrors the topics of its routes between a local bus and Redis
// pub/sub channels. Create one with New and stop it with Close; the zero
// Bridge is not usable. All methods are safe for concurrent use.
type Bridge struct {
	bus *bus.Bus
	rdb redis.UniversalClient
	cfg config
	id  string
	key []byte
	// epoch is drawn at random by New and sent in every envelope: the
	// receivers tell this run of the instance from its earlier ones, whose
	// recorded messages they reject (see seq.Tracker).
	epoch uint64
	sep   rune // the bus's separator, to check imported topics

	// routesMu serialises the changes of the route table (New,
	// AddRoute, RemoveRoute) and of what hangs on it: the transports the
	// routes need, the import workers, the echo memory. table is the
	// current route table (routes.go), which the hot paths load without
	// a lock.
	routesMu sync.Mutex
	table    atomic.Pointer[routeTable]
	// Protected by routesMu: the next route's ID, whether the import
	// workers run, whether New started the transports.
	nextID            RouteID
	workers           bool
	startedTransports bool
	// shards are the sharded routes (sharded.go): on a cluster, their
	// channels and how to publish on them; a transport when it has
	// channels to import.
	shards *shardSet
	// st holds the durable routes (stream.go), nil without any; it is a
	// transport when not nil.
	st *streams
	// ps is the transport of the classic subscriptions, nil until a
	// route needs one (set under routesMu). pub is the transport of the
	// pub/sub exports. The list of the transports is in the table.
	ps  *pubsubTransport
	pub *publisher

	c   counters
	rep *reporter
	inq *queue.Topics[importItem]
	// echo is nil until a route needs echo suppression by content; then
	// set once, under routesMu.
	echo atomic.Pointer[queue.Echo]

	closing atomic.Bool // exports are refused from now on

	// deliver runs the import workers; its context is passed to local
	// handlers of imported events (those of stream readers too), and
	// cancelled when Close gives up delivering them.
	deliver *group

	changed signal // notified when a transport's readiness or closed changes

	conns connSet // the connections that come and go (shard loops), for Connections

	mu     sync.Mutex // protects the fields below
	closed bool
	// lastErr is the last failure reported by a connection or read loop
	// (pub/sub, sharded, durable), for Ready's error when its context
	// ends first.
	lastErr error
}

// route is a Route with what the bridge works out from it.
type route struct {
	Route
	match     func(topic string) bool
	codec     Codec
	lender    lender // codec, if it is one of this package's; nil otherwise
	redisName string // channel or glob to subscribe to
	isPattern bool
	widened   bool // redisName matches more than a glob's plain reading of Pattern
	// channels caches the channels of exported topics; nil for an exact
	// route.
	channels *channelCache
	// out is the outbox of an export route: the publisher's, or for a
	// durable route its own (streamExport).
	out *queue.Outbox
	// id identifies the route (RouteID); index is its position in
	// Options.Routes, -1 for a route AddRoute added; c its counters
	// (introspect.go).
	id    RouteID
	index int
	c     routeCounters
	// sub is an export route's local subscription; removed is set when
	// RemoveRoute takes the route out of the table, so that its handler
	// stops exporting before the subscription ends.
	sub     *bus.Subscription
	removed atomic.Bool
	calls   atomic.Int64 // export handler calls under way
	// readConn and sendConn are the states of a durable route's reader
	// and exporter, nil when it has none and for pub/sub routes.
	readConn, sendConn *conn
}

type globRoutes struct {
	glob    string
	matches []func(string) bool
}

// New starts a bridge between b and the Redis server behind rdb, configured
// by opts (nil means the defaults). It subscribes on b to the export routes
// and, when there are import routes, starts subscribing on Redis in the
// background: call Ready to wait until the subscriptions are confirmed.
//
// New does not wait for Redis: it returns an error only for options it
// cannot use (wrapping ErrInvalidOptions) or a closed bus (wrapping
// bus.ErrClosed). Before it returns, it reports each import route whose
// pattern Redis cannot express to Options.OnError, on the caller's
// goroutine, wrapping the informational ErrPatternWidened. The bridge uses
// rdb but never closes it; rdb must outlive the bridge.
func New(b *bus.Bus, rdb redis.UniversalClient, opts *Options) (*Bridge, error) {
	if b == nil || rdb == nil {
		return nil, fmt.Errorf("%w: nil bus or Redis client", ErrInvalidOptions)
	}
	// A bridge without export routes never subscribes on b, which would
	// have told: ask the bus (NumSub fails once it is closed).
	if _, err := b.NumSub("busline"); errors.Is(err, bus.ErrClosed) {
		return nil, &wrapped{msg: "bridge: new: the bus is closed", errs: []error{err}}
	}
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	br := &Bridge{
		bus:   b,
		rdb:   rdb,
		cfg:   cfg,
		id:    cfg.InstanceID,
		key:   cfg.SigningKey,
		epoch: newEpoch(),
		sep:   b.Separator(),
	}
	br.rep = newReporter(cfg.OnError, &br.c.reportsHeld)
	br.pub = newPublisher(br)
	br.shards = newShardSet(br, rdb)
	br.inq = queue.NewTopics(cfg.ImportQueueSize, cfg.ImportTopicQueueSize, cfg.ImportQueueBytes, importItem.size, br.importDropped)
	br.deliver = newGroup(context.Background())
	br.table.Store(&routeTable{})
	if err := br.addReplyRoutes(b.Separator()); err != nil {
		return nil, err
	}
	// The routes of the options take the path of AddRoute's, all at
	// once, before anything runs.
	routes := make([]*route, 0, len(br.cfg.Routes))
	for i, r := range br.cfg.Routes {
		rt, err := br.compileRoute(fmt.Sprintf("route %d", i), r)
		if err != nil {
			return nil, err
		}
		rt.id, rt.index = RouteID(i), i
		routes = append(routes, rt)
	}
	br.routesMu.Lock()
	br.nextID = RouteID(len(routes))
	err = br.addLocked(routes)
	if err == nil {
		br.startedTransports = true
		for _, t := range br.table.Load().transports {
			t.start()
		}
	}
	br.routesMu.Unlock()
	if err != nil {
		br.deliver.cancel()
		br.inq.Close()
		br.deliver.wait(context.Background(), nil)
		return nil, err
	}
	for i, rt := range routes {
		br.reportWidened(rt, fmt.Sprintf("route %d", i))
	}
	return br, nil
}

// unrecognised reports whether an export of route e may come back through
// import route i without a source i reads: raw on either side, or a
// CloudEvent read by an envelope route (which takes it as raw bytes).
func unrecognised(e, i *route) bool {
	return e.Raw || i.Raw || e.Format == CloudEvents && i.Format != CloudEvents
}

// InstanceID returns the ID this bridge puts in its envelopes.
func (br *Bridge) InstanceID() string { return br.id }

// RedisSubscriptions returns the channels the bridge subscribes to with
// SUBSCRIBE and the globs it subscribes to with PSUBSCRIBE, sorted: those
// of its live routes.
func (br *Bridge) RedisSubscriptions() (channels, patterns []string) {
	return br.table.Load().subscriptions()
}

// subscriptions returns the channels and the globs of t, sorted.
func (t *routeTable) subscriptions() (channels, patterns []string) {
	for ch := range t.exact {
		channels = append(channels, ch)
	}
	slices.Sort(channels)
	for _, g := range t.globs {
		patterns = append(patterns, g.glob)
	}
	return channels, patterns
}

// Ready waits until Redis has confirmed every subscription of the import
// routes on the current connection, and returns nil then. Events published
// on Redis before that are not received: go-redis's Subscribe returns
// before Redis has acted on it.
//
// Ready returns an error wrapping ErrSubscribe when Redis refused a
// subscription (the bridge keeps retrying with backoff), and ErrClosed
// once the bridge is closed. When ctx ends first it returns an error
// wrapping ctx.Err() and the last connection error the bridge reported,
// if any, which says why it is not ready:
//
//	bridge: not ready: context deadline exceeded; last error: cannot connect to redis at 127.0.0.1:6380: dial tcp 127.0.0.1:6380: connect: connection refused
//
// errors.Is matches both (context.DeadlineExceeded and ErrConnect here).
// After a reconnect, Ready waits again until the new connection is
// confirmed.
//
// A bridge with nothing to read from Redis (export routes only) has no
// subscription to wait for: Ready then confirms that Redis answers a PING,
// trying again with backoff until ctx ends, so that a wrong address or
// password shows at start-up, in the same error as above ("last error:
// cannot connect to redis at ..."), rather than as exports held in the
// outbox later.
//
// Ready is safe for concurrent use; it blocks until one of these happens.
func (br *Bridge) Ready(ctx context.Context) error {
	if !br.reads() {
		return br.ping(ctx)
	}
	return br.await(ctx, func() (bool, error) {
		if br.isClosed() {
			return false, ErrClosed
		}
		ready := true
		var err error
		for _, t := range br.table.Load().transports {
			if ok, terr := t.ready(); !ok {
				ready = false
				if err == nil {
					err = terr
				}
			}
		}
		return ready, err
	})
}

// await returns nil once check reports ok, check's error if it has one,
// or the error of notReady once ctx ends. It calls check again at each
// change of the transports' readiness (Bridge.changed).
func (br *Bridge) await(ctx context.Context, check func() (ok bool, err error)) error {
	for {
		changed := br.changed.wait() // before looking, so that no change is missed
		switch ok, err := check(); {
		case ok:
			return nil
		case err != nil:
			return err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return br.notReady(ctx)
		}
	}
}

// reads reports whether the bridge reads from Redis: pub/sub or sharded
// subscriptions, or durable import routes.
func (br *Bridge) reads() bool {
	t := br.table.Load()
	return len(t.imports) > 0 || len(t.readers) > 0
}

// ping is Ready for a bridge that reads nothing from Redis: it returns nil
// once Redis answers a PING, trying again with backoff after each failure,
// until ctx ends or the bridge is closed.
func (br *Bridge) ping(ctx context.Context) error {
	back := backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}
	var last error
	for {
		changed := br.changed.wait() // Close notifies it
		br.mu.Lock()
		closed := br.closed
		br.mu.Unlock()
		if closed {
			return ErrClosed
		}
		err := br.rdb.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return br.notReadyWith(ctx, last)
		}
		last = &connectError{addr: redisAddr(br.rdb), err: err}
		t := time.NewTimer(back.next())
		select {
		case <-t.C:
		case <-changed:
		case <-ctx.Done():
			t.Stop()
			return br.notReadyWith(ctx, last)
		}
		t.Stop()
	}
}

// notReady returns the error of a Ready whose ctx ended.
func (br *Bridge) notReady(ctx context.Context) error { return br.notReadyWith(ctx, nil) }

// notReadyWith returns the error of a Ready whose ctx ended, with last as
// the reason, or if nil the last failure a connection loop reported.
func (br *Bridge) notReadyWith(ctx context.Context, last error) error {
	if last == nil {
		br.mu.Lock()
		last = br.lastErr
		br.mu.Unlock()
	}
	return &notReadyError{ctxErr: ctx.Err(), last: last}
}

// reportLast reports err, a failure of a connection or read loop, and
// keeps it for Ready.
func (br *Bridge) reportLast(err error) {
	br.mu.Lock()
	br.lastErr = err
	br.mu.Unlock()
	br.rep.report(err)
}

// reportAttempt keeps err, a failed attempt of a pub/sub connection loop,
// for Ready, and reports it, or a summary of the attempts, as f says: the
// first failure and each change of cause, then at most one summary per
// Options.ReconnectMax.
func (br *Bridge) reportAttempt(f *failures, err error) {
	br.mu.Lock()
	br.lastErr = err
	br.mu.Unlock()
	if rep := f.failed(err, time.Now()); rep != nil {
		br.rep.report(rep)
	}
}

// redisAddr returns the address of the server behind rdb for messages, or
// "" when rdb does not say (a Sentinel failover client says
// "FailoverClient").
func redisAddr(rdb redis.UniversalClient) string {
	switch c := rdb.(type) {
	case *redis.Client:
		if a := c.Options().Addr; a != "FailoverClient" {
			return a
		}
	case *redis.ClusterClient:
		return strings.Join(c.Options().Addrs, ",")
	}
	return ""
}

// Stats returns the bridge's counters. It is cheap enough to call often:
// a few atomic loads and two short lock acquisitions.
func (br *Bridge) Stats() Stats {
	c := &br.c
	s := Stats{
		Exported:          c.exported.Load(),
		ExportMessages:    c.exportMessages.Load(),
		ExportRejected:    c.exportRejected.Load(),
		EncodeErrors:      c.encodeErrors.Load(),
		OutboxOverflow:    c.outboxOverflow.Load(),
		OutboxExpired:     c.outboxExpired.Load(),
		OutboxUnsent:      c.outboxUnsent.Load(),
		Received:          c.received.Load(),
		Imported:          c.imported.Load(),
		Filtered:          c.filtered.Load(),
		DuplicateCopies:   c.duplicateCopies.Load(),
		EchoesDropped:     c.echoes.Load(),
		Duplicates:        c.dups.Load(),
		DecodeErrors:      c.decodeErrors.Load(),
		SignatureRejected: c.signatureRejected.Load(),
		ImportDropped:     c.importDropped.Load(),
		Replayed:          c.replayed.Load(),
		ReportsHeld:       c.reportsHeld.Load(),
		Gaps:              c.gaps.Load(),
		GapEvents:         c.gapEvents.Load(),
		Reconnects:        c.reconnects.Load(),
		ExportOutages:     c.exportOutages.Load(),
		ShardRebuilds:     c.shardRebuilds.Load(),
	}
	s.ImportDepth, s.ImportBytes = br.inq.Depth()
	for _, t := range br.table.Load().transports {
		t.stats(&s)
	}
	s.OutboxDropped = s.OutboxOverflow + s.OutboxExpired + s.OutboxUnsent
	return s
}

// Close stops the bridge: it stops exporting (later local events are not
// exported and count as OutboxUnsent), closes the pub/sub connection (which
// unsubscribes everything), delivers the imported events already queued,
// and sends what the outbox holds, until everything is done or ctx ends.
// It then waits for every goroutine of the bridge to return, including
// import workers inside slow local handlers. The Redis client is not
// closed.
//
// If ctx ends before the outbox is empty, Close drops the rest and returns
// an error wrapping ErrNotSent and ctx.Err() that says how many exports
// were not sent; imported events not yet delivered are dropped too and
// counted in ImportDropped. A second Close returns ErrClosed. Close must
// not be called from a handler of a bridged topic: it would wait for
// itself.
func (br *Bridge) Close(ctx context.Context) error {
	// Under routesMu, so that AddRoute and RemoveRoute see either a
	// bridge that runs, and finish changing it before Close goes on, or
	// a closed one.
	br.routesMu.Lock()
	br.mu.Lock()
	if br.closed {
		br.mu.Unlock()
		br.routesMu.Unlock()
		return ErrClosed
	}
	br.closed = true
	br.mu.Unlock()
	table := br.table.Load()
	br.routesMu.Unlock()
	br.changed.notify()

	br.closing.Store(true)
	for _, r := range table.routes {
		if r.sub != nil {
			r.sub.Unsubscribe()
		}
	}
	// Every transport stops reading and starts draining its exports at
	// once; then each is waited for, flushing until done or ctx ends.
	for _, t := range table.transports {
		t.stop(ctx)
	}
	var unsent uint64
	for _, t := range table.transports {
		unsent += uint64(t.wait(ctx))
	}
	br.inq.Close() // nothing pushes any more
	br.c.outboxUnsent.Add(unsent)

	// Deliver what was imported, unless ctx ends: then drop the rest.
	br.deliver.wait(ctx, br.inq.Abort)
	br.rep.flush()
	if unsent > 0 {
		return fmt.Errorf("%w: %s dropped: %w", ErrNotSent, plural.Of(unsent, "export"), ctx.Err())
	}
	return nil
}

// backoff computes jittered exponential delays between min and max.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	// Full jitter over the upper half: instances that lost Redis together
	// do not come back in lockstep, and the delay still grows.
	half := b.cur / 2
	return half + time.Duration(rand.Int64N(int64(b.cur-half)+1))
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits for d or until ctx ends, and reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
