package bench

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// heldTB is a testing.TB whose cleanups are held in a list that its owner
// runs, rather than when the test ends: for what is built once and shared
// by several runs of a benchmark (the million-subscription trees).
type heldTB struct {
	testing.TB
	held *heldCleanups
}

func (t heldTB) Cleanup(f func()) { t.held.fs = append(t.held.fs, f) }

// heldCleanups are the cleanups of heldTBs; the owner synchronizes.
type heldCleanups struct{ fs []func() }

// run runs the cleanups, last registered first, and forgets them.
func (h *heldCleanups) run() {
	for i := len(h.fs) - 1; i >= 0; i-- {
		h.fs[i]()
	}
	h.fs = nil
}

// payload is what every scenario publishes: a pointer, so that no library
// pays for boxing a value, padded to a cache line so that the payloads of
// parallel publishers never share one.
type payload struct {
	// n counts the handler calls an event got. Synchronous handlers run
	// on the publisher's goroutine and increment it plainly; handlers on
	// other goroutines (watermill, cskr) use atomic.AddInt64.
	n int64
	// at is the publish time (nanotime) for the latency scenarios.
	at int64
	_  [48]byte
}

// hits returns p.n; safe against concurrent atomic increments.
func (p *payload) hits() int64 { return atomic.LoadInt64(&p.n) }

// epoch anchors nanotime, a monotonic clock in nanoseconds.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) }

// router is a library seen as a topic router: subscriptions whose handler
// counts its calls into the payload of each event (payload.n), and publish.
// Patterns are given in Busline syntax; an adapter translates them into its
// library's own, or returns a notSupported error saying why it cannot.
type router interface {
	subscribe(pattern string) (unsubscribe func(), err error)
	publish(topic string, p *payload)
}

// aimer is implemented by the direct-call baseline, which does no routing:
// it is told the topic it will be published, and keeps the handlers of the
// subscriptions that match it.
type aimer interface{ aim(topic string) }

// notSupported is the error of an adapter asked for something its library
// cannot do. The scenario then reports the library as n/a, with the reason.
type notSupported string

func (e notSupported) Error() string { return "n/a: " + string(e) }

// skipNA skips b with the reason when err says the library cannot do the
// scenario, and fails it on any other error.
func skipNA(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	var ns notSupported
	if errors.As(err, &ns) {
		tb.Skip(ns.Error())
	}
	tb.Fatal(err)
}

// na reports the library as unable to do the scenario.
func na(tb testing.TB, reason string) {
	tb.Helper()
	tb.Skip(notSupported(reason).Error())
}

// mustSubscribe subscribes pattern n times on r, skipping the benchmark
// when the library cannot express the pattern.
func mustSubscribe(tb testing.TB, r router, pattern string, n int) {
	tb.Helper()
	for range n {
		if _, err := r.subscribe(pattern); err != nil {
			skipNA(tb, err)
		}
	}
}

// expectHits publishes once to topic and fails unless exactly want handler
// calls happened by the time publish returned.
func expectHits(tb testing.TB, r router, topic string, want int64) {
	tb.Helper()
	p := &payload{}
	r.publish(topic, p)
	if got := p.hits(); got != want {
		tb.Fatalf("one publish to %q: %d handler calls, want %d", topic, got, want)
	}
}

// waitFor waits until cond holds, failing after a generous deadline.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// reportLatency reports the p50 and p99 of lat (nanoseconds) in µs.
func reportLatency(b *testing.B, lat []int64) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e3 }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// name formats the name of a sub-benchmark.
func name(format string, args ...any) string { return fmt.Sprintf(format, args...) }
