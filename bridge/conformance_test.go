package bridge_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// The conformance suite holds every transport of the bridge to the same
// promises, as watermill's pubsub/tests runs one suite against every
// backend: testTransport is one test body, TestConformance runs it on
// classic pub/sub, sharded pub/sub on a Redis Cluster, Stream and Group
// routes. What a transport does differently is in its transportCase,
// with the reason.

// transportCase is one transport, as the conformance suite sees it.
type transportCase struct {
	name string
	// client returns a new client for the transport's Redis, closed at
	// cleanup.
	client func(t *testing.T) redis.UniversalClient
	// route returns the route of an exact topic for the instance id.
	route func(id, topic string, d bridge.Direction) bridge.Route
	// inject writes msg on topic as a plain Redis client would.
	inject func(t *testing.T, prefix, topic, msg string)
	// pauseWrites holds every write command on every node for d (CLIENT
	// PAUSE WRITE), so that exports pile up in the outbox and go out
	// together: coalesced into batches on pub/sub, pipelined XADDs on
	// streams.
	pauseWrites func(t *testing.T, d time.Duration)
	// entries returns the number of entries Redis keeps for topic, or -1
	// when it keeps none (pub/sub forgets every message at once).
	entries func(t *testing.T, prefix, topic string) int64
	// coalesces is set when exports that wait together travel as batches,
	// fewer messages than events: pub/sub messages do; a stream entry is
	// always one event, so that other clients can read it.
	coalesces bool
}

// TestConformance runs the conformance suite on every transport.
func TestConformance(t *testing.T) {
	srv := redistest.Start(t, nil)
	single := func(t *testing.T) redis.UniversalClient { return srv.Client(t) }
	pauseSingle := func(t *testing.T, d time.Duration) { pause(t, srv.Client(t), d) }
	xadd := func(t *testing.T, prefix, topic, msg string) {
		t.Helper()
		err := srv.Client(t).XAdd(context.Background(), &redis.XAddArgs{
			Stream: bridge.StreamKey(prefix, topic), Values: []any{"topic", topic, "data", msg}}).Err()
		if err != nil {
			t.Fatal(err)
		}
	}
	xlen := func(t *testing.T, prefix, topic string) int64 {
		t.Helper()
		n, err := srv.Client(t).XLen(context.Background(), bridge.StreamKey(prefix, topic)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	none := func(*testing.T, string, string) int64 { return -1 }

	for _, tc := range []transportCase{
		{
			name:   "pubsub",
			client: single,
			route: func(_, topic string, d bridge.Direction) bridge.Route {
				return bridge.Route{Pattern: topic, Direction: d}
			},
			inject: func(t *testing.T, prefix, topic, msg string) {
				t.Helper()
				if err := srv.Client(t).Publish(context.Background(), prefix+topic, msg).Err(); err != nil {
					t.Fatal(err)
				}
			},
			pauseWrites: pauseSingle,
			entries:     none,
			coalesces:   true,
		},
		{
			// Exact topics on a cluster client travel by sharded
			// pub/sub (SSUBSCRIBE, SPUBLISH) on the node of their
			// slot. The cluster starts only when this case runs.
			name: "sharded",
			route: func(_, topic string, d bridge.Direction) bridge.Route {
				return bridge.Route{Pattern: topic, Direction: d}
			},
			entries:   none,
			coalesces: true,
		},
		{
			name:   "stream",
			client: single,
			route: func(_, topic string, d bridge.Direction) bridge.Route {
				return bridge.Route{Pattern: topic, Direction: d, Delivery: bridge.Stream}
			},
			inject:      xadd,
			pauseWrites: pauseSingle,
			entries:     xlen,
		},
		{
			// A group hands each event to one of its members: were
			// both instances in one group, each would get a share of
			// the other's events. Each instance is the only member of
			// a group of its own, so that it gets every event, as
			// separate services each with its own group do. In its
			// group it reads its own entries back, as a Stream route
			// does, and drops them as echoes.
			name:   "group",
			client: single,
			route: func(id, topic string, d bridge.Direction) bridge.Route {
				return bridge.Route{Pattern: topic, Direction: d, Delivery: bridge.Group, Group: "g-" + id}
			},
			inject:      xadd,
			pauseWrites: pauseSingle,
			entries:     xlen,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "sharded" {
				c := redistest.StartCluster(t, 3)
				tc.client = func(t *testing.T) redis.UniversalClient { return c.Client(t) }
				tc.inject = func(t *testing.T, prefix, topic, msg string) {
					t.Helper()
					err := c.Client(t).SPublish(context.Background(), bridge.ShardChannel(prefix, topic, 0), msg).Err()
					if err != nil {
						t.Fatal(err)
					}
				}
				tc.pauseWrites = func(t *testing.T, d time.Duration) {
					for i := range c.Len() {
						pause(t, c.Node(i).Client(t), d)
					}
				}
			}
			testTransport(t, tc)
		})
	}
}

// pause holds the write commands of every client of rdb's server for d.
func pause(t *testing.T, rdb *redis.Client, d time.Duration) {
	t.Helper()
	if err := rdb.Do(context.Background(), "CLIENT", "PAUSE", strconv.FormatInt(d.Milliseconds(), 10), "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
}

// The topics of the suite. Exact topics, since sharded pub/sub carries
// only those (a pattern route falls back to classic pub/sub on a cluster,
// see testClusterPatternFallback).
const (
	confAX, confAY = "conf.a.x", "conf.a.y" // published by instance a
	confBX, confBY = "conf.b.x", "conf.b.y" // published by instance b
	confClose      = "conf.a.close"         // published by a just before it closes
	confForeign    = "conf.foreign"         // written by plain clients
)

var confTopics = []string{confAX, confAY, confBX, confBY, confClose, confForeign}

// confInstance starts an instance of the suite: id, on prefix, mirroring
// every topic of the suite in direction d, with the given signing key.
func confInstance(t *testing.T, tc transportCase, prefix, id string, d bridge.Direction, key string) *instance {
	t.Helper()
	var routes []bridge.Route
	for _, topic := range confTopics {
		routes = append(routes, tc.route(id, topic, d))
	}
	opts := durableOptions(id, routes...)
	opts.Prefix = prefix
	if key != "" {
		opts.SigningKey = []byte(key)
	}
	b := newBus()
	return newInstanceOn(t, b, tc.client(t), opts)
}

// testTransport is the conformance suite: what every transport promises.
func testTransport(t *testing.T, tc transportCase) {
	prefix := tc.name + ":" // the transports share a server
	a := confInstance(t, tc, prefix, "a", bridge.Both, "")
	b := confInstance(t, tc, prefix, "b", bridge.Both, "")
	ownA, fromB := record(t, a.bus, "conf.a.*"), record(t, a.bus, "conf.b.*")
	ownB, fromA := record(t, b.bus, "conf.b.*"), record(t, b.bus, "conf.a.*")

	// Both ways, in publishing order per topic, each event numbered in
	// its topic from 1, also when exports wait together and go out as
	// one batch.
	const n = 200
	tc.pauseWrites(t, 300*time.Millisecond)
	for i := range n {
		publish(t, a.bus, confAX, fmt.Sprintf("%s-%d", confAX, i))
		publish(t, b.bus, confBX, fmt.Sprintf("%s-%d", confBX, i))
		publish(t, a.bus, confAY, fmt.Sprintf("%s-%d", confAY, i))
		publish(t, b.bus, confBY, fmt.Sprintf("%s-%d", confBY, i))
	}
	for _, c := range []struct {
		rec  *recorder
		from *instance
	}{{fromA, a}, {fromB, b}} {
		seq := map[string]uint64{}
		for _, e := range c.rec.waitOrdered(t, 2*n) {
			seq[e.Topic]++
			if !e.Remote() || e.Meta.Source != c.from.bridge.InstanceID() || e.Meta.Seq != seq[e.Topic] ||
				e.Meta.ContentType != bridge.ContentTypeText || e.Meta.Time.IsZero() {
				t.Fatalf("event %d of %s: meta %+v; want from %s, seq %d", seq[e.Topic], e.Topic, e.Meta, c.from.bridge.InstanceID(), seq[e.Topic])
			}
		}
	}

	// No echo: each instance reads its own events back from Redis and
	// drops them; its subscribers get them once, from the local bus.
	// No re-export: what an instance imported is not sent again, so
	// Redis holds each event once and every count is exact.
	own := []struct {
		in   *instance
		own  *recorder
		pubs []string
	}{{a, ownA, []string{confAX, confAY}}, {b, ownB, []string{confBX, confBY}}}
	noEcho := func() {
		for _, c := range own {
			for _, e := range c.own.snapshot() {
				if e.Remote() {
					t.Fatalf("%s: its own event %s %v came back from Redis: %+v", c.in.bridge.InstanceID(), e.Topic, e.Payload, e.Meta)
				}
			}
		}
	}
	eventually(t, func() bool {
		noEcho()
		return a.bridge.Stats().EchoesDropped == 2*n && b.bridge.Stats().EchoesDropped == 2*n
	}, "each instance's %d echoes: a %d, b %d", func() int { return 2 * n },
		func() int { return int(a.bridge.Stats().EchoesDropped) }, func() int { return int(b.bridge.Stats().EchoesDropped) })
	time.Sleep(200 * time.Millisecond) // room for anything extra to arrive
	noEcho()
	for _, c := range own {
		id := c.in.bridge.InstanceID()
		if c.own.len() != 2*n {
			t.Errorf("%s: %d of its own events delivered locally, want %d", id, c.own.len(), 2*n)
		}
		s := c.in.bridge.Stats()
		if s.Exported != 2*n || s.Imported != 2*n || s.EchoesDropped != 2*n || s.Received != 4*n {
			t.Errorf("%s: exported %d, imported %d, echoes %d, received %d; want %d, %d, %d, %d",
				id, s.Exported, s.Imported, s.EchoesDropped, s.Received, 2*n, 2*n, 2*n, 4*n)
		}
		if batched := s.ExportMessages < s.Exported; batched != tc.coalesces {
			t.Errorf("%s: %d events exported in %d messages, though they waited together", id, s.Exported, s.ExportMessages)
		}
		if s.ExportRejected+s.EncodeErrors+s.OutboxDropped+s.Duplicates+s.Gaps+s.DecodeErrors+s.ImportDropped != 0 {
			t.Errorf("%s: losses or rejections: %+v\n%s", id, s, c.in.errs)
		}
		for _, topic := range c.pubs {
			if got := tc.entries(t, prefix, topic); got != -1 && got != n {
				t.Errorf("%s: Redis holds %d entries, want %d: something was exported twice", topic, got, n)
			}
		}
		checkAccounting(t, c.in.bridge)
	}
	if s := b.bridge.Stats(); fromA.len() != 2*n || s.Imported != a.bridge.Stats().Exported {
		t.Errorf("b delivered %d and imported %d of a's %d exports", fromA.len(), s.Imported, a.bridge.Stats().Exported)
	}

	// A plain Redis client's message without the envelope's magic is
	// delivered as raw bytes; one that has the magic but is cut short is
	// dropped, counted and reported.
	foreign := record(t, b.bus, confForeign)
	tc.inject(t, prefix, confForeign, "\xb5\x1e\x01") // magic and version, no flags
	tc.inject(t, prefix, confForeign, "\xb5\x1e\x01\x00\x01a")
	tc.inject(t, prefix, confForeign, "plain text")
	e := foreign.waitFor(t, 1)[0]
	if p, ok := e.Payload.([]byte); !ok || string(p) != "plain text" || e.Meta.Source != bridge.RawSource {
		t.Errorf("foreign message delivered as %T %q from %q", e.Payload, e.Payload, e.Meta.Source)
	}
	eventually(t, func() bool { return b.bridge.Stats().DecodeErrors == 2 }, "2 decode errors, have %d",
		func() int { return int(b.bridge.Stats().DecodeErrors) })
	if b.errs.count(bridge.ErrMalformed) == 0 {
		t.Errorf("malformed messages not reported:\n%s", b.errs)
	}
	checkAccounting(t, b.bridge)

	// Close sends what was published before it, however much waits in
	// the outbox when it starts.
	const m = 500
	tc.pauseWrites(t, 200*time.Millisecond)
	for i := range m {
		publish(t, a.bus, confClose, fmt.Sprintf("%s-%d", confClose, i))
	}
	before := a.bridge.Stats()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := a.bridge.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if s := a.bridge.Stats(); s.Exported != 2*n+m || s.OutboxDepth != 0 || s.OutboxDropped != 0 {
		t.Errorf("a after Close: exported %d (%d when Close began), depth %d, dropped %d; want %d, 0, 0",
			s.Exported, before.Exported, s.OutboxDepth, s.OutboxDropped, 2*n+m)
	}
	fromA.waitOrdered(t, 2*n+m)

	t.Run("signing", func(t *testing.T) { testTransportSigning(t, tc) })
}

// testTransportSigning checks that a receiver with a SigningKey delivers
// what a sender with the same key signed, and rejects, counts and reports
// the rest: an envelope signed with another key, an unsigned envelope and
// a message without an envelope.
func testTransportSigning(t *testing.T, tc transportCase) {
	prefix, key := tc.name+"-signed:", "shared key"
	from := confInstance(t, tc, prefix, "from", bridge.Export, key)
	to := confInstance(t, tc, prefix, "to", bridge.Import, key)
	other := confInstance(t, tc, prefix, "other", bridge.Export, "another key")
	unsigned := confInstance(t, tc, prefix, "unsigned", bridge.Export, "")
	rec := record(t, to.bus, confAX)

	const n = 20
	for i := range n {
		publish(t, from.bus, confAX, fmt.Sprintf("%s-%d", confAX, i))
	}
	publish(t, other.bus, confAX, "forged")
	publish(t, unsigned.bus, confAX, "unsigned")
	tc.inject(t, prefix, confAX, "no envelope")
	rec.waitOrdered(t, n)
	eventually(t, func() bool { return to.bridge.Stats().SignatureRejected == 3 }, "3 rejections, have %d",
		func() int { return int(to.bridge.Stats().SignatureRejected) })
	time.Sleep(100 * time.Millisecond) // room for a rejected event to be delivered
	for _, e := range rec.snapshot() {
		if e.Meta.Source != from.bridge.InstanceID() {
			t.Errorf("delivered %v from %s", e.Payload, e.Meta.Source)
		}
	}
	if rec.len() != n {
		t.Errorf("%d events delivered, want %d", rec.len(), n)
	}
	if to.errs.count(bridge.ErrSignature) == 0 {
		t.Errorf("rejections not reported:\n%s", to.errs)
	}
	checkAccounting(t, to.bridge)
}
