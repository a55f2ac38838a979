package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// addRoute adds r to br and waits until it is ready.
func addRoute(t testing.TB, br *bridge.Bridge, r bridge.Route) bridge.RouteID {
	t.Helper()
	id, err := br.AddRoute(r)
	if err != nil {
		t.Fatalf("AddRoute(%+v): %v", r, err)
	}
	if err := br.RouteReady(clusterCtx(t), id); err != nil {
		t.Fatalf("RouteReady(%d): %v", id, err)
	}
	return id
}

// numSub returns what PUBSUB NUMSUB says of channel.
func numSub(t testing.TB, rdb redis.Cmdable, channel string) int64 {
	t.Helper()
	n, err := rdb.PubSubNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n[channel]
}

// numPat returns PUBSUB NUMPAT.
func numPat(t testing.TB, rdb redis.Cmdable) int64 {
	t.Helper()
	n, err := rdb.PubSubNumPat(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestAddRouteImport: an import route added at run time receives what is
// published on Redis once RouteReady returned, and nothing before it was
// added; RemoveRoute unsubscribes it.
func TestAddRouteImport(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pattern string
		topic   string
		channel string // what a plain client counts with NUMSUB, or "" for a glob
	}{
		{"exact", "room.a", "room.a", "app:room.a"},
		{"pattern", "room.*", "room.b", ""},
		{"raw exact", "raw.a", "raw.a", "app:raw.a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, nil)
			rdb := srv.Client(t)
			// A bridge that imports nothing: no pub/sub connection yet.
			in := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "other", Direction: bridge.Export}))
			rec := record(t, in.bus, tc.pattern)
			ctx := clusterCtx(t)

			if err := rdb.Publish(ctx, "app:"+tc.topic, "before").Err(); err != nil {
				t.Fatal(err)
			}
			raw := tc.name == "raw exact"
			id := addRoute(t, in.bridge, bridge.Route{Pattern: tc.pattern, Direction: bridge.Import, Raw: raw, Codec: codecFor(raw)})
			if tc.channel != "" {
				if n := numSub(t, rdb, tc.channel); n != 1 {
					t.Fatalf("NUMSUB %s = %d after RouteReady, want 1", tc.channel, n)
				}
			} else if n := numPat(t, rdb); n != 1 {
				t.Fatalf("NUMPAT = %d after RouteReady, want 1", n)
			}
			for i := range 3 {
				if err := rdb.Publish(ctx, "app:"+tc.topic, fmt.Sprintf("m%d", i)).Err(); err != nil {
					t.Fatal(err)
				}
			}
			events := rec.waitFor(t, 3)
			for i, e := range events {
				if got := payloadString(e.Payload); got != fmt.Sprintf("m%d", i) {
					t.Errorf("event %d: payload %q, want m%d (the one published before AddRoute must not arrive)", i, got, i)
				}
			}

			// Counted once the local handlers returned.
			eventually(t, func() bool { return routeByID(in.bridge, id).Imported == 3 }, "route's Imported %d, want 3", func() int { return int(routeByID(in.bridge, id).Imported) })
			rs, err := in.bridge.RemoveRoute(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if rs.ID != id || rs.Imported != 3 || rs.Index != -1 {
				t.Errorf("RemoveRoute's stats: ID %d Index %d Imported %d, want %d -1 3", rs.ID, rs.Index, rs.Imported, id)
			}
			eventually(t, func() bool {
				if tc.channel != "" {
					return numSub(t, rdb, tc.channel) == 0
				}
				return numPat(t, rdb) == 0
			}, "the route's subscription still on Redis after RemoveRoute")
			if err := rdb.Publish(ctx, "app:"+tc.topic, "after").Err(); err != nil {
				t.Fatal(err)
			}
			// A route added after it sees "later": then "after" would
			// have arrived first had it been delivered.
			addRoute(t, in.bridge, bridge.Route{Pattern: "marker", Direction: bridge.Import})
			mark := record(t, in.bus, "marker")
			if err := rdb.Publish(ctx, "app:marker", "x").Err(); err != nil {
				t.Fatal(err)
			}
			mark.waitFor(t, 1)
			if n := rec.len(); n != 3 {
				t.Errorf("%d events after RemoveRoute, want 3", n)
			}
			for _, r := range in.bridge.Routes() {
				if r.ID == id {
					t.Errorf("Routes lists removed route %d", id)
				}
			}
		})
	}
}

// routeByID returns the counters of live route id, zero if there is none.
func routeByID(br *bridge.Bridge, id bridge.RouteID) bridge.RouteStats {
	for _, r := range br.Routes() {
		if r.ID == id {
			return r
		}
	}
	return bridge.RouteStats{}
}

func codecFor(raw bool) bridge.Codec {
	if raw {
		return bridge.Text()
	}
	return nil
}

func payloadString(p any) string {
	switch p := p.(type) {
	case string:
		return p
	case []byte:
		return string(p)
	}
	return fmt.Sprint(p)
}

// TestRouteSharedGlob: two routes with the same glob share one PSUBSCRIBE;
// removing one keeps it, removing both ends it.
func TestRouteSharedGlob(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	in := newInstance(t, srv.Client(t), testOptions(nil))
	ctx := clusterCtx(t)
	// Two routes of one pattern, hence one glob.
	id1 := addRoute(t, in.bridge, bridge.Route{Pattern: "a.*", Direction: bridge.Import})
	id2 := addRoute(t, in.bridge, bridge.Route{Pattern: "a.*", Direction: bridge.Both})
	if _, globs := in.bridge.RedisSubscriptions(); len(globs) != 1 {
		t.Fatalf("RedisSubscriptions globs %q, want one", globs)
	}
	if n := numPat(t, rdb); n != 1 {
		t.Fatalf("NUMPAT = %d, want 1", n)
	}
	if _, err := in.bridge.RemoveRoute(ctx, id1); err != nil {
		t.Fatal(err)
	}
	// The other route still needs it: still subscribed, still imported.
	rec := record(t, in.bus, "a.*")
	if err := in.bridge.RouteReady(ctx, id2); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Publish(ctx, "app:a.b", "hi").Err(); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 1)
	if n := numPat(t, rdb); n != 1 {
		t.Fatalf("NUMPAT = %d after removing one of two routes, want 1", n)
	}
	if _, err := in.bridge.RemoveRoute(ctx, id2); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return numPat(t, rdb) == 0 }, "NUMPAT still %d after removing both routes", func() int { return int(numPat(t, rdb)) })
	// The connection, subscribed to nothing now, stays up: its PINGs are
	// answered outside subscribe mode too.
	time.Sleep(5 * testOptions(nil).PingInterval)
	if st := in.bridge.Stats(); st.Reconnects != 0 || in.errs.count(bridge.ErrDisconnected) != 0 {
		t.Errorf("Reconnects %d after the last route left (%s)", st.Reconnects, in.errs)
	}
	// And it takes new routes.
	addRoute(t, in.bridge, bridge.Route{Pattern: "b.*", Direction: bridge.Import})
	if n := numPat(t, rdb); n != 1 {
		t.Errorf("NUMPAT = %d after adding a route to the idle connection, want 1", n)
	}
}

// TestAddRouteExport: an export route added at run time exports local
// events; once removed, it exports nothing more, and what it queued was
// sent or counted.
func TestAddRouteExport(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pattern string
		topic   string
	}{
		{"exact", "news", "news"},
		{"pattern", "news.*", "news.a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, nil)
			plain := srv.Client(t).Subscribe(context.Background(), "app:"+tc.topic)
			t.Cleanup(func() { _ = plain.Close() })
			if _, err := plain.Receive(context.Background()); err != nil {
				t.Fatal(err)
			}
			in := newInstance(t, srv.Client(t), testOptions(nil))
			ctx := clusterCtx(t)
			publish(t, in.bus, tc.topic, "before")

			id := addRoute(t, in.bridge, bridge.Route{Pattern: tc.pattern, Direction: bridge.Export, Raw: true, Codec: bridge.Text()})
			publish(t, in.bus, tc.topic, "during")
			msg, err := plain.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if msg.Payload != "during" {
				t.Fatalf("plain subscriber got %q, want during", msg.Payload)
			}
			rs, err := in.bridge.RemoveRoute(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if rs.Queued != 1 || rs.Exported != 1 {
				t.Errorf("RemoveRoute's stats: Queued %d Exported %d, want 1 1", rs.Queued, rs.Exported)
			}
			// The route's local subscription is gone.
			if n, err := in.bus.NumSub(tc.topic); err != nil || n != 0 {
				t.Errorf("NumSub(%q) = %d, %v after RemoveRoute, want 0", tc.topic, n, err)
			}
			publish(t, in.bus, tc.topic, "after")
			if m, err := plain.ReceiveTimeout(ctx, 300*time.Millisecond); err == nil {
				t.Errorf("plain subscriber got %v after RemoveRoute", m)
			}
			st := in.bridge.Stats()
			if st.Exported != 1 || st.OutboxUnsent != 0 {
				t.Errorf("Stats: Exported %d OutboxUnsent %d, want 1 0", st.Exported, st.OutboxUnsent)
			}
		})
	}
}

// TestRouteErrors: AddRoute checks the route as New does; RouteReady and
// RemoveRoute of an unknown or removed ID say ErrNoRoute; after Close,
// all three say ErrClosed.
func TestRouteErrors(t *testing.T) {
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "x", Direction: bridge.Import}))
	ctx := clusterCtx(t)
	for _, r := range []bridge.Route{
		{Pattern: "a..b"},
		{Pattern: "a", Direction: 7},
		{Pattern: "a", Delivery: 9},
		{Pattern: "a", Raw: true, Codec: bridge.DefaultCodec},
		{Pattern: "a", Raw: true, Format: bridge.CloudEvents},
		{Pattern: "a", Delivery: bridge.Group, MaxDeliveries: -1},
		{Pattern: "a", Delivery: bridge.Stream, Direction: bridge.Import}, // needs an InstanceID
	} {
		if _, err := in.bridge.AddRoute(r); !errors.Is(err, bridge.ErrInvalidOptions) {
			t.Errorf("AddRoute(%+v) = %v, want ErrInvalidOptions", r, err)
		}
	}
	if len(in.bridge.Routes()) != 1 {
		t.Fatalf("Routes() = %+v after refused AddRoutes, want the one of the options", in.bridge.Routes())
	}
	if err := in.bridge.RouteReady(ctx, 99); !errors.Is(err, bridge.ErrNoRoute) {
		t.Errorf("RouteReady(99) = %v, want ErrNoRoute", err)
	}
	if err := in.bridge.RouteReady(ctx, 0); err != nil {
		t.Errorf("RouteReady(0), a route of Options.Routes: %v", err)
	}
	id := addRoute(t, in.bridge, bridge.Route{Pattern: "y", Direction: bridge.Import})
	if id != 1 {
		t.Errorf("first added route has ID %d, want 1", id)
	}
	if _, err := in.bridge.RemoveRoute(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := in.bridge.RemoveRoute(ctx, id); !errors.Is(err, bridge.ErrNoRoute) {
		t.Errorf("second RemoveRoute = %v, want ErrNoRoute", err)
	}
	if err := in.bridge.RouteReady(ctx, id); !errors.Is(err, bridge.ErrNoRoute) {
		t.Errorf("RouteReady of a removed route = %v, want ErrNoRoute", err)
	}
	if id2, _ := in.bridge.AddRoute(bridge.Route{Pattern: "y", Direction: bridge.Import}); id2 == id {
		t.Errorf("an ID was reused: %d", id2)
	}
	if err := in.bridge.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := in.bridge.AddRoute(bridge.Route{Pattern: "z"}); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("AddRoute after Close = %v, want ErrClosed", err)
	}
	if err := in.bridge.RouteReady(ctx, 0); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("RouteReady after Close = %v, want ErrClosed", err)
	}
	if _, err := in.bridge.RemoveRoute(ctx, 0); !errors.Is(err, bridge.ErrClosed) {
		t.Errorf("RemoveRoute after Close = %v, want ErrClosed", err)
	}
}

// TestAddRouteEchoMemory: a bridge created without import routes gains a
// raw route that imports what it exports: its own raw messages must not
// come back (the echo memory is created when the route is added).
func TestAddRouteEchoMemory(t *testing.T) {
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil))
	rdb := srv.Client(t)
	ctx := clusterCtx(t)
	addRoute(t, in.bridge, bridge.Route{Pattern: "chat", Raw: true, Codec: bridge.Text()})
	rec := record(t, in.bus, "chat")
	publish(t, in.bus, "chat", "mine") // the local subscriber gets it once, locally
	if err := rdb.Publish(ctx, "app:chat", "theirs").Err(); err != nil {
		t.Fatal(err)
	}
	rec.waitFor(t, 2)
	time.Sleep(200 * time.Millisecond) // an echo would arrive by now
	events := rec.snapshot()
	if len(events) != 2 {
		t.Fatalf("%d events, want 2 (mine, theirs): %v", len(events), events)
	}
	if st := in.bridge.Stats(); st.EchoesDropped != 1 {
		t.Errorf("EchoesDropped = %d, want 1", st.EchoesDropped)
	}
}

// TestRouteIDs: the routes of the options are 0..n-1, listed by Routes in
// ID order with their index; added ones follow with Index -1.
func TestRouteIDs(t *testing.T) {
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil,
		bridge.Route{Pattern: "a", Direction: bridge.Import}, bridge.Route{Pattern: "b", Direction: bridge.Export}))
	ctx := clusterCtx(t)
	c := addRoute(t, in.bridge, bridge.Route{Pattern: "c"})
	if _, err := in.bridge.RemoveRoute(ctx, 0); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range in.bridge.Routes() {
		got = append(got, strconv.Itoa(int(r.ID))+":"+strconv.Itoa(r.Index)+":"+r.Pattern)
	}
	want := fmt.Sprintf("[1:1:b %d:-1:c]", c)
	if fmt.Sprint(got) != want {
		t.Errorf("Routes() = %v, want %s", got, want)
	}
	if chans, _ := in.bridge.RedisSubscriptions(); fmt.Sprint(chans) != "[app:c]" {
		t.Errorf("RedisSubscriptions() = %v, want [app:c]", chans)
	}
	_ = bus.ErrClosed
}

// TestRemoveRouteUnsent: a route removed while Redis is away drops what
// it queued when RemoveRoute's context ends, says how many, and every
// event is accounted for: exported, or counted as not sent.
func TestRemoveRouteUnsent(t *testing.T) {
	srv := redistest.Start(t, nil)
	opts := testOptions(nil)
	opts.BatchSize = 10
	opts.CoalesceBytes = -1
	in := newInstance(t, srv.Client(t), opts)
	id := addRoute(t, in.bridge, bridge.Route{Pattern: "news", Direction: bridge.Export})
	srv.Kill()
	const n = 100
	for i := range n {
		publish(t, in.bus, "news", i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	rs, err := in.bridge.RemoveRoute(ctx, id)
	if !errors.Is(err, bridge.ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RemoveRoute with Redis away = %v, want ErrNotSent and DeadlineExceeded", err)
	}
	if rs.Queued != n {
		t.Errorf("Queued = %d, want %d", rs.Queued, n)
	}
	removed := in.bridge.Stats().OutboxUnsent
	if removed < n-uint64(opts.BatchSize) || !strings.Contains(err.Error(), strconv.FormatUint(removed, 10)+" exports dropped") {
		t.Errorf("OutboxUnsent %d after RemoveRoute (want at least %d), error %q", removed, n-opts.BatchSize, err)
	}
	publish(t, in.bus, "news", "after") // not the route's any more: not counted
	cctx, ccancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer ccancel()
	_ = in.bridge.Close(cctx) // gives up on the batch in flight
	st := in.bridge.Stats()
	if st.Exported+st.OutboxDropped != n {
		t.Errorf("Exported %d + OutboxDropped %d (unsent %d) = %d, want %d", st.Exported, st.OutboxDropped, st.OutboxUnsent, st.Exported+st.OutboxDropped, n)
	}
}

// TestRouteDurable: durable routes added and removed at run time. An
// export route removed while events flow has sent every event it queued
// (the importer gets exactly those, in order); an import route removed
// saves its position, so that added again it resumes there and gets what
// was written meanwhile.
func TestRouteDurable(t *testing.T) {
	for _, d := range []bridge.Delivery{bridge.Stream, bridge.Group} {
		t.Run(d.String(), func(t *testing.T) {
			srv := redistest.Start(t, nil)
			a := newInstance(t, srv.Client(t), durableOptions("a"))
			b := newInstance(t, srv.Client(t), durableOptions("b"))
			rec := record(t, b.bus, "orders")
			ctx := clusterCtx(t)
			route := bridge.Route{Pattern: "orders", Delivery: d, Codec: bridge.Text()}

			imp := route
			imp.Direction = bridge.Import
			in := addRoute(t, b.bridge, imp)
			if _, err := b.bridge.AddRoute(imp); !errors.Is(err, bridge.ErrInvalidOptions) {
				t.Errorf("a second import route on the stream: %v, want ErrInvalidOptions", err)
			}
			exp := route
			exp.Direction = bridge.Export
			out := addRoute(t, a.bridge, exp)

			published := make(chan int)
			stop := make(chan struct{})
			go func() {
				i := 0
				defer func() { published <- i }()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := a.bus.Publish(context.Background(), "orders", strconv.Itoa(i)); err != nil {
						t.Error(err)
						return
					}
					i++
				}
			}()
			rec.waitFor(t, 50) // events flow
			rs, err := a.bridge.RemoveRoute(ctx, out)
			if err != nil {
				t.Fatal(err)
			}
			close(stop)
			total := <-published
			if rs.Queued != rs.Exported || rs.Exported == 0 || rs.Exported > uint64(total) {
				t.Fatalf("removed export route: Queued %d Exported %d, %d published", rs.Queued, rs.Exported, total)
			}
			k := int(rs.Exported)
			got := payloads(t, rec.waitFor(t, k))
			if !slices.Equal(got, seqStrings(0, k)) {
				t.Fatalf("importer got %d events %v..., want 0..%d in order", len(got), got[:min(len(got), 5)], k-1)
			}
			if st := a.bridge.Stats(); st.Exported != rs.Exported || st.OutboxDropped != st.OutboxUnsent {
				t.Errorf("exporter's Stats: Exported %d OutboxDropped %d OutboxUnsent %d, route Exported %d", st.Exported, st.OutboxDropped, st.OutboxUnsent, rs.Exported)
			}
			if n, err := srv.Client(t).XLen(ctx, bridge.StreamKey("app:", "orders")).Result(); err != nil || n != int64(k) {
				t.Errorf("XLEN = %d, %v, want %d", n, err, k)
			}

			// The import route leaves; what is written meanwhile waits in
			// the stream for it to come back.
			if _, err := b.bridge.RemoveRoute(ctx, in); err != nil {
				t.Fatal(err)
			}
			if conns := b.bridge.Connections(); len(conns) != 0 {
				t.Errorf("Connections after removing the only route: %+v", conns)
			}
			out = addRoute(t, a.bridge, exp)
			for i := k; i < k+5; i++ {
				publish(t, a.bus, "orders", strconv.Itoa(i))
			}
			if _, err := a.bridge.RemoveRoute(ctx, out); err != nil { // flushes the five
				t.Fatal(err)
			}
			if n := rec.len(); n != k {
				t.Fatalf("%d events while the import route was removed, want %d", n, k)
			}
			addRoute(t, b.bridge, imp)
			got = payloads(t, rec.waitFor(t, k+5))
			if !slices.Equal(got[k:], seqStrings(k, k+5)) {
				t.Errorf("after the import route came back: %v, want %v", got[k:], seqStrings(k, k+5))
			}
		})
	}
}

// shardNumSub returns PUBSUB SHARDNUMSUB of channel on each node of c.
func shardNumSub(t *testing.T, c *redistest.Cluster, nodes []*redis.Client, channel string) []int64 {
	t.Helper()
	var out []int64
	for _, rdb := range nodes {
		n, err := rdb.PubSubShardNumSub(clusterCtx(t), channel).Result()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, n[channel])
	}
	return out
}

// TestRouteSharded: on a cluster, exact import routes added at run time
// SSUBSCRIBE on the node serving their slot, joining the connection of
// that node when there is one; removing one SUNSUBSCRIBEs it, without a
// rebuild; events flow both ways through the added routes.
func TestRouteSharded(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	nodes := nodeClients(t, c)
	a := newInstance(t, c.Client(t), clusterOptions("rt:"))
	b := newInstance(t, c.Client(t), clusterOptions("rt:"))
	ctx := clusterCtx(t)

	// Topics on as many slots as it takes to have two on one node and
	// one on another.
	byNode := map[int][]string{}
	for i := 0; len(byNode) < 2 || !slices.ContainsFunc(mapsValues(byNode), func(ts []string) bool { return len(ts) >= 2 }); i++ {
		topic := "room." + strconv.Itoa(i)
		n := owner(t, c, bridge.ShardChannel("rt:", topic, 0))
		byNode[n] = append(byNode[n], topic)
	}
	var two, other []string
	for _, ts := range byNode {
		if len(ts) >= 2 && two == nil {
			two = ts[:2]
		} else if other == nil {
			other = ts[:1]
		}
	}
	topics := append(append([]string(nil), two...), other...)
	ids := map[string]bridge.RouteID{}
	for _, topic := range topics {
		ids[topic] = addRoute(t, b.bridge, bridge.Route{Pattern: topic, Direction: bridge.Import})
		addRoute(t, a.bridge, bridge.Route{Pattern: topic, Direction: bridge.Export})
	}
	for _, topic := range topics {
		ch := bridge.ShardChannel("rt:", topic, 0)
		want := make([]int64, c.Len())
		want[owner(t, c, ch)] = 1
		if got := shardNumSub(t, c, nodes, ch); !slices.Equal(got, want) {
			t.Errorf("SHARDNUMSUB %s per node = %v, want %v", ch, got, want)
		}
		exchange(t, a, b, topic, 3)
	}
	// One connection per node: the second topic of a node joined the
	// first's.
	if n := countClients(t, nodes[owner(t, c, bridge.ShardChannel("rt:", two[0], 0))], "ssub="); n != 1 {
		t.Errorf("%d sharded connections on the node of %v, want 1", n, two)
	}
	if got := b.bridge.ShardChannels(); len(got) != 3 {
		t.Errorf("ShardChannels() = %v, want 3", got)
	}

	// Removing one of the node's two: SUNSUBSCRIBE, the other stays.
	gone := bridge.ShardChannel("rt:", two[0], 0)
	if _, err := b.bridge.RemoveRoute(ctx, ids[two[0]]); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return !slices.Contains(shardNumSub(t, c, nodes, gone), 1) }, "SHARDNUMSUB %s still 1 after RemoveRoute", gone)
	exchange(t, a, b, two[1], 3)
	exchange(t, a, b, other[0], 3)
	if st := b.bridge.Stats(); st.ShardRebuilds != 0 || st.Reconnects != 0 {
		t.Errorf("ShardRebuilds %d, Reconnects %d after adding and removing routes, want 0 0 (%s)", st.ShardRebuilds, st.Reconnects, b.errs)
	}
	if err := b.bridge.Ready(ctx); err != nil {
		t.Fatal(err)
	}

	// The node's connection killed, the new one subscribes to the
	// channels of the moment: the one left, not the one removed.
	node := nodes[owner(t, c, gone)]
	if err := node.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return b.bridge.Stats().Reconnects >= 1 }, "no reconnect after CLIENT KILL")
	ready(t, b.bridge)
	kept := bridge.ShardChannel("rt:", two[1], 0)
	if n := shardNumSub(t, c, nodes, kept); !slices.Contains(n, 1) {
		t.Errorf("SHARDNUMSUB %s = %v after the reconnect, want 1 on its node", kept, n)
	}
	if n := shardNumSub(t, c, nodes, gone); slices.Contains(n, 1) {
		t.Errorf("SHARDNUMSUB %s = %v after the reconnect: the removed route is back", gone, n)
	}
	exchange(t, a, b, two[1], 3)
}

func mapsValues[K comparable, V any](m map[K]V) []V {
	var out []V
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// TestRouteReconnect: after the pub/sub connection is killed, the bridge
// subscribes to the routes of the moment: those of the options and those
// added, not those removed.
func TestRouteReconnect(t *testing.T) { forPubSubPaths(t, testRouteReconnect) }

func testRouteReconnect(t *testing.T, newClient func(*redis.Options) *redis.Client) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	in := newInstance(t, newClient(srv.ClientOptions()), testOptions(nil, bridge.Route{Pattern: "x", Direction: bridge.Import}))
	ctx := clusterCtx(t)
	addRoute(t, in.bridge, bridge.Route{Pattern: "y", Direction: bridge.Import})
	addRoute(t, in.bridge, bridge.Route{Pattern: "g.*", Direction: bridge.Import})
	z := addRoute(t, in.bridge, bridge.Route{Pattern: "z", Direction: bridge.Import})
	if _, err := in.bridge.RemoveRoute(ctx, z); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return in.bridge.Stats().Reconnects >= 1 }, "no reconnect after CLIENT KILL")
	ready(t, in.bridge)
	for ch, want := range map[string]int64{"app:x": 1, "app:y": 1, "app:z": 0} {
		if n := numSub(t, rdb, ch); n != want {
			t.Errorf("NUMSUB %s = %d after the reconnect, want %d", ch, n, want)
		}
	}
	if n := numPat(t, rdb); n != 1 {
		t.Errorf("NUMPAT = %d after the reconnect, want 1", n)
	}
	rec := record(t, in.bus, "**")
	for _, ch := range []string{"app:z", "app:y", "app:g.h"} {
		if err := rdb.Publish(ctx, ch, "m").Err(); err != nil {
			t.Fatal(err)
		}
	}
	rec.waitFor(t, 2)
	time.Sleep(100 * time.Millisecond) // "app:z" would have arrived by now
	// y (a channel) and g.h (a pattern's) may be delivered by different
	// import workers, in either order.
	var topics []string
	for _, e := range rec.snapshot() {
		topics = append(topics, e.Topic)
	}
	slices.Sort(topics)
	if !slices.Equal(topics, []string{"g.h", "y"}) {
		t.Errorf("after the reconnect got %v, want g.h and y", topics)
	}
}

// TestRouteConcurrent adds and removes routes of every direction from
// several goroutines while events flow both ways, then closes the bridge
// while goroutines still add routes: run it with -race. At the end the
// bridge's subscriptions are those of the routes left, every removed
// route's accounting holds, and AddRoute after Close says ErrClosed.
func TestRouteConcurrent(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	in := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "fixed.*"}))
	peer := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "**"}))
	ctx := clusterCtx(t)

	stop := make(chan struct{})
	var traffic sync.WaitGroup
	for _, b := range []*bus.Bus{in.bus, peer.bus} {
		traffic.Add(1)
		go func() {
			defer traffic.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_ = b.Publish(context.Background(), "dyn."+strconv.Itoa(i%8), i)
				_ = b.Publish(context.Background(), "fixed.a", i)
				if i%64 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	var workers sync.WaitGroup
	for w := range 4 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range 25 {
				topic := "dyn." + strconv.Itoa((w+i)%8)
				if i%3 == 0 {
					topic = "dyn.*"
				}
				id, err := in.bridge.AddRoute(bridge.Route{Pattern: topic, Direction: bridge.Direction(i % 3)})
				if err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					_ = in.bridge.RouteReady(ctx, id)
				}
				rs, err := in.bridge.RemoveRoute(ctx, id)
				if err != nil {
					t.Error(err)
					return
				}
				if rs.Queued != rs.Exported+rs.ExportRejected {
					t.Errorf("route %d removed: Queued %d, Exported %d, Rejected %d", id, rs.Queued, rs.Exported, rs.ExportRejected)
				}
			}
		}()
	}
	waitGroup(t, &workers, "the workers adding and removing routes")
	close(stop)
	waitGroup(t, &traffic, "the publishers")

	chans, globs := in.bridge.RedisSubscriptions()
	if len(chans) != 0 || fmt.Sprint(globs) != "[app:fixed.*]" {
		t.Errorf("RedisSubscriptions() = %v %v, want the options' glob only", chans, globs)
	}
	eventually(t, func() bool { return numPat(t, rdb) == 2 }, "NUMPAT %d, want 2 (the two bridges' own)", func() int { return int(numPat(t, rdb)) })
	for i := range 8 {
		if n := numSub(t, rdb, "app:dyn."+strconv.Itoa(i)); n != 0 {
			t.Errorf("NUMSUB app:dyn.%d = %d after every dynamic route was removed", i, n)
		}
	}
	if len(in.bridge.Routes()) != 1 {
		t.Errorf("Routes() = %+v, want the options' one", in.bridge.Routes())
	}

	// Close while routes are being added and removed.
	var closing sync.WaitGroup
	for range 4 {
		closing.Add(1)
		go func() {
			defer closing.Done()
			for {
				id, err := in.bridge.AddRoute(bridge.Route{Pattern: "late"})
				if errors.Is(err, bridge.ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := in.bridge.RemoveRoute(ctx, id); err != nil && !errors.Is(err, bridge.ErrClosed) {
					t.Error(err)
					return
				}
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	if err := in.bridge.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitGroup(t, &closing, "AddRoute to say ErrClosed")
	st := in.bridge.Stats()
	if st.OutboxDepth != 0 {
		t.Errorf("OutboxDepth %d after Close", st.OutboxDepth)
	}
}

// TestRouteDurableRemoveMidBatch: an import route removed while its
// reader works through a batch records what it handled (checkpoint or
// XACK) before it returns: added again, it delivers the rest, each entry
// once.
func TestRouteDurableRemoveMidBatch(t *testing.T) {
	for _, d := range []bridge.Delivery{bridge.Stream, bridge.Group} {
		t.Run(d.String(), func(t *testing.T) {
			srv := redistest.Start(t, nil)
			a := newInstance(t, srv.Client(t), durableOptions("a", bridge.Route{Pattern: "jobs", Delivery: d, Direction: bridge.Export, Codec: bridge.Text()}))
			b := newInstance(t, srv.Client(t), durableOptions("b"))
			ctx := clusterCtx(t)
			var mu sync.Mutex
			var got []string
			if _, err := b.bus.Subscribe("jobs", func(_ context.Context, e bus.Event) {
				time.Sleep(10 * time.Millisecond) // a slow handler: the batch takes a while
				mu.Lock()
				got = append(got, payloadString(e.Payload))
				mu.Unlock()
			}); err != nil {
				t.Fatal(err)
			}
			n := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
			imp := bridge.Route{Pattern: "jobs", Delivery: d, Direction: bridge.Import, Codec: bridge.Text()}
			id := addRoute(t, b.bridge, imp)
			const total = 40
			for i := range total {
				publish(t, a.bus, "jobs", strconv.Itoa(i))
			}
			eventually(t, func() bool { return n() >= 5 }, "the first entries handled")
			if _, err := b.bridge.RemoveRoute(ctx, id); err != nil {
				t.Fatal(err)
			}
			if k := n(); k >= total {
				t.Fatalf("all %d handled before RemoveRoute returned: the test needs a slower handler", k)
			}
			addRoute(t, b.bridge, imp)
			eventually(t, func() bool { return n() >= total }, "every entry handled, have %d", n)
			time.Sleep(100 * time.Millisecond) // a redelivered entry would arrive by now
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(got, seqStrings(0, total)) {
				t.Errorf("handled %d entries %v, want 0..%d once each", len(got), got, total-1)
			}
		})
	}
}

// TestRouteReadyAfterReadd removes a route and adds it again at once, many
// times, as a chat page that reloads does: each RouteReady must mean that
// Redis holds the subscription, so a PUBLISH (SPUBLISH) right after it
// reaches this instance: Redis answers how many subscriptions got the
// message. It fails when RouteReady takes the confirmation of an earlier
// SUBSCRIBE whose UNSUBSCRIBE is still on its way.
func TestRouteReadyAfterReadd(t *testing.T) {
	for _, tc := range []struct {
		name, pattern string
		cluster       bool
	}{
		{"exact", "room.a", false},
		{"pattern", "room.*", false},
		{"sharded", "room.a", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rdb, brc redis.UniversalClient
			publish := func(ctx context.Context) (int64, error) { return rdb.Publish(ctx, "app:room.a", "m").Result() }
			if tc.cluster {
				c := redistest.StartCluster(t, 3)
				rdb, brc = c.Client(t), c.Client(t)
				ch := bridge.ShardChannel("app:", "room.a", 0)
				publish = func(ctx context.Context) (int64, error) { return rdb.SPublish(ctx, ch, "m").Result() }
			} else {
				srv := redistest.Start(t, nil)
				rdb, brc = srv.Client(t), srv.Client(t)
			}
			in := newInstance(t, brc, testOptions(nil, bridge.Route{Pattern: "other", Direction: bridge.Import}))
			ctx := clusterCtx(t)
			for i := range 200 {
				id, err := in.bridge.AddRoute(bridge.Route{Pattern: tc.pattern, Direction: bridge.Import})
				if err != nil {
					t.Fatal(err)
				}
				if err := in.bridge.RouteReady(ctx, id); err != nil {
					t.Fatalf("round %d: RouteReady: %v", i, err)
				}
				n, err := publish(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if n != 1 {
					t.Fatalf("round %d: a message published right after RouteReady reached %d subscriptions, want 1", i, n)
				}
				if _, err := in.bridge.RemoveRoute(ctx, id); err != nil {
					t.Fatalf("round %d: RemoveRoute: %v", i, err)
				}
			}
		})
	}
}

// TestAddRouteRefusedKeepsOthers adds at run time a route the ACL user
// may not subscribe to (ACLRules knows only Options.Routes): RouteReady
// and Ready return the refusal, the routes Redis accepted keep receiving
// on the same connection, across a reconnect too, and removing the
// refused route makes the bridge ready again.
func TestAddRouteRefusedKeepsOthers(t *testing.T) { forPubSubPaths(t, testAddRouteRefusedKeepsOthers) }

func testAddRouteRefusedKeepsOthers(t *testing.T, newClient func(*redis.Options) *redis.Client) {
	srv := redistest.Start(t, nil)
	routes := []bridge.Route{{Pattern: "a", Direction: bridge.Import}}
	rules, err := bridge.ACLRules(&bridge.Options{Prefix: "app:", Routes: routes}, '.')
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLI(append([]string{"ACL", "SETUSER", "bridge", "on", ">s3cret"}, rules...)...); err != nil {
		t.Fatal(err)
	}
	o := srv.ClientOptions()
	o.Username, o.Password = "bridge", "s3cret"
	in := newInstance(t, newClient(o), testOptions(nil, routes...))
	rec := record(t, in.bus, "a")
	admin := srv.Client(t)
	ctx := clusterCtx(t)
	if err := in.bridge.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	id, err := in.bridge.AddRoute(bridge.Route{Pattern: "b.*", Direction: bridge.Import})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.bridge.RouteReady(ctx, id); !errors.Is(err, bridge.ErrSubscribe) || !strings.Contains(err.Error(), `PSUBSCRIBE "app:b.*"`) {
		t.Fatalf("RouteReady of the refused route = %v, want ErrSubscribe naming PSUBSCRIBE \"app:b.*\"", err)
	}
	if err := in.bridge.Ready(ctx); !errors.Is(err, bridge.ErrSubscribe) {
		t.Errorf("Ready with a refused route = %v, want ErrSubscribe", err)
	}
	received := 0
	check := func(when string) {
		t.Helper()
		if n := numSub(t, admin, "app:a"); n != 1 {
			t.Fatalf("%s: NUMSUB app:a = %d, want 1; errors:\n%s", when, n, in.errs)
		}
		for range 5 {
			if err := admin.Publish(ctx, "app:a", "x").Err(); err != nil {
				t.Fatal(err)
			}
		}
		received += 5
		rec.waitFor(t, received)
	}
	check("after the refusal")
	// A new connection asks for the refused glob after the others.
	if err := admin.ClientKillByFilter(ctx, "USER", "bridge").Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return in.bridge.Stats().Reconnects >= 1 }, "no reconnect after CLIENT KILL")
	check("after a reconnect")
	if _, err := in.bridge.RemoveRoute(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := in.bridge.Ready(ctx); err != nil {
		t.Errorf("Ready after removing the refused route = %v, want nil", err)
	}
}

// TestRemoveRouteReleasesHandlerContext removes durable import routes
// once their handlers have run: nothing in the bridge holds the context
// it passed them any more (what a handler registered on it is collected),
// and Close does not cancel a context a handler kept.
func TestRemoveRouteReleasesHandlerContext(t *testing.T) {
	for _, d := range []bridge.Delivery{bridge.Stream, bridge.Group} {
		t.Run(d.String(), func(t *testing.T) {
			srv := redistest.Start(t, nil)
			in := newInstance(t, srv.Client(t), durableOptions("h"))
			ctx := clusterCtx(t)
			released := make(chan struct{})
			var once sync.Once
			if _, err := in.bus.Subscribe("dropped", func(hctx context.Context, _ bus.Event) {
				once.Do(func() {
					// Reachable only through hctx: collected once nothing
					// holds hctx.
					held := new([64]byte)
					runtime.AddCleanup(held, func(ch chan struct{}) { close(ch) }, released)
					context.AfterFunc(hctx, func() { runtime.KeepAlive(held) })
				})
			}); err != nil {
				t.Fatal(err)
			}
			kept := make(chan context.Context, 1)
			if _, err := in.bus.Subscribe("kept", func(hctx context.Context, _ bus.Event) {
				select {
				case kept <- hctx:
				default:
				}
			}); err != nil {
				t.Fatal(err)
			}
			rdb := srv.Client(t)
			for _, topic := range []string{"dropped", "kept"} {
				id := addRoute(t, in.bridge, bridge.Route{Pattern: topic, Direction: bridge.Import, Delivery: d, Codec: bridge.Text()})
				if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: bridge.StreamKey("app:", topic), Values: []string{"topic", topic, "data", "x"}}).Err(); err != nil {
					t.Fatal(err)
				}
				eventually(t, func() bool { return routeByID(in.bridge, id).Imported == 1 }, "%s: the entry not handled", topic)
				if _, err := in.bridge.RemoveRoute(ctx, id); err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
		collect:
			for {
				runtime.GC()
				select {
				case <-released:
					break collect
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Error("the context of a removed route's handlers is still held by the bridge")
					break
				}
			}
			hctx := <-kept
			if err := in.bridge.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if err := hctx.Err(); err != nil {
				t.Errorf("Close cancelled the handlers' context of a route removed before: %v", err)
			}
		})
	}
}
