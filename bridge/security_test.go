package bridge_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// TestTLS mirrors events between two bridges whose clients connect with a
// rediss:// URL and a client certificate to a server that requires one.
func TestTLS(t *testing.T) {
	srv := redistest.Start(t, &redistest.Options{TLS: true, RequireClientCert: true})
	if !strings.HasPrefix(srv.URL(), "rediss://") {
		t.Fatalf("URL %q", srv.URL())
	}
	client := func() *redis.Client {
		o, err := redis.ParseURL(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		o.TLSConfig = srv.TLSConfig() // trusts the test CA, presents the client certificate
		rdb := redis.NewClient(o)
		t.Cleanup(func() { _ = rdb.Close() })
		return rdb
	}
	route := bridge.Route{Pattern: "secure.*"}
	a := newInstance(t, client(), testOptions(nil, route))
	b := newInstance(t, client(), testOptions(nil, route))
	rec := record(t, b.bus, "secure.*")
	publish(t, a.bus, "secure.x", "over tls")
	if e := rec.waitFor(t, 1)[0]; e.Payload != "over tls" || !e.Remote() {
		t.Errorf("got %+v", e)
	}
	// redis-cli over TLS as a foreign publisher.
	if _, err := srv.CLI("PUBLISH", "app:secure.y", "from cli"); err != nil {
		t.Fatal(err)
	}
	if e := rec.waitFor(t, 2)[1]; string(e.Payload.([]byte)) != "from cli" {
		t.Errorf("got %+v", e)
	}
}

// TestACL runs bridges as an ACL user made from ACLRules: everything works
// inside the prefix; a bridge with another prefix gets NOPERM for its
// subscriptions (Ready fails) and its exports (counted, reported); and a
// pattern the rules do not list verbatim is refused even though "&app:*"
// covers its channels.
func TestACL(t *testing.T) { forPubSubPaths(t, testACL) }

func testACL(t *testing.T, newClient func(*redis.Options) *redis.Client) {
	srv := redistest.Start(t, nil)
	routes := []bridge.Route{{Pattern: "orders.*"}, {Pattern: "alerts"}}
	rules, err := bridge.ACLRules(&bridge.Options{Prefix: "app:", Routes: routes}, '.')
	if err != nil {
		t.Fatal(err)
	}
	want := "clearselectors resetchannels &app:* &app:orders.* resetkeys -@all +publish +subscribe +unsubscribe +psubscribe +punsubscribe +ping"
	if got := strings.Join(rules, " "); got != want {
		t.Fatalf("ACLRules = %q, want %q", got, want)
	}
	if _, err := srv.CLI(append([]string{"ACL", "SETUSER", "bridge", "on", ">s3cret"}, rules...)...); err != nil {
		t.Fatal(err)
	}
	client := func() *redis.Client {
		o := srv.ClientOptions()
		o.Username, o.Password = "bridge", "s3cret"
		return newClient(o)
	}

	a := newInstance(t, client(), testOptions(nil, routes...))
	b := newInstance(t, client(), testOptions(nil, routes...))
	rec := record(t, b.bus, "**")
	publish(t, a.bus, "orders.new", "1")
	publish(t, a.bus, "alerts", "2")
	rec.waitFor(t, 2)

	// The user may not touch keys or other commands.
	ctx := context.Background()
	if err := client().Set(ctx, "k", "v", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("SET as the bridge user: %v, want NOPERM", err)
	}

	// Another prefix: subscriptions and exports are refused.
	log := &errLog{}
	outside := testOptions(log, routes...)
	outside.Prefix = "other:"
	ob := newBus()
	c, err := bridge.New(ob, client(), outside)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeBridge(c) })
	rctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := c.Ready(rctx); !errors.Is(err, bridge.ErrSubscribe) || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("Ready outside the prefix: %v, want ErrSubscribe with NOPERM", err)
	}
	publish(t, ob, "orders.new", "x")
	eventually(t, func() bool { return c.Stats().ExportRejected == 1 }, "export refused")
	if log.count(bridge.ErrPublish) != 1 {
		t.Errorf("refused export not reported:\n%s", log)
	}

	// A pattern the rules do not list: "&app:*" is not enough for
	// PSUBSCRIBE "app:users.*".
	extra := testOptions(log, bridge.Route{Pattern: "users.*", Direction: bridge.Import})
	d, err := bridge.New(newBus(), client(), extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeBridge(d) })
	if err := d.Ready(rctx); !errors.Is(err, bridge.ErrSubscribe) || !strings.Contains(err.Error(), "NOPERM") {
		t.Errorf("Ready with an unlisted pattern: %v, want ErrSubscribe with NOPERM", err)
	}
	// But exact channels under the prefix need no extra rule.
	newInstance(t, client(), testOptions(nil, bridge.Route{Pattern: "users.one", Direction: bridge.Import}))
}

// TestSigning checks HMAC signing: bridges sharing a key exchange events;
// a receiver with the key rejects unsigned envelopes, envelopes signed with
// another key, messages without an envelope, altered messages, and signed
// messages copied to another channel, and drops a replay as a duplicate.
func TestSigning(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "sec.*"}
	keyed := func(key string) *bridge.Options {
		o := testOptions(nil, route)
		if key != "" {
			o.SigningKey = []byte(key)
		}
		return o
	}
	// Capture what travels on Redis with a plain subscriber.
	// Its reads are bounded by spyCtx.
	ctx := context.Background()
	spyCtx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	spy := srv.Client(t).PSubscribe(ctx, "app:sec.*")
	defer spy.Close()
	if _, err := spy.Receive(spyCtx); err != nil { // the confirmation
		t.Fatal(err)
	}

	a := newInstance(t, srv.Client(t), keyed("shared key"))
	b := newInstance(t, srv.Client(t), keyed("shared key"))
	rec := record(t, b.bus, "sec.*")
	publish(t, a.bus, "sec.x", "signed")
	if e := rec.waitFor(t, 1)[0]; e.Payload != "signed" {
		t.Fatalf("got %+v", e)
	}
	msg, err := spy.ReceiveMessage(spyCtx)
	if err != nil {
		t.Fatal(err)
	}
	signed := msg.Payload

	unsigned := newInstance(t, srv.Client(t), keyed(""))
	other := newInstance(t, srv.Client(t), keyed("other key"))
	publish(t, unsigned.bus, "sec.x", "unsigned")
	publish(t, other.bus, "sec.x", "wrong key")
	rdb := srv.Client(t)
	altered := []byte(signed)
	altered[len(altered)-40] ^= 1 // in the payload, before the MAC
	for _, m := range []struct{ channel, msg string }{
		{"app:sec.x", "no envelope"},
		{"app:sec.x", string(altered)},
		{"app:sec.y", signed}, // the MAC covers the channel
	} {
		if err := rdb.Publish(ctx, m.channel, m.msg).Err(); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() bool { return b.bridge.Stats().SignatureRejected == 5 }, "5 rejections, stats %+v", b.bridge.Stats())
	if n := b.errs.count(bridge.ErrSignature); n == 0 {
		t.Errorf("rejections not reported")
	}
	// A replay on the same channel passes the MAC but is a duplicate,
	// even of the first event.
	publish(t, a.bus, "sec.x", "second")
	rec.waitFor(t, 2)
	if err := rdb.Publish(ctx, "app:sec.x", signed).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return b.bridge.Stats().Duplicates == 1 }, "replay dropped")
	time.Sleep(50 * time.Millisecond)
	checkAccounting(t, b.bridge)
	if n := rec.len(); n != 2 {
		t.Errorf("%d events delivered, want 2: %v", n, rec.snapshot())
	}
	// A bridge without the key accepts signed envelopes (senders can be
	// given the key first).
	recU := record(t, unsigned.bus, "sec.*")
	publish(t, a.bus, "sec.z", "to unkeyed")
	eventually(t, func() bool {
		for _, e := range recU.snapshot() {
			if e.Payload == "to unkeyed" {
				return true
			}
		}
		return false
	}, "unkeyed receiver")
}
