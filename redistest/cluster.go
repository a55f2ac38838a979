package redistest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterTimeout bounds how long StartCluster waits for `redis-cli --cluster
// create` and then for every node to report cluster_state:ok.
const clusterTimeout = 30 * time.Second

// Cluster is a Redis Cluster of master nodes without replicas, formed on
// loopback ports by [StartCluster]; the zero Cluster is not usable. Each
// node is a [Server] owned by the test: its process, its log and its
// cluster configuration file (nodes.conf) live in the node's own
// t.TempDir(), created fresh by StartCluster, and it is killed when the test
// ends.
//
// Addrs, Node, Len, ClusterOptions, Client and NodeForSlot are safe for
// concurrent use. WaitOK, like the Server methods that can call t.Fatalf,
// must be called from the goroutine of the test given to StartCluster.
type Cluster struct {
	t     testing.TB
	nodes []*Server
}

// StartCluster starts n redis-server processes in cluster mode (n must be at
// least 3, as `redis-cli --cluster create` requires), joins them with
// `redis-cli --cluster create ... --cluster-replicas 0 --cluster-yes`, which
// spreads the 16384 hash slots evenly in node order (with three nodes: 0-5460,
// 5461-10922 and 10923-16383), and waits until every node reports
// cluster_state:ok. It blocks for that, about two seconds. The nodes persist
// nothing (save "", appendonly no) and are killed by t.Cleanup, like those
// of [Start]. StartCluster calls t.Fatalf if redis-server or redis-cli is not
// on PATH, if a node does not start, or if the cluster is not ok within 30
// seconds, and for n < 3; so it must be called from the goroutine of the
// test t.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 3 {
		t.Fatalf("redistest: StartCluster(%d): a Redis Cluster needs at least 3 masters", n)
	}
	c := &Cluster{t: t}
	for range n {
		c.nodes = append(c.nodes, startNode(t))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.waitOK(ctx); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return c
}

// startNode starts one cluster-enabled server, retrying with other ports
// when the client port or the cluster bus port is taken. The cluster bus
// port is chosen explicitly (cluster-port) rather than left at port+10000,
// which may be taken or above 65535 for a port from the ephemeral range.
func startNode(t testing.TB) *Server {
	t.Helper()
	bin := lookPath(t)
	s := &Server{t: t, dir: t.TempDir()}
	s.logPath = filepath.Join(s.dir, "redis.log")
	s.outPath = filepath.Join(s.dir, "redis.out")
	t.Cleanup(s.Kill)
	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		busPort, err := freePort()
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		if busPort == port {
			continue
		}
		// A failed attempt may have left a nodes.conf naming its ports.
		_ = os.Remove(filepath.Join(s.dir, "nodes.conf"))
		s.port = port
		s.opts.Args = []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", // relative to dir, the node's temp dir
			"--cluster-port", strconv.Itoa(busPort),
		}
		if err := s.writeConfig(); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		lastErr = s.start(bin, startTimeout)
		if lastErr == nil {
			return s
		}
		if !errors.Is(lastErr, errPortBusy) {
			break
		}
	}
	t.Fatalf("redistest: starting a cluster node: %v\n%s", lastErr, s.logTail())
	return nil
}

// waitOK polls CLUSTER INFO on every node until each says cluster_state:ok.
func (c *Cluster) waitOK(ctx context.Context) error {
	for i, s := range c.nodes {
		for {
			out, err := s.CLI("CLUSTER", "INFO")
			if err == nil && strings.Contains(out, "cluster_state:ok") {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("node %d (%s) not ok in time: %v %s\n%s", i, s.Addr(), err, out, s.logTail())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// WaitOK blocks until every node reports cluster_state:ok, as after
// restarting a node, and calls t.Fatalf if that takes longer than 30
// seconds (a node that is killed and not restarted never reports it). Call
// it from the goroutine of the test given to StartCluster.
func (c *Cluster) WaitOK() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := c.waitOK(ctx); err != nil {
		c.t.Fatalf("redistest: %v", err)
	}
}

// Addrs returns the nodes' addresses, "127.0.0.1:PORT", in node order. The
// caller owns the slice.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Node returns node i (0 <= i < Len()) as a [Server]: Kill stops it as a
// crash would, Freeze stalls it, and Restart starts it again on the same
// port with the same nodes.conf, so that it rejoins the cluster owning the
// same slots (the cluster answers CLUSTERDOWN for those slots for about two
// seconds first, as after a master's restart: WaitOK waits for that). Node
// panics for an index out of range, as a slice does.
func (c *Cluster) Node(i int) *Server { return c.nodes[i] }

// Len returns the number of nodes.
func (c *Cluster) Len() int { return len(c.nodes) }

// ClusterOptions returns new go-redis options for the cluster: every
// node's address and Protocol 3. The caller owns the result and must close
// any client made from it.
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
// slot (0 to 16383) according to CLUSTER SHARDS, asked of the first node
// that answers, or -1 when no node answers or none serves the slot. It
// blocks for as long as the nodes take to answer, within ctx.
func (c *Cluster) NodeForSlot(ctx context.Context, slot int) int {
	for _, n := range c.nodes {
		rdb := redis.NewClient(n.ClientOptions())
		shards, err := rdb.ClusterShards(ctx).Result()
		_ = rdb.Close()
		if err != nil {
			continue
		}
		for _, sh := range shards {
			for _, r := range sh.Slots {
				if int(r.Start) <= slot && slot <= int(r.End) {
					for _, nd := range sh.Nodes {
						if nd.Role != "master" {
							continue
						}
						for i, s := range c.nodes {
							if s.port == int(nd.Port) {
								return i
							}
						}
					}
				}
			}
		}
		return -1
	}
	return -1
}
