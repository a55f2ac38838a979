package bridge

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busline/bus/bridge/internal/queue"
)

// RouteStats are the counters of one route since it was added (by New or
// AddRoute), and what the bridge made of it: for a monitoring page, or a
// metrics collector labelling series by route (label them by ID: routes
// are few, and an ID is never reused, so the label's cardinality is that
// of the routes ever added).
//
// The counters are parts of their namesakes in Stats: summed over the
// routes, removed ones included, Exported, ExportRejected, EncodeErrors,
// Imported, DecodeErrors, SignatureRejected, ImportDropped, Duplicates,
// Gaps and GapEvents are those of Stats, except for what happens before a message has a route (a
// message filtered out, or a malformed stream entry without a topic) and
// the drops of the pub/sub outbox, which its routes share: OutboxOverflow,
// OutboxExpired and OutboxUnsent are counted for the bridge only. The
// counters RemoveRoute returns leave out the removed route's imports
// still queued then, which Stats counts once they are delivered.
type RouteStats struct {
	// ID identifies the route: see RouteID.
	ID RouteID
	// Index is the position of the route in Options.Routes, -1 for a
	// route AddRoute added.
	Index int
	// Pattern, Direction, Delivery and Raw are the route's own.
	Pattern   string
	Direction Direction
	Delivery  Delivery
	Raw       bool
	// Channel is the Redis channel of an exact pub/sub route (with its
	// partition tag on a cluster) or, with Glob set, the Redis glob a
	// pattern route subscribes to (its exports go to Prefix + topic).
	// Empty for durable routes.
	Channel string
	Glob    bool
	// Stream is the Redis key of a durable route's stream; empty for
	// pub/sub routes.
	Stream string

	// Queued counts the exports the route handed to its outbox; each is
	// then exported, rejected, dropped by the outbox (see above) or still
	// waiting.
	Queued uint64
	// Exported counts the route's events Redis accepted (PUBLISH,
	// SPUBLISH or XADD answered).
	Exported uint64
	// ExportRejected counts the route's exports Redis refused.
	ExportRejected uint64
	// EncodeErrors counts the route's payloads that could not be
	// encoded or were over MaxMessageBytes.
	EncodeErrors uint64
	// OutboxDepth is what waits in a durable export route's own outbox,
	// the batch being sent included. Pub/sub routes share the bridge's
	// outbox (Stats.OutboxDepth) and report 0.
	OutboxDepth int

	// Imported counts the route's events published on the local bus.
	Imported uint64
	// DecodeErrors counts the route's messages that were malformed,
	// oversized, or whose payload the Codec could not decode, or whose
	// topic the bus rejected.
	DecodeErrors uint64
	// SignatureRejected counts the route's messages rejected for their
	// signature (Options.SigningKey).
	SignatureRejected uint64
	// ImportDropped counts the route's imported events dropped because
	// the import queue was full or the bus refused them.
	ImportDropped uint64
	// Duplicates counts the route's events received twice.
	Duplicates uint64
	// Gaps counts the sequence gaps detected on the route's channels and
	// streams, and GapEvents the events they miss.
	Gaps, GapEvents uint64
}

// routeCounters are the atomic counters behind RouteStats, one set per
// route. The hot paths that know their route add to them next to the
// bridge-wide counter: an atomic addition, no allocation.
type routeCounters struct {
	queued, exported, exportRejected, encodeErrors           atomic.Uint64
	imported, decodeErrors, signatureRejected, importDropped atomic.Uint64
	duplicates, gaps, gapEvents                              atomic.Uint64
}

// Routes returns the counters of every live route, in ID order: those of
// Options.Routes first, in their order, then those AddRoute added and
// RemoveRoute has not removed (RemoveRoute returns a route's final
// counters). It is safe for concurrent use and cheap enough to call
// often: atomic loads, and a short lock per durable export route for its
// outbox depth. It allocates the returned slice. After Close it returns
// the final counts.
func (br *Bridge) Routes() []RouteStats {
	t := br.table.Load()
	out := make([]RouteStats, 0, len(t.routes))
	for _, r := range t.routes {
		out = append(out, br.routeStats(r))
	}
	return out
}

// routeStats returns the counters of r.
func (br *Bridge) routeStats(r *route) RouteStats {
	c := &r.c
	rs := RouteStats{
		ID: r.id, Index: r.index, Pattern: r.Pattern, Direction: r.Direction, Delivery: r.Delivery, Raw: r.Raw,
		Queued: c.queued.Load(), Exported: c.exported.Load(), ExportRejected: c.exportRejected.Load(),
		EncodeErrors: c.encodeErrors.Load(), Imported: c.imported.Load(), DecodeErrors: c.decodeErrors.Load(),
		SignatureRejected: c.signatureRejected.Load(), ImportDropped: c.importDropped.Load(),
		Duplicates: c.duplicates.Load(), Gaps: c.gaps.Load(), GapEvents: c.gapEvents.Load(),
	}
	if r.durable() {
		rs.Stream = br.streamKey(r)
		if x := br.st.exportOf(r); x != nil {
			n, _ := x.out.Depth()
			sending, _ := x.inflight.Load()
			rs.OutboxDepth = n + sending
		}
	} else {
		rs.Channel, rs.Glob = r.redisName, r.isPattern
	}
	return rs
}

// streamKey returns the stream key of durable route r.
func (br *Bridge) streamKey(r *route) string {
	name := r.Stream
	if name == "" {
		name = r.Pattern
	}
	return StreamKey(br.cfg.Prefix, name)
}

// countExported adds the exports of batch at positions idx to their
// routes' Exported: one atomic addition per run of one route's exports
// (a coalesced message is one channel's, so one route's).
func (br *Bridge) countExported(batch []queue.Export, idx []int) {
	for len(idx) > 0 {
		r := batch[idx[0]].Route
		n := 1
		for n < len(idx) && batch[idx[n]].Route == r {
			n++
		}
		routeOf(&batch[idx[0]]).c.exported.Add(uint64(n))
		idx = idx[n:]
	}
}

// routeOf returns the route of export it.
func routeOf(it *queue.Export) *route { return it.Route.(*route) }

// ConnKind says what a connection of the bridge to Redis is for.
type ConnKind uint8

const (
	// ConnPubSub is the classic pub/sub connection: SUBSCRIBE and
	// PSUBSCRIBE for the pub/sub import routes.
	ConnPubSub ConnKind = iota + 1
	// ConnShard is the sharded pub/sub connection to one node of a
	// cluster (SSUBSCRIBE), one per node serving imported channels.
	ConnShard
	// ConnStreamReader is the reader of one durable import route (XREAD
	// or XREADGROUP).
	ConnStreamReader
	// ConnExporter is an exporter: the flusher of the pub/sub outbox
	// (PUBLISH, SPUBLISH), or that of one durable export route (XADD).
	ConnExporter
)

// String returns "pubsub", "shard", "stream reader" or "exporter".
func (k ConnKind) String() string {
	switch k {
	case ConnPubSub:
		return "pubsub"
	case ConnShard:
		return "shard"
	case ConnStreamReader:
		return "stream reader"
	case ConnExporter:
		return "exporter"
	}
	return fmt.Sprintf("ConnKind(%d)", uint8(k))
}

// ConnState is the state of one of the bridge's uses of Redis, as its
// goroutine last saw it.
type ConnState struct {
	// Kind says what the connection is for.
	Kind ConnKind
	// Node is the address of the Redis server, as the client knows it: a
	// node of a cluster for ConnShard, the client's address (or a
	// cluster's seed addresses) otherwise; "" when the client does not
	// say (a Sentinel failover client).
	Node string
	// Route is the pattern of the durable route of a ConnStreamReader or
	// of a durable ConnExporter; "" for the shared ones.
	Route string
	// Connected reports whether it works: the subscriptions are
	// confirmed (pubsub, shard), the last read succeeded (stream reader),
	// the last send reached Redis (exporter).
	Connected bool
	// Since is when Connected last changed; zero while it has not been
	// connected yet (an exporter that has sent nothing, a connection
	// still being made).
	Since time.Time
	// LastError is the last failure seen, nil if none; it stays after
	// the connection recovers, with LastErrorAt saying when.
	LastError   error
	LastErrorAt time.Time
	// Failures counts the times it went from connected (or from the
	// start) to failing.
	Failures uint64
}

// conn records the state of one use of Redis for Connections. Its
// goroutine calls up and down at transitions; up has a lock-free fast path
// for the exporters, which call it after every pipeline.
type conn struct {
	kind  ConnKind
	route string
	isUp  atomic.Bool // mirrors st.Connected, for up's fast path

	mu sync.Mutex // protects st
	st ConnState
}

func newConn(kind ConnKind, node, route string) *conn {
	return &conn{kind: kind, route: route, st: ConnState{Kind: kind, Node: node, Route: route}}
}

// up records that the connection works.
func (c *conn) up() {
	if c.isUp.Load() {
		return
	}
	c.mu.Lock()
	if !c.st.Connected {
		c.st.Connected, c.st.Since = true, time.Now()
	}
	c.isUp.Store(true)
	c.mu.Unlock()
}

// down records that the connection failed with err (nil: it ended
// without an error).
func (c *conn) down(err error) {
	now := time.Now()
	c.mu.Lock()
	if c.st.Connected || c.st.Failures == 0 && err != nil {
		c.st.Failures++
	}
	if c.st.Connected {
		c.st.Since = now
	}
	c.st.Connected = false
	c.isUp.Store(false)
	if err != nil {
		c.st.LastError, c.st.LastErrorAt = err, now
	}
	c.mu.Unlock()
}

func (c *conn) state() ConnState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// connSet is the connections of a Bridge that come and go (shard loops);
// the others are fields of their transports and routes.
type connSet struct {
	mu    sync.Mutex // protects conns
	conns []*conn
}

func (s *connSet) add(c *conn) *conn {
	s.mu.Lock()
	s.conns = append(s.conns, c)
	s.mu.Unlock()
	return c
}

func (s *connSet) remove(c *conn) {
	s.mu.Lock()
	for i, x := range s.conns {
		if x == c {
			s.conns = append(s.conns[:i], s.conns[i+1:]...)
			break
		}
	}
	s.mu.Unlock()
}

// Connections returns the state of each of the bridge's uses of Redis:
// the pub/sub connection, one per cluster node with sharded imports, one
// reader per durable import route, the pub/sub exporter (when some route
// exports through pub/sub) and one exporter per durable export route. The
// order is stable: pub/sub and shards, then the live durable routes in
// ID order, then the pub/sub exporter.
//
// It is safe for concurrent use, takes a short lock per connection and
// allocates the returned slice. It is meant for monitoring (a page, a
// readiness probe that says why); Ready is the way to wait for the
// connections. After Close it shows the states at the end.
func (br *Bridge) Connections() []ConnState {
	var out []ConnState
	br.conns.mu.Lock()
	for _, c := range br.conns.conns {
		out = append(out, c.state())
	}
	br.conns.mu.Unlock()
	t := br.table.Load()
	for _, r := range t.routes {
		if r.readConn != nil {
			out = append(out, r.readConn.state())
		}
		if r.sendConn != nil {
			out = append(out, r.sendConn.state())
		}
	}
	for _, r := range t.exports {
		if !r.durable() {
			out = append(out, br.pub.conn.state())
			break
		}
	}
	return out
}
