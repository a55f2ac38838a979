package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// helperEnv, when set to a Redis address, makes TestHelperProcess run as
// the other process of TestTwoProcesses.
const helperEnv = "BUSLINE_BRIDGE_HELPER_REDIS"

// TestTwoProcesses runs a second OS process (this test binary again, as
// TestHelperProcess) with its own bus and bridge. The parent publishes
// events; the child answers each one with an event of its own; the parent
// receives every answer, once, in order.
func TestTwoProcesses(t *testing.T) {
	srv := redistest.Start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	child.Env = append(os.Environ(), helperEnv+"="+srv.Addr())
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Wait() }()
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("child said %q, want ready", lines.Text())
	}

	parent := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "proc.**"}))
	answers := record(t, parent.bus, "proc.child")
	const n = 200
	for i := range n {
		publish(t, parent.bus, "proc.parent", strconv.Itoa(i))
	}
	events := answers.waitOrdered(t, n)
	for i, e := range events {
		if want := fmt.Sprintf("answer %d", i); e.Payload != want || !e.Remote() {
			t.Fatalf("answer %d: %v (remote %v), want %q", i, e.Payload, e.Remote(), want)
		}
	}
	publish(t, parent.bus, "proc.stop", "")
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	if got := answers.len(); got != n {
		t.Errorf("%d answers, want %d", got, n)
	}
}

// TestHelperProcess is the child process of TestTwoProcesses; it does
// nothing in a normal test run.
func TestHelperProcess(t *testing.T) {
	addr := os.Getenv(helperEnv)
	if addr == "" {
		t.Skip("helper process of TestTwoProcesses")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 3})
	defer rdb.Close()
	b := bus.New(nil)
	br, err := bridge.New(b, rdb, testOptions(nil, bridge.Route{Pattern: "proc.**"}))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	if _, err := b.Subscribe("proc.parent", func(ctx context.Context, e bus.Event) {
		_ = b.Publish(ctx, "proc.child", "answer "+e.Payload.(string))
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Subscribe("proc.stop", func(context.Context, bus.Event) { close(stop) }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := br.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	select {
	case <-stop:
	case <-ctx.Done():
		t.Fatal("never told to stop")
	}
	if err := br.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
