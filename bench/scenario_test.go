package bench

import (
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// The scenarios. Each benchmark runs b.Run("<library>", ...) for every
// in-process library, in the order of inProcess; a library that cannot do
// the scenario skips with "n/a: <reason>". Before its timer starts, every
// benchmark checks that the library delivers what the scenario claims; the
// Test functions at the end run the same checks without benchmarking.

// asyncQueue is the queue capacity of every asynchronous subscriber.
const asyncQueue = 1024

// lib is one library of the comparison, with what it can do: a router
// (synchronous or not), an asynchronous queue, or neither.
type lib struct {
	name   string
	router func(tb testing.TB) router
	// async, when set, says why the router cannot deliver synchronously.
	async string
	queue func(tb testing.TB, subs int, h func(p *payload)) (publish func(p *payload))
	// why says what the library lacks when router or queue is nil.
	noRouter, noQueue string
}

// inProcess lists the libraries of the in-process scenarios, in the order
// of the tables; each adapter lives in the library's own file.
var inProcess = []*lib{
	{name: "direct", router: newDirect, noQueue: "the direct-call baseline has no queue"},
	{name: "chan", queue: newChan, noRouter: "the channel baseline has no topics"},
	buslineLib,
	{name: "eventbus", router: newEventBus, queue: newEventBusAsync},
	{name: "cskr", router: newCskr, async: cskrAsync, queue: newCskrAsync},
	{name: "watermill", router: newWatermill, queue: newWatermillAsync},
	{name: "gsl", router: newGSL, noQueue: "a subject list only matches: it has no delivery of its own"},
	{name: "globscan", router: newGlobScan, noQueue: "a scan of globs only matches: it has no delivery of its own"},
}

// syncRouter returns the library's router for a synchronous scenario, or
// skips tb as n/a.
func (l *lib) syncRouter(tb testing.TB) router {
	tb.Helper()
	if l.router == nil {
		na(tb, l.noRouter)
	}
	if l.async != "" {
		na(tb, l.async)
	}
	return l.router(tb)
}

// syncCase is a synchronous publish: n subscriptions to each pattern, then
// publishing to topic must make want handler calls.
type syncCase struct {
	name     string
	patterns []string
	n        int
	topic    string
	want     int64
}

// setup subscribes and checks one publish.
func (c syncCase) setup(tb testing.TB, l *lib) router {
	tb.Helper()
	r := l.syncRouter(tb)
	if a, ok := r.(aimer); ok {
		a.aim(c.topic)
	}
	for _, p := range c.patterns {
		mustSubscribe(tb, r, p, c.n)
	}
	expectHits(tb, r, c.topic, c.want)
	return r
}

func (c syncCase) bench(b *testing.B) {
	for _, l := range inProcess {
		b.Run(l.name, func(b *testing.B) {
			r := c.setup(b, l)
			p := &payload{}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r.publish(c.topic, p)
			}
		})
	}
}

// exactCases publish to 1, 10 and 1000 subscribers of one exact topic.
func exactCases() []syncCase {
	var cs []syncCase
	for _, n := range []int{1, 10, 1000} {
		cs = append(cs, syncCase{name("subs=%d", n), []string{"orders.eu.created"}, n, "orders.eu.created", int64(n)})
	}
	return cs
}

// wildcardCases publish to subscribers of a `*`, a `**` and an
// in-segment glob pattern.
func wildcardCases() []syncCase {
	var cs []syncCase
	for _, shape := range []struct{ name, pattern string }{
		{"star", "orders.*.created"},
		{"globstar", "orders.**"},
		{"glob", "orders.eu.cr*"},
	} {
		for _, n := range []int{1, 10} {
			cs = append(cs, syncCase{name("%s/subs=%d", shape.name, n), []string{shape.pattern}, n, "orders.eu.created", int64(n)})
		}
	}
	return cs
}

// BenchmarkPublishExact: one synchronous publish to n subscribers of one
// exact topic; ns/op is the cost of the publish with every handler call.
func BenchmarkPublishExact(b *testing.B) {
	for _, c := range exactCases() {
		b.Run(c.name, c.bench)
	}
}

// BenchmarkPublishWildcard: the same with wildcard subscriptions.
func BenchmarkPublishWildcard(b *testing.B) {
	for _, c := range wildcardCases() {
		b.Run(c.name, c.bench)
	}
}

// treeTopic is matched by exactly three of the subscriptions treeCase
// makes, whatever their number.
const treeTopic = "tenant.5.orders.created"

// treePatterns returns n patterns: three that match treeTopic (one of
// each shape) and n-3 of the shapes exact, `*` and `**` under other tenants,
// which do not. They are the shapes every wildcard library here can
// express, so that NATS's sublist can take part.
func treePatterns(n int) []string {
	ps := make([]string, 0, n)
	ps = append(ps, treeTopic, "tenant.5.*.created", "tenant.5.**")
	for i := range n - 3 {
		tenant := strconv.Itoa(i + 1000)
		switch i % 3 {
		case 0:
			ps = append(ps, "tenant."+tenant+".orders.created")
		case 1:
			ps = append(ps, "tenant."+tenant+".*.created")
		case 2:
			ps = append(ps, "tenant."+tenant+".**")
		}
	}
	return ps
}

// treeSizes are the numbers of subscriptions of BenchmarkPublishTree.
// treeLimit caps them for a library that cannot build a million in
// reasonable time (its RESULTS row then says the size it used).
var treeSizes = []int{10, 10_000, 100_000, 1_000_000}

// treeLimit is the largest tree a library is given; globscan's linear scan
// makes a publish to a million globs take tens of milliseconds, which is
// measured at 100,000 instead.
var treeLimit = map[string]int{"globscan": 100_000}

// treeCache keeps the routers built for BenchmarkPublishTree across the
// -count runs of one sub-benchmark (which go test makes back to back), so
// that a million subscriptions are built once; dropTrees frees them before
// the next size, so that the other benchmarks do not run beside gigabytes
// of live heap.
var treeCache = struct {
	sync.Mutex
	m        map[string]router
	cleanups heldCleanups
}{m: map[string]router{}}

// treeRouter returns l's router holding the n tree patterns, built on the
// first call and checked on every call.
func treeRouter(tb testing.TB, l *lib, n int) router {
	tb.Helper()
	if limit, ok := treeLimit[l.name]; ok && n > limit {
		na(tb, name("%s is measured with at most %d subscriptions (linear scan); see subs=%d", l.name, limit, limit))
	}
	key := name("%s/%d", l.name, n)
	treeCache.Lock()
	defer treeCache.Unlock()
	r := treeCache.m[key]
	if r == nil {
		r = l.syncRouter(heldTB{tb, &treeCache.cleanups})
		if a, ok := r.(aimer); ok {
			a.aim(treeTopic)
		}
		for _, p := range treePatterns(n) {
			mustSubscribe(tb, r, p, 1)
		}
		treeCache.m[key] = r
	}
	expectHits(tb, r, treeTopic, 3)
	return r
}

// dropTrees closes and forgets the cached trees.
func dropTrees() {
	treeCache.Lock()
	defer treeCache.Unlock()
	treeCache.cleanups.run()
	clear(treeCache.m)
	runtime.GC()
}

// treeLibs are the libraries of the tree scenario.
func treeLibs() []*lib { return append(slices.Clip(inProcess), buslineNoCache) }

// BenchmarkPublishTree: 10 to 1M subscriptions, publishing to a topic
// that three of them match. Besides the libraries, busline-nocache is
// Busline without its match cache (Options.MatchCacheSize -1): every
// publish walks the index, as happens to topics published too rarely to
// stay in the cache.
func BenchmarkPublishTree(b *testing.B) {
	for _, n := range treeSizes {
		b.Run(name("subs=%d", n), func(b *testing.B) {
			for _, l := range treeLibs() {
				b.Run(l.name, func(b *testing.B) {
					r := treeRouter(b, l, n)
					p := &payload{}
					b.ReportAllocs()
					b.ResetTimer()
					for b.Loop() {
						r.publish(treeTopic, p)
					}
				})
			}
		})
		dropTrees()
	}
}

// parallelTopics is the number of topics of BenchmarkPublishParallel's
// distinct-topics case.
const parallelTopics = 64

// parallelSetup subscribes one subscription to "orders.eu.created" (same)
// or to each of "orders.0" to "orders.63" (distinct), and checks.
func parallelSetup(tb testing.TB, l *lib, distinct bool) router {
	tb.Helper()
	r := l.syncRouter(tb)
	if !distinct {
		if a, ok := r.(aimer); ok {
			a.aim("orders.eu.created")
		}
		mustSubscribe(tb, r, "orders.eu.created", 1)
		expectHits(tb, r, "orders.eu.created", 1)
		return r
	}
	if _, ok := r.(aimer); ok {
		// The direct baseline has no topics: each publisher calls
		// its one handler.
		mustSubscribe(tb, r, "orders.0", 1)
		r.(aimer).aim("orders.0")
		return r
	}
	for i := range parallelTopics {
		mustSubscribe(tb, r, "orders."+strconv.Itoa(i), 1)
	}
	for i := range parallelTopics {
		expectHits(tb, r, "orders."+strconv.Itoa(i), 1)
	}
	return r
}

// BenchmarkPublishParallel: publishers on every core (RunParallel), all to
// one topic, and each to a topic of its own. The row busline-one-publisher
// runs the same loop, with the first publisher's topic, on one goroutine:
// its ratio to Busline's row is how much faster the parallel publishers
// went than one alone.
func BenchmarkPublishParallel(b *testing.B) {
	for _, distinct := range []bool{false, true} {
		caseName := "same-topic"
		if distinct {
			caseName = "distinct-topics"
		}
		b.Run(caseName, func(b *testing.B) {
			for _, l := range inProcess {
				b.Run(l.name, func(b *testing.B) {
					r := parallelSetup(b, l, distinct)
					var next atomic.Int64
					var bad atomic.Int64
					b.ReportAllocs()
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						topic := parallelTopic(distinct, next.Add(1)-1)
						p := &payload{}
						var ops int64
						for pb.Next() {
							r.publish(topic, p)
							ops++
						}
						if p.hits() != ops {
							bad.Add(1)
						}
					})
					b.StopTimer()
					if bad.Load() != 0 {
						b.Fatalf("%d publishers saw a wrong number of handler calls", bad.Load())
					}
				})
			}
			b.Run(ours+"-one-publisher", func(b *testing.B) {
				r := parallelSetup(b, buslineLib, distinct)
				topic := parallelTopic(distinct, 0)
				p := &payload{}
				b.ReportAllocs()
				for b.Loop() {
					r.publish(topic, p)
				}
				if p.hits() != int64(b.N) {
					b.Fatalf("%d publishes made %d handler calls", b.N, p.hits())
				}
			})
		})
	}
}

// parallelTopic is the topic of BenchmarkPublishParallel's publisher i.
// Distinct topics are built at run time, as a program builds topics from
// IDs: they are not the strings the subscriptions were made with.
func parallelTopic(distinct bool, i int64) string {
	if !distinct {
		return "orders.eu.created"
	}
	return "orders." + strconv.FormatInt(i%parallelTopics, 10)
}

// asyncQueueOf returns the library's asynchronous queue, or skips tb.
func (l *lib) asyncQueue(tb testing.TB) func(testing.TB, int, func(*payload)) func(*payload) {
	tb.Helper()
	if l.queue == nil {
		na(tb, l.noQueue)
	}
	return l.queue
}

// BenchmarkAsyncThroughput: the publisher pushes b.N events to subs
// asynchronous subscribers and waits until every one has handled them all;
// ns/op is the cost per published event.
func BenchmarkAsyncThroughput(b *testing.B) {
	for _, subs := range []int{1, 10} {
		b.Run(name("subs=%d", subs), func(b *testing.B) {
			for _, l := range inProcess {
				b.Run(l.name, func(b *testing.B) {
					newQueue := l.asyncQueue(b)
					var handled atomic.Int64
					publish := newQueue(b, subs, func(*payload) { handled.Add(1) })
					p := &payload{}
					publish(p)
					waitFor(b, "the first event", func() bool { return handled.Load() == int64(subs) })
					handled.Store(0)
					b.ReportAllocs()
					b.ResetTimer()
					start := time.Now()
					for range b.N {
						publish(p)
					}
					want := int64(b.N * subs)
					waitFor(b, "every event", func() bool { return handled.Load() >= want })
					elapsed := time.Since(start)
					b.StopTimer()
					if got := handled.Load(); got != want {
						b.Fatalf("%d handler calls, want %d", got, want)
					}
					b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
				})
			}
		})
	}
}

// idleGap is how long BenchmarkAsyncLatency leaves a subscriber idle
// before the next event, so that its goroutine parks.
const idleGap = 50 * time.Microsecond

// BenchmarkAsyncLatency measures publish-to-handler latency to an idle
// subscriber: the publisher waits for each event's handler (blocked on a
// channel, as a goroutine with nothing else to do would be), spins for
// idleGap so that the subscriber parks (a sleep lasts far longer on a busy
// machine), and publishes the next one. It reports p50 and p99, and fast-%,
// the share of events handled within fastWake (see asyncLatency); ns/op
// includes the waits.
func BenchmarkAsyncLatency(b *testing.B) {
	for _, l := range inProcess {
		b.Run(l.name, func(b *testing.B) { asyncLatency(b, l, idleGap) })
	}
}

// BenchmarkAsyncLatencyGap is AsyncLatency for Busline and the channel at
// idle gaps of 50 µs, 200 µs and 1 ms, the two alternated and the gaps in
// turn within each of asyncGapRounds rounds (so the rounds share the
// machine's moods), named so that cmd/results pools the rounds: NOTES.md's
// measurement of how the gap decides the p50. run.sh skips it; run it with
//
//	go test -run '^$' -bench AsyncLatencyGap -benchtime 2000x . | sed -E 's#/round=[0-9]+##' >gap.txt
//	go run ./cmd/results -in gap.txt -out gap.md
func BenchmarkAsyncLatencyGap(b *testing.B) {
	var libs []*lib
	for _, l := range inProcess {
		if l.name == "chan" || l.name == ours {
			libs = append(libs, l)
		}
	}
	for round := range asyncGapRounds {
		for _, gap := range []time.Duration{50 * time.Microsecond, 200 * time.Microsecond, time.Millisecond} {
			for _, l := range libs {
				b.Run(name("round=%d/gap=%v/%s", round, gap, l.name), func(b *testing.B) { asyncLatency(b, l, gap) })
			}
		}
	}
}

// asyncGapRounds is the number of rounds of BenchmarkAsyncLatencyGap.
const asyncGapRounds = 5

// ours is Busline's library name.
const ours = "busline"

// fastWake is the latency under which an idle subscriber counts as woken
// fast (fast-%): a handoff to a thread that was still spinning in the Go
// scheduler, not the futex wake-up of a parked thread (10 to 20 µs here).
const fastWake = 5 * time.Microsecond

// asyncLatency is the body of the asynchronous latency benchmarks, for
// library l with an idle gap of gap between events.
func asyncLatency(b *testing.B, l *lib, gap time.Duration) {
	newQueue := l.asyncQueue(b)
	var handled, last atomic.Int64
	got := make(chan struct{}, 1)
	publish := newQueue(b, 1, func(p *payload) {
		last.Store(nanotime() - p.at)
		handled.Add(1)
		got <- struct{}{}
	})
	p := &payload{}
	lat := make([]int64, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		p.at = nanotime()
		publish(p)
		<-got // a lost event hangs until go test's -timeout
		lat = append(lat, last.Load())
		for idle := nanotime() + int64(gap); nanotime() < idle; {
		}
	}
	b.StopTimer()
	if got := handled.Load(); got != int64(b.N) {
		b.Fatalf("%d handler calls, want %d", got, b.N)
	}
	fast := 0
	for _, d := range lat {
		if d < int64(fastWake) {
			fast++
		}
	}
	b.ReportMetric(100*float64(fast)/float64(len(lat)), "fast-%")
	reportLatency(b, lat)
}

// churnStable is the number of subscriptions that stay while
// BenchmarkChurn subscribes and unsubscribes.
const churnStable = 10

// churnSetup subscribes the stable subscriptions and starts a publisher
// goroutine; stop ends it and returns how many publishes it made and the
// handler calls they got.
func churnSetup(tb testing.TB, l *lib) (r router, stop func() (published, hits int64)) {
	tb.Helper()
	if l.router == nil {
		na(tb, l.noRouter)
	}
	r = l.router(tb)
	const topic = "orders.eu.created"
	if a, ok := r.(aimer); ok {
		a.aim(topic)
	}
	mustSubscribe(tb, r, topic, churnStable)
	var quit atomic.Bool
	var published atomic.Int64
	p := &payload{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !quit.Load() {
			r.publish(topic, p)
			published.Add(1)
		}
	}()
	return r, func() (int64, int64) {
		quit.Store(true)
		<-done
		n := published.Load()
		if l.async != "" { // handlers still running elsewhere
			waitFor(tb, "the stable subscribers", func() bool { return p.hits() >= n*churnStable })
		}
		return n, p.hits()
	}
}

// checkChurn checks what a churn run left behind: every stable
// subscription got every publish, and the churned ones are gone.
func checkChurn(tb testing.TB, l *lib, r router, published, hits int64) {
	tb.Helper()
	if hits < published*churnStable {
		tb.Fatalf("%d publishes made %d handler calls, want at least %d", published, hits, published*churnStable)
	}
	p := &payload{}
	r.publish("orders.eu.created", p)
	if l.async != "" {
		waitFor(tb, "the stable subscribers", func() bool { return p.hits() >= churnStable })
		time.Sleep(10 * time.Millisecond)
	}
	if got := p.hits(); got != churnStable {
		tb.Fatalf("after churn a publish made %d handler calls, want %d", got, churnStable)
	}
}

// BenchmarkChurn: subscribe and unsubscribe on a topic while another
// goroutine publishes to it; ns/op is one subscribe plus one unsubscribe,
// and pub/s says how fast the publisher went meanwhile.
func BenchmarkChurn(b *testing.B) {
	for _, l := range inProcess {
		b.Run(l.name, func(b *testing.B) {
			if l.name == "direct" {
				na(b, "the direct-call baseline has no subscriptions")
			}
			r, stop := churnSetup(b, l)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				unsub, err := r.subscribe("orders.eu.created")
				if err != nil {
					b.Fatal(err)
				}
				unsub()
			}
			elapsed := time.Since(start)
			b.StopTimer()
			published, hits := stop()
			checkChurn(b, l, r, published, hits)
			b.ReportMetric(float64(published)/elapsed.Seconds(), "pub/s")
		})
	}
}

// The tests: every scenario's setup and checks, for every library, at
// sizes that keep `go test ./...` fast.

func TestSyncScenarios(t *testing.T) {
	cases := append(exactCases(), wildcardCases()...)
	for _, c := range cases {
		for _, l := range inProcess {
			t.Run(c.name+"/"+l.name, func(t *testing.T) {
				r := c.setup(t, l)
				expectHits(t, r, c.topic, c.want)
				if _, ok := r.(aimer); !ok { // the direct baseline does not route
					expectHits(t, r, "items.us.shipped", 0)
				}
			})
		}
	}
}

func TestTreeScenario(t *testing.T) {
	for _, n := range []int{10, 10_000} {
		for _, l := range treeLibs() {
			t.Run(name("subs=%d/%s", n, l.name), func(t *testing.T) {
				t.Cleanup(dropTrees)
				r := treeRouter(t, l, n) // checks treeTopic: 3 calls
				if _, ok := r.(aimer); ok {
					return // the direct baseline does not route
				}
				expectHits(t, r, "tenant.1000.orders.created", 1)
				expectHits(t, r, "tenant.1001.orders.created", 1)
				expectHits(t, r, "tenant.1002.a.b.c", 1)
				expectHits(t, r, "tenant.1001.orders.paid", 0)
			})
		}
	}
}

func TestParallelScenario(t *testing.T) {
	for _, distinct := range []bool{false, true} {
		for _, l := range inProcess {
			t.Run(name("distinct=%v/%s", distinct, l.name), func(t *testing.T) {
				r := parallelSetup(t, l, distinct)
				var wg sync.WaitGroup
				for g := range 4 {
					wg.Go(func() {
						topic := "orders.eu.created"
						if distinct {
							topic = "orders." + strconv.Itoa(g)
						}
						p := &payload{}
						for range 1000 {
							r.publish(topic, p)
						}
						if p.hits() != 1000 {
							t.Errorf("publisher %d: %d handler calls, want 1000", g, p.hits())
						}
					})
				}
				wg.Wait()
			})
		}
	}
}

func TestAsyncScenarios(t *testing.T) {
	for _, subs := range []int{1, 10} {
		for _, l := range inProcess {
			t.Run(name("subs=%d/%s", subs, l.name), func(t *testing.T) {
				newQueue := l.asyncQueue(t)
				var handled atomic.Int64
				publish := newQueue(t, subs, func(*payload) { handled.Add(1) })
				const events = 5000
				p := &payload{}
				for range events {
					publish(p)
				}
				waitFor(t, "every event", func() bool { return handled.Load() >= events*int64(subs) })
				time.Sleep(10 * time.Millisecond)
				if got := handled.Load(); got != events*int64(subs) {
					t.Fatalf("%d handler calls, want %d", got, events*subs)
				}
			})
		}
	}
}

func TestChurnScenario(t *testing.T) {
	for _, l := range inProcess {
		t.Run(l.name, func(t *testing.T) {
			if l.name == "direct" {
				na(t, "the direct-call baseline has no subscriptions")
			}
			r, stop := churnSetup(t, l)
			for range 200 {
				unsub, err := r.subscribe("orders.eu.created")
				if err != nil {
					t.Fatal(err)
				}
				unsub()
			}
			published, hits := stop()
			checkChurn(t, l, r, published, hits)
		})
	}
}

// transports are the ways of the bridge scenarios, in table order; the
// in-process peers have none.
var transports = []transport{
	{name: "busline", setup: setupBridge},
	{name: "busline-uncoalesced", setup: setupBridgeUncoalesced},
	{name: "go-redis-one-call", setup: setupOneCall},
	{name: "go-redis-pipelined", setup: setupPipelined},
	{name: "watermill-redisstream", setup: setupRedisStream},
	{name: "centrifuge", setup: setupCentrifuge},
	{name: "nats", setup: setupNATS, noRedis: true},
	{name: "eventbus", none: "in-process only: no transport through Redis"},
	{name: "cskr", none: "in-process only: no transport through Redis"},
	{name: "gsl", none: "a subject list only: no transport through Redis"},
	{name: "globscan", none: "a glob scan only: no transport through Redis"},
}

// receipts collects what a transport delivers: latencies, count, and
// payloads that came back wrong.
type receipts struct {
	mu  sync.Mutex // protects lat and handoff
	lat []int64
	// handoff, when handoffStamps is set, collects the latencies from the
	// second stamp of each payload (bytes 8 to 16: when the event was
	// handed to the transport, see BenchmarkSustainedLatency).
	handoff       []int64
	handoffStamps bool
	n             atomic.Int64
	bad           atomic.Int64
	// got receives a token per event when not nil (the latency
	// scenario); its buffer holds one.
	got chan struct{}
}

func (r *receipts) recv(p []byte) {
	if len(p) != bridgePayload {
		r.bad.Add(1)
		return
	}
	now := nanotime()
	r.mu.Lock()
	r.lat = append(r.lat, now-sentAt(p))
	if r.handoffStamps {
		r.handoff = append(r.handoff, now-sentAt(p[8:]))
	}
	r.mu.Unlock()
	r.n.Add(1)
	if r.got != nil {
		r.got <- struct{}{}
	}
}

// check waits for n events, then fails if more or wrong ones came.
func (r *receipts) check(tb testing.TB, n int) {
	tb.Helper()
	waitFor(tb, name("%d events", n), func() bool { return r.n.Load() >= int64(n) })
	time.Sleep(5 * time.Millisecond) // duplicates would arrive right behind
	if got, bad := r.n.Load(), r.bad.Load(); got != int64(n) || bad != 0 {
		tb.Fatalf("received %d events (and %d malformed), want %d", got, bad, n)
	}
}

// report checks that the b.N events of a benchmark arrived once each, and
// reports events/s over elapsed and the latencies.
func (r *receipts) report(b *testing.B, elapsed time.Duration) {
	r.check(b, b.N)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	r.mu.Lock()
	reportLatency(b, r.lat)
	r.mu.Unlock()
}

// reset forgets what was received; nothing may be in flight.
func (r *receipts) reset() {
	r.mu.Lock()
	r.lat, r.handoff = r.lat[:0], r.handoff[:0]
	r.mu.Unlock()
	r.n.Store(0)
}

// bridgeSetup prepares a transport and checks that one event goes through.
func bridgeSetup(tb testing.TB, srv *redistest.Server, tr transport, rc *receipts) (send func([]byte), flush func()) {
	tb.Helper()
	if tr.setup == nil {
		na(tb, tr.none)
	}
	send, flush = tr.setup(tb, srv, rc.recv)
	send(stamp(make([]byte, bridgePayload)))
	flush()
	if rc.got != nil {
		<-rc.got
	}
	rc.check(tb, 1)
	rc.reset()
	return send, flush
}

// BenchmarkBridgeThroughput publishes b.N events in a burst on one side and
// waits until the other side has received them all; ns/op is the time per
// event, events/s its inverse, and p50/p99 the publish-to-receipt latency
// including the queueing behind the burst; redis-ns/ev is redis-server's
// CPU time per event (INFO cpu), for the transports through Redis.
func BenchmarkBridgeThroughput(b *testing.B) {
	srv := bridgeServer(b)
	admin := srv.Client(b)
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			rc := &receipts{lat: make([]int64, 0, b.N)}
			send, flush := bridgeSetup(b, srv, tr, rc)
			buf := make([]byte, bridgePayload)
			cpu0 := redisCPU(b, admin)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				send(stamp(buf))
			}
			flush()
			waitFor(b, "every event", func() bool { return rc.n.Load() >= int64(b.N) })
			elapsed := time.Since(start)
			b.StopTimer()
			if !tr.noRedis {
				reportRedisCPU(b, cpu0, redisCPU(b, admin))
			}
			rc.report(b, elapsed)
		})
	}
}

// BenchmarkBridgeLatency sends one event at a time and waits for it: the
// latency of an idle system.
func BenchmarkBridgeLatency(b *testing.B) {
	srv := bridgeServer(b)
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			rc := &receipts{lat: make([]int64, 0, b.N), got: make(chan struct{}, 1)}
			send, flush := bridgeSetup(b, srv, tr, rc)
			buf := make([]byte, bridgePayload)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				send(stamp(buf))
				flush()
				// Wait on a channel, not by spinning: a spinning
				// goroutine keeps the scheduler from polling the
				// network.
				<-rc.got
			}
			elapsed := time.Since(start)
			b.StopTimer()
			rc.report(b, elapsed)
		})
	}
}

// BenchmarkClusterThroughput is BridgeThroughput over clusterTopics topics
// (published in turn), on a three-node Redis Cluster (redistest, three
// masters on this machine) beside one redis-server:
//
//   - busline: one redis-server, classic pub/sub (the reference row);
//   - busline-cluster-sharded: the cluster with exact routes and
//     Partitions clusterTopics, so that the topics' channels spread over
//     the nodes (SPUBLISH, SSUBSCRIBE) and a message goes to its node only;
//   - busline-cluster-classic: the cluster with ClassicPubSub (PUBLISH,
//     SUBSCRIBE): every node forwards every message to the others.
//
// Coalescing is on, as by default. redis-ns/ev is the CPU time the
// servers of the row (all three nodes for the cluster rows) spent per
// event, from INFO cpu; go-ns/ev the benchmark process's (both bridges);
// ev/msg the events per Redis message (coalescing). All the nodes, both bridges and the
// benchmark share this machine's cores: the sharded route's gain on a
// cluster is in spreading Redis's work over machines, which one machine
// cannot show, and what this measures is the cost of the route itself.
func BenchmarkClusterThroughput(b *testing.B) {
	single := bridgeServer(b)
	c := startBenchCluster(b, 3)
	one, nodes := []*redis.Client{single.Client(b)}, nodeClients(b, c)
	for _, m := range clusterModes(single, c) {
		b.Run(m.name, func(b *testing.B) {
			if m.name == ours {
				clusterBurst(b, m, one)
			} else {
				clusterBurst(b, m, nodes)
			}
		})
	}
}

func TestBridgeScenario(t *testing.T) {
	srv := bridgeServer(t)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			rc := &receipts{}
			send, flush := bridgeSetup(t, srv, tr, rc)
			buf := make([]byte, bridgePayload)
			for range 1000 {
				send(stamp(buf))
			}
			flush()
			rc.check(t, 1000)
		})
	}
}
