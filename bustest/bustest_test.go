package bustest_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/busline/bus"
	"github.com/busline/bus/bustest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type order struct{ ID int }

// newBus returns a bus closed at the end of the test.
func newBus(t *testing.T) *bus.Bus {
	t.Helper()
	b := bus.New(&bus.Options{OnError: func(err error) { t.Errorf("bus OnError: %v", err) }})
	t.Cleanup(func() {
		if err := b.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func publish(t testing.TB, b *bus.Bus, topic string, payload any) {
	t.Helper()
	if err := b.Publish(context.Background(), topic, payload); err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
}

// TestRecordIsSynchronous checks that a local publish is recorded by the
// time Publish returns, that only matching topics are, and that Events and
// Topics return copies.
func TestRecordIsSynchronous(t *testing.T) {
	b := newBus(t)
	rec := bustest.Record(t, b, "orders.*")
	if rec.Pattern() != "orders.*" {
		t.Errorf("Pattern() = %q", rec.Pattern())
	}
	publish(t, b, "orders.created", &order{1})
	publish(t, b, "users.created", "not recorded")
	if rec.Len() != 1 {
		t.Fatalf("Len() = %d right after Publish, want 1", rec.Len())
	}
	publish(t, b, "orders.paid", &order{1})

	evs := rec.Events()
	if len(evs) != 2 || evs[0].Topic != "orders.created" || evs[1].Topic != "orders.paid" {
		t.Fatalf("Events() = %v", evs)
	}
	evs[0].Topic = "changed"
	topics := rec.Topics()
	topics[1] = "changed"
	if got := rec.Topics(); got[0] != "orders.created" || got[1] != "orders.paid" {
		t.Fatalf("Events or Topics share their slice with the recorder: %v", got)
	}
	if !rec.AssertTopics("orders.created", "orders.paid") {
		t.Fatal("AssertTopics failed")
	}
}

// TestRecordUnsubscribesAtCleanup checks that the subscription ends with the
// test, and that a bus closed before then does not upset the cleanup.
func TestRecordUnsubscribesAtCleanup(t *testing.T) {
	for _, closeFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("closeFirst=%v", closeFirst), func(t *testing.T) {
			b := bus.New(nil)
			var rec *bustest.Recorder
			f := run(t, func(tb testing.TB) {
				rec = bustest.Record(tb, b, "orders.**")
				publish(tb, b, "orders.a.b", 1)
				if closeFirst {
					if err := b.Close(context.Background()); err != nil {
						tb.Errorf("Close: %v", err)
					}
				}
			})
			if msg := f.messages(); msg != "" {
				t.Fatalf("unexpected failure: %s", msg)
			}
			if closeFirst {
				return // the cleanup's Unsubscribe after Close did not fail
			}
			if n, err := b.NumSub("orders.a.b"); err != nil || n != 0 {
				t.Fatalf("NumSub after the test's cleanup = %d, %v; want 0", n, err)
			}
			publish(t, b, "orders.a.b", 2)
			if rec.Len() != 1 {
				t.Fatalf("Len() = %d after cleanup, want 1", rec.Len())
			}
			if err := b.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRecordRejects(t *testing.T) {
	closed := bus.New(nil)
	if err := closed.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		b       *bus.Bus
		pattern string
		want    []string
	}{
		{"invalid pattern", bus.New(nil), "orders.[", []string{`bustest: cannot record "orders.["`, "invalid pattern"}},
		{"empty pattern", bus.New(nil), "", []string{`bustest: cannot record ""`, "invalid pattern"}},
		{"closed bus", closed, "orders.*", []string{`bustest: cannot record "orders.*"`, "closed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := run(t, func(tb testing.TB) {
				bustest.Record(tb, tc.b, tc.pattern)
				tb.Errorf("Record returned")
			})
			for _, w := range tc.want {
				if !strings.Contains(f.fatal, w) {
					t.Errorf("Fatalf message %q lacks %q", f.fatal, w)
				}
			}
			if len(f.errors) > 0 {
				t.Errorf("Record did not stop the test: %v", f.errors)
			}
		})
	}
}

// TestWaitN publishes from another goroutine, slowly: WaitN must wait, and
// return exactly the first n events even when more have arrived.
func TestWaitN(t *testing.T) {
	b := newBus(t)
	rec := bustest.Record(t, b, "tick")
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 5 {
			time.Sleep(5 * time.Millisecond)
			publish(t, b, "tick", i)
		}
	})
	evs := rec.WaitN(3)
	if len(evs) != 3 {
		t.Fatalf("WaitN(3) returned %d events", len(evs))
	}
	for i, e := range evs {
		if e.Payload != i {
			t.Errorf("WaitN(3)[%d].Payload = %v, want %d", i, e.Payload, i)
		}
	}
	wg.Wait()
	if got := rec.WaitN(5); len(got) != 5 {
		t.Fatalf("WaitN(5) returned %d events", len(got))
	}
	if got := rec.WaitN(0); len(got) != 0 {
		t.Fatalf("WaitN(0) = %v", got)
	}
	if got := rec.WaitN(2); len(got) != 2 || got[1].Payload != 1 {
		t.Fatalf("WaitN(2) after 5 = %v, want the first two", got)
	}
}

func TestWaitFor(t *testing.T) {
	b := newBus(t)
	rec := bustest.Record(t, b, "orders.*")
	publish(t, b, "orders.paid", &order{0})
	publish(t, b, "orders.paid", &order{1})
	go func() {
		time.Sleep(20 * time.Millisecond) // most likely while WaitFor waits
		for i := 2; i < 4; i++ {
			if err := b.Publish(context.Background(), "orders.paid", &order{i}); err != nil {
				t.Errorf("Publish: %v", err)
			}
		}
	}()
	calls := 0 // WaitFor calls match on the test's goroutine only
	e := rec.WaitFor("order 2 paid", func(e bus.Event) bool {
		calls++
		o, ok := e.Payload.(*order)
		return ok && o.ID == 2
	})
	if o := e.Payload.(*order); o.ID != 2 {
		t.Fatalf("WaitFor returned order %d", o.ID)
	}
	if calls != 3 {
		t.Errorf("match called %d times for 3 events, want 3 (once per event)", calls)
	}
	rec.WaitN(4) // the publisher is done before the bus closes
}

// TestMatchMayPublish checks that match runs without the recorder's lock:
// one that publishes to the recorded pattern must not deadlock.
func TestMatchMayPublish(t *testing.T) {
	b := newBus(t)
	rec := bustest.Record(t, b, "n")
	publish(t, b, "n", 0)
	e := rec.WaitFor("n = 3", func(e bus.Event) bool {
		if n := e.Payload.(int); n < 3 {
			publish(t, b, "n", n+1)
		}
		return e.Payload == 3
	})
	if e.Payload != 3 {
		t.Fatalf("WaitFor = %v", e)
	}
}

// TestWaitFailureMessages checks what a failing wait tells its reader: what
// it waited for, on which pattern, for how long, and what arrived.
func TestWaitFailureMessages(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		name    string
		publish []bus.Event
		wait    func(rec *bustest.Recorder)
		want    []string
		notWant []string
	}{
		{
			name:    "WaitN, one of three",
			publish: []bus.Event{{Topic: "orders.created", Payload: "a"}},
			wait:    func(rec *bustest.Recorder) { rec.WaitN(3) },
			want: []string{
				`bustest: timed out after 50ms waiting on "orders.*" for 3 events; 1 event arrived:` +
					"\n\t" + `#1 orders.created: "a"`,
			},
		},
		{
			name: "WaitN, nothing",
			wait: func(rec *bustest.Recorder) { rec.WaitN(1) },
			want: []string{`bustest: timed out after 50ms waiting on "orders.*" for 1 event; no event arrived`},
		},
		{
			name: "WaitFor, none matches",
			publish: []bus.Event{
				{Topic: "orders.created", Payload: &order{7}},
				{Topic: "orders.paid", Payload: []byte("raw")},
			},
			wait: func(rec *bustest.Recorder) {
				rec.WaitFor("order 42 paid", func(bus.Event) bool { return false })
			},
			want: []string{
				`bustest: timed out after 50ms waiting on "orders.*" for an event matching "order 42 paid"; 2 events arrived:`,
				"\n\t#1 orders.created: &bustest_test.order{ID:7}",
				"\n\t#2 orders.paid: []byte(\"raw\")",
			},
		},
		{
			name: "remote event, nil payload",
			publish: []bus.Event{
				{Topic: "orders.created", Meta: &bus.Meta{Source: "node-b", Seq: 7}},
			},
			wait: func(rec *bustest.Recorder) { rec.WaitN(2) },
			want: []string{`#1 orders.created: nil (from "node-b", seq 7)`},
		},
		{
			name: "only the last five are listed",
			publish: func() []bus.Event {
				var evs []bus.Event
				for i := range 8 {
					evs = append(evs, bus.Event{Topic: fmt.Sprintf("orders.n%d", i+1), Payload: i + 1})
				}
				return evs
			}(),
			wait:    func(rec *bustest.Recorder) { rec.WaitN(9) },
			want:    []string{"8 events arrived:\n\t... 3 earlier events not shown\n\t#4 orders.n4: 4\n", "\n\t#8 orders.n8: 8"},
			notWant: []string{"#3 ", "orders.n3"},
		},
		{
			name:    "a long payload is cut",
			publish: []bus.Event{{Topic: "orders.big", Payload: long}},
			wait:    func(rec *bustest.Recorder) { rec.WaitN(2) },
			want:    []string{`#1 orders.big: "` + long[:119] + "..."},
			notWant: []string{long[:130]},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t)
			f := run(t, func(tb testing.TB) {
				rec := bustest.Record(tb, b, "orders.*").WithTimeout(50 * time.Millisecond)
				for _, e := range tc.publish {
					if err := b.PublishEvent(context.Background(), e); err != nil {
						tb.Errorf("PublishEvent: %v", err)
					}
				}
				tc.wait(rec)
				tb.Errorf("the wait returned")
			})
			if len(f.errors) > 0 {
				t.Fatalf("errors before the wait's failure: %v", f.errors)
			}
			for _, w := range tc.want {
				if !strings.Contains(f.fatal, w) {
					t.Errorf("Fatalf message lacks %q:\n%s", w, f.fatal)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(f.fatal, w) {
					t.Errorf("Fatalf message has %q:\n%s", w, f.fatal)
				}
			}
		})
	}
}

// TestWaitTimeoutIsBounded checks that a failing wait gives up after its
// timeout, not much later, and not before.
func TestWaitTimeoutIsBounded(t *testing.T) {
	b := newBus(t)
	rec := bustest.Record(t, b, "x").WithTimeout(100 * time.Millisecond)
	start := time.Now()
	_, err := rec.WaitNContext(context.Background(), 1)
	elapsed := time.Since(start)
	if !errors.Is(err, bustest.ErrTimeout) {
		t.Fatalf("WaitNContext: %v, want ErrTimeout", err)
	}
	if elapsed < 100*time.Millisecond || elapsed > 5*time.Second {
		t.Fatalf("gave up after %v with a timeout of 100ms", elapsed)
	}
}

// TestWaitContext checks the non-fatal waits, used off the test's
// goroutine: each error says why it gave up and wraps the right cause.
func TestWaitContext(t *testing.T) {
	b := newBus(t)
	rec := bustest.Record(t, b, "orders.*")
	short := rec.WithTimeout(30 * time.Millisecond)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	custom, cancel3 := context.WithCancelCause(context.Background())
	errShutdown := errors.New("shutting down")
	cancel3(errShutdown)
	always := func(bus.Event) bool { return true }

	for _, tc := range []struct {
		name   string
		wait   func() error
		is     error
		prefix string
		suffix string // after the measured time, which varies
	}{
		{"timeout", func() error { _, err := short.WaitNContext(context.Background(), 1); return err },
			bustest.ErrTimeout, `bustest: timed out after 30ms waiting on "orders.*" for 1 event; no event arrived`, ""},
		{"canceled", func() error { _, err := rec.WaitNContext(canceled, 1); return err },
			context.Canceled, `bustest: gave up after `, ` waiting on "orders.*" for 1 event (context canceled); no event arrived`},
		{"deadline", func() error { _, err := rec.WaitForContext(expired, "any", always); return err },
			context.DeadlineExceeded, `bustest: gave up after `, ` waiting on "orders.*" for an event matching "any" (context deadline exceeded); no event arrived`},
		{"cause", func() error { _, err := rec.WaitNContext(custom, 2); return err },
			errShutdown, `bustest: gave up after `, ` waiting on "orders.*" for 2 events (shutting down); no event arrived`},
		{"negative count", func() error { _, err := rec.WaitNContext(context.Background(), -1); return err },
			nil, "bustest: WaitN(-1): the count must not be negative", ""},
		{"nil match", func() error { _, err := rec.WaitForContext(context.Background(), "x", nil); return err },
			nil, `bustest: WaitFor("x"): nil match function`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errc := make(chan error, 1)
			go func() { errc <- tc.wait() }() // off the test's goroutine, as documented
			err := <-errc
			if err == nil {
				t.Fatal("no error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q does not wrap %v", err, tc.is)
			}
			if !strings.HasPrefix(err.Error(), tc.prefix) || !strings.HasSuffix(err.Error(), tc.suffix) {
				t.Errorf("error %q, want it to start with %q and end with %q", err, tc.prefix, tc.suffix)
			}
			if strings.Count(err.Error(), "bustest:") != 1 {
				t.Errorf("error %q has the package prefix more than once", err)
			}
		})
	}

	// The context variants also succeed, of course.
	publish(t, b, "orders.created", 1)
	if evs, err := rec.WaitNContext(context.Background(), 1); err != nil || len(evs) != 1 {
		t.Fatalf("WaitNContext = %v, %v", evs, err)
	}
	if e, err := rec.WaitForContext(canceled, "any", always); err != nil || e.Topic != "orders.created" {
		t.Fatalf("WaitForContext with a done context but the event there = %v, %v", e, err)
	}
}

func TestWithTimeout(t *testing.T) {
	b := newBus(t)
	rec := bustest.Record(t, b, "a")
	view := rec.WithTimeout(time.Minute)
	publish(t, b, "a", 1)
	if view.Len() != 1 || rec.Len() != 1 {
		t.Fatalf("the view does not share the events: %d, %d", view.Len(), rec.Len())
	}
	for _, d := range []time.Duration{0, -time.Second} {
		f := run(t, func(tb testing.TB) {
			bustest.Record(tb, b, "a").WithTimeout(d)
		})
		if want := fmt.Sprintf("bustest: WithTimeout(%v): the timeout must be positive", d); f.fatal != want {
			t.Errorf("WithTimeout(%v): Fatalf %q, want %q", d, f.fatal, want)
		}
	}
	f := run(t, func(tb testing.TB) { bustest.Record(tb, b, "a").WaitN(-2) })
	if !strings.Contains(f.fatal, "WaitN(-2)") {
		t.Errorf("WaitN(-2): Fatalf %q", f.fatal)
	}
}

func TestPayloads(t *testing.T) {
	b := newBus(t)
	rec := bustest.Record(t, b, "orders.*")
	publish(t, b, "orders.created", &order{1})
	publish(t, b, "orders.paid", &order{2})
	got := bustest.Payloads[*order](rec)
	if len(got) != 2 || got[0].ID != 1 || got[1].ID != 2 {
		t.Fatalf("Payloads = %v", got)
	}
	publish(t, b, "orders.nothing", nil)
	if anys := bustest.Payloads[any](rec); len(anys) != 3 || anys[2] != nil {
		t.Fatalf("Payloads[any] = %v", anys)
	}
}

func TestPayloadsWrongType(t *testing.T) {
	for _, tc := range []struct {
		name    string
		payload any
		want    string
	}{
		{"string", "x", `bustest: Payloads[*bustest_test.order] on "orders.*": event #2 (orders.paid) has a payload of type string, not *bustest_test.order: "x"`},
		{"value, not pointer", order{3}, `event #2 (orders.paid) has a payload of type bustest_test.order, not *bustest_test.order: bustest_test.order{ID:3}`},
		{"nil", nil, `bustest: Payloads[*bustest_test.order] on "orders.*": event #2 (orders.paid) has a nil payload`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t)
			f := run(t, func(tb testing.TB) {
				rec := bustest.Record(tb, b, "orders.*")
				publish(tb, b, "orders.created", &order{1})
				publish(tb, b, "orders.paid", tc.payload)
				bustest.Payloads[*order](rec)
				tb.Errorf("Payloads returned")
			})
			if !strings.Contains(f.fatal, tc.want) || len(f.errors) > 0 {
				t.Errorf("Fatalf %q, errors %v; want %q", f.fatal, f.errors, tc.want)
			}
		})
	}
}

func TestAssertTopics(t *testing.T) {
	recorded := []string{"orders.created", "orders.paid"}
	for _, tc := range []struct {
		name string
		want []string
		msg  string // "" when the assertion passes
	}{
		{"equal", []string{"orders.created", "orders.paid"}, ""},
		{"missing", []string{"orders.created", "orders.paid", "orders.shipped"},
			"bustest: topics on \"orders.*\": #3 \"orders.shipped\" and after it are missing\n\tgot  [orders.created orders.paid] (2 events)\n\twant [orders.created orders.paid orders.shipped] (3 events)"},
		{"extra", []string{"orders.created"},
			"bustest: topics on \"orders.*\": #2 \"orders.paid\" and after it are extra\n\tgot  [orders.created orders.paid] (2 events)\n\twant [orders.created] (1 event)"},
		{"different", []string{"orders.paid", "orders.created"},
			"bustest: topics on \"orders.*\": #1 is \"orders.created\", want \"orders.paid\""},
		{"none wanted", nil, "#1 \"orders.created\" and after it are extra\n\tgot  [orders.created orders.paid] (2 events)\n\twant [] (0 events)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkAssertAfter(t, recorded, tc.msg, func(rec *bustest.Recorder) bool { return rec.AssertTopics(tc.want...) })
		})
	}
}

func TestAssertOrder(t *testing.T) {
	recorded := []string{"orders.created", "orders.audit", "orders.paid", "orders.audit", "orders.shipped"}
	for _, tc := range []struct {
		name string
		want []string
		msg  string
	}{
		{"subsequence", []string{"orders.created", "orders.paid", "orders.shipped"}, ""},
		{"repeated topic", []string{"orders.audit", "orders.audit"}, ""},
		{"everything", recorded, ""},
		{"nothing", nil, ""},
		{"wrong order", []string{"orders.paid", "orders.created"},
			"bustest: order on \"orders.*\": no \"orders.created\" after \"orders.paid\" (#3)\n\tgot  [orders.created orders.audit orders.paid orders.audit orders.shipped] (5 events)\n\twant in order [orders.paid orders.created]"},
		{"absent", []string{"orders.refunded"}, "bustest: order on \"orders.*\": no \"orders.refunded\" among them"},
		{"once too often", []string{"orders.audit", "orders.audit", "orders.audit"}, "no \"orders.audit\" after \"orders.audit\" (#4)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkAssertAfter(t, recorded, tc.msg, func(rec *bustest.Recorder) bool { return rec.AssertOrder(tc.want...) })
		})
	}
}

// checkAssertAfter records "orders.*" with a fakeTB, publishes topics,
// runs assert on the recorder and checks its outcome with checkAssert.
func checkAssertAfter(t *testing.T, topics []string, msg string, assert func(rec *bustest.Recorder) bool) {
	t.Helper()
	b := newBus(t)
	var ok bool
	f := run(t, func(tb testing.TB) {
		rec := bustest.Record(tb, b, "orders.*")
		for _, topic := range topics {
			publish(tb, b, topic, nil)
		}
		ok = assert(rec)
	})
	checkAssert(t, f, ok, msg)
}

// checkAssert checks the outcome of an assertion run with a fakeTB: it
// passed when msg is empty, or failed with t.Errorf (not Fatalf) and a
// message containing msg.
func checkAssert(t *testing.T, f *fakeTB, ok bool, msg string) {
	t.Helper()
	if f.fatal != "" {
		t.Fatalf("an assertion called Fatalf: %s", f.fatal)
	}
	if msg == "" {
		if !ok || len(f.errors) > 0 {
			t.Fatalf("assertion failed (%v): %v", ok, f.errors)
		}
		return
	}
	if ok || len(f.errors) != 1 {
		t.Fatalf("assertion returned %v with errors %q; want it to fail once", ok, f.errors)
	}
	if !strings.Contains(f.errors[0], msg) {
		t.Fatalf("Errorf message:\n%s\nwant it to contain:\n%s", f.errors[0], msg)
	}
}

func TestAssertNoneAndNoMore(t *testing.T) {
	// A passing assertion waits its whole window: short. A failing one
	// returns when the event arrives: a long window keeps it from passing
	// by mistake on a loaded machine.
	const quiet, long = 60 * time.Millisecond, 10 * time.Second
	for _, tc := range []struct {
		name   string
		before int           // events published before the assertion
		later  time.Duration // when > 0, one more event is published after this long
		d      time.Duration
		more   bool // AssertNoMore rather than AssertNone
		msg    string
	}{
		{name: "none, quiet", d: quiet},
		{name: "none, zero duration", d: 0},
		{name: "none, one before", before: 1, d: long,
			msg: "bustest: want no event on \"x.*\" within 10s; 1 event arrived:\n\t#1 x.0: 0"},
		{name: "none, one later", later: 10 * time.Millisecond, d: long,
			msg: "bustest: want no event on \"x.*\" within 10s; 1 event arrived:\n\t#1 x.late: \"late\""},
		{name: "no more, quiet", before: 2, d: quiet, more: true},
		{name: "no more, a duplicate", before: 1, later: 10 * time.Millisecond, d: long, more: true,
			msg: "bustest: want no event after the first 1 event on \"x.*\" within 10s; 2 events arrived:\n\t#1 x.0: 0\n\t#2 x.late: \"late\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBus(t)
			var ok bool
			var elapsed time.Duration
			var wg sync.WaitGroup
			f := run(t, func(tb testing.TB) {
				rec := bustest.Record(tb, b, "x.*")
				for i := range tc.before {
					publish(tb, b, fmt.Sprintf("x.%d", i), i)
				}
				if tc.later > 0 {
					wg.Go(func() {
						time.Sleep(tc.later)
						if err := b.Publish(context.Background(), "x.late", "late"); err != nil {
							t.Errorf("Publish: %v", err)
						}
					})
				}
				start := time.Now()
				if tc.more {
					ok = rec.AssertNoMore(tc.d)
				} else {
					ok = rec.AssertNone(tc.d)
				}
				elapsed = time.Since(start)
			})
			wg.Wait()
			checkAssert(t, f, ok, tc.msg)
			if tc.msg == "" && elapsed < tc.d {
				t.Errorf("a passing assertion returned after %v, before its %v", elapsed, tc.d)
			}
			if tc.msg != "" && elapsed > tc.d/2 {
				t.Errorf("a failing assertion returned after %v: it should fail as soon as the event arrives", elapsed)
			}
		})
	}
}

// TestConcurrentPublishers records from many goroutines at once while the
// test's goroutine waits and reads: nothing is lost or duplicated, and the
// events of each publisher keep their order. Run it with -race.
func TestConcurrentPublishers(t *testing.T) {
	const publishers, each = 8, 500
	b := newBus(t)
	rec := bustest.Record(t, b, "p.*")
	type msg struct{ from, n int }
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for n := range each {
				if err := b.Publish(context.Background(), fmt.Sprintf("p.%d", p), msg{p, n}); err != nil {
					t.Errorf("Publish: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() { // a reader alongside the writers, for -race
		for i := 0; i < 1000 && rec.Len() < publishers*each; i++ {
			_ = rec.Events()
			_ = rec.Topics()
		}
	})
	evs := rec.WaitN(publishers * each)
	wg.Wait()
	next := make([]int, publishers)
	for _, e := range evs {
		m := e.Payload.(msg)
		if m.n != next[m.from] {
			t.Fatalf("publisher %d: event %d recorded where %d was due", m.from, m.n, next[m.from])
		}
		next[m.from]++
	}
	if rec.Len() != publishers*each {
		t.Fatalf("Len() = %d, want %d", rec.Len(), publishers*each)
	}
	if !rec.AssertNoMore(10 * time.Millisecond) {
		t.Fatal("events after the publishers were done")
	}
}

// TestAsyncPath records events that the code under test publishes from an
// asynchronous handler, on the bus's own goroutine: WaitN is what waits for
// them, and closing the bus leaves no goroutine behind (goleak).
func TestAsyncPath(t *testing.T) {
	b := newBus(t)
	rec := bustest.Record(t, b, "orders.confirmed")
	_, err := b.SubscribeWith("orders.placed", func(ctx context.Context, e bus.Event) {
		time.Sleep(time.Millisecond)
		if err := b.Publish(ctx, "orders.confirmed", e.Payload); err != nil {
			t.Errorf("Publish: %v", err)
		}
	}, &bus.SubscribeOptions{Queue: 16})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		publish(t, b, "orders.placed", &order{i})
	}
	rec.WaitN(10)
	for i, o := range bustest.Payloads[*order](rec) {
		if o.ID != i {
			t.Fatalf("payload %d is order %d", i, o.ID)
		}
	}
}
