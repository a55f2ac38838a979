package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTimeout bounds how long StartCluster waits for `redis-cli --cluster
// create`, and then, like WaitOK, for the cluster to be stable; a cluster
// with a node timeout of more than ten seconds gets twice its node timeout
// more (see [Cluster.waitBound]).
const clusterTimeout = 30 * time.Second

// numSlots is the number of hash slots of a Redis Cluster.
const numSlots = 16384

// ClusterOptions configures a cluster started by [StartClusterWith]. A nil
// *ClusterOptions means all zero values: three masters without replicas and
// Redis's default node timeout, the cluster [StartCluster](t, 3) starts.
// StartClusterWith copies the ClusterOptions: the caller may change them
// afterwards.
type ClusterOptions struct {
	// Masters is the number of master nodes. The 16384 hash slots are
	// spread evenly over them in node order, as `redis-cli --cluster
	// create` spreads them (with three masters: 0-5460, 5461-10922 and
	// 10923-16383). Zero means 3; 1 and 2 fail the test, as a Redis
	// Cluster needs at least three masters.
	Masters int

	// ReplicasPerMaster is the number of replicas of each master. Zero
	// means none; negative fails the test. A replica takes over its
	// master's slots when the master fails ([Cluster.WaitMaster]) or when
	// asked to ([Cluster.Failover]).
	ReplicasPerMaster int

	// NodeTimeout is cluster-node-timeout: how long a master may be
	// unreachable before the cluster marks it failed and one of its
	// replicas is elected in its place. Zero means Redis's default, 15
	// seconds. A test that kills masters wants about 2 seconds: a replica
	// is then promoted some 3 to 5 seconds after the kill. It is rounded
	// down to milliseconds; less than 1 millisecond, or negative, fails the
	// test.
	NodeTimeout time.Duration

	// Args are extra redis-server arguments for every node, appended after
	// those StartClusterWith sets, such as []string{"--maxmemory", "10mb"}.
	Args []string
}

// Cluster is a Redis Cluster formed on loopback ports by [StartCluster] or
// [StartClusterWith]; the zero Cluster is not usable. Each node is a
// [Server] owned by the test: its process, its log and its cluster
// configuration file (nodes.conf) live in the node's own t.TempDir(),
// created fresh, and it is killed when the test ends.
//
// Nodes are numbered at the start: nodes 0 to Masters-1 are the masters, in
// slot order, and replica r of master m is node Masters + m*ReplicasPerMaster
// + r. A node keeps its number, its port and its node ID for the whole test,
// but not its role: after a failover, ask the cluster ([Cluster.MasterOf],
// [Cluster.ReplicasOf]).
//
// Addrs, Node, Len, ClusterOptions, Client, NodeForSlot, MasterOf and
// ReplicasOf are safe for concurrent use. WaitOK, WaitMaster and Failover,
// like the Server methods that can call t.Fatalf, must be called from the
// goroutine of the test given to StartCluster.
type Cluster struct {
	t           testing.TB
	nodes       []*Server
	ids         []string        // node IDs by node index, kept across Restart in nodes.conf
	busPorts    []int           // cluster bus ports by node index
	admin       []*redis.Client // one per node, for the helpers' own queries
	masters     int
	replicas    int           // per master
	nodeTimeout time.Duration // cluster-node-timeout in effect
}

// StartCluster starts n redis-server processes in cluster mode (n must be at
// least 3, as `redis-cli --cluster create` requires), all masters without
// replicas, joins them with `redis-cli --cluster create ...
// --cluster-replicas 0 --cluster-yes`, which spreads the 16384 hash slots
// evenly in node order (with three nodes: 0-5460, 5461-10922 and
// 10923-16383), and waits until every node reports cluster_state:ok. It
// blocks for that, about two seconds. It is [StartClusterWith] with
// Masters: n and the other options zero: Redis's default node timeout.
//
// The nodes persist nothing (save "", appendonly no) and are killed by
// t.Cleanup, like those of [Start]. StartCluster calls t.Fatalf if
// redis-server or redis-cli is not on PATH, if a node does not start, or if
// the cluster is not ok within 30 seconds, and for n < 3; so it must be
// called from the goroutine of the test t.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("redistest: StartCluster(%d): a Redis Cluster needs at least 3 masters", n)
	}
	return StartClusterWith(t, &ClusterOptions{Masters: n})
}

// StartClusterWith starts a Redis Cluster configured by opts (nil means
// defaults: see [ClusterOptions]) and blocks until it is stable, as
// [Cluster.WaitOK] defines it: every node reports cluster_state:ok, all
// agree on the layout, and every replica has synced with its master. That
// takes about two seconds for three masters, three more or so with a
// replica each.
//
// The masters are joined with `redis-cli --cluster create`; each replica
// then meets the cluster and is attached to its master with CLUSTER
// REPLICATE, so that the layout is the documented one (see [Cluster]) rather
// than the one redis-cli would choose. The nodes persist nothing (save "",
// appendonly no) and are killed by t.Cleanup, like those of [Start].
//
// StartClusterWith calls t.Fatalf if redis-server or redis-cli is not on
// PATH, for invalid options, if a node does not start, or if the cluster is
// not stable within 30 seconds (plus twice a node timeout above ten
// seconds), with what each node said; so it must be called from the
// goroutine of the test t.
func StartClusterWith(t testing.TB, opts *ClusterOptions) *Cluster {
	t.Helper()
	var o ClusterOptions
	if opts != nil {
		o = *opts
		o.Args = append([]string(nil), opts.Args...)
	}
	if o.Masters == 0 {
		o.Masters = 3
	}
	switch {
	case o.Masters < 3:
		t.Fatalf("redistest: StartClusterWith: %d masters: a Redis Cluster needs at least 3 masters", o.Masters)
	case o.ReplicasPerMaster < 0:
		t.Fatalf("redistest: StartClusterWith: ReplicasPerMaster %d is negative", o.ReplicasPerMaster)
	case o.NodeTimeout < 0 || (o.NodeTimeout > 0 && o.NodeTimeout < time.Millisecond):
		t.Fatalf("redistest: StartClusterWith: NodeTimeout %v: want 0 (Redis's default) or at least 1ms", o.NodeTimeout)
	}
	c := &Cluster{t: t, masters: o.Masters, replicas: o.ReplicasPerMaster, nodeTimeout: o.NodeTimeout}
	if c.nodeTimeout == 0 {
		c.nodeTimeout = 15 * time.Second // Redis's default
	}
	// A replica syncs at once, not after the 5 seconds a diskless sync
	// waits by default for more replicas.
	args := []string{"--repl-diskless-sync-delay", "0"}
	if o.NodeTimeout > 0 {
		args = append(args, "--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10))
	}
	args = append(args, o.Args...)
	total := o.Masters * (1 + o.ReplicasPerMaster)
	for range total {
		s, bus := startNode(t, args)
		c.nodes = append(c.nodes, s)
		c.busPorts = append(c.busPorts, bus)
		c.admin = append(c.admin, adminClient(t, s))
	}

	ctx, cancel := context.WithTimeout(context.Background(), c.waitBound())
	defer cancel()
	for i := range c.nodes {
		id, err := c.admin[i].ClusterMyID(ctx).Result()
		if err != nil {
			t.Fatalf("redistest: CLUSTER MYID on node %d (%s): %v", i, c.nodes[i].Addr(), err)
		}
		c.ids = append(c.ids, id)
	}
	create := []string{"--cluster", "create"}
	create = append(create, c.Addrs()[:o.Masters]...)
	create = append(create, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, "redis-cli", create...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(create, " "), err, out)
	}
	for i := o.Masters; i < total; i++ {
		if err := c.attachReplica(ctx, i, (i-o.Masters)/o.ReplicasPerMaster); err != nil {
			t.Fatalf("redistest: %v\n%s", err, c.nodes[i].logTail())
		}
	}
	if err := c.waitStable(ctx); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return c
}

// attachReplica makes node i a replica of master m: CLUSTER MEET, then, once
// node i has heard of m by gossip, CLUSTER REPLICATE.
func (c *Cluster) attachReplica(ctx context.Context, i, m int) error {
	rdb := c.admin[i]
	master := c.nodes[m]
	// CLUSTER MEET takes the bus port, which is not port+10000 here.
	err := rdb.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", master.port, c.busPorts[m]).Err()
	if err != nil {
		return fmt.Errorf("CLUSTER MEET on node %d (%s): %w", i, c.nodes[i].Addr(), err)
	}
	// Unknown node until the handshake with m is done.
	err = poll(ctx, 20*time.Millisecond, func() error { return rdb.ClusterReplicate(ctx, c.ids[m]).Err() })
	if err != nil {
		return fmt.Errorf("CLUSTER REPLICATE %s (node %d) on node %d (%s): %w", c.ids[m], m, i, c.nodes[i].Addr(), err)
	}
	return nil
}

// startNode starts one cluster-enabled server with the extra arguments
// args, retrying with other ports when the client port or the cluster bus
// port is taken, and returns it with its bus port. The cluster bus port is
// chosen explicitly (cluster-port) rather than left at port+10000, which
// may be taken or above 65535 for a port from the ephemeral range.
func startNode(t testing.TB, args []string) (*Server, int) {
	t.Helper()
	s := newServer(t)
	var busPort int
	launch(t, s, "a cluster node", func() error {
		var err error
		for busPort = s.port; busPort == s.port && err == nil; {
			busPort, err = freePort()
		}
		if err != nil {
			return fmt.Errorf("finding a free port: %w", err)
		}
		// A failed attempt may have left a nodes.conf naming its ports.
		if err := os.Remove(filepath.Join(s.dir, "nodes.conf")); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		s.opts.Args = append([]string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", // relative to dir, the node's temp dir
			"--cluster-port", strconv.Itoa(busPort),
		}, args...)
		return nil
	})
	return s, busPort
}

// adminOptions returns client options for the helpers' own queries: no
// retries and short timeouts, since they poll, and a killed or frozen
// process must not hold them up. The helpers do not ask a process they
// killed: after as many failed dials as its pool size, a go-redis pool
// starts a goroutine that probes the address every second until the client
// is closed, and stops only up to a second after that, which goleak in the
// caller's tests would report.
func adminOptions(s *Server) *redis.Options {
	o := s.ClientOptions()
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.DialTimeout = time.Second
	o.ReadTimeout = 2 * time.Second
	o.WriteTimeout = 2 * time.Second
	o.PoolSize = 2
	return o
}

// adminClient returns a client with [adminOptions], closed by a t.Cleanup,
// before s is killed.
func adminClient(t testing.TB, s *Server) *redis.Client {
	rdb := redis.NewClient(adminOptions(s))
	t.Cleanup(func() { _ = rdb.Close() }) // only redis.ErrClosed: nothing to report
	return rdb
}

// waitBound is how long the helpers wait for the cluster to settle: 30
// seconds, and with a node timeout above ten seconds twice that timeout
// more, as a master that was failed is cleared only after twice the node
// timeout.
func (c *Cluster) waitBound() time.Duration {
	if c.nodeTimeout > 10*time.Second {
		return clusterTimeout + 2*c.nodeTimeout
	}
	return clusterTimeout
}

// WaitOK blocks until the cluster is stable: every node reports
// cluster_state:ok and knows every other node, none is flagged as failing
// in any node's view, all nodes agree on which node is a master of which
// slots and which is a replica of which master, and every replica reports
// master_link_status:up (it has synced). Call it after restarting a node
// (a killed master whose replica was promoted comes back as a replica of
// the new master, and WaitOK waits for its sync) or after
// [Cluster.Failover]. It calls t.Fatalf, with what each node said, if that
// takes longer than 30 seconds (plus twice a node timeout above ten
// seconds); a node that is killed and not restarted never lets the cluster
// be stable. Call it from the goroutine of the test given to StartCluster.
func (c *Cluster) WaitOK() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), c.waitBound())
	defer cancel()
	if err := c.waitStable(ctx); err != nil {
		c.t.Fatalf("redistest: %v", err)
	}
}

// waitStable polls until stable says the cluster is, or ctx ends.
func (c *Cluster) waitStable(ctx context.Context) error {
	if err := poll(ctx, 50*time.Millisecond, func() error { return c.stable(ctx) }); err != nil {
		return fmt.Errorf("cluster not stable in time: %w", err)
	}
	return nil
}

// stable says why the cluster is not stable (see WaitOK), or nil.
func (c *Cluster) stable(ctx context.Context) error {
	var first string // the layout node 0 sees, for comparison
	for i, s := range c.nodes {
		if !s.running() {
			return fmt.Errorf("node %d (%s) is not running", i, s.Addr())
		}
		info, err := c.admin[i].ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("node %d (%s): CLUSTER INFO: %w", i, c.nodes[i].Addr(), err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("node %d (%s): not cluster_state:ok:\n%s", i, c.nodes[i].Addr(), info)
		}
		if want := "cluster_known_nodes:" + strconv.Itoa(len(c.nodes)); !strings.Contains(info, want) {
			return fmt.Errorf("node %d (%s): CLUSTER INFO lacks %s:\n%s", i, c.nodes[i].Addr(), want, info)
		}
		view, raw, err := c.view(ctx, i)
		if err != nil {
			return err
		}
		for _, n := range view {
			if n.failing() {
				return fmt.Errorf("node %d (%s) sees node %s flagged %s:\n%s", i, c.nodes[i].Addr(), n.addr, n.flags, raw)
			}
		}
		if layout := view.layout(); i == 0 {
			first = layout
		} else if layout != first {
			return fmt.Errorf("nodes 0 and %d disagree on the layout:\n%s\n--- and ---\n%s", i, first, layout)
		}
		if me := view.self(); me != nil && me.replica() {
			repl, err := c.admin[i].Info(ctx, "replication").Result()
			if err != nil {
				return fmt.Errorf("node %d (%s): INFO replication: %w", i, c.nodes[i].Addr(), err)
			}
			if !strings.Contains(repl, "master_link_status:up") {
				return fmt.Errorf("replica node %d (%s) not synced with its master:\n%s", i, c.nodes[i].Addr(), repl)
			}
		}
	}
	return nil
}

// Addrs returns the nodes' addresses, "127.0.0.1:PORT", in node order,
// replicas included. The caller owns the slice.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Node returns node i (0 <= i < Len()) as a [Server]: Kill stops it as a
// crash would, Freeze stalls it, and Restart starts it again on the same
// port with the same nodes.conf, so that it rejoins the cluster with the
// same node ID. A master without replicas comes back owning the same slots
// (the cluster answers CLUSTERDOWN for those slots meanwhile); a master
// whose replica was promoted comes back as a replica of the new master.
// WaitOK waits for either. Node panics for an index out of range, as a
// slice does.
func (c *Cluster) Node(i int) *Server { return c.nodes[i] }

// Len returns the number of nodes, replicas included.
func (c *Cluster) Len() int { return len(c.nodes) }

// ClusterOptions returns new go-redis options for the cluster: every
// node's address (replicas included) and Protocol 3. The caller owns the
// result and must close any client made from it.
func (c *Cluster) ClusterOptions() *redis.ClusterOptions {
	return &redis.ClusterOptions{Addrs: c.Addrs(), Protocol: 3}
}

// Client returns a new go-redis cluster client built from
// [Cluster.ClusterOptions] and registers a t.Cleanup on t (the test or one
// of its subtests) that closes it, before the nodes are killed since
// cleanups run last-in first-out. Closing the client earlier is allowed.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(c.ClusterOptions())
	t.Cleanup(func() {
		_ = cc.Close() // only redis.ErrClosed, if the test closed it already
	})
	return cc
}

// NodeForSlot returns the index of the master node that serves hash slot
// slot (0 to 16383), as [Cluster.MasterOf] finds it, or -1 when no node
// answers or none serves the slot. It blocks for as long as the nodes take
// to answer, within ctx.
func (c *Cluster) NodeForSlot(ctx context.Context, slot int) int {
	_, i := c.masterOf(ctx, slot)
	return i
}

// MasterOf returns the master that owns hash slot slot (0 to 16383)
// according to the first node that answers CLUSTER NODES, or nil when no
// node answers, none owns the slot, or slot is out of range. This is the
// cluster's configuration, which may name a master that is down: the
// cluster keeps a failed master's slots on it until a replica is promoted
// ([Cluster.WaitMaster]). It blocks while it asks, at most about two
// seconds per node that does not answer (a frozen node).
func (c *Cluster) MasterOf(slot int) *Server {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	m, _ := c.masterOf(ctx, slot)
	return m
}

func (c *Cluster) masterOf(ctx context.Context, slot int) (*Server, int) {
	if slot < 0 || slot >= numSlots {
		return nil, -1
	}
	view, ok := c.firstView(ctx)
	if !ok {
		return nil, -1
	}
	if n := view.owner(slot); n != nil {
		return c.server(n.id)
	}
	return nil, -1
}

// firstView returns the CLUSTER NODES view of the first running node that
// answers, or false when none does.
func (c *Cluster) firstView(ctx context.Context) (clusterView, bool) {
	for i, s := range c.nodes {
		if !s.running() {
			continue
		}
		if view, _, err := c.view(ctx, i); err == nil {
			return view, true
		}
	}
	return nil, false
}

// ReplicasOf returns the replicas of master, in node order, according to
// the first node that answers CLUSTER NODES, whether they are up or not;
// nil when master has none, is not a master, or no node answers. It blocks
// like [Cluster.MasterOf].
func (c *Cluster) ReplicasOf(master *Server) []*Server {
	id := c.idOf(master)
	if id == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	view, ok := c.firstView(ctx)
	if !ok {
		return nil
	}
	var rs []*Server
	for j, rid := range c.ids {
		if n := view.byID(rid); n != nil && n.replica() && n.masterID == id {
			rs = append(rs, c.nodes[j])
		}
	}
	return rs
}

// WaitMaster blocks until a master other than old serves hash slot slot:
// every node that is running, old excepted, names the same master for the
// slot and does not flag it as failing, and that master answers as one. It
// returns the master and how long WaitMaster waited, so that called right
// after old.Kill() it measures the failover: with a 2-second node timeout,
// some 3 to 5 seconds. old may be nil: WaitMaster then waits for any
// healthy master of the slot. A frozen node (other than old) holds it up.
//
// WaitMaster calls t.Fatalf, with what the nodes said and the logs of
// old's replicas, for a slot out of range, or when no new master is agreed
// within three node timeouts plus 10 seconds. Call it from the goroutine of
// the test given to StartCluster.
func (c *Cluster) WaitMaster(slot int, old *Server) (*Server, time.Duration) {
	c.t.Helper()
	start := time.Now()
	if slot < 0 || slot >= numSlots {
		c.t.Fatalf("redistest: WaitMaster: slot %d out of range 0-16383", slot)
	}
	oldID := ""
	if old != nil {
		if oldID = c.idOf(old); oldID == "" {
			c.t.Fatalf("redistest: WaitMaster: %s is not a node of this cluster", old.Addr())
		}
	}
	replicas := c.ReplicasOf(old) // before the failover changes them
	ctx, cancel := context.WithTimeout(context.Background(), 3*c.nodeTimeout+10*time.Second)
	defer cancel()
	var m *Server
	err := poll(ctx, 20*time.Millisecond, func() error {
		var err error
		if m, err = c.agreedMaster(ctx, slot, old); err != nil {
			return err
		}
		if m == old {
			return fmt.Errorf("node %s still serves it", old.Addr())
		}
		return nil
	})
	if err != nil {
		var logs strings.Builder
		for _, r := range replicas {
			fmt.Fprintf(&logs, "\n--- replica %s ---\n%s", r.Addr(), r.logTail())
		}
		c.t.Fatalf("redistest: WaitMaster(%d): no new master after %v: %v%s", slot, time.Since(start).Round(time.Millisecond), err, logs.String())
	}
	return m, time.Since(start)
}

// agreedMaster returns the master every running node but skip names for
// slot, unflagged, if it answers as a master.
func (c *Cluster) agreedMaster(ctx context.Context, slot int, skip *Server) (*Server, error) {
	var agreed *Server
	for i, s := range c.nodes {
		if s == skip || !s.running() {
			continue
		}
		view, _, err := c.view(ctx, i)
		if err != nil {
			return nil, err
		}
		n := view.owner(slot)
		if n == nil {
			return nil, fmt.Errorf("node %d (%s) knows no master of slot %d", i, s.Addr(), slot)
		}
		if n.failing() {
			return nil, fmt.Errorf("node %d (%s) flags slot %d's master %s %s", i, s.Addr(), slot, n.addr, n.flags)
		}
		m, _ := c.server(n.id)
		if agreed != nil && m != agreed {
			return nil, fmt.Errorf("nodes disagree on slot %d's master: %s and %s", slot, agreed.Addr(), n.addr)
		}
		agreed = m
	}
	if agreed == nil {
		return nil, errors.New("no running node")
	}
	if agreed != skip {
		if !agreed.running() {
			return nil, fmt.Errorf("the nodes name %s, which is not running, as slot %d's master", agreed.Addr(), slot)
		}
		role, err := c.admin[slices.Index(c.nodes, agreed)].Do(ctx, "ROLE").Slice()
		if err != nil {
			return nil, fmt.Errorf("ROLE on %s: %w", agreed.Addr(), err)
		}
		if len(role) == 0 || role[0] != "master" {
			return nil, fmt.Errorf("%s answers ROLE %v", agreed.Addr(), role)
		}
	}
	return agreed, nil
}

// Failover makes replica take over its master's slots with CLUSTER
// FAILOVER, the graceful manual failover: the replica waits until it has
// every write its master acknowledged, then the two swap roles, losing
// nothing. It blocks until every running node names replica as the master
// of those slots, and returns how long that took from the command, usually
// some tens of milliseconds. The old master becomes a replica of replica;
// call [Cluster.WaitOK] to wait for it to sync.
//
// Failover calls t.Fatalf when replica is not a node of this cluster, is
// not running or is not a replica, when the command fails, or when the failover is not complete within 10
// seconds plus one node timeout (a manual failover gives up after 5 seconds
// if the master does not answer). Call it from the goroutine of the test
// given to StartCluster.
func (c *Cluster) Failover(replica *Server) time.Duration {
	c.t.Helper()
	i := slices.Index(c.nodes, replica)
	if i < 0 {
		c.t.Fatalf("redistest: Failover: %v is not a node of this cluster", addrOf(replica))
	}
	if !replica.running() {
		c.t.Fatalf("redistest: Failover: node %d (%s) is not running", i, replica.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second+c.nodeTimeout)
	defer cancel()
	view, _, err := c.view(ctx, i)
	if err != nil {
		c.t.Fatalf("redistest: Failover: %v", err)
	}
	me := view.self()
	if me == nil || !me.replica() {
		c.t.Fatalf("redistest: Failover: node %d (%s) is not a replica", i, replica.Addr())
	}
	master := view.byID(me.masterID)
	if master == nil || len(master.slots) == 0 {
		c.t.Fatalf("redistest: Failover: node %d (%s) replicates %s, which owns no slots", i, replica.Addr(), me.masterID)
	}
	slot := master.slots[0][0]
	start := time.Now()
	if err := c.admin[i].ClusterFailover(ctx).Err(); err != nil {
		c.t.Fatalf("redistest: CLUSTER FAILOVER on node %d (%s): %v", i, replica.Addr(), err)
	}
	err = poll(ctx, 10*time.Millisecond, func() error {
		m, err := c.agreedMaster(ctx, slot, nil)
		if err != nil {
			return err
		}
		if m != replica {
			return fmt.Errorf("slot %d still on %s", slot, m.Addr())
		}
		return nil
	})
	if err != nil {
		c.t.Fatalf("redistest: Failover to node %d (%s) not complete after %v: %v\n%s", i, replica.Addr(), time.Since(start).Round(time.Millisecond), err, replica.logTail())
	}
	return time.Since(start)
}

// server returns the node with the given ID and its index, or nil and -1.
func (c *Cluster) server(id string) (*Server, int) {
	i := slices.Index(c.ids, id)
	if i < 0 {
		return nil, -1
	}
	return c.nodes[i], i
}

// idOf returns s's node ID, or "" if s is not a node of c.
func (c *Cluster) idOf(s *Server) string {
	if i := slices.Index(c.nodes, s); i >= 0 {
		return c.ids[i]
	}
	return ""
}

func addrOf(s *Server) string {
	if s == nil {
		return "<nil>"
	}
	return s.Addr()
}

// view returns node i's CLUSTER NODES, parsed and as text.
func (c *Cluster) view(ctx context.Context, i int) (clusterView, string, error) {
	raw, err := c.admin[i].ClusterNodes(ctx).Result()
	if err != nil {
		return nil, "", fmt.Errorf("node %d (%s): CLUSTER NODES: %w", i, c.nodes[i].Addr(), err)
	}
	v, err := parseClusterNodes(raw)
	if err != nil {
		return nil, raw, fmt.Errorf("node %d (%s): %w", i, c.nodes[i].Addr(), err)
	}
	return v, raw, nil
}

// clusterNode is one line of CLUSTER NODES:
//
//	<id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> ...
type clusterNode struct {
	id       string
	addr     string   // ip:port
	flags    string   // as written, e.g. "myself,master" or "slave,fail"
	masterID string   // "" for a master
	slots    [][2]int // owned ranges, inclusive
}

func (n *clusterNode) hasFlag(f string) bool {
	return slices.Contains(strings.Split(n.flags, ","), f)
}

func (n *clusterNode) replica() bool { return n.hasFlag("slave") }

// failing reports a node flagged failed, possibly failed, or not yet
// known properly.
func (n *clusterNode) failing() bool {
	return n.hasFlag("fail") || n.hasFlag("fail?") || n.hasFlag("handshake") || n.hasFlag("noaddr")
}

type clusterView []clusterNode

func parseClusterNodes(raw string) (clusterView, error) {
	var v clusterView
	for _, line := range strings.Split(strings.TrimSpace(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q: fewer than 8 fields", line)
		}
		n := clusterNode{id: f[0], flags: f[2]}
		n.addr, _, _ = strings.Cut(f[1], "@")
		if f[3] != "-" {
			n.masterID = f[3]
		}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being imported or migrated
			}
			lo, hi, isRange := strings.Cut(r, "-")
			a, err := strconv.Atoi(lo)
			if err != nil {
				return nil, fmt.Errorf("CLUSTER NODES slot range %q: %w", r, err)
			}
			b := a
			if isRange {
				if b, err = strconv.Atoi(hi); err != nil {
					return nil, fmt.Errorf("CLUSTER NODES slot range %q: %w", r, err)
				}
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		v = append(v, n)
	}
	return v, nil
}

func (v clusterView) self() *clusterNode {
	for i := range v {
		if v[i].hasFlag("myself") {
			return &v[i]
		}
	}
	return nil
}

func (v clusterView) byID(id string) *clusterNode {
	for i := range v {
		if v[i].id == id {
			return &v[i]
		}
	}
	return nil
}

// owner returns the master owning slot, or nil.
func (v clusterView) owner(slot int) *clusterNode {
	for i := range v {
		if v[i].replica() {
			continue
		}
		for _, r := range v[i].slots {
			if r[0] <= slot && slot <= r[1] {
				return &v[i]
			}
		}
	}
	return nil
}

// layout is the view without what differs between observers (myself,
// timings, link states): each node's ID, role, master and slots, sorted.
func (v clusterView) layout() string {
	lines := make([]string, 0, len(v))
	for _, n := range v {
		role := "master"
		if n.replica() {
			role = "replica-of " + n.masterID
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %v", n.id, n.addr, role, n.slots))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// KeySlot returns the hash slot of key in a Redis Cluster, 0 to 16383: the
// CRC16 of the key, or of its hash tag (the part between the first "{" and
// the next "}", when not empty), modulo 16384, as CLUSTER KEYSLOT computes
// it. The slot of a sharded pub/sub channel is computed the same way. It is
// a pure function, safe for concurrent use.
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % numSlots)
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the one
// Redis Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
