//go:build unix

package bridge_test

import (
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// TestLivenessProbe freezes redis-server with SIGSTOP: its TCP connections
// stay open but nothing answers, as with a half-open connection. The bridge
// must notice from the missing PONG, and recover once the server runs again.
func TestLivenessProbe(t *testing.T) { forPubSubPaths(t, testLivenessProbe) }

func testLivenessProbe(t *testing.T, newClient func(*redis.Options) *redis.Client) {
	srv := redistest.Start(t, nil)
	opts := testOptions(nil, bridge.Route{Pattern: "live.*"})
	opts.PingInterval = 100 * time.Millisecond
	opts.PingTimeout = 300 * time.Millisecond
	in := newInstance(t, newClient(srv.ClientOptions()), opts)
	peer := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "live.*"}))
	rec := record(t, in.bus, "live.*")

	thaw := srv.Freeze()
	eventually(t, func() bool { return in.errs.count(bridge.ErrDisconnected) > 0 }, "the probe to fail")
	thaw()

	eventually(t, func() bool { return in.bridge.Stats().Reconnects > 0 }, "reconnect")
	ready(t, in.bridge)
	ready(t, peer.bridge)
	publish(t, peer.bus, "live.x", "after")
	if e := rec.waitFor(t, 1)[0]; e.Payload != "after" {
		t.Errorf("got %v", e.Payload)
	}
}
