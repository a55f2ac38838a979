package main

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// TestDead runs a consumer-group member whose handler fails, so that an
// entry reaches the dead-letter stream, and checks what `buscat dead`
// makes of it: tail prints it as it comes, list prints it, replay adds it
// again to its stream, where the member, fixed, handles it, and the
// dead-letter stream is empty after. Each buscat is the built binary.
func TestDead(t *testing.T) {
	srv := redistest.Start(t, nil)
	url := "redis://" + srv.Addr()
	rdb := srv.Client(t)
	ctx := context.Background()
	key := bridge.StreamKey("app:", "jobs")

	var failing atomic.Bool
	failing.Store(true)
	handled := make(chan string, 10)
	b := bus.New(&bus.Options{OnError: func(error) {}})
	if _, err := b.SubscribeFunc("jobs", func(_ context.Context, e bus.Event) error {
		if failing.Load() {
			return errors.New("smtp: 554")
		}
		handled <- e.Payload.(string)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	br, err := bridge.New(b, srv.Client(t), &bridge.Options{
		Prefix: "app:", InstanceID: "w", StreamBlock: 100 * time.Millisecond, OnError: func(error) {},
		Routes: []bridge.Route{{Pattern: "jobs", Delivery: bridge.Group, Direction: bridge.Import, Raw: true,
			Codec: bridge.Text(), MaxDeliveries: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = br.Close(ctx)
		_ = b.Close(ctx)
	})
	readyCtx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if err := br.Ready(readyCtx); err != nil {
		t.Fatal(err)
	}

	tail := exec.Command(built(t), "-prefix", "app:", "dead", "tail", "jobs")
	tail.Env = env(url)
	p := progtest.Start(t, tail)
	deadline := time.Now().Add(waitTimeout)
	for !strings.Contains(p.Stderr(), "buscat: tailing app:dead:jobs") {
		if time.Now().After(deadline) {
			t.Fatalf("tail did not start: stderr %q", p.Stderr())
		}
		time.Sleep(5 * time.Millisecond)
	}

	id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"topic", "jobs", "data", "mail 1"}}).Result()
	if err != nil {
		t.Fatal(err)
	}
	check := func(what, s string) deadLine {
		t.Helper()
		var l deadLine
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("%s printed %q: %v", what, s, err)
		}
		if l.Topic != "jobs" || l.Error != "smtp: 554" || l.Deliveries != 1 || l.Attempts != 1 || l.Consumer != "w" ||
			l.Group != "busline" || l.Stream != key || l.Entry != id || l.Encoding != encText || string(l.Payload) != `"mail 1"` {
			t.Errorf("%s printed %s", what, s)
		}
		if _, err := time.Parse(time.RFC3339Nano, l.Time); err != nil {
			t.Errorf("%s: time %q: %v", what, l.Time, err)
		}
		return l
	}
	tailed := check("tail", p.Next(t, waitTimeout))

	list := mustBuscat(t, url, "", "-prefix", "app:", "dead", "list", "jobs")
	lines := strings.Split(strings.TrimSuffix(list.stdout, "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("list printed %q", list.stdout)
	}
	if l := check("list", lines[0]); l.ID != tailed.ID {
		t.Errorf("list shows %s, tail showed %s", l.ID, tailed.ID)
	}

	if r := buscat(t, url, "", "-prefix", "app:", "dead", "replay", "jobs", "1-1"); r.code != exitRuntime ||
		!strings.Contains(r.stderr, "no dead letter 1-1") {
		t.Errorf("replay of a missing ID: %+v", r)
	}
	failing.Store(false)
	replay := mustBuscat(t, url, "", "-prefix", "app:", "dead", "replay", "jobs")
	if !strings.HasPrefix(replay.stdout, tailed.ID+" -> "+key+" ") || strings.Count(replay.stdout, "\n") != 1 {
		t.Errorf("replay printed %q", replay.stdout)
	}
	select {
	case got := <-handled:
		if got != "mail 1" {
			t.Errorf("handled %q after the replay", got)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the replayed entry was not handled")
	}
	if n := rdb.XLen(ctx, bridge.DeadKey("app:", "jobs")).Val(); n != 0 {
		t.Errorf("%d dead letters left after the replay", n)
	}
	if list := mustBuscat(t, url, "", "-prefix", "app:", "dead", "list", "jobs"); list.stdout != "" {
		t.Errorf("list after the replay printed %q", list.stdout)
	}

	if err := p.Interrupt(); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil {
		t.Errorf("tail after Ctrl-C: %v (stderr %q)", err, p.Stderr())
	}
	for _, args := range [][]string{{"dead"}, {"dead", "list"}, {"dead", "drop", "jobs"}, {"dead", "list", "jobs", "1-1"}} {
		if r := buscat(t, url, "", args...); r.code != exitUsage {
			t.Errorf("buscat %v: exit status %d, want %d (stderr %q)", args, r.code, exitUsage, r.stderr)
		}
	}
}
