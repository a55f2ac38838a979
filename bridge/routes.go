package bridge

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/plural"
	"github.com/busline/bus/bridge/internal/queue"
)

// The route table.
//
// The routes of a bridge change at run time (AddRoute, RemoveRoute), while
// events flow both ways. Everything the hot paths need to know about the
// routes — which export route owns a topic, which import route a channel
// or a glob leads to, which channels are sharded — is in one immutable
// routeTable, which a change replaces whole (copy on write) under
// Bridge.routesMu. The hot paths load it with one atomic load, no lock and
// no allocation; a change builds the new table from the list of live
// routes (buildTable), so that the derived maps (channels and globs, with
// the routes that need each) can never drift from the routes. A channel or
// glob is subscribed while some live route needs it: two routes sharing a
// glob share its PSUBSCRIBE, and removing one keeps it.

// RouteID identifies a route of a bridge: the routes of Options.Routes
// are 0, 1, 2... in order (the routes Options.Replies adds follow them),
// and each route AddRoute adds gets the next number. IDs are never reused
// while the bridge lives.
type RouteID uint64

// routeTable is the routing state of a bridge at one moment. It is never
// modified once stored in Bridge.table: a change stores a new one.
type routeTable struct {
	routes  []*route // the live routes, by ID
	exports []*route // the live export routes, by ID
	imports []*route // the live pub/sub import routes (classic and sharded), by ID
	// exact are the channels subscribed with SUBSCRIBE; globs the Redis
	// globs subscribed with PSUBSCRIBE, sorted, each with the matchers of
	// the routes behind it.
	exact map[string]bool
	globs []globRoutes
	// On a cluster (sharded routes): the channels exported with
	// SPUBLISH, the channels imported with SSUBSCRIBE, and those by slot,
	// sorted.
	shardExports  map[string]bool
	shardChannels map[string]shardedChannel
	slots         map[int][]string
	// readers are the live durable import routes, by ID.
	readers []*route
	// transports are the bridge's transports, in the order Close stops
	// them: durable routes, classic subscriptions, sharded ones, the
	// publisher.
	transports []transport
}

// lookup returns the live route id, or nil.
func (t *routeTable) lookup(id RouteID) *route {
	i, ok := slices.BinarySearchFunc(t.routes, id, func(r *route, id RouteID) int {
		switch {
		case r.id < id:
			return -1
		case r.id > id:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return t.routes[i]
}

// classic reports whether the table holds classic subscriptions.
// hasGlob reports whether t subscribes to the Redis glob g (PSUBSCRIBE).
func (t *routeTable) hasGlob(g string) bool {
	_, found := slices.BinarySearchFunc(t.globs, g, func(r globRoutes, g string) int { return strings.Compare(r.glob, g) })
	return found
}

func (t *routeTable) classic() bool { return len(t.exact) > 0 || len(t.globs) > 0 }

// buildTable returns the table of routes, live routes in ID order, with
// the bridge's transports as they are.
func (br *Bridge) buildTable(routes []*route) *routeTable {
	t := &routeTable{routes: routes, exact: map[string]bool{}}
	globs := map[string][]func(string) bool{}
	for _, r := range routes {
		if r.Direction.exports() {
			t.exports = append(t.exports, r)
		}
		if !r.Direction.imports() {
			continue
		}
		if r.durable() {
			t.readers = append(t.readers, r)
			continue
		}
		t.imports = append(t.imports, r)
		switch {
		case r.isPattern:
			globs[r.redisName] = append(globs[r.redisName], r.match)
		case !br.shards.sharded():
			t.exact[r.redisName] = true
		}
	}
	for g, m := range globs {
		t.globs = append(t.globs, globRoutes{glob: g, matches: m})
	}
	slices.SortFunc(t.globs, func(a, b globRoutes) int { return strings.Compare(a.glob, b.glob) })
	if br.shards.sharded() {
		br.shards.fill(t)
	}
	t.transports = br.transportList()
	return t
}

// transportList returns the transports the bridge runs, in the order
// Close stops them. The caller holds routesMu (or is New).
func (br *Bridge) transportList() []transport {
	var ts []transport
	if br.st != nil {
		ts = append(ts, br.st)
	}
	if br.ps != nil {
		ts = append(ts, br.ps)
	}
	if br.shards.running {
		ts = append(ts, br.shards)
	}
	return append(ts, br.pub)
}

// importRoute returns the first import route of t that matches topic, or
// nil. It does not allocate.
func (t *routeTable) importRoute(topic string) *route {
	for _, r := range t.imports {
		if r.match(topic) {
			return r
		}
	}
	return nil
}

// compileRoute checks r and works out what the bridge needs of it; what
// names it in errors ("route 3"). It does not change the bridge.
func (br *Bridge) compileRoute(what string, r Route) (*route, error) {
	sep := br.sep
	if r.Direction > Import {
		return nil, fmt.Errorf("%w: %s (%q): unknown direction %d", ErrInvalidOptions, what, r.Pattern, r.Direction)
	}
	if r.Delivery > Group {
		return nil, fmt.Errorf("%w: %s (%q): unknown delivery %d", ErrInvalidOptions, what, r.Pattern, r.Delivery)
	}
	if err := br.checkFormat(what, &r); err != nil {
		return nil, err
	}
	match, err := bus.CompilePattern(r.Pattern, sep)
	if err != nil {
		return nil, chain(ErrInvalidOptions, what, err)
	}
	name, isPattern, err := RedisPattern(br.cfg.Prefix, r.Pattern, sep)
	if err != nil {
		return nil, chain(ErrInvalidOptions, what, err)
	}
	if !isPattern && br.shards.sharded() && r.Delivery == PubSub {
		// Durable routes' entries name the topic, not a channel:
		// their channel stays Prefix + topic, partitioned or not.
		name = br.shards.channel(r.Pattern)
	}
	rt := &route{Route: r, match: match, codec: r.Codec, redisName: name, isPattern: isPattern, index: -1}
	if rt.durable() && r.Direction.imports() {
		rt.readConn = newConn(ConnStreamReader, redisAddr(br.rdb), r.Pattern)
	}
	if rt.durable() && r.Direction.exports() {
		rt.sendConn = newConn(ConnExporter, redisAddr(br.rdb), r.Pattern)
	}
	if isPattern {
		_, rt.widened = redisGlob(br.cfg.Prefix, r.Pattern)
		rt.channels = &channelCache{seed: maphash.MakeSeed()}
	}
	switch _, isDefault := rt.codec.(defaultCodec); {
	case rt.codec == nil && r.Raw:
		rt.codec = Bytes()
	case rt.codec == nil:
		rt.codec = DefaultCodec
	case isDefault && r.Raw:
		// Raw messages carry no content type: strings published here
		// would reach the other instances as []byte.
		return nil, fmt.Errorf("%w: %s (%q): DefaultCodec on a raw route; use bridge.Text() for string payloads or bridge.Bytes() for []byte",
			ErrInvalidOptions, what, r.Pattern)
	}
	rt.lender, _ = rt.codec.(lender)
	if r.Direction.exports() {
		rt.out = br.pub.out // a durable route's own, set by addStreamRoute
	}
	if rt.durable() {
		if err := br.addStreamRoute(what, rt); err != nil {
			return nil, err
		}
	}
	return rt, nil
}

// AddRoute adds route r to the bridge and returns its ID. It checks r as
// New checks Options.Routes, returning an error wrapping
// ErrInvalidOptions, and ErrClosed once Close has begun.
//
// AddRoute does not wait for Redis. An export route exports the local
// events published after AddRoute returns. An import route subscribes in
// the background, on the connection it needs (started if it is the
// first): call RouteReady to wait until Redis confirmed it; messages
// published on Redis before that are not received. A durable import
// route's reader starts at once, from its checkpoint or its group's
// position.
//
// The new route comes after every existing route: a topic an earlier
// route also matches is exported, and imported, by the earlier one (see
// Options.Routes). A pattern import route that Redis cannot express
// exactly is reported to Options.OnError, as New does, wrapping
// ErrPatternWidened. ACLRules knows only Options.Routes: an ACL user must
// also be granted the channels of the routes added later, and the literal
// glob of each pattern import route (PSUBSCRIBE), or RouteReady returns
// the refusal, wrapping ErrSubscribe, while the other routes keep
// receiving (see "Routes added at run time" in the documentation of
// ACLRules).
//
// AddRoute is safe for concurrent use, with every method of the bridge
// and while events flow. It takes a lock that RemoveRoute holds only
// while it changes the table, and allocates the new route table (a copy
// of the route list): adding n routes one by one costs O(n²), which is
// nothing for the hundreds of routes a bridge has.
func (br *Bridge) AddRoute(r Route) (RouteID, error) {
	br.routesMu.Lock()
	defer br.routesMu.Unlock()
	if br.isClosed() {
		return 0, ErrClosed
	}
	rt, err := br.compileRoute("AddRoute", r)
	if err != nil {
		return 0, err
	}
	rt.id = br.nextID
	if err := br.addLocked([]*route{rt}); err != nil {
		br.forgetStreamRoute(rt)
		return 0, err
	}
	br.nextID++
	br.reportWidened(rt, "added route")
	return rt.id, nil
}

// addLocked takes rts, compiled routes with their IDs, into the bridge:
// a new table, the memory and transports they need, started if New is
// done, their local subscriptions and their Redis subscriptions. New
// and AddRoute both add through it. The caller holds routesMu.
func (br *Bridge) addLocked(rts []*route) error {
	old := br.table.Load()
	t := br.buildTable(append(slices.Clip(old.routes), rts...))
	if br.echo.Load() == nil && needsEchoMemory(t) {
		// Before the routes export: an export marked for echo
		// suppression finds the memory.
		br.echo.Store(queue.NewEcho(br.cfg.EchoWindow, br.cfg.EchoMemory))
	}
	started := br.startedTransports
	if t.classic() && br.ps == nil {
		br.ps = newPubsubTransport(br)
		if started {
			br.ps.start()
		}
	}
	if br.shards.importing(t) && !br.shards.running {
		br.shards.running = true
		if started {
			br.shards.start()
		}
	}
	if len(t.imports) > 0 && !br.workers {
		br.workers = true
		for range br.cfg.ImportWorkers {
			br.deliver.run(func() { br.inq.Work(br.deliverItem) })
		}
	}
	t.transports = br.transportList()
	br.table.Store(t)

	for i, r := range rts {
		if !r.Direction.exports() {
			continue
		}
		// Named for monitoring: bus.Subscriptions lists it among the
		// application's own.
		sub, err := br.bus.SubscribeWith(r.Pattern, br.exportHandler(r), &bus.SubscribeOptions{Name: "bridge export"})
		if err != nil {
			for _, e := range rts[:i] {
				if e.sub != nil {
					e.sub.Unsubscribe()
				}
			}
			br.table.Store(old)
			return busError(fmt.Sprintf("bridge: subscribe %q on the bus", r.Pattern), err)
		}
		r.sub = sub
	}
	if started {
		br.syncSubscriptions()
		for _, r := range rts {
			br.startStreamRoute(r)
		}
	}
	return nil
}

// syncSubscriptions makes the transports that subscribe on Redis catch up
// with the table, in the background.
func (br *Bridge) syncSubscriptions() {
	if br.ps != nil {
		br.ps.resync()
	}
	if br.shards.running {
		br.shards.routesChanged()
	}
}

// RouteReady waits until route id receives what it should: Redis confirmed
// its SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE on the current connection, or
// its durable reader found where it starts. It returns nil at once for an
// export route. Like Ready, it returns an error wrapping ErrSubscribe when
// Redis refused the subscription, and when ctx ends first an error
// wrapping ctx.Err() and the last connection error. It returns an error
// wrapping ErrNoRoute for an ID that is not a live route (never added, or
// removed), and ErrClosed once the bridge is closed. It is safe for
// concurrent use.
func (br *Bridge) RouteReady(ctx context.Context, id RouteID) error {
	return br.await(ctx, func() (bool, error) {
		if br.isClosed() {
			return false, ErrClosed
		}
		r := br.table.Load().lookup(id)
		if r == nil {
			return false, fmt.Errorf("%w: %d", ErrNoRoute, id)
		}
		return br.routeReady(r)
	})
}

// routeReady reports whether r receives what it should, and if not the
// refusal that keeps it from that, if any.
func (br *Bridge) routeReady(r *route) (bool, error) {
	switch {
	case !r.Direction.imports():
		return true, nil
	case r.durable():
		return br.st.readerReady(r)
	case r.isPattern:
		return br.ps.confirmedRoute(r, "psubscribe", r.redisName)
	case br.shards.sharded():
		return br.shards.confirmedChannel(r)
	}
	return br.ps.confirmedRoute(r, "subscribe", r.redisName)
}

// RemoveRoute removes route id from the bridge and returns its counters
// as they are when it returns. It stops the route at once: the route's local subscription
// ends (local events it would have exported and that arrive from now on
// count as OutboxUnsent, as after Close), its channel or glob is
// unsubscribed on Redis (UNSUBSCRIBE, PUNSUBSCRIBE, SUNSUBSCRIBE) unless
// another live route needs it, and messages that still arrive for it are
// filtered (Stats.Filtered) or imported by another route that matches
// their topic. A durable import route's reader saves its position (or
// acknowledges what it handled) and returns.
//
// Then RemoveRoute waits until the exports the route queued have been
// sent, until ctx ends: what is left then is dropped, counted as
// OutboxUnsent, and RemoveRoute returns, with the counters, an error
// wrapping ErrNotSent and ctx.Err() that says how many. It returns an
// error wrapping ErrNoRoute for an ID that is not a live route, and
// ErrClosed once Close has begun (Close then drains the route with the
// others).
//
// RemoveRoute does not wait for the route's imported events already in
// the import queue (pub/sub and sharded routes): they are still delivered
// after it returns, and counted in Stats.Imported but not in the
// RouteStats it returned.
//
// RemoveRoute is safe for concurrent use, with AddRoute, RemoveRoute of
// other routes and every other method. It must not be called from a
// handler of a topic the route exports: it waits for the route's handler
// calls to return.
func (br *Bridge) RemoveRoute(ctx context.Context, id RouteID) (RouteStats, error) {
	br.routesMu.Lock()
	if br.isClosed() {
		br.routesMu.Unlock()
		return RouteStats{}, ErrClosed
	}
	old := br.table.Load()
	r := old.lookup(id)
	if r == nil {
		br.routesMu.Unlock()
		return RouteStats{}, fmt.Errorf("%w: %d", ErrNoRoute, id)
	}
	r.removed.Store(true)
	routes := slices.DeleteFunc(slices.Clone(old.routes), func(x *route) bool { return x == r })
	br.table.Store(br.buildTable(routes))
	br.syncSubscriptions()
	br.routesMu.Unlock()
	br.changed.notify()

	unsent, settled := br.stopRoute(ctx, r)
	stats := br.routeStats(r)
	if settled && unsent == 0 {
		return stats, nil
	}
	msg := fmt.Sprintf("route %d: %s dropped", id, plural.Of(uint64(unsent), "export"))
	if !settled {
		// The flusher holds a batch that may have some of the route's
		// exports: it sends them, or counts them as dropped, later.
		msg += ", and the batch being sent may hold more"
	}
	cause := ctx.Err()
	if cause == nil {
		cause = ErrClosed // Close gave up on the route's exporter meanwhile
	}
	return stats, fmt.Errorf("%w: %s: %w", ErrNotSent, msg, cause)
}

// stopRoute stops removed route r, whose local subscription and
// subscriptions on Redis are gone from the table: it ends the local
// subscription, waiting for its handler calls, stops a durable route's
// goroutines, and waits for its queued exports to be sent until ctx ends.
// It returns how many exports it dropped then, and whether the others are
// settled (sent, refused or dropped): not when the pub/sub flusher still
// holds some in the batch it sends.
func (br *Bridge) stopRoute(ctx context.Context, r *route) (unsent int, settled bool) {
	if r.sub != nil {
		// Its handler checks r.removed: calls that run past it count
		// their event as unsent; the wait is for those that saw it
		// unset, and queue their export.
		r.sub.Unsubscribe()
		r.quiesce(ctx)
	}
	if r.durable() {
		return br.st.stopRoute(ctx, r), true
	}
	if !r.Direction.exports() {
		return 0, true
	}
	mark, ok := br.pub.flushed(ctx)
	if ok {
		return 0, true
	}
	n := r.out.RemoveFunc(func(it *queue.Export) bool { return it.Route == r })
	br.c.outboxUnsent.Add(uint64(n))
	return n, !r.out.Sending(mark)
}

// isClosed reports whether Close has begun.
func (br *Bridge) isClosed() bool {
	br.mu.Lock()
	defer br.mu.Unlock()
	return br.closed
}

// reportWidened reports r, a pub/sub import route whose pattern Redis
// cannot express, if it is one: see ErrPatternWidened. what names it.
func (br *Bridge) reportWidened(r *route, what string) {
	if !r.widened || !r.Direction.imports() || r.durable() {
		return
	}
	br.rep.report(fmt.Errorf("%w: %s: bus pattern %q is subscribed as the wider Redis glob %q (PSUBSCRIBE): "+
		"the bridge delivers exactly what the pattern matches and filters the rest (Stats.Filtered), "+
		"but Redis sends this instance all the glob's traffic, and ACLRules grants the glob",
		ErrPatternWidened, what, r.Pattern, r.redisName))
}

// needsEchoMemory reports whether some message a bridge with table t
// sends may come back without an envelope it can recognise: a raw export
// on a topic it imports, or an export on a topic it imports through a
// raw route.
func needsEchoMemory(t *routeTable) bool {
	for _, e := range t.exports {
		for _, i := range t.imports {
			if unrecognised(e, i) {
				return true
			}
		}
	}
	return false
}
