package bridge_test

import (
	"context"
	"errors"
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
	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// attempts records when a HandlerFunc was called, per payload.
type attempts struct {
	mu    sync.Mutex
	times map[string][]time.Time
}

func (a *attempts) add(p string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.times == nil {
		a.times = map[string][]time.Time{}
	}
	a.times[p] = append(a.times[p], time.Now())
	return len(a.times[p])
}

func (a *attempts) of(p string) []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.times[p]...)
}

func (a *attempts) count(p string) int { return len(a.of(p)) }

// deadEntries returns the entries of the dead-letter stream of "jobs".
func deadEntries(t testing.TB, rdb *redis.Client) []redis.XMessage {
	t.Helper()
	msgs, err := rdb.XRange(context.Background(), bridge.DeadKey("app:", "jobs"), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

// quietBus is a bus whose failed handlers, expected here, are not logged.
func quietBus() *bus.Bus { return bus.New(&bus.Options{OnError: func(error) {}}) }

func pendingCount(t testing.TB, rdb *redis.Client, group string) int64 {
	t.Helper()
	p, err := rdb.XPending(context.Background(), bridge.StreamKey("app:", "jobs"), group).Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

var jobsExport = bridge.Route{Pattern: "jobs", Delivery: bridge.Stream, Direction: bridge.Export, Raw: true, Codec: bridge.Text()}

// TestDurableRetryThenSucceed gives a durable import route a handler that
// fails N times, then succeeds: it is called exactly N+1 times, the waits
// between the calls follow the backoff (at least; a timer does not fire
// early), and the entry is recorded as handled once, not dead-lettered.
func TestDurableRetryThenSucceed(t *testing.T) {
	for _, d := range []bridge.Delivery{bridge.Group, bridge.Stream} {
		t.Run(d.String(), func(t *testing.T) {
			srv := redistest.Start(t, nil)
			rdb := srv.Client(t)
			const failures = 3
			policy := &bus.RetryPolicy{Attempts: failures + 1, Initial: 40 * time.Millisecond, Multiplier: 2}
			a := newInstance(t, srv.Client(t), durableOptions("a", jobsExport))
			wbus := quietBus()
			var calls attempts
			if _, err := wbus.SubscribeFunc("jobs", func(_ context.Context, e bus.Event) error {
				if n := calls.add(e.Payload.(string)); n <= failures {
					return fmt.Errorf("attempt %d fails", n)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			w := newInstanceOn(t, wbus, srv.Client(t), durableOptions("w", bridge.Route{Pattern: "jobs", Delivery: d,
				Direction: bridge.Import, Raw: true, Codec: bridge.Text(), Retry: policy}))
			publish(t, a.bus, "jobs", "flaky")
			eventually(t, func() bool { return calls.count("flaky") == failures+1 }, "attempts: %d", func() int { return calls.count("flaky") })
			switch d {
			case bridge.Group:
				eventually(t, func() bool { return w.bridge.Stats().StreamAcked == 1 }, "acknowledged")
			default:
				id := rdb.XRevRangeN(context.Background(), bridge.StreamKey("app:", "jobs"), "+", "-", 1).Val()[0].ID
				eventually(t, func() bool {
					return rdb.HGet(context.Background(), "app:checkpoint:w", bridge.StreamKey("app:", "jobs")).Val() == id
				},
					"checkpoint at the entry")
			}
			time.Sleep(100 * time.Millisecond) // room for an extra attempt to show
			times := calls.of("flaky")
			if len(times) != failures+1 {
				t.Fatalf("%d attempts, want %d", len(times), failures+1)
			}
			want := policy.Initial
			for i := 1; i < len(times); i++ {
				if gap := times[i].Sub(times[i-1]); gap < want-5*time.Millisecond {
					t.Errorf("attempt %d came %v after the one before, want at least %v", i+1, gap, want)
				}
				want *= 2
			}
			s := w.bridge.Stats()
			if s.StreamFailed != failures || s.StreamRetried != failures || s.StreamDeadLettered != 0 || s.StreamImported != 1 {
				t.Errorf("stats: failed %d, retried %d, dead-lettered %d, imported %d; want %d, %d, 0, 1",
					s.StreamFailed, s.StreamRetried, s.StreamDeadLettered, s.StreamImported, failures, failures)
			}
			if d == bridge.Group && pendingCount(t, rdb, "busline") != 0 {
				t.Errorf("entries left pending")
			}
			if n := len(deadEntries(t, rdb)); n != 0 {
				t.Errorf("%d dead letters", n)
			}
			checkAccounting(t, w.bridge)
		})
	}
}

// deadHelperEnv, when set to a Redis address, makes TestDeadHelperProcess
// run as the member of TestPoisonAcrossMembers that is killed.
const deadHelperEnv = "BUSLINE_DEAD_HELPER"

// TestPoisonAcrossMembers delivers an event whose handler always fails to
// a consumer group of two members. The first, a separate OS process, fails
// its first attempt and is killed (SIGKILL) while it waits to retry. The
// second, running as an ACL user holding exactly ACLRules, claims the
// entry after ClaimIdle, fails both its attempts, leaves it pending,
// claims it again, and at the third delivery (MaxDeliveries) moves it to
// the dead-letter stream and acknowledges it: exactly one dead letter,
// after exactly MaxDeliveries deliveries, nothing pending.
func TestPoisonAcrossMembers(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	ctx := context.Background()
	key := bridge.StreamKey("app:", "jobs")
	a := newInstance(t, srv.Client(t), durableOptions("a", jobsExport))

	child := exec.Command(os.Args[0], "-test.run=^TestDeadHelperProcess$", "-test.count=1")
	child.Env = append(os.Environ(), deadHelperEnv+"="+srv.Addr())
	stdin, err := child.StdinPipe() // open until the kill
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	p := progtest.Start(t, child)
	if l := p.Next(t, waitTimeout); l != "ready" {
		t.Fatalf("child said %q, want ready", l)
	}
	publish(t, a.bus, "jobs", "poison")
	if l := p.Next(t, waitTimeout); l != "f poison 1" {
		t.Fatalf("child said %q, want its first failure", l)
	}
	if err := child.Process.Kill(); err != nil { // SIGKILL, mid-backoff
		t.Fatal(err)
	}
	_ = p.Wait()
	pend := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: "busline", Start: "-", End: "+", Count: 10}).Val()
	if len(pend) != 1 || pend[0].Consumer != "child" || pend[0].RetryCount != 1 {
		t.Fatalf("pending after the kill: %+v", pend)
	}

	const maxDeliveries = 3
	route := bridge.Route{Pattern: "jobs", Delivery: bridge.Group, Direction: bridge.Import, Raw: true, Codec: bridge.Text(),
		Retry: &bus.RetryPolicy{Attempts: 2, Initial: 20 * time.Millisecond}, MaxDeliveries: maxDeliveries}
	opts := durableOptions("w", route)
	rules, err := bridge.ACLRules(opts, '.')
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.CLI(append([]string{"ACL", "SETUSER", "worker", "on", ">pw"}, rules...)...); err != nil {
		t.Fatal(err)
	}
	co := srv.ClientOptions()
	co.Username, co.Password = "worker", "pw"
	wrdb := redis.NewClient(co)
	t.Cleanup(func() { _ = wrdb.Close() })
	wbus := quietBus()
	var calls attempts
	if _, err := wbus.SubscribeFunc("jobs", func(_ context.Context, e bus.Event) error {
		calls.add(e.Payload.(string))
		return errors.New("poisonous")
	}); err != nil {
		t.Fatal(err)
	}
	w := newInstanceOn(t, wbus, wrdb, opts)
	eventually(t, func() bool { return w.bridge.Stats().StreamDeadLettered == 1 }, "the dead letter")
	time.Sleep(2 * opts.ClaimIdle) // room for an extra delivery to show

	dead := deadEntries(t, rdb)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1: %v", len(dead), dead)
	}
	f := dead[0].Values
	for k, want := range map[string]string{
		"topic": "jobs", "data": "poison", bridge.FieldDeadError: "poisonous",
		bridge.FieldDeadDeliveries: strconv.Itoa(maxDeliveries), bridge.FieldDeadAttempts: "2",
		bridge.FieldDeadConsumer: "w", bridge.FieldDeadGroup: "busline", bridge.FieldDeadStream: key, bridge.FieldDeadID: pend[0].ID,
	} {
		if f[k] != want {
			t.Errorf("dead letter field %s = %v, want %q", k, f[k], want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, fmt.Sprint(f[bridge.FieldDeadTime])); err != nil {
		t.Errorf("dead letter time: %v", err)
	}
	if n := pendingCount(t, rdb, "busline"); n != 0 {
		t.Errorf("%d entries pending after the dead letter", n)
	}
	// The child's one attempt, then two deliveries of two attempts here.
	if n := calls.count("poison"); n != 2*(maxDeliveries-1) {
		t.Errorf("%d attempts in the second member, want %d", n, 2*(maxDeliveries-1))
	}
	s := w.bridge.Stats()
	if s.StreamClaimed != maxDeliveries-1 || s.StreamRedelivered != 1 || s.StreamFailed != 4 || s.StreamRetried != 2 || s.StreamAcked != 0 {
		t.Errorf("stats: %+v", s)
	}
	if w.errs.count(bridge.ErrDeadLettered) != 1 || strings.Contains(w.errs.String(), "NOPERM") {
		t.Errorf("reports:\n%s", w.errs)
	}
}

// TestDeadHelperProcess is the member of TestPoisonAcrossMembers that is
// killed; it does nothing in a normal test run. It prints "ready", then
// "f PAYLOAD N" for each failed attempt N, and waits a minute before it
// retries.
func TestDeadHelperProcess(t *testing.T) {
	addr := os.Getenv(deadHelperEnv)
	if addr == "" {
		t.Skip("helper process of TestPoisonAcrossMembers")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 3})
	defer rdb.Close()
	b := bus.New(&bus.Options{OnError: func(error) {}})
	var n atomic.Int64
	if _, err := b.SubscribeFunc("jobs", func(_ context.Context, e bus.Event) error {
		_, _ = fmt.Printf("f %s %d\n", e.Payload, n.Add(1))
		return errors.New("poisonous")
	}); err != nil {
		t.Fatal(err)
	}
	opts := durableOptions("child", bridge.Route{Pattern: "jobs", Delivery: bridge.Group, Direction: bridge.Import, Raw: true,
		Codec: bridge.Text(), Retry: &bus.RetryPolicy{Attempts: 2, Initial: time.Minute}, MaxDeliveries: 3})
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
	_, _ = io.Copy(io.Discard, os.Stdin) // until killed
	_ = br.Close(ctx)
}

// TestDeadLetterAccounting runs two members of a group over a stream of
// events of which some always fail (an error, or a panic), some are
// malformed entries of a foreign writer, and the rest succeed. Every
// entry is, exactly once, handled, dead-lettered or dropped (and
// counted), and nothing is left pending.
func TestDeadLetterAccounting(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	ctx := context.Background()
	key := bridge.StreamKey("app:", "jobs")
	a := newInstance(t, srv.Client(t), durableOptions("a", jobsExport))
	route := bridge.Route{Pattern: "jobs", Delivery: bridge.Group, Direction: bridge.Import, Raw: true, Codec: bridge.Text(), MaxDeliveries: 2}

	var handled sync.Map // payload -> *atomic.Int64
	var members []*instance
	for _, id := range []string{"w1", "w2"} {
		b := quietBus()
		if _, err := b.SubscribeFunc("jobs", func(_ context.Context, e bus.Event) error {
			p := e.Payload.(string)
			switch {
			case strings.HasPrefix(p, "error"):
				return errors.New("bad")
			case strings.HasPrefix(p, "panic"):
				panic("worse")
			}
			c, _ := handled.LoadOrStore(p, new(atomic.Int64))
			c.(*atomic.Int64).Add(1)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		opts := durableOptions(id, route)
		opts.ClaimIdle = 300 * time.Millisecond
		opts.BatchSize = 16
		members = append(members, newInstanceOn(t, b, srv.Client(t), opts))
	}

	const n, malformed = 400, 7
	poison := 0
	for i := range n {
		p := strconv.Itoa(i)
		switch i % 20 {
		case 3:
			p, poison = "error-"+p, poison+1
		case 11:
			p, poison = "panic-"+p, poison+1
		}
		publish(t, a.bus, "jobs", p)
		if i%(n/malformed) == 0 && i/(n/malformed) < malformed {
			if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"topic", "jobs"}}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	published := n + malformed
	eventually(t, func() bool { return rdb.XLen(ctx, key).Val() == int64(published) }, "exported")
	sum := func(f func(bridge.Stats) uint64) uint64 {
		var total uint64
		for _, m := range members {
			total += f(m.bridge.Stats())
		}
		return total
	}
	eventually(t, func() bool {
		return sum(func(s bridge.Stats) uint64 { return s.StreamDeadLettered }) == uint64(poison) && pendingCount(t, rdb, "busline") == 0
	}, "dead letters: %d of %d", func() int { return int(sum(func(s bridge.Stats) uint64 { return s.StreamDeadLettered })) }, func() int { return poison })
	time.Sleep(300 * time.Millisecond)

	ok := 0
	handled.Range(func(k, v any) bool {
		ok++
		if c := v.(*atomic.Int64).Load(); c != 1 {
			t.Errorf("event %v handled %d times", k, c)
		}
		return true
	})
	dead := deadEntries(t, rdb)
	dropped := int(sum(func(s bridge.Stats) uint64 { return s.DecodeErrors }))
	t.Logf("published %d: handled %d + dead-lettered %d + dropped %d", published, ok, len(dead), dropped)
	if ok+len(dead)+dropped != published || dropped != malformed || len(dead) != poison {
		t.Errorf("handled %d + dead-lettered %d + dropped %d != published %d (want %d dead, %d dropped)",
			ok, len(dead), dropped, published, poison, malformed)
	}
	for _, m := range dead {
		if p := fmt.Sprint(m.Values["data"]); !strings.HasPrefix(p, "error") && !strings.HasPrefix(p, "panic") {
			t.Errorf("dead letter %v", m.Values)
		}
		if m.Values[bridge.FieldDeadDeliveries] != "2" {
			t.Errorf("dead letter after %v deliveries", m.Values[bridge.FieldDeadDeliveries])
		}
	}
	if acked := sum(func(s bridge.Stats) uint64 { return s.StreamAcked }); acked != uint64(ok+dropped) {
		t.Errorf("acknowledged %d, want %d", acked, ok+dropped)
	}
	for _, m := range members {
		checkAccounting(t, m.bridge)
	}
}

// TestDurableCloseDuringBackoff closes a bridge while a failed entry
// waits for its next attempt: Close returns at once, the entry is counted
// as abandoned and left for a later delivery (pending, or behind the
// checkpoint), and a new bridge with the same name handles it.
func TestDurableCloseDuringBackoff(t *testing.T) {
	for _, d := range []bridge.Delivery{bridge.Group, bridge.Stream} {
		t.Run(d.String(), func(t *testing.T) {
			srv := redistest.Start(t, nil)
			rdb := srv.Client(t)
			ctx := context.Background()
			key := bridge.StreamKey("app:", "jobs")
			a := newInstance(t, srv.Client(t), durableOptions("a", jobsExport))
			var fail atomic.Bool
			fail.Store(true)
			var calls attempts
			handler := func(_ context.Context, e bus.Event) error {
				calls.add(e.Payload.(string))
				if fail.Load() {
					return errors.New("not yet")
				}
				return nil
			}
			route := bridge.Route{Pattern: "jobs", Delivery: d, Direction: bridge.Import, Raw: true, Codec: bridge.Text(),
				Retry: &bus.RetryPolicy{Attempts: 5, Initial: time.Minute}}
			b := quietBus()
			if _, err := b.SubscribeFunc("jobs", handler); err != nil {
				t.Fatal(err)
			}
			opts := durableOptions("w", route)
			var errs errLog
			opts.OnError = errs.add
			br, err := bridge.New(b, srv.Client(t), opts)
			if err != nil {
				t.Fatal(err)
			}
			ready(t, br)
			publish(t, a.bus, "jobs", "x")
			eventually(t, func() bool { return br.Stats().StreamFailed == 1 }, "the first failure")

			closeCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			start := time.Now()
			if err := br.Close(closeCtx); err != nil {
				t.Errorf("Close: %v", err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Close took %v, with a retry due in a minute", took)
			}
			_ = b.Close(closeCtx)
			if s := br.Stats(); s.StreamAbandoned != 1 || s.StreamAcked != 0 || s.StreamDeadLettered != 0 {
				t.Errorf("stats: %+v", s)
			}
			if errs.count(bus.ErrRetryAbandoned) != 1 {
				t.Errorf("reports:\n%s", &errs)
			}
			if d == bridge.Group {
				if n := pendingCount(t, rdb, "busline"); n != 1 {
					t.Errorf("%d entries pending, want 1", n)
				}
			} else {
				cp := rdb.HGet(ctx, "app:checkpoint:w", key).Val()
				id := rdb.XRevRangeN(ctx, key, "+", "-", 1).Val()[0].ID
				if !streamIDLess(cp, id) {
					t.Errorf("checkpoint %s passed the abandoned entry %s", cp, id)
				}
			}

			fail.Store(false)
			b2 := quietBus()
			if _, err := b2.SubscribeFunc("jobs", handler); err != nil {
				t.Fatal(err)
			}
			w := newInstanceOn(t, b2, srv.Client(t), durableOptions("w", route))
			eventually(t, func() bool { return calls.count("x") == 2 }, "the entry handled after the restart")
			if d == bridge.Group {
				eventually(t, func() bool { return pendingCount(t, rdb, "busline") == 0 }, "acknowledged")
			}
			if s := w.bridge.Stats(); s.StreamFailed != 0 || s.StreamImported != 1 {
				t.Errorf("stats after the restart: %+v", s)
			}
		})
	}
}

// TestStreamRouteDeadLetter runs a Stream route over an entry whose
// handler always fails, between two that succeed: after its attempts it is
// written to the dead-letter stream, and only then does the checkpoint
// move past it.
func TestStreamRouteDeadLetter(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	ctx := context.Background()
	key := bridge.StreamKey("app:", "jobs")
	a := newInstance(t, srv.Client(t), durableOptions("a", jobsExport))
	b := quietBus()
	var calls attempts
	if _, err := b.SubscribeFunc("jobs", func(_ context.Context, e bus.Event) error {
		if calls.add(e.Payload.(string)); e.Payload == "poison" {
			return errors.New("poisonous")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	w := newInstanceOn(t, b, srv.Client(t), durableOptions("w", bridge.Route{Pattern: "jobs", Delivery: bridge.Stream,
		Direction: bridge.Import, Raw: true, Codec: bridge.Text(), Retry: &bus.RetryPolicy{Attempts: 2, Initial: 10 * time.Millisecond}}))
	for _, p := range []string{"a", "poison", "b"} {
		publish(t, a.bus, "jobs", p)
	}
	eventually(t, func() bool { return calls.count("b") == 1 }, "the entry after the poison handled")
	entries := rdb.XRange(ctx, key, "-", "+").Val()
	eventually(t, func() bool { return rdb.HGet(ctx, "app:checkpoint:w", key).Val() == entries[2].ID }, "the checkpoint past every entry")
	dead := deadEntries(t, rdb)
	if len(dead) != 1 || dead[0].Values["data"] != "poison" || dead[0].Values[bridge.FieldDeadID] != entries[1].ID ||
		dead[0].Values[bridge.FieldDeadDeliveries] != "1" || dead[0].Values[bridge.FieldDeadAttempts] != "2" ||
		dead[0].Values[bridge.FieldDeadConsumer] != "w" || dead[0].Values[bridge.FieldDeadGroup] != nil {
		t.Fatalf("dead letters: %v", dead)
	}
	if n := calls.count("poison"); n != 2 {
		t.Errorf("%d attempts of the poison, want 2", n)
	}
	if s := w.bridge.Stats(); s.StreamDeadLettered != 1 || s.StreamFailed != 2 || s.StreamRetried != 1 || s.StreamImported != 3 {
		t.Errorf("stats: %+v", s)
	}
	checkAccounting(t, w.bridge)
}
