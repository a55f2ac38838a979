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
// classic pub/sub, sharded pub/sub on a Redis Cluster, and Stream and
// Group routes on one server and on a cluster. What a transport does
// differently is in transportCase, with the reason.

// transportCase is one transport on one kind of Redis, as the
// conformance suite sees it.
type transportCase struct {
	name     string
	delivery bridge.Delivery
	// group names the consumer group of a Group route for the instance
	// id; nil for other routes.
	group func(id string) string
	// redis is where it runs.
	redis *confRedis
}

// confRedis is a Redis the suite runs on: one server, or a cluster.
type confRedis struct {
	// client returns a new client, closed at cleanup.
	client func(t *testing.T) redis.UniversalClient
	// nodes returns a client per node, closed at cleanup.
	nodes   func(t *testing.T) []*redis.Client
	cluster bool
}

// route returns the route of an exact topic for the instance id.
func (tc *transportCase) route(id, topic string, d bridge.Direction) bridge.Route {
	r := bridge.Route{Pattern: topic, Direction: d, Delivery: tc.delivery}
	if tc.group != nil {
		r.Group = tc.group(id)
	}
	return r
}

// inject writes msg on topic as a plain Redis client would: PUBLISH, or
// on a cluster SPUBLISH, for pub/sub; XADD for durable routes.
func (tc *transportCase) inject(t *testing.T, prefix, topic, msg string) {
	t.Helper()
	ctx := context.Background()
	rdb := tc.redis.client(t)
	var err error
	switch {
	case tc.delivery != bridge.PubSub:
		err = rdb.XAdd(ctx, &redis.XAddArgs{Stream: bridge.StreamKey(prefix, topic), Values: []any{"topic", topic, "data", msg}}).Err()
	case tc.redis.cluster:
		err = rdb.SPublish(ctx, bridge.ShardChannel(prefix, topic, 0), msg).Err()
	default:
		err = rdb.Publish(ctx, prefix+topic, msg).Err()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// entries returns the number of entries Redis keeps for topic, or -1 when
// it keeps none: pub/sub forgets every message at once.
func (tc *transportCase) entries(t *testing.T, prefix, topic string) int64 {
	t.Helper()
	if tc.delivery == bridge.PubSub {
		return -1
	}
	n, err := tc.redis.client(t).XLen(context.Background(), bridge.StreamKey(prefix, topic)).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// coalesces reports whether exports that wait together travel as
// batches, fewer messages than events: pub/sub messages do; a stream entry
// is always one event, so that other clients can read it.
func (tc *transportCase) coalesces() bool { return tc.delivery == bridge.PubSub }

// pauseWrites holds every write command on every node for d (CLIENT PAUSE
// WRITE), so that exports pile up in the outbox and go out together:
// coalesced into batches on pub/sub, pipelined XADDs on streams.
func (tc *transportCase) pauseWrites(t *testing.T, d time.Duration) {
	t.Helper()
	for _, rdb := range tc.redis.nodes(t) {
		pause(t, rdb, d)
	}
}

// TestConformance runs the conformance suite on every transport, on one
// server and on a cluster of three masters.
func TestConformance(t *testing.T) {
	srv := redistest.Start(t, nil)
	single := &confRedis{
		client: func(t *testing.T) redis.UniversalClient { return srv.Client(t) },
		nodes:  func(t *testing.T) []*redis.Client { return []*redis.Client{srv.Client(t)} },
	}
	c := redistest.StartCluster(t, 3)
	cluster := &confRedis{
		client:  func(t *testing.T) redis.UniversalClient { return c.Client(t) },
		nodes:   func(t *testing.T) []*redis.Client { return nodeClients(t, c) },
		cluster: true,
	}
	// A group hands each event to one of its members: were both
	// instances in one group, each would get a share of the other's
	// events. Each instance is the only member of a group of its own, so
	// that it gets every event, as separate services each with its own
	// group do. In its group it reads its own entries back, as a Stream
	// route does, and drops them as echoes.
	ownGroup := func(id string) string { return "g-" + id }
	for _, tc := range []transportCase{
		{name: "pubsub", delivery: bridge.PubSub, redis: single},
		// Exact topics on a cluster client travel by sharded pub/sub
		// (SSUBSCRIBE, SPUBLISH) on the node of their slot.
		{name: "sharded", delivery: bridge.PubSub, redis: cluster},
		{name: "stream", delivery: bridge.Stream, redis: single},
		{name: "group", delivery: bridge.Group, group: ownGroup, redis: single},
		{name: "stream-cluster", delivery: bridge.Stream, redis: cluster},
		{name: "group-cluster", delivery: bridge.Group, group: ownGroup, redis: cluster},
	} {
		t.Run(tc.name, func(t *testing.T) { testTransport(t, &tc) })
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
func confInstance(t *testing.T, tc *transportCase, prefix, id string, d bridge.Direction, key string) *instance {
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
	return newInstanceOn(t, b, tc.redis.client(t), opts)
}

// testTransport is the conformance suite: what every transport promises.
func testTransport(t *testing.T, tc *transportCase) {
	prefix := tc.name + ":" // the transports share their servers
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
		switch batched := s.ExportMessages < s.Exported; {
		case tc.coalesces() && !batched:
			t.Errorf("%s: %d events exported in %d messages, though they waited together", id, s.Exported, s.ExportMessages)
		case !tc.coalesces() && batched:
			t.Errorf("%s: %d events exported in %d messages: a stream entry carries one event", id, s.Exported, s.ExportMessages)
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
func testTransportSigning(t *testing.T, tc *transportCase) {
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
