package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelOptions configures a deployment started by [StartSentinel]. A nil
// *SentinelOptions means all zero values: a master named "mymaster" with
// one replica, watched by three sentinels with a quorum of two, which
// declare the master down after 1 second without an answer. The defaults
// are for tests, not Redis's own (30 seconds, 3 minutes), so that a
// failover takes seconds. StartSentinel copies the SentinelOptions.
type SentinelOptions struct {
	// MasterName is the name under which the sentinels monitor the
	// master, the one clients ask them for. Empty means "mymaster". It
	// must not contain spaces.
	MasterName string

	// Replicas is the number of replicas of the master. Zero means 1 (a
	// deployment without replicas has nothing to fail over to); negative
	// fails the test.
	Replicas int

	// Sentinels is the number of sentinel processes. Zero means 3;
	// negative fails the test.
	Sentinels int

	// Quorum is how many sentinels must agree that the master is down
	// before one of them fails it over (a majority of all sentinels must
	// still elect that one). Zero means a majority of Sentinels (2 of 3);
	// more than Sentinels, or negative, fails the test.
	Quorum int

	// DownAfter is down-after-milliseconds: how long the master may not
	// answer before a sentinel considers it down. Zero means 1 second; the
	// failover then completes some 2 to 5 seconds after a kill. Rounded
	// down to milliseconds; less than 1 millisecond, or negative, fails the
	// test.
	DownAfter time.Duration

	// FailoverTimeout is failover-timeout: how long the elected sentinel
	// may take to promote a replica, and twice it how long the sentinels
	// wait before trying again when a failover attempt fails (a split
	// vote). Zero means 5 seconds. Rounded down to milliseconds; less than
	// 1 millisecond, or negative, fails the test.
	FailoverTimeout time.Duration
}

// Sentinel is a Redis Sentinel deployment started by [StartSentinel]: a
// master, its replicas and the sentinel processes that watch it and
// promote a replica when it fails; the zero Sentinel is not usable. Every
// process is a [Server] owned by the test, on its own free 127.0.0.1 port,
// with its configuration file, log and data in its own t.TempDir(), killed
// and reaped when the test ends.
//
// Clients find the master by asking the sentinels: [Sentinel.FailoverOptions]
// and [Sentinel.Client] give go-redis what it needs.
//
// MasterName, SentinelAddrs, Sentinels, Nodes, Master, FailoverOptions,
// Client and KillMaster are safe for concurrent use. WaitOK, WaitFailover,
// Failover and RestartAsReplica call t.Fatalf, so they must be called from
// the goroutine of the test given to StartSentinel.
type Sentinel struct {
	t               testing.TB
	name            string
	quorum          int
	downAfter       time.Duration
	failoverTimeout time.Duration
	nodes           []*Server // data nodes: 0 was the master at the start
	nodeAdmin       []*redis.Client
	sentinels       []*Server
	sentinelAdmin   []*redis.SentinelClient
}

// StartSentinel starts a master (redis-server), its replicas (redis-server
// with replicaof) and the sentinels (redis-server in sentinel mode, which is
// what the redis-sentinel command runs, so redis-server is all it needs),
// as opts (nil means defaults: see [SentinelOptions]) configures them. It
// blocks until the deployment is ready, as [Sentinel.WaitOK] defines it:
// every replica has synced, and every sentinel knows the master, every
// replica and every other sentinel. That takes a few seconds, as sentinels
// find each other through hello messages sent every 2 seconds.
//
// The data nodes persist nothing (save "", appendonly no). Each sentinel
// rewrites its own configuration file as it learns, as sentinels do, so a
// sentinel restarted with [Server.Restart] remembers what it knew.
// StartSentinel calls t.Fatalf if redis-server or redis-cli is not on PATH,
// for invalid options, if a process does not start, or if the deployment
// is not ready within 30 seconds (the message includes what the sentinels
// said); so it must be called from the goroutine of the test t.
func StartSentinel(t testing.TB, opts *SentinelOptions) *Sentinel {
	t.Helper()
	var o SentinelOptions
	if opts != nil {
		o = *opts
	}
	if o.MasterName == "" {
		o.MasterName = "mymaster"
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Sentinels == 0 {
		o.Sentinels = 3
	}
	if o.Quorum == 0 && o.Sentinels > 0 {
		o.Quorum = o.Sentinels/2 + 1
	}
	if o.DownAfter == 0 {
		o.DownAfter = time.Second
	}
	if o.FailoverTimeout == 0 {
		o.FailoverTimeout = 5 * time.Second
	}
	switch {
	case strings.ContainsAny(o.MasterName, " \t\r\n\""):
		t.Fatalf("redistest: StartSentinel: MasterName %q contains a space or a quote", o.MasterName)
	case o.Replicas < 0:
		t.Fatalf("redistest: StartSentinel: Replicas %d is negative", o.Replicas)
	case o.Sentinels < 0:
		t.Fatalf("redistest: StartSentinel: Sentinels %d is negative", o.Sentinels)
	case o.Quorum < 0 || o.Quorum > o.Sentinels:
		t.Fatalf("redistest: StartSentinel: Quorum %d: want 1 to %d (Sentinels)", o.Quorum, o.Sentinels)
	case o.DownAfter < time.Millisecond:
		t.Fatalf("redistest: StartSentinel: DownAfter %v: want 0 (1s) or at least 1ms", o.DownAfter)
	case o.FailoverTimeout < time.Millisecond:
		t.Fatalf("redistest: StartSentinel: FailoverTimeout %v: want 0 (5s) or at least 1ms", o.FailoverTimeout)
	}
	d := &Sentinel{
		t:               t,
		name:            o.MasterName,
		quorum:          o.Quorum,
		downAfter:       o.DownAfter,
		failoverTimeout: o.FailoverTimeout,
	}
	master := startDataNode(t, nil)
	d.nodes = append(d.nodes, master)
	for range o.Replicas {
		d.nodes = append(d.nodes, startDataNode(t, master))
	}
	for _, s := range d.nodes {
		d.nodeAdmin = append(d.nodeAdmin, adminClient(t, s))
	}
	for range o.Sentinels {
		s := startSentinelNode(t, []string{
			"sentinel resolve-hostnames no",
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d", d.name, master.port, d.quorum),
			fmt.Sprintf("sentinel down-after-milliseconds %s %d", d.name, d.downAfter.Milliseconds()),
			fmt.Sprintf("sentinel failover-timeout %s %d", d.name, d.failoverTimeout.Milliseconds()),
			fmt.Sprintf("sentinel parallel-syncs %s 1", d.name),
		})
		d.sentinels = append(d.sentinels, s)
		sc := redis.NewSentinelClient(adminOptions(s))
		t.Cleanup(func() { _ = sc.Close() }) // only redis.ErrClosed: nothing to report
		d.sentinelAdmin = append(d.sentinelAdmin, sc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	if err := d.waitStable(ctx); err != nil {
		t.Fatalf("redistest: StartSentinel: %v", err)
	}
	return d
}

// dataNodeConf is the configuration every data node of a Sentinel
// deployment gets: a replica syncs at once rather than after the 5 seconds
// a diskless sync waits by default for more replicas.
var dataNodeConf = []string{"repl-diskless-sync-delay 0"}

// startDataNode starts a redis-server for a Sentinel deployment, a replica
// of master unless master is nil. replicaof goes in redis.conf, not on the
// command line, so that the CONFIG REWRITE a sentinel sends when it
// reconfigures the node sticks across Restart.
func startDataNode(t testing.TB, master *Server) *Server {
	t.Helper()
	s := newServer(t)
	s.extraConf = slices.Clone(dataNodeConf)
	what := "a master"
	if master != nil {
		what = "a replica"
		s.extraConf = append(s.extraConf, fmt.Sprintf("replicaof 127.0.0.1 %d", master.port))
	}
	launch(t, s, what, nil)
	return s
}

// startSentinelNode starts a redis-server in sentinel mode with conf
// appended to its configuration.
func startSentinelNode(t testing.TB, conf []string) *Server {
	t.Helper()
	s := newServer(t)
	s.sentinel, s.extraConf = true, conf
	s.opts.Args = []string{"--sentinel"}
	s.ready = "+monitor master" // a sentinel logs no "Ready to accept connections"
	launch(t, s, "a sentinel", nil)
	return s
}

// MasterName returns the name the sentinels know the master by.
func (d *Sentinel) MasterName() string { return d.name }

// SentinelAddrs returns the sentinels' addresses, "127.0.0.1:PORT", in
// order. The caller owns the slice.
func (d *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(d.sentinels))
	for i, s := range d.sentinels {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Sentinels returns the sentinel processes, in the order of
// [Sentinel.SentinelAddrs]: Kill, Freeze and Restart one to test a client
// against a sentinel that fails. The caller owns the slice.
func (d *Sentinel) Sentinels() []*Server { return slices.Clone(d.sentinels) }

// Nodes returns the data nodes: the master at the start first, then its
// replicas. Roles change with failovers: [Sentinel.Master] says which node
// is the master now. The caller owns the slice.
func (d *Sentinel) Nodes() []*Server { return slices.Clone(d.nodes) }

// Master returns the data node that the first sentinel to answer names as
// the master (SENTINEL GET-MASTER-ADDR-BY-NAME), or nil when no sentinel
// answers or the address is not one of [Sentinel.Nodes]. That is the
// sentinels' configuration: right after a kill, and until they fail it
// over, it names a master that is down. It blocks while it asks, at most
// about two seconds per sentinel that does not answer (a frozen one).
func (d *Sentinel) Master() *Server {
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	for i, s := range d.sentinels {
		if !s.running() {
			continue
		}
		addr, err := d.masterAddr(ctx, i)
		if err != nil {
			continue
		}
		return d.node(addr)
	}
	return nil
}

// FailoverOptions returns new go-redis options for a client of the master,
// as redis.NewFailoverClient takes them: the master name, every sentinel's
// address and Protocol 3. Such a client asks the sentinels for the master
// and follows failovers. The caller owns the result and must close any
// client made from it.
func (d *Sentinel) FailoverOptions() *redis.FailoverOptions {
	return &redis.FailoverOptions{MasterName: d.name, SentinelAddrs: d.SentinelAddrs(), Protocol: 3}
}

// Client returns a new go-redis failover client built from
// [Sentinel.FailoverOptions], and registers a t.Cleanup on t (the test or
// one of its subtests) that closes it, before the processes are killed.
// It does not connect: the first command does. Closing it earlier is
// allowed.
func (d *Sentinel) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(d.FailoverOptions())
	t.Cleanup(func() {
		_ = c.Close() // only redis.ErrClosed, if the test closed it already
	})
	return c
}

// KillMaster kills, with SIGKILL, the node the sentinels name as the
// master, and returns it once it has exited; it returns nil, killing
// nothing, when no sentinel answers. Call [Sentinel.WaitFailover] with the
// result right after it. It is safe to call from any goroutine.
func (d *Sentinel) KillMaster() *Server {
	m := d.Master()
	if m != nil {
		m.Kill()
	}
	return m
}

// WaitFailover blocks until the sentinels have failed old over: every
// running sentinel names the same master, another node than old, and that
// node answers as a master. It returns the new master and how long
// WaitFailover waited, so that called right after old.Kill() (or
// [Sentinel.KillMaster]) it measures the failover as the sentinels report
// it: with the default 1-second DownAfter, some 2 to 5 seconds. Clients
// learn of the new master from the sentinels (+switch-master); the other
// replicas are reconfigured to follow it shortly after, and [Sentinel.WaitOK]
// waits for that.
//
// WaitFailover calls t.Fatalf, with the sentinels' logs, when old is not a
// node of this deployment, or when no failover is agreed within DownAfter
// plus twice FailoverTimeout plus 10 seconds. Call it from the goroutine of
// the test given to StartSentinel.
func (d *Sentinel) WaitFailover(old *Server) (*Server, time.Duration) {
	d.t.Helper()
	start := time.Now()
	if !slices.Contains(d.nodes, old) {
		d.t.Fatalf("redistest: WaitFailover: %s is not a node of this deployment", addrOf(old))
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.downAfter+2*d.failoverTimeout+10*time.Second)
	defer cancel()
	var m *Server
	err := poll(ctx, 20*time.Millisecond, func() error {
		var err error
		if m, err = d.agreedMaster(ctx); err != nil {
			return err
		}
		if m == old || !m.running() {
			return fmt.Errorf("the sentinels name %s", m.Addr())
		}
		return nil
	})
	if err != nil {
		d.t.Fatalf("redistest: WaitFailover: no failover after %v: %v\n%s", time.Since(start).Round(time.Millisecond), err, d.sentinelLogs())
	}
	return m, time.Since(start)
}

// Failover asks the first running sentinel for a failover (SENTINEL
// FAILOVER), as if the master had failed, and blocks until it is done, as
// [Sentinel.WaitFailover] does, usually about a second. It returns the new
// master and how long the failover took. It is not coordinated with the
// master, which is not told: it stays a master, accepting the writes of
// clients that do not ask the sentinels, until the sentinels notice and
// turn it into a replica of the new master some 10 seconds later, and those
// writes are then lost. [Sentinel.WaitOK] waits for that, 10 to 20 seconds.
// Failover calls t.Fatalf when the sentinel refuses (as when no replica can
// be promoted) or as WaitFailover does. Call it from the goroutine of the
// test given to StartSentinel.
func (d *Sentinel) Failover() (*Server, time.Duration) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	old, err := d.agreedMaster(ctx)
	if err != nil {
		d.t.Fatalf("redistest: Failover: %v", err)
	}
	i := slices.IndexFunc(d.sentinels, (*Server).running)
	if i < 0 {
		d.t.Fatalf("redistest: Failover: no sentinel is running")
	}
	start := time.Now()
	if err := d.sentinelAdmin[i].Failover(ctx, d.name).Err(); err != nil {
		d.t.Fatalf("redistest: SENTINEL FAILOVER %s on %s: %v", d.name, d.sentinels[i].Addr(), err)
	}
	m, _ := d.WaitFailover(old)
	return m, time.Since(start)
}

// RestartAsReplica restarts data node s, killed or not, as a replica of
// the master the sentinels name (its replicaof line rewritten, as an
// operator would before bringing a failed master back), and blocks until
// the deployment is stable ([Sentinel.WaitOK]): s has synced and every
// sentinel knows it as a replica. That takes well under a second, where a
// failed master restarted with [Server.Restart] comes back as an empty
// master until the sentinels notice and convert it, which takes 10 to 20
// seconds. RestartAsReplica calls t.Fatalf when s is not a data node of
// this deployment, when it is the master the sentinels name, or as Restart
// and WaitOK do. Call it from the goroutine of the test given to
// StartSentinel.
func (d *Sentinel) RestartAsReplica(s *Server) {
	d.t.Helper()
	if !slices.Contains(d.nodes, s) {
		d.t.Fatalf("redistest: RestartAsReplica: %s is not a data node of this deployment", addrOf(s))
	}
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout)
	defer cancel()
	m, err := d.agreedMaster(ctx)
	if err != nil {
		d.t.Fatalf("redistest: RestartAsReplica: %v", err)
	}
	if m == s {
		d.t.Fatalf("redistest: RestartAsReplica: %s is the master", s.Addr())
	}
	s.Kill()
	conf := slices.DeleteFunc(slices.Clone(s.extraConf), func(l string) bool { return strings.HasPrefix(l, "replicaof ") })
	s.extraConf = append(conf, fmt.Sprintf("replicaof 127.0.0.1 %d", m.port))
	if err := s.writeConfig(); err != nil {
		d.t.Fatalf("redistest: RestartAsReplica: %v", err)
	}
	s.Restart()
	d.WaitOK()
}

// WaitOK blocks until the deployment is stable among its running
// processes (killed ones are left out):
//   - every running sentinel names the same master, which answers as one
//     and which it does not flag as down;
//   - each knows every running replica, synced with that master
//     (master-link-status ok), and every other running sentinel, without
//     flags (right after a failover the others keep a master_down flag,
//     their vote on the old master, for about 5 seconds);
//   - every running replica reports master_link_status:up with that master.
//
// So WaitOK after [Sentinel.WaitFailover] waits for the other replicas to
// follow the new master and for the votes to expire, about 5 seconds. A
// killed master restarted with [Server.Restart] comes back as an empty
// master, which the sentinels turn into a replica of the new master after
// 10 to 20 seconds; WaitOK waits for that too ([Sentinel.RestartAsReplica]
// avoids it). WaitOK calls t.Fatalf, with what the sentinels said and their
// logs, when that takes longer than 30 seconds plus DownAfter plus twice
// FailoverTimeout. Call it from the goroutine of the test given to
// StartSentinel.
func (d *Sentinel) WaitOK() {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), clusterTimeout+d.downAfter+2*d.failoverTimeout)
	defer cancel()
	if err := d.waitStable(ctx); err != nil {
		d.t.Fatalf("redistest: %v", err)
	}
}

func (d *Sentinel) waitStable(ctx context.Context) error {
	err := poll(ctx, 50*time.Millisecond, func() error { return d.stable(ctx) })
	if err != nil {
		return fmt.Errorf("sentinel deployment not stable in time: %w\n%s", err, d.sentinelLogs())
	}
	return nil
}

// stable says why the deployment is not stable (see WaitOK), or nil.
func (d *Sentinel) stable(ctx context.Context) error {
	m, err := d.agreedMaster(ctx)
	if err != nil {
		return err
	}
	if !m.running() {
		return fmt.Errorf("the sentinels name %s, which is not running", m.Addr())
	}
	for i, s := range d.sentinels {
		if !s.running() {
			continue
		}
		sc := d.sentinelAdmin[i]
		info, err := sc.Master(ctx, d.name).Result()
		if err != nil {
			return fmt.Errorf("sentinel %d (%s): SENTINEL MASTER: %w", i, s.Addr(), err)
		}
		if info["flags"] != "master" {
			return fmt.Errorf("sentinel %d (%s) flags the master %s", i, s.Addr(), info["flags"])
		}
		replicas, err := sc.Replicas(ctx, d.name).Result()
		if err != nil {
			return fmt.Errorf("sentinel %d (%s): SENTINEL REPLICAS: %w", i, s.Addr(), err)
		}
		for _, r := range d.nodes {
			if r == m || !r.running() {
				continue
			}
			e := entryOf(replicas, r)
			if e == nil {
				return fmt.Errorf("sentinel %d (%s) does not know replica %s yet", i, s.Addr(), r.Addr())
			}
			if e["flags"] != "slave" || e["master-link-status"] != "ok" || e["master-port"] != strconv.Itoa(m.port) {
				return fmt.Errorf("sentinel %d (%s) sees replica %s: flags %s, master %s:%s, link %s",
					i, s.Addr(), r.Addr(), e["flags"], e["master-host"], e["master-port"], e["master-link-status"])
			}
		}
		others, err := sc.Sentinels(ctx, d.name).Result()
		if err != nil {
			return fmt.Errorf("sentinel %d (%s): SENTINEL SENTINELS: %w", i, s.Addr(), err)
		}
		for j, o := range d.sentinels {
			if j == i || !o.running() {
				continue
			}
			e := entryOf(others, o)
			if e == nil {
				return fmt.Errorf("sentinel %d (%s) does not know sentinel %d (%s) yet", i, s.Addr(), j, o.Addr())
			}
			if f := e["flags"]; f != "sentinel" {
				return fmt.Errorf("sentinel %d (%s) flags sentinel %d (%s) %s", i, s.Addr(), j, o.Addr(), f)
			}
		}
	}
	for i, r := range d.nodes {
		if r == m || !r.running() {
			continue
		}
		repl, err := d.nodeAdmin[i].Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("node %s: INFO replication: %w", r.Addr(), err)
		}
		want := fmt.Sprintf("role:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:%d\r\nmaster_link_status:up\r\n", m.port)
		if !strings.Contains(repl, want) {
			return fmt.Errorf("replica %s not synced with %s:\n%s", r.Addr(), m.Addr(), repl)
		}
	}
	return nil
}

// agreedMaster returns the node every running sentinel names as the
// master, if it answers ROLE as a master, or if it is not running (it is
// not asked then: see adminOptions).
func (d *Sentinel) agreedMaster(ctx context.Context) (*Server, error) {
	agreed := ""
	for i, s := range d.sentinels {
		if !s.running() {
			continue
		}
		addr, err := d.masterAddr(ctx, i)
		if err != nil {
			return nil, err
		}
		if agreed != "" && addr != agreed {
			return nil, fmt.Errorf("the sentinels disagree on the master: %s and %s", agreed, addr)
		}
		agreed = addr
	}
	if agreed == "" {
		return nil, errors.New("no running sentinel")
	}
	m := d.node(agreed)
	if m == nil {
		return nil, fmt.Errorf("the sentinels name %s, not a node of this deployment", agreed)
	}
	if !m.running() {
		return m, nil // killed and not failed over yet: the caller compares it with the old master
	}
	role, err := d.nodeAdmin[slices.Index(d.nodes, m)].Do(ctx, "ROLE").Slice()
	if err != nil {
		return nil, fmt.Errorf("the sentinels name %s: ROLE: %w", agreed, err)
	}
	if len(role) == 0 || role[0] != "master" {
		return nil, fmt.Errorf("the sentinels name %s, which answers ROLE %v", agreed, role)
	}
	return m, nil
}

// masterAddr asks sentinel i for the master's address.
func (d *Sentinel) masterAddr(ctx context.Context, i int) (string, error) {
	hp, err := d.sentinelAdmin[i].GetMasterAddrByName(ctx, d.name).Result()
	if err != nil {
		return "", fmt.Errorf("sentinel %d (%s): SENTINEL GET-MASTER-ADDR-BY-NAME %s: %w", i, d.sentinels[i].Addr(), d.name, err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel %d (%s): SENTINEL GET-MASTER-ADDR-BY-NAME %s = %q", i, d.sentinels[i].Addr(), d.name, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// entryOf returns the entry for s in a reply of SENTINEL REPLICAS or
// SENTINEL SENTINELS, the one whose ip and port are s's, or nil.
func entryOf(entries []map[string]string, s *Server) map[string]string {
	k := slices.IndexFunc(entries, func(e map[string]string) bool {
		return net.JoinHostPort(e["ip"], e["port"]) == s.Addr()
	})
	if k < 0 {
		return nil
	}
	return entries[k]
}

// node returns the data node listening on addr, or nil.
func (d *Sentinel) node(addr string) *Server {
	for _, s := range d.nodes {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// sentinelLogs returns the tail of every sentinel's log, where sentinels
// record what they decided (+sdown, +odown, +elected-leader,
// +switch-master ...), for failure messages.
func (d *Sentinel) sentinelLogs() string {
	var b strings.Builder
	for i, s := range d.sentinels {
		fmt.Fprintf(&b, "--- sentinel %d (%s) log (tail) ---\n%s\n", i, s.Addr(), tail(readFrom(s.logPath, 0), 20))
	}
	return b.String()
}
