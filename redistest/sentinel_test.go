package redistest

import (
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSentinelOptionsInvalid(t *testing.T) {
	for _, tc := range []struct {
		opts *SentinelOptions
		want string
	}{
		{&SentinelOptions{MasterName: "my master"}, `MasterName "my master" contains a space`},
		{&SentinelOptions{Replicas: -1}, "Replicas -1 is negative"},
		{&SentinelOptions{Sentinels: -2}, "Sentinels -2 is negative"},
		{&SentinelOptions{Quorum: 4}, "Quorum 4: want 1 to 3"},
		{&SentinelOptions{Sentinels: 1, Quorum: -1}, "Quorum -1: want 1 to 1"},
		{&SentinelOptions{DownAfter: -time.Second}, "DownAfter -1s"},
		{&SentinelOptions{DownAfter: time.Microsecond}, "DownAfter 1µs: want 0 (1s) or at least 1ms"},
		{&SentinelOptions{FailoverTimeout: -1}, "FailoverTimeout -1ns"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			ft := &fatalTB{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				StartSentinel(ft, tc.opts)
			}()
			<-done
			ft.runCleanups()
			if !strings.HasPrefix(ft.msg, "redistest: StartSentinel: ") || !strings.Contains(ft.msg, tc.want) {
				t.Fatalf("message %q, want one with %q", ft.msg, tc.want)
			}
		})
	}
}

// TestSentinel starts a master, a replica and three sentinels, writes
// through a go-redis failover client, kills the master with SIGKILL,
// waits for the failover and writes again; then brings the old master back
// as a replica and fails over to it with SENTINEL FAILOVER. Every process is
// gone once the subtest that started them ends.
func TestSentinel(t *testing.T) {
	var pids []int
	t.Run("deployment", func(t *testing.T) {
		start := time.Now()
		d := StartSentinel(t, nil)
		t.Logf("1 master + 1 replica + 3 sentinels ready in %v", time.Since(start).Round(time.Millisecond))
		for _, s := range append(d.Nodes(), d.Sentinels()...) {
			pids = append(pids, s.pid())
		}
		testSentinelLayout(t, d)
		testSentinelKillMaster(t, d)
	})
	if len(pids) != 5 {
		t.Fatalf("%d pids", len(pids))
	}
	checkReaped(t, "its test ended", pids...)
}

func testSentinelLayout(t *testing.T, d *Sentinel) {
	nodes, sentinels := d.Nodes(), d.Sentinels()
	if len(nodes) != 2 || len(sentinels) != 3 || d.MasterName() != "mymaster" {
		t.Fatalf("%d nodes, %d sentinels, master name %q", len(nodes), len(sentinels), d.MasterName())
	}
	if m := d.Master(); m != nodes[0] {
		t.Fatalf("Master() = %s, want the first node %s", addrOf(m), nodes[0].Addr())
	}
	seen := map[string]bool{}
	for i, addr := range append(d.SentinelAddrs(), nodes[0].Addr(), nodes[1].Addr()) {
		if !strings.HasPrefix(addr, "127.0.0.1:") || seen[addr] {
			t.Fatalf("address %d %q (seen %v)", i, addr, seen)
		}
		seen[addr] = true
	}
	fo := d.FailoverOptions()
	if fo.MasterName != "mymaster" || strings.Join(fo.SentinelAddrs, ",") != strings.Join(d.SentinelAddrs(), ",") || fo.Protocol != 3 {
		t.Errorf("FailoverOptions() = %+v", fo)
	}
	for i, s := range sentinels {
		if s.Addr() != d.SentinelAddrs()[i] {
			t.Errorf("Sentinels()[%d] = %s, SentinelAddrs()[%d] = %s", i, s.Addr(), i, d.SentinelAddrs()[i])
		}
		for _, q := range [][]string{
			{"SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"},
			{"SENTINEL", "CKQUORUM", "mymaster"},
		} {
			if out, err := s.CLI(q...); err != nil {
				t.Errorf("sentinel %d: %s: %v", i, strings.Join(q, " "), err)
			} else if q[1] == "GET-MASTER-ADDR-BY-NAME" && out != "127.0.0.1\n"+strconv.Itoa(nodes[0].port) {
				t.Errorf("sentinel %d: %s = %q", i, strings.Join(q, " "), out)
			} else if q[1] == "CKQUORUM" && !strings.Contains(out, "3 usable Sentinels") {
				t.Errorf("sentinel %d: %s = %q", i, strings.Join(q, " "), out)
			}
		}
		// Sentinels rewrite their configuration file as they learn.
		conf, err := os.ReadFile(s.conf)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"sentinel monitor mymaster 127.0.0.1 " + strconv.Itoa(nodes[0].port) + " 2",
			"sentinel down-after-milliseconds mymaster 1000", "sentinel failover-timeout mymaster 5000",
			"sentinel known-replica mymaster 127.0.0.1 " + strconv.Itoa(nodes[1].port), "sentinel known-sentinel mymaster"} {
			if !strings.Contains(string(conf), want) {
				t.Errorf("sentinel %d: %s lacks %q:\n%s", i, s.conf, want, conf)
			}
		}
	}
	repl, err := nodes[1].CLI("INFO", "replication")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"role:slave", "master_port:" + strconv.Itoa(nodes[0].port), "master_link_status:up"} {
		if !strings.Contains(repl, want) {
			t.Errorf("replica: INFO replication lacks %q:\n%s", want, repl)
		}
	}
}

func testSentinelKillMaster(t *testing.T, d *Sentinel) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nodes := d.Nodes()
	rdb := d.Client(t)
	if err := rdb.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("SET through the failover client: %v", err)
	}
	if n, err := rdb.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v", n, err)
	}

	killed := time.Now()
	old := d.KillMaster()
	if old != nodes[0] {
		t.Fatalf("KillMaster killed %s, want the master %s", addrOf(old), nodes[0].Addr())
	}
	m, took := d.WaitFailover(old)
	promoted := time.Now()
	t.Logf("kill -9 of the master: sentinels switched to the replica %v after the kill (down-after 1s)", promoted.Sub(killed).Round(time.Millisecond))
	if m != nodes[1] || d.Master() != nodes[1] {
		t.Fatalf("WaitFailover = %s, Master() = %s, want the replica %s", addrOf(m), addrOf(d.Master()), nodes[1].Addr())
	}
	// No sentinel acts before down-after has passed.
	if took < time.Second {
		t.Fatalf("WaitFailover returned after %v, before down-after", took)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rdb.Set(ctx, "k2", "after", 0).Err()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the failover client cannot write %v after the failover: %v", time.Since(promoted), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("failover client wrote again %v after the switch", time.Since(promoted).Round(time.Millisecond))
	if got, err := rdb.Get(ctx, "k").Result(); err != nil || got != "before" {
		t.Fatalf("GET k after the failover = %q, %v (it was replicated before the kill)", got, err)
	}
	waited := time.Now()
	d.WaitOK()
	t.Logf("WaitOK after the failover: %v", time.Since(waited).Round(time.Millisecond))

	waited = time.Now()
	d.RestartAsReplica(old)
	t.Logf("RestartAsReplica: %v", time.Since(waited).Round(time.Millisecond))
	if got, err := old.Client(t).Do(ctx, "ROLE").Slice(); err != nil || got[0] != "slave" {
		t.Fatalf("ROLE on the restarted old master = %v, %v", got, err)
	}
	if got, err := old.Client(t).Get(ctx, "k2").Result(); err != nil || got != "after" {
		t.Fatalf("GET k2 on the restarted old master = %q, %v (it has synced)", got, err)
	}

	back, took := d.Failover()
	t.Logf("SENTINEL FAILOVER: done in %v", took.Round(time.Millisecond))
	if back != old {
		t.Fatalf("Failover() = %s, want the old master %s", addrOf(back), old.Addr())
	}
	if err := rdb.Set(ctx, "k3", "back", 0).Err(); err != nil {
		t.Fatalf("SET after SENTINEL FAILOVER: %v", err)
	}
	if got, err := old.Client(t).Get(ctx, "k3").Result(); err != nil || got != "back" {
		t.Fatalf("GET k3 on the master = %q, %v", got, err)
	}
}
