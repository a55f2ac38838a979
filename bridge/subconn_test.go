package bridge_test

import (
	"context"
	"strings"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// pubsubPaths are the two connections the classic transport reads, for
// the tests run against both: one of the bridge's own, and go-redis's
// PubSub, the fallback for the clients the bridge cannot dial as go-redis
// would (one with an OnConnect hook is such a client).
var pubsubPaths = []struct {
	name   string
	client func(o *redis.Options) *redis.Client
}{
	{"own", redis.NewClient},
	{"go-redis", func(o *redis.Options) *redis.Client {
		o.OnConnect = func(context.Context, *redis.Conn) error { return nil }
		return redis.NewClient(o)
	}},
}

// forPubSubPaths runs test once for each of pubsubPaths, with newClient
// making the importing bridges' clients, closed at cleanup.
func forPubSubPaths(t *testing.T, test func(t *testing.T, newClient func(*redis.Options) *redis.Client)) {
	for _, p := range pubsubPaths {
		t.Run(p.name, func(t *testing.T) {
			test(t, func(o *redis.Options) *redis.Client {
				c := p.client(o)
				t.Cleanup(func() { _ = c.Close() })
				return c
			})
		})
	}
}

// TestPubSubPaths imports a message on each path, from a client with a
// ClientName: the subscriber's connection carries it.
func TestPubSubPaths(t *testing.T) {
	srv := redistest.Start(t, nil)
	admin := srv.Client(t)
	forPubSubPaths(t, func(t *testing.T, newClient func(*redis.Options) *redis.Client) {
		o := srv.ClientOptions()
		o.ClientName = "paths"
		in := newInstance(t, newClient(o), testOptions(nil, bridge.Route{Pattern: "paths.*", Direction: bridge.Import}))
		ready(t, in.bridge)
		list, err := admin.ClientList(context.Background()).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(list, "name=paths") || !strings.Contains(list, "psub=1") {
			t.Errorf("no subscriber named paths:\n%s", list)
		}
		rec := record(t, in.bus, "paths.*")
		if err := admin.Publish(context.Background(), "app:paths.x", "raw").Err(); err != nil {
			t.Fatal(err)
		}
		if e := rec.waitFor(t, 1)[0]; e.Topic != "paths.x" {
			t.Errorf("imported %+v", e)
		}
		checkAccounting(t, in.bridge)
	})
}

// TestCloseDuringHandshake closes a bridge whose own connection waits for
// the answer to its handshake from a server that never answers: Close
// ends the handshake at once, well within its context, and leaves no
// goroutine behind (goleak).
func TestCloseDuringHandshake(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: silentAddr(t), DialTimeout: time.Minute})
	defer rdb.Close()
	b := bus.New(nil)
	defer b.Close(context.Background())
	br, err := bridge.New(b, rdb, &bridge.Options{Routes: []bridge.Route{{Pattern: "x", Direction: bridge.Import}}, OnError: func(error) {}})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the handshake sent
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := br.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
}
