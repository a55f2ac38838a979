package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/busline/bus/bridge"
)

// Time limits of the rooms' subscriptions on Redis.
const (
	// joinTimeout bounds the wait of a stream for Redis to confirm the
	// subscription to a room no stream of the instance followed: beyond
	// it the stream is refused with 503 and a Retry-After.
	joinTimeout = 5 * time.Second
	// leaveTimeout bounds the unsubscription of a room its last stream
	// left (or whose subscription failed).
	leaveTimeout = 5 * time.Second
	// joinRetryAfter is the Retry-After, in seconds, of a stream refused
	// because Redis did not confirm a room in time.
	joinRetryAfter = "5"
)

// errNotSubscribed is wrapped by the errors of rooms.join: Redis did not
// confirm the subscription to a room in time, or the bridge refused it.
var errNotSubscribed = errors.New("not subscribed on Redis")

// routeTable is what rooms needs of a bridge: *bridge.Bridge.
type routeTable interface {
	AddRoute(r bridge.Route) (bridge.RouteID, error)
	RouteReady(ctx context.Context, id bridge.RouteID) error
	RemoveRoute(ctx context.Context, id bridge.RouteID) (bridge.RouteStats, error)
}

var _ routeTable = (*bridge.Bridge)(nil)

// rooms subscribes an instance, on Redis, to the rooms its streams
// follow, and to those only: the first stream to join a room adds an
// import route for the room's topic to the bridge and waits until Redis
// has confirmed the SUBSCRIBE; the last one to leave removes it. So an
// instance receives none of the traffic of the rooms nobody follows on it.
// What is posted on the instance is exported by a route of its own, for
// every room (exportRoute), whoever follows them.
//
// Each room has at most one operation on the bridge under way, adding or
// removing its route; streams that join it meanwhile wait for that to end,
// then join the route added, or add it again after a removal. The lock is
// never held while the bridge works, so rooms do not wait for each other.
//
// All methods are safe for concurrent use.
type rooms struct {
	br      routeTable
	codec   bridge.Codec
	timeout time.Duration // bounds joinAll: joinTimeout
	// onError is given the failed removals of routes, and the leaves of
	// rooms not joined (a bug of the caller, otherwise ignored).
	onError func(error)

	mu sync.Mutex // protects m
	m  map[string]*room
}

// room is the state of one room in rooms.m. It is in the map from the
// first join until its route is removed (or failed to be added), then
// deleted: a later join makes a new one.
type room struct {
	refs  int            // the streams joined; 0 while busy
	added bool           // the route is added and confirmed
	id    bridge.RouteID // the route, when added
	// busy is non-nil while a join adds the route or a leave removes it,
	// and closed when that ends: the joins that came meanwhile wait for
	// it, then look again.
	busy chan struct{}
}

// exportRoute is the route that exports what is posted on an instance,
// in every room, to Redis; it imports nothing (see rooms).
func exportRoute(codec bridge.Codec) bridge.Route {
	return bridge.Route{Pattern: topicPrefix + "*", Direction: bridge.Export, Codec: codec}
}

// newRooms returns the rooms of the bridge br, whose imports are decoded
// by codec. onError is given the errors of removing a route.
func newRooms(br routeTable, codec bridge.Codec, onError func(error)) *rooms {
	return &rooms{br: br, codec: codec, timeout: joinTimeout, onError: onError, m: map[string]*room{}}
}

// route is the import route of room name.
func (rs *rooms) route(name string) bridge.Route {
	return bridge.Route{Pattern: topicPrefix + name, Direction: bridge.Import, Codec: rs.codec}
}

// joinAll joins the rooms names (each once) for one stream, and returns
// the function that leaves them, to be called once. It returns once
// Redis has confirmed every room's subscription; if it did not within
// the join timeout, or ctx ended, it leaves the rooms joined and returns
// an error wrapping errNotSubscribed (and ctx's error, if ctx ended).
func (rs *rooms) joinAll(ctx context.Context, names []string) (leave func(), err error) {
	ctx, cancel := context.WithTimeout(ctx, rs.timeout)
	defer cancel()
	var joined []string
	leave = func() {
		for _, name := range joined {
			rs.leave(name)
		}
	}
	for _, name := range names {
		if err := rs.join(ctx, name); err != nil {
			leave()
			return nil, err
		}
		joined = append(joined, name)
	}
	return leave, nil
}

// join counts one more stream in room name, adding its route first if it
// is the first. It blocks until the route is confirmed by Redis or ctx
// ends: then it returns an error wrapping errNotSubscribed and ctx's
// error, and counts nothing. A stream that joined calls leave once.
func (rs *rooms) join(ctx context.Context, name string) error {
	rs.mu.Lock()
	for {
		r := rs.m[name]
		switch {
		case r == nil:
			r = &room{}
			rs.m[name] = r
		case r.busy != nil:
			busy := r.busy
			rs.mu.Unlock()
			select {
			case <-busy:
			case <-ctx.Done():
				return fmt.Errorf("%w: room %q: %w", errNotSubscribed, name, ctx.Err())
			}
			rs.mu.Lock()
			continue // the room may be gone, or added
		}
		if r.added {
			r.refs++
			rs.mu.Unlock()
			return nil
		}
		if err := ctx.Err(); err != nil { // after a failed add, before trying again
			if r.refs == 0 {
				delete(rs.m, name) // no route, nobody in it: not a room
			}
			rs.mu.Unlock()
			return fmt.Errorf("%w: room %q: %w", errNotSubscribed, name, err)
		}
		r.busy = make(chan struct{})
		rs.mu.Unlock()
		return rs.add(ctx, name, r)
	}
}

// add adds the route of room r, marked busy by the caller, and waits for
// Redis to confirm it; on failure it removes the route and the room.
func (rs *rooms) add(ctx context.Context, name string, r *room) error {
	id, err := rs.br.AddRoute(rs.route(name))
	if err == nil {
		if err = rs.br.RouteReady(ctx, id); err != nil {
			rs.remove(id)
		}
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	close(r.busy)
	r.busy = nil
	if err != nil {
		delete(rs.m, name)
		return fmt.Errorf("%w: room %q: %w", errNotSubscribed, name, err)
	}
	r.added, r.id, r.refs = true, id, 1
	return nil
}

// leave counts one stream less in room name, which it joined, and removes
// the room's route when it was the last. It blocks while it removes it, for
// at most leaveTimeout.
func (rs *rooms) leave(name string) {
	rs.mu.Lock()
	r := rs.m[name]
	if r == nil || r.refs == 0 { // a bug of the caller: say so, count nothing
		rs.mu.Unlock()
		rs.onError(fmt.Errorf("chat: leaving room %q, which was not joined", name))
		return
	}
	if r.refs--; r.refs > 0 {
		rs.mu.Unlock()
		return
	}
	// The last: the joins that come now wait for the removal, then add
	// the route again.
	r.busy = make(chan struct{})
	rs.mu.Unlock()
	rs.remove(r.id)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	close(r.busy)
	delete(rs.m, name)
}

// remove removes the route id, reporting a failure.
func (rs *rooms) remove(id bridge.RouteID) {
	ctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
	defer cancel()
	if _, err := rs.br.RemoveRoute(ctx, id); err != nil && !errors.Is(err, bridge.ErrClosed) {
		rs.onError(fmt.Errorf("chat: unsubscribing route %d: %w", id, err))
	}
}

// counts returns the number of streams joined in each room that has some,
// and the number of rooms with a route added or being added or removed.
func (rs *rooms) counts() (refs map[string]int, rooms int) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	refs = map[string]int{}
	for name, r := range rs.m {
		if r.refs > 0 {
			refs[name] = r.refs
		}
	}
	return refs, len(rs.m)
}
