package bench

import (
	"encoding/binary"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/busline/bus/redistest"
)

// BenchmarkSustainedLatency is an open loop: events are due at a fixed
// rate (sustainedRates) for sustainedFor, whether or not the system keeps
// up, and each event's latency is measured from the time it was due to its
// handler on the other side, so that a sender held up by a slow system
// counts the wait (no coordinated omission, unlike one event at a time or
// a burst). The sender sleeps until the next event is due and then sends
// every event that is due; on Linux it waits on a timerfd in Go's network
// poller (sys_linux_test.go), because time.Sleep wakes about 1 ms late in
// an otherwise idle process and a blocking nanosleep holds the scheduler's
// P that the goroutines the sender woke are queued on. The lateness that
// is left shows in late-p99-µs, and is part of the latencies: it is the
// floor of what this harness can show.
//
// It reports p50, p99 and p99.9 of due-to-handler latency in µs,
// late-p99-µs (how late the sender handed events to the transport, against
// the schedule: the load generator's share), sys-p99-µs (the p99 from that
// hand-off to the handler: the transport's share, which a late sender does
// not inflate), missed-% (the events sent more than sustainedSlack
// after they were due, or not sent at all because the sender was still
// behind when the time was up; the latencies are those of the events
// sent), and per event ns/op (elapsed time over events sent), B/op and
// allocs/op. It runs once per benchmark call, whatever b.N.
func BenchmarkSustainedLatency(b *testing.B) {
	srv := bridgeServer(b)
	for _, rate := range sustainedRates {
		b.Run(name("rate=%dk", rate/1000), func(b *testing.B) {
			for _, tr := range sustainedTransports {
				b.Run(tr.name, func(b *testing.B) {
					if tr.name == "go-redis-one-call" && rate > 20_000 {
						na(b, "one PUBLISH call per event, a round trip each, cannot send more than about 15,000 events/s from one goroutine: see rate=10k")
					}
					capacity := rate*int(sustainedFor/time.Second) + rate
					rc := &receipts{lat: make([]int64, 0, capacity), handoff: make([]int64, 0, capacity), handoffStamps: true}
					send, flush := bridgeSetup(b, srv, tr, rc)
					s := runSustained(send, flush, rate, sustainedFor)
					rc.check(b, s.sent)
					s.report(b, rc)
				})
			}
		})
	}
}

// sustainedRates are the rates of BenchmarkSustainedLatency, events/s.
var sustainedRates = []int{10_000, 100_000}

// sustainedFor is how long each rate is held.
const sustainedFor = 1500 * time.Millisecond

// sustainedSlack is how late an event may be sent before it counts as a
// missed schedule.
const sustainedSlack = 100 * time.Microsecond

// sustainedTransports are the rows of BenchmarkSustainedLatency: the
// harness alone (direct: send hands the payload to the receipts at once,
// so its latencies are the sender's lateness, the floor of every other
// row in the same run), Busline's bridge with its defaults, and raw
// go-redis (one PUBLISH call per event, and the events due at each wake-up
// pipelined in one round trip, which is what a hand-written sender does
// best without adding a delay).
var sustainedTransports = []transport{
	{name: "direct", setup: setupSustainedDirect},
	{name: "busline", setup: setupBridge},
	{name: "go-redis-one-call", setup: setupOneCall},
	{name: "go-redis-pipelined", setup: setupPipelined},
}

// setupSustainedDirect is the harness without a transport: each payload
// is received as it is sent.
func setupSustainedDirect(_ testing.TB, _ *redistest.Server, recv func([]byte)) (func([]byte), func()) {
	return recv, func() {}
}

// sustainedRun is what the sender of one run did.
type sustainedRun struct {
	sent, missed, due int
	late              []int64 // how late each event was sent, ns
	elapsed           time.Duration
	mallocs, bytes    uint64
}

// runSustained sends events due every second/rate for dur with send,
// calling flush after each group of events sent together, and stamps each
// payload with the time it was due and, after it, the time it was handed
// to send.
func runSustained(send func([]byte), flush func(), rate int, dur time.Duration) sustainedRun {
	interval := int64(time.Second) / int64(rate)
	total := int(int64(dur) / interval)
	s := sustainedRun{late: make([]int64, 0, total)}
	buf := make([]byte, bridgePayload)
	sleepUntil, release := newSleeper()
	defer release()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m0, b0 := ms.Mallocs, ms.TotalAlloc
	start := nanotime() + int64(time.Millisecond)
	end := start + int64(dur)
	for s.sent < total {
		sleepUntil(start + int64(s.sent)*interval)
		now := nanotime()
		if now >= end+int64(sustainedSlack) {
			break // still behind when the time is up: the rest is missed
		}
		n := 0
		for s.sent < total && now < end+int64(sustainedSlack) {
			due := start + int64(s.sent)*interval
			if due > now {
				break
			}
			now = nanotime()
			late := now - due
			binary.LittleEndian.PutUint64(buf, uint64(due))
			binary.LittleEndian.PutUint64(buf[8:], uint64(now))
			send(buf)
			s.late = append(s.late, late)
			if late > int64(sustainedSlack) {
				s.missed++
			}
			s.sent++
			n++
			now = nanotime()
		}
		if n > 0 {
			flush()
		}
	}
	s.elapsed = time.Duration(nanotime() - start)
	runtime.ReadMemStats(&ms)
	s.mallocs, s.bytes = ms.Mallocs-m0, ms.TotalAlloc-b0
	s.due = total
	s.missed += total - s.sent

	return s
}

// report reports the run's metrics (see BenchmarkSustainedLatency).
func (s sustainedRun) report(b *testing.B, rc *receipts) {
	if s.sent == 0 {
		b.Fatal("no event sent")
	}
	rc.mu.Lock()
	lat, handoff := slices.Clone(rc.lat), slices.Clone(rc.handoff)
	rc.mu.Unlock()
	b.ReportMetric(float64(s.elapsed.Nanoseconds())/float64(s.sent), "ns/op")
	b.ReportMetric(float64(s.mallocs)/float64(s.sent), "allocs/op")
	b.ReportMetric(float64(s.bytes)/float64(s.sent), "B/op")
	b.ReportMetric(quantileµs(lat, 0.50), "p50-µs")
	b.ReportMetric(quantileµs(lat, 0.99), "p99-µs")
	b.ReportMetric(quantileµs(lat, 0.999), "p99.9-µs")
	b.ReportMetric(quantileµs(s.late, 0.99), "late-p99-µs")
	b.ReportMetric(quantileµs(handoff, 0.99), "sys-p99-µs")
	b.ReportMetric(100*float64(s.missed)/float64(s.due), "missed-%")
}

// quantileµs returns the q quantile of ns (nanoseconds) in µs, sorting
// ns; 0 for none.
func quantileµs(ns []int64, q float64) float64 {
	if len(ns) == 0 {
		return 0
	}
	slices.Sort(ns)
	return float64(ns[int(q*float64(len(ns)-1))]) / 1e3
}

// TestSustained runs the open loop briefly for every transport and checks
// that every event sent arrived once, and that the accounting adds up.
func TestSustained(t *testing.T) {
	srv := bridgeServer(t)
	for _, tr := range sustainedTransports {
		t.Run(tr.name, func(t *testing.T) {
			rc := &receipts{handoffStamps: true}
			send, flush := bridgeSetup(t, srv, tr, rc)
			s := runSustained(send, flush, 10_000, 50*time.Millisecond)
			rc.check(t, s.sent)
			for i, d := range rc.handoff {
				if d < 0 || d > rc.lat[i] {
					t.Fatalf("event %d: %d ns from hand-off, %d ns from due: the hand-off is not between", i, d, rc.lat[i])
				}
			}
			if s.due != 500 || s.sent > s.due || len(s.late) != s.sent || s.missed < s.due-s.sent {
				t.Fatalf("due %d, sent %d, %d lateness samples, missed %d", s.due, s.sent, len(s.late), s.missed)
			}
		})
	}
}
