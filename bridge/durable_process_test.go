package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// durableHelperEnv, when set to "ADDR DELIVERY", makes
// TestDurableHelperProcess run as the importing process of
// TestDurableImporterKilled.
const durableHelperEnv = "BUSLINE_DURABLE_HELPER"

// TestDurableImporterKilled exports a stream of events from this process
// to an importing process (this test binary again), kills the importer
// with SIGKILL mid-stream while events keep coming, and starts it again
// with the same InstanceID and consumer name. Every event is handled; an
// event is handled twice only if the kill caught it handled and not yet
// recorded as such: after the checkpoint (Stream), or pending for the
// killed consumer (Group), as Redis says right after the kill.
func TestDurableImporterKilled(t *testing.T) {
	for _, d := range []bridge.Delivery{bridge.Stream, bridge.Group} {
		t.Run(d.String(), func(t *testing.T) { testImporterKilled(t, d) })
	}
}

// importer is the importing child process.
type importer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when its stdout is drained
}

// handledLog counts, per payload, how often the child processes handled it.
type handledLog struct {
	mu    sync.Mutex
	count map[string]int
	total atomic.Int64
}

func (h *handledLog) add(p string) {
	h.mu.Lock()
	h.count[p]++
	h.mu.Unlock()
	h.total.Add(1)
}

func (h *handledLog) snapshot() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := make(map[string]int, len(h.count))
	for k, v := range h.count {
		m[k] = v
	}
	return m
}

func (h *handledLog) distinct() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.count)
}

func startImporter(t *testing.T, srv *redistest.Server, d bridge.Delivery, log *handledLog) *importer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestDurableHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), durableHelperEnv+"="+srv.Addr()+" "+d.String())
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	im := &importer{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		recv(t, im.done, "the killed importer's output to end")
		_ = waitCmd(t, cmd, "the killed importer to exit")
	})
	ready := make(chan bool, 2)
	go func() {
		defer close(im.done)
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			line := lines.Text()
			switch {
			case line == "ready":
				ready <- true
			case strings.HasPrefix(line, "h "):
				log.add(line[2:])
			}
		}
		ready <- false
	}()
	if !recv(t, ready, "the importer to be ready") {
		t.Fatal("importer exited before it was ready")
	}
	return im
}

// streamIDLess compares two stream entry IDs ("ms-seq").
func streamIDLess(a, b string) bool {
	split := func(id string) (uint64, uint64) {
		ms, seq, _ := strings.Cut(id, "-")
		x, _ := strconv.ParseUint(ms, 10, 64)
		y, _ := strconv.ParseUint(seq, 10, 64)
		return x, y
	}
	am, as := split(a)
	bm, bs := split(b)
	return am < bm || am == bm && as < bs
}

func testImporterKilled(t *testing.T, d bridge.Delivery) {
	srv := redistest.Start(t, &redistest.Options{AppendOnly: true})
	rdb := srv.Client(t)
	ctx := context.Background()
	key := bridge.StreamKey("app:", "work")
	// Raw entries: their data field is the payload, so that this test can
	// tell which payload an entry ID holds.
	a := newInstance(t, srv.Client(t), durableOptions("a",
		bridge.Route{Pattern: "work", Delivery: bridge.Stream, Direction: bridge.Export, Raw: true, Codec: bridge.Text()}))

	log := &handledLog{count: map[string]int{}}
	first := startImporter(t, srv, d, log)

	const n = 3000
	published := make(chan struct{})
	go func() {
		defer close(published)
		for i := range n {
			_ = a.bus.Publish(ctx, "work", strconv.Itoa(i))
			if i%50 == 49 {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	eventually(t, func() bool { return log.total.Load() >= n/4 }, "first importer handling")
	if err := first.cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	recv(t, first.done, "the killed importer's output to end")
	_ = waitCmd(t, first.cmd, "the killed importer to exit")
	before := log.snapshot()

	// What Redis holds as not yet handled, right after the kill: the
	// only events that may be handled again.
	var mayRepeat func(id string) bool
	var pendingN int
	if d == bridge.Group {
		pend, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: "busline", Start: "-", End: "+", Count: n}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, p := range pend {
			ids[p.ID] = true
		}
		pendingN = len(ids)
		mayRepeat = func(id string) bool { return ids[id] }
	} else {
		cp, err := rdb.HGet(ctx, "app:checkpoint:w", key).Result()
		if err != nil {
			t.Fatal(err)
		}
		mayRepeat = func(id string) bool { return streamIDLess(cp, id) }
	}
	t.Logf("killed after %d events handled (%d distinct); %d pending", log.total.Load(), len(before), pendingN)

	second := startImporter(t, srv, d, log)
	recv(t, published, "the exporter to publish everything")
	eventually(t, func() bool { return log.distinct() == n }, "every event handled: %d of %d", log.distinct, func() int { return n })
	time.Sleep(300 * time.Millisecond) // room for a late duplicate to show
	_ = second.stdin.Close()           // a graceful stop
	recv(t, second.done, "the second importer's output to end")
	if err := waitCmd(t, second.cmd, "the second importer to stop"); err != nil {
		t.Fatalf("second importer: %v", err)
	}

	entries, err := rdb.XRange(ctx, key, "-", "+").Result()
	if err != nil || len(entries) != n {
		t.Fatalf("stream holds %d entries (%v), want %d", len(entries), err, n)
	}
	counts := log.snapshot()
	twice := 0
	for _, m := range entries {
		p, _ := m.Values["data"].(string)
		switch c := counts[p]; {
		case c == 0:
			t.Errorf("event %s never handled", p)
		case c > 2 || c == 2 && !mayRepeat(m.ID):
			t.Errorf("event %s (entry %s) handled %d times (%d before the kill)", p, m.ID, c, before[p])
		case c == 2:
			twice++
		}
	}
	t.Logf("handled twice: %d events, all caught by the kill between handling and recording", twice)
}

// TestDurableHelperProcess is the importing process of
// TestDurableImporterKilled; it does nothing in a normal test run. It
// prints "ready", then "h PAYLOAD" for each event it handles, and closes
// its bridge when its standard input ends.
func TestDurableHelperProcess(t *testing.T) {
	env := os.Getenv(durableHelperEnv)
	if env == "" {
		t.Skip("helper process of TestDurableImporterKilled")
	}
	addr, mode, _ := strings.Cut(env, " ")
	d := bridge.Stream
	if mode == bridge.Group.String() {
		d = bridge.Group
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 3})
	defer rdb.Close()
	b := bus.New(nil)
	if _, err := b.Subscribe("work", func(_ context.Context, e bus.Event) {
		// One write per event, straight to the pipe: what the parent
		// reads was handled.
		p := e.Payload.(string)
		_, _ = os.Stdout.WriteString("h " + p + "\n")
		if len(p) > 0 && p[len(p)-1] == '7' {
			// Slow down a little, so that the kill finds a batch
			// half handled.
			time.Sleep(100 * time.Microsecond)
		}
	}); err != nil {
		t.Fatal(err)
	}
	opts := durableOptions("w", bridge.Route{Pattern: "work", Delivery: d, Direction: bridge.Import, Raw: true, Codec: bridge.Text()})
	opts.BatchSize = 64
	opts.OnError = func(error) {}
	br, err := bridge.New(b, rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := br.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	if err := br.Close(ctx); err != nil {
		t.Fatal(err)
	}
}
