package bus

import (
	"runtime"
	"strconv"
	"testing"
)

// The memory the index keeps: tests, not benchmarks. Each measures the live
// heap (runtime.GC, then MemStats.HeapAlloc) before and after a workload and
// bounds the difference.

// liveHeap returns the bytes of live heap objects after a full collection.
func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // the first may leave objects freed by finalizers
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestHeapReturnsAfterUnsubscribe: after 200,000 subscriptions of one shape
// have been made, published to and removed, the live heap is back within
// 2 MiB of what it was before, although subscriptions that stay keep every
// map and node of the index alive. Go maps keep their tables after
// deletes, and cache slots keep the match sets of subscriptions until
// overwritten: the index has to shrink the former and clear the latter.
func TestHeapReturnsAfterUnsubscribe(t *testing.T) {
	n := 200_000
	if testing.Short() || raceEnabled {
		n = 50_000 // the race detector makes each subscription ~10x slower
	}
	const slack = 2 << 20
	for _, tc := range []struct {
		name    string
		pattern func(i string) string // the i-th subscription's pattern
		topic   func(i string) string // a topic it matches
	}{
		{"exact", func(i string) string { return "orders." + i + ".created" }, nil},
		{"star", func(i string) string { return "orders." + i + ".*" }, nil},
		{"globstar", func(i string) string { return "orders." + i + ".**" }, nil},
		{"glob", func(i string) string { return "orders." + i + ".cr*" }, nil},
		// Patterns under distinct first segments: the root's own map.
		{"star-root", func(i string) string { return "t" + i + ".*" }, func(i string) string { return "t" + i + ".created" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(nil)
			defer func() { _ = b.Close(ctx) }()
			// Subscriptions that stay: the literal stripes, the tree
			// nodes on the way and the pattern map are never emptied.
			for _, p := range []string{"orders.created", "orders.**", "orders.*.created", "orders.x.cr*", "*.created"} {
				mustSubscribe(t, b, p, nopSink)
			}
			subs := make([]*Subscription, n)
			p := &payload{}
			mustPublish(t, b, "orders.1.created", p) // warm up: lazily made parts
			before := liveHeap()
			for i := range subs {
				subs[i] = mustSubscribe(t, b, tc.pattern(strconv.Itoa(i)), nopSink)
			}
			for i := range subs {
				topic := "orders." + strconv.Itoa(i) + ".created"
				if tc.topic != nil {
					topic = tc.topic(strconv.Itoa(i))
				}
				mustPublish(t, b, topic, p) // fills the match cache
			}
			for _, s := range subs {
				s.Unsubscribe()
			}
			clear(subs)
			after := liveHeap()
			grown := int64(after) - int64(before)
			t.Logf("%d %s subscriptions removed: live heap %+.2f MiB", n, tc.name, float64(grown)/(1<<20))
			if grown > slack {
				t.Errorf("the live heap is %.2f MiB above its baseline after the subscriptions were removed, want at most %.0f MiB",
					float64(grown)/(1<<20), float64(slack)/(1<<20))
			}
			if got := b.Stats().Subscriptions; got != 5 {
				t.Errorf("%d subscriptions left, want 5", got)
			}
			runtime.KeepAlive(subs)
		})
	}
}

// TestHeapFlatOverDistinctTopics: publishing to ever new topics (a device
// ID in each) does not grow the heap: the match cache has a fixed number
// of slots, and a topic nobody subscribed to leaves nothing in the index.
func TestHeapFlatOverDistinctTopics(t *testing.T) {
	n := 1_000_000
	if testing.Short() || raceEnabled {
		n = 100_000
	}
	b := New(nil)
	defer func() { _ = b.Close(ctx) }()
	mustSubscribe(t, b, "devices.**", nopSink)
	mustSubscribe(t, b, "devices.*.status", nopSink)
	p := &payload{}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			mustPublish(t, b, "devices."+strconv.Itoa(i)+".status", p)
		}
	}
	publish(0, 10_000) // fills the cache: its slots are the steady state
	before := liveHeap()
	publish(10_000, n)
	grown := int64(liveHeap()) - int64(before)
	t.Logf("%d distinct topics published: live heap %+.2f MiB", n, float64(grown)/(1<<20))
	if grown > 1<<20 {
		t.Errorf("the live heap grew by %.2f MiB over %d distinct topics, want at most 1 MiB", float64(grown)/(1<<20), n)
	}
}
