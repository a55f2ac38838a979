package bridge

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/redistest"
)

// TestLaterSSubscribeMovedNamesCommand makes a node's loop send, after
// its first commands, the SSUBSCRIBE of a channel another node serves, as
// a regroup from a stale view of the cluster does: Redis answers MOVED,
// which ends the connection (the loop is moved), and the error names that
// SSUBSCRIBE, not PING.
func TestLaterSSubscribeMovedNamesCommand(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	var mu sync.Mutex
	var reports []string
	opts := &Options{Prefix: "mv:", Routes: []Route{{Pattern: "a", Direction: Import}},
		PingInterval: 200 * time.Millisecond, PingTimeout: time.Second,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond, ResumeDelay: -1,
		OnError: func(err error) {
			mu.Lock()
			reports = append(reports, err.Error())
			mu.Unlock()
		}}
	b := bus.New(nil)
	br, err := New(b, c.Client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	t.Cleanup(func() {
		_ = br.Close(context.Background())
		_ = b.Close(context.Background())
	})
	if err := br.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	s := br.shards
	s.mu.Lock()
	var l *shardLoop
	for l = range s.loops {
	}
	s.mu.Unlock()
	other := ""
	for i := 0; other == ""; i++ {
		ch := "mv:x." + strconv.Itoa(i)
		node, err := s.cc.MasterForKey(ctx, ch)
		if err != nil {
			t.Fatal(err)
		}
		if node.Options().Addr != l.addr {
			other = ch
		}
	}
	g := l.groupNow()
	g.slots = append(slices.Clone(g.slots), []string{other})
	l.regroup(g)
	want := `SSUBSCRIBE "` + other + `": MOVED `
	for {
		mu.Lock()
		found := slices.ContainsFunc(reports, func(r string) bool { return strings.Contains(r, want) })
		got := strings.Join(reports, "\n")
		mu.Unlock()
		if found {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no report naming %s; reports:\n%s", want, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
