//go:build unix

package bridge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestClusterLivenessProbe freezes, with SIGSTOP, the cluster node serving
// an imported sharded channel: the connection stays open but nothing
// answers. The probe of that shard's connection must notice from the
// missing PONG and reconnect once the node runs again (well within the
// cluster's node timeout, so no failover happens).
func TestClusterLivenessProbe(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	const topic = "live.x"
	node := c.Node(owner(t, c, bridge.ShardChannel("l:", topic, 0)))
	opts := clusterOptions("l:", bridge.Route{Pattern: topic})
	opts.PingInterval = 100 * time.Millisecond
	opts.PingTimeout = 300 * time.Millisecond
	in := newInstance(t, c.Client(t), opts)
	peer := newInstance(t, c.Client(t), clusterOptions("l:", bridge.Route{Pattern: topic}))
	exchange(t, peer, in, topic, 10)

	thaw := node.Freeze()
	eventually(t, func() bool { return in.errs.count(bridge.ErrDisconnected) > 0 }, "the probe to fail")
	thaw()
	if !strings.Contains(in.errs.String(), node.Addr()) {
		t.Errorf("the report does not name the node %s:\n%s", node.Addr(), in.errs)
	}

	eventually(t, func() bool { return in.bridge.Stats().Reconnects > 0 }, "reconnect")
	ready(t, in.bridge)
	exchange(t, peer, in, topic, 50)
}
