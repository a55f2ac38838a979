package redistest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCluster forms a three-node cluster and checks what the helper
// promises: distinct loopback nodes, all slots assigned in the documented
// ranges, no persistence, a fresh nodes.conf per node, and a cluster client
// that reaches keys of every node.
func TestCluster(t *testing.T) {
	c := StartCluster(t, 3)
	ctx := ctxT(t)
	if c.Len() != 3 {
		t.Fatalf("Len() = %d", c.Len())
	}
	seen := map[string]bool{}
	for i, addr := range c.Addrs() {
		if !strings.HasPrefix(addr, "127.0.0.1:") || seen[addr] {
			t.Fatalf("Addrs()[%d] = %q (all: %v)", i, addr, c.Addrs())
		}
		seen[addr] = true
		if c.Node(i).Addr() != addr {
			t.Errorf("Node(%d).Addr() = %q, Addrs()[%d] = %q", i, c.Node(i).Addr(), i, addr)
		}
		info, err := c.Node(i).CLI("CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_known_nodes:3", "cluster_size:3"} {
			if !strings.Contains(info, want) {
				t.Errorf("node %d: CLUSTER INFO lacks %q:\n%s", i, want, info)
			}
		}
		for param, want := range map[string]string{"cluster-enabled": "yes", "save": "", "appendonly": "no", "bind": "127.0.0.1"} {
			out, err := c.Node(i).CLI("CONFIG", "GET", param)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(strings.TrimPrefix(out, param)); got != want {
				t.Errorf("node %d: CONFIG GET %s = %q, want %q", i, param, got, want)
			}
		}
		if _, err := os.Stat(filepath.Join(c.Node(i).dir, "nodes.conf")); err != nil {
			t.Errorf("node %d: nodes.conf not in the node's temp dir: %v", i, err)
		}
	}
	for _, tc := range []struct{ slot, node int }{{0, 0}, {5460, 0}, {5461, 1}, {10922, 1}, {10923, 2}, {16383, 2}} {
		if got := c.NodeForSlot(ctx, tc.slot); got != tc.node {
			t.Errorf("NodeForSlot(%d) = %d, want %d", tc.slot, got, tc.node)
		}
	}

	cc := c.Client(t)
	nodesUsed := map[int]bool{}
	for i := range 30 {
		key := fmt.Sprintf("key-%d", i)
		if err := cc.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		slot, err := cc.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		n := c.NodeForSlot(ctx, int(slot))
		nodesUsed[n] = true
		// The key is on the node that owns its slot, and only there.
		for j := range c.Len() {
			rdb := c.Node(j).Client(t)
			err := rdb.Get(ctx, key).Err()
			if j == n && err != nil {
				t.Errorf("GET %s on its node %d: %v", key, j, err)
			}
			if j != n && (err == nil || !strings.HasPrefix(err.Error(), "MOVED")) {
				t.Errorf("GET %s on node %d (owner %d): %v, want MOVED", key, j, n, err)
			}
		}
	}
	if len(nodesUsed) != 3 {
		t.Errorf("30 keys landed on nodes %v, want all three", nodesUsed)
	}
}

// TestClusterNodeRestart kills the node that owns a key's slot and restarts
// it: it comes back with the same node ID, owning the same slots, and the
// cluster client reaches it again.
func TestClusterNodeRestart(t *testing.T) {
	c := StartCluster(t, 3)
	ctx := ctxT(t)
	cc := c.Client(t)
	const key = "restart-key"
	slot, err := cc.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	i := c.NodeForSlot(ctx, int(slot))
	if i < 0 {
		t.Fatalf("no node for slot %d", slot)
	}
	node := c.Node(i)
	id, err := node.CLI("CLUSTER", "MYID")
	if err != nil {
		t.Fatal(err)
	}
	pid := node.pid()
	node.Kill()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("after Kill, signal 0 to pid %d: %v, want ESRCH", pid, err)
	}
	if err := cc.Set(ctx, key, "v", 0).Err(); err == nil {
		t.Fatal("SET on a killed node's slot succeeded")
	}
	node.Restart()
	c.WaitOK()
	if got, err := node.CLI("CLUSTER", "MYID"); err != nil || got != id {
		t.Fatalf("node ID after restart = %q, %v; want %q", got, err, id)
	}
	if got := c.NodeForSlot(ctx, int(slot)); got != i {
		t.Fatalf("slot %d served by node %d after restart, want %d", slot, got, i)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cc.Set(ctx, key, "v", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SET after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestClusterTooSmall(t *testing.T) {
	ft := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartCluster(ft, 2)
	}()
	<-done
	ft.runCleanups()
	if !strings.Contains(ft.msg, "at least 3") {
		t.Fatalf("StartCluster(2) message: %q", ft.msg)
	}
}
