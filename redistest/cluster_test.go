package redistest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	checkReaped(t, "Kill", pid)
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

func TestKeySlot(t *testing.T) {
	for _, tc := range []struct {
		key  string
		slot int
	}{
		// Values from CLUSTER KEYSLOT; TestClusterReplicas asks a server.
		{"", 0},
		{"foo", 12182},
		{"bar", 5061},
		{"somekey", 11058},
		{"foo{hash_tag}", 2515},
		{"{hash_tag}", 2515},
		{"{user1000}.following", KeySlot("user1000")},
		{"foo{}{bar}", KeySlot("foo{}{bar}")}, // an empty tag: the whole key
		{"foo{{bar}}zap", KeySlot("{bar")},    // from the first { to the next }
		{"foo{bar}{zap}", KeySlot("bar")},
	} {
		if got := KeySlot(tc.key); got != tc.slot {
			t.Errorf("KeySlot(%q) = %d, want %d", tc.key, got, tc.slot)
		}
	}
	if KeySlot("foo{}{bar}") == KeySlot("bar") || KeySlot("foo{{bar}}zap") == KeySlot("bar") {
		t.Error("hash tags taken too greedily")
	}
}

func TestParseClusterNodes(t *testing.T) {
	const raw = `07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004,hostname4 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master,fail - 0 1426238316232 2 disconnected
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460 5462 [5463->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
`
	v, err := parseClusterNodes(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 3 {
		t.Fatalf("%d nodes", len(v))
	}
	me := v.self()
	if me == nil || me.addr != "127.0.0.1:30001" || fmt.Sprint(me.slots) != "[[0 5460] [5462 5462]]" {
		t.Fatalf("self = %+v", me)
	}
	if r := v.byID("07c37dfeb235213a872192d90877d0cd55635b91"); !r.replica() || r.masterID != me.id || r.addr != "127.0.0.1:30004" {
		t.Errorf("replica = %+v", r)
	}
	if f := v.byID("67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1"); !f.failing() || f.replica() {
		t.Errorf("failed master = %+v", f)
	}
	for _, tc := range []struct {
		slot int
		want string // owner's address, "" for none
	}{{0, "127.0.0.1:30001"}, {5460, "127.0.0.1:30001"}, {5461, ""}, {5462, "127.0.0.1:30001"}, {5463, ""}} {
		got := ""
		if n := v.owner(tc.slot); n != nil {
			got = n.addr
		}
		if got != tc.want {
			t.Errorf("owner(%d) = %q, want %q", tc.slot, got, tc.want)
		}
	}
	if _, err := parseClusterNodes("abc 127.0.0.1:1@2 master"); err == nil {
		t.Error("a short line parsed")
	}
	if _, err := parseClusterNodes("a 127.0.0.1:1@2 master - 0 0 1 connected 1-x"); err == nil {
		t.Error("a bad slot range parsed")
	}
}

func TestClusterOptionsInvalid(t *testing.T) {
	for _, tc := range []struct {
		opts *ClusterOptions
		want string
	}{
		{&ClusterOptions{Masters: 2}, "2 masters: a Redis Cluster needs at least 3 masters"},
		{&ClusterOptions{Masters: -1}, "-1 masters"},
		{&ClusterOptions{ReplicasPerMaster: -1}, "ReplicasPerMaster -1 is negative"},
		{&ClusterOptions{NodeTimeout: -time.Second}, "NodeTimeout -1s"},
		{&ClusterOptions{NodeTimeout: time.Microsecond}, "at least 1ms"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			ft := &fatalTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				StartClusterWith(ft, tc.opts)
			}()
			<-done
			ft.runCleanups()
			if !strings.Contains(ft.msg, tc.want) || !strings.HasPrefix(ft.msg, "redistest: ") {
				t.Fatalf("message %q, want one with %q", ft.msg, tc.want)
			}
		})
	}
}

// TestClusterReplicas forms a cluster of three masters with a replica each
// and checks the layout, then fails two masters over, gracefully and with a
// kill -9, and brings the killed one back as a replica. Every process is
// gone once the subtest that started them ends.
func TestClusterReplicas(t *testing.T) {
	var pids []int
	t.Run("cluster", func(t *testing.T) {
		const nodeTimeout = 2 * time.Second
		start := time.Now()
		c := StartClusterWith(t, &ClusterOptions{ReplicasPerMaster: 1, NodeTimeout: nodeTimeout})
		t.Logf("3 masters + 3 replicas stable in %v", time.Since(start).Round(time.Millisecond))
		for i := range c.Len() {
			pids = append(pids, c.Node(i).pid())
		}
		testClusterLayout(t, c)
		t.Run("Failover", func(t *testing.T) { testClusterFailover(t, c) })
		t.Run("KillMaster", func(t *testing.T) { testClusterKillMaster(t, c, nodeTimeout) })
	})
	if len(pids) != 6 {
		t.Fatalf("%d pids", len(pids))
	}
	checkReaped(t, "its test ended", pids...)
}

func testClusterLayout(t *testing.T, c *Cluster) {
	ctx := ctxT(t)
	if c.Len() != 6 || len(c.Addrs()) != 6 {
		t.Fatalf("Len() = %d, Addrs() = %v", c.Len(), c.Addrs())
	}
	ranges := [][2]int{{0, 5460}, {5461, 10922}, {10923, 16383}}
	for m, r := range ranges {
		master, replica := c.Node(m), c.Node(3+m)
		for _, slot := range r {
			if got := c.MasterOf(slot); got != master {
				t.Errorf("MasterOf(%d) = %s, want node %d %s", slot, addrOf(got), m, master.Addr())
			}
			if got := c.NodeForSlot(ctx, slot); got != m {
				t.Errorf("NodeForSlot(%d) = %d, want %d", slot, got, m)
			}
		}
		if got := c.ReplicasOf(master); len(got) != 1 || got[0] != replica {
			t.Errorf("ReplicasOf(node %d) = %v, want node %d", m, got, 3+m)
		}
		if got := c.ReplicasOf(replica); got != nil {
			t.Errorf("ReplicasOf(a replica) = %v, want nil", got)
		}
		repl, err := replica.CLI("INFO", "replication")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"role:slave", "master_port:" + strconv.Itoa(master.port), "master_link_status:up"} {
			if !strings.Contains(repl, want) {
				t.Errorf("node %d: INFO replication lacks %q:\n%s", 3+m, want, repl)
			}
		}
	}
	for i := range c.Len() {
		if out, err := c.Node(i).CLI("CONFIG", "GET", "cluster-node-timeout"); err != nil || !strings.HasSuffix(out, "\n2000") {
			t.Errorf("node %d: CONFIG GET cluster-node-timeout = %q, %v", i, out, err)
		}
		info, err := c.Node(i).CLI("CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"cluster_state:ok", "cluster_known_nodes:6", "cluster_size:3"} {
			if !strings.Contains(info, want) {
				t.Errorf("node %d: CLUSTER INFO lacks %q", i, want)
			}
		}
	}
	if c.MasterOf(-1) != nil || c.MasterOf(16384) != nil || c.NodeForSlot(ctx, 16384) != -1 {
		t.Error("a slot out of range has a master")
	}
	for _, key := range []string{"foo", "somekey", "{user1000}.following", "foo{{bar}}zap", "x"} {
		out, err := c.Node(0).CLI("CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		if out != strconv.Itoa(KeySlot(key)) {
			t.Errorf("CLUSTER KEYSLOT %s = %s, KeySlot = %d", key, out, KeySlot(key))
		}
	}
}

// keyInSlots returns a key whose slot is in [lo, hi].
func keyInSlots(t *testing.T, lo, hi int) string {
	for i := range 100000 {
		key := fmt.Sprintf("key-%d", i)
		if s := KeySlot(key); lo <= s && s <= hi {
			return key
		}
	}
	t.Fatalf("no key in slots %d-%d", lo, hi)
	return ""
}

// replicated writes key on master and waits until its replica has it.
func replicated(t *testing.T, ctx context.Context, master *Server, key, value string) {
	t.Helper()
	rdb := master.Client(t)
	if err := rdb.Set(ctx, key, value, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := rdb.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}
}

// testClusterFailover fails master 0 over to its replica, node 3, with
// CLUSTER FAILOVER: the slots move, nothing is lost, the old master follows
// the new one.
func testClusterFailover(t *testing.T, c *Cluster) {
	ctx := ctxT(t)
	master, replica := c.Node(0), c.Node(3)
	key := keyInSlots(t, 0, 5460)
	replicated(t, ctx, master, key, "before")
	cc := c.Client(t)
	if got, err := cc.Get(ctx, key).Result(); err != nil || got != "before" {
		t.Fatalf("GET %s = %q, %v", key, got, err)
	}

	took := c.Failover(replica)
	t.Logf("CLUSTER FAILOVER: slots moved in %v", took.Round(time.Millisecond))
	if got := c.MasterOf(KeySlot(key)); got != replica {
		t.Fatalf("after Failover, MasterOf = %s, want the replica %s", addrOf(got), replica.Addr())
	}
	c.WaitOK()
	if got := c.ReplicasOf(replica); len(got) != 1 || got[0] != master {
		t.Fatalf("after Failover, ReplicasOf(new master) = %v, want the old master", got)
	}
	if got, err := cc.Get(ctx, key).Result(); err != nil || got != "before" {
		t.Fatalf("GET %s after Failover = %q, %v (a graceful failover loses nothing)", key, got, err)
	}
	if err := cc.Set(ctx, key, "after", 0).Err(); err != nil {
		t.Fatalf("SET %s after Failover: %v", key, err)
	}
}

// testClusterKillMaster kills master 1 with SIGKILL: its replica, node 4,
// is promoted after the node timeout, a cluster client writes to the slot
// again, and the killed node, restarted, rejoins as a replica of node 4.
func testClusterKillMaster(t *testing.T, c *Cluster, nodeTimeout time.Duration) {
	ctx := ctxT(t)
	key := keyInSlots(t, 5461, 10922)
	slot := KeySlot(key)
	old, replica := c.MasterOf(slot), c.Node(4)
	if old != c.Node(1) {
		t.Fatalf("MasterOf(%d) = %s, want node 1", slot, addrOf(old))
	}
	replicated(t, ctx, old, key, "before")
	cc := c.Client(t)
	if err := cc.Get(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}

	killed := time.Now()
	old.Kill()
	m, took := c.WaitMaster(slot, old)
	promoted := time.Now()
	t.Logf("kill -9 of a master: replica promoted %v after the kill (node timeout %v)", promoted.Sub(killed).Round(time.Millisecond), nodeTimeout)
	if m != replica {
		t.Fatalf("WaitMaster = %s, want the replica %s", m.Addr(), replica.Addr())
	}
	// The cluster marks a master failed only after the node timeout, and
	// elects a replica after that: a promotion any sooner was not one.
	if took < nodeTimeout {
		t.Fatalf("WaitMaster returned after %v, before the node timeout %v", took, nodeTimeout)
	}
	if got := c.MasterOf(slot); got != replica {
		t.Fatalf("MasterOf(%d) = %s after the failover", slot, addrOf(got))
	}

	// go-redis (v9.23) does not move to the new master by itself: a
	// connection refused by the dead one is not retried elsewhere, so no
	// MOVED reply prompts a reload of the slot map, and the client keeps
	// dialing the dead node until its periodic reload
	// (ClusterStateReloadInterval, 60 seconds). A client that means to
	// recover sooner reloads the layout, as here.
	deadline := time.Now().Add(15 * time.Second)
	for {
		cc.ReloadState(ctx) // asynchronous: the next SETs see the new layout
		err := cc.Set(ctx, key, "after", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster client cannot write to slot %d %v after the promotion: %v", slot, time.Since(promoted), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("cluster client wrote to the slot again %v after the promotion", time.Since(promoted).Round(time.Millisecond))
	if got, err := replica.Client(t).Get(ctx, key).Result(); err != nil || got != "after" {
		t.Fatalf("GET on the new master = %q, %v", got, err)
	}

	old.Restart()
	c.WaitOK()
	if got := c.ReplicasOf(replica); len(got) != 1 || got[0] != old {
		t.Fatalf("after restart, ReplicasOf(new master) = %v, want the old master %s", got, old.Addr())
	}
	if got := c.MasterOf(slot); got != replica {
		t.Fatalf("after the old master's restart, MasterOf(%d) = %s", slot, addrOf(got))
	}
	if got, err := old.Client(t).Do(ctx, "ROLE").Slice(); err != nil || got[0] != "slave" {
		t.Fatalf("ROLE on the restarted old master = %v, %v", got, err)
	}
}
