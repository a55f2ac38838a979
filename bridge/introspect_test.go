package bridge_test

import (
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestRoutesAndConnections checks the per-route counters against what
// was published, their sums against Stats, and the connection states
// through an outage of Redis.
func TestRoutesAndConnections(t *testing.T) {
	srv := redistest.Start(t, nil)
	routes := []bridge.Route{
		{Pattern: "chat.*"},
		{Pattern: "jobs", Delivery: bridge.Stream},
	}
	a := newInstance(t, srv.Client(t), durableOptions("a", routes...))
	b := newInstance(t, srv.Client(t), durableOptions("b", routes...))
	signed := durableOptions("c", routes[0])
	signed.SigningKey = []byte("0123456789abcdef0123456789abcdef")
	c := newInstance(t, srv.Client(t), signed)
	chat, jobs := record(t, b.bus, "chat.*"), record(t, b.bus, "jobs")

	for i := range 5 {
		publish(t, a.bus, "chat.room", i)
	}
	for i := range 3 {
		publish(t, a.bus, "jobs", i)
	}
	publish(t, a.bus, "chat.bad", make(chan int)) // DefaultCodec cannot encode it
	chat.waitFor(t, 5)
	jobs.waitFor(t, 3)
	// A coalesced batch is rejected as one message.
	eventually(t, func() bool { return c.bridge.Routes()[0].SignatureRejected >= 1 }, "signed bridge rejecting the unsigned")

	// The receivers may have the events before the exporter has the
	// answers of its pipeline, and counts them.
	eventually(t, func() bool { r := a.bridge.Routes(); return r[0].Exported == 5 && r[1].Exported == 3 }, "a's routes counting their exports")
	ra, rb := a.bridge.Routes(), b.bridge.Routes()
	tests := []struct {
		name      string
		got, want uint64
	}{
		{"a chat Queued", ra[0].Queued, 5},
		{"a chat Exported", ra[0].Exported, 5},
		{"a chat EncodeErrors", ra[0].EncodeErrors, 1},
		{"a jobs Queued", ra[1].Queued, 3},
		{"a jobs Exported", ra[1].Exported, 3},
		{"b chat Imported", rb[0].Imported, 5},
		{"b jobs Imported", rb[1].Imported, 3},
		{"b chat Exported", rb[0].Exported, 0},
		{"a jobs Imported (own entries are echoes)", ra[1].Imported, 0},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, tc.got, tc.want)
		}
	}
	if r := ra[0]; r.Pattern != "chat.*" || r.Channel != "app:chat.*" || !r.Glob || r.Stream != "" || r.Delivery != bridge.PubSub {
		t.Errorf("route 0: %+v", r)
	}
	if r := ra[1]; r.Index != 1 || r.Stream != "app:stream:jobs" || r.Channel != "" || r.Delivery != bridge.Stream || r.OutboxDepth != 0 {
		t.Errorf("route 1: %+v", r)
	}
	for _, in := range []*instance{a, b, c} {
		var sum bridge.RouteStats
		for _, r := range in.bridge.Routes() {
			sum.Exported += r.Exported
			sum.Imported += r.Imported
			sum.EncodeErrors += r.EncodeErrors
			sum.SignatureRejected += r.SignatureRejected
		}
		st := in.bridge.Stats()
		if sum.Exported != st.Exported || sum.Imported != st.Imported || sum.EncodeErrors != st.EncodeErrors || sum.SignatureRejected != st.SignatureRejected {
			t.Errorf("%s: routes sum to %+v, Stats say exported %d imported %d encode %d signature %d", in.bridge.InstanceID(),
				sum, st.Exported, st.Imported, st.EncodeErrors, st.SignatureRejected)
		}
	}

	kinds := func(cs []bridge.ConnState) map[bridge.ConnKind]bridge.ConnState {
		m := map[bridge.ConnKind]bridge.ConnState{}
		for _, c := range cs {
			if c.Kind == bridge.ConnExporter && c.Route != "" {
				c.Kind = 99 // the durable exporter, apart
			}
			m[c.Kind] = c
		}
		return m
	}
	conns := kinds(a.bridge.Connections())
	if len(conns) != 4 {
		t.Fatalf("a has %d kinds of connections, want pubsub, stream reader and two exporters: %+v", len(conns), a.bridge.Connections())
	}
	for k, c := range conns {
		if !c.Connected || c.Since.IsZero() || c.LastError != nil || c.Node != srv.Addr() {
			t.Errorf("%v: %+v, want connected to %s since some time, no error", k, c, srv.Addr())
		}
	}
	if c := conns[bridge.ConnStreamReader]; c.Route != "jobs" {
		t.Errorf("stream reader's route %q, want jobs", c.Route)
	}

	srv.Kill()
	eventually(t, func() bool {
		c := kinds(a.bridge.Connections())[bridge.ConnPubSub]
		return !c.Connected && c.LastError != nil && c.Failures >= 1
	}, "pubsub connection seen down")
	publish(t, a.bus, "chat.room", 5) // the exporter finds Redis down
	eventually(t, func() bool {
		c := kinds(a.bridge.Connections())[bridge.ConnExporter]
		return !c.Connected && c.LastError != nil
	}, "pub/sub exporter seen down")
	srv.Restart()
	deadline := time.Now().Add(waitTimeout)
	for !allUp(a.bridge.Connections()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for every connection up again: %+v", a.bridge.Connections())
		}
		time.Sleep(5 * time.Millisecond)
	}
	c0 := kinds(a.bridge.Connections())[bridge.ConnPubSub]
	if c0.LastError == nil {
		t.Errorf("pubsub LastError nil after the outage")
	}
	if c0.Failures < 1 || c0.LastErrorAt.After(c0.Since) {
		t.Errorf("pubsub after recovery: %+v, want a failure before Since", c0)
	}
}

// TestExportSubscriptionsNamed checks that the bridge's subscriptions on
// the bus say what they are.
func TestExportSubscriptionsNamed(t *testing.T) {
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "chat.*", Direction: bridge.Export}))
	subs := in.bus.Subscriptions()
	if len(subs) != 1 || subs[0].Name() != "bridge export" || subs[0].Pattern() != "chat.*" {
		t.Fatalf("bus subscriptions: %v", names(subs))
	}
}

func names(subs []*bus.Subscription) []string {
	var out []string
	for _, s := range subs {
		out = append(out, s.Name()+" "+s.Pattern())
	}
	return out
}

func allUp(cs []bridge.ConnState) bool {
	for _, c := range cs {
		if !c.Connected {
			return false
		}
	}
	return true
}

// testClusterConnections checks that a bridge on a cluster lists one
// sharded connection per node serving its imported channels, connected,
// with the node's address.
func testClusterConnections(t *testing.T, c *redistest.Cluster) {
	routes := []bridge.Route{{Pattern: "conn.a"}, {Pattern: "conn.b"}, {Pattern: "conn.c"}, {Pattern: "conn.d"}}
	a := newInstance(t, c.Client(t), clusterOptions("conns:", routes...))
	nodes := map[string]bool{}
	for _, r := range a.bridge.Routes() {
		nodes[c.Node(c.NodeForSlot(clusterCtx(t), bridge.HashSlot(r.Channel))).Addr()] = true
	}
	shards := map[string]bool{}
	for _, cs := range a.bridge.Connections() {
		if cs.Kind != bridge.ConnShard {
			continue
		}
		if !cs.Connected || cs.Since.IsZero() {
			t.Errorf("shard connection to %s not connected: %+v", cs.Node, cs)
		}
		shards[cs.Node] = true
	}
	if len(shards) != len(nodes) {
		t.Errorf("shard connections to %v, want one per node of the channels' slots %v", shards, nodes)
	}
	for n := range nodes {
		if !shards[n] {
			t.Errorf("no shard connection to %s", n)
		}
	}
}
