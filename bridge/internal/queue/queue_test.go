package queue

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func item(ch string, payload string, at int64) Export {
	return Export{Channel: ch, Payload: []byte(payload), At: at}
}

func TestOutboxPolicies(t *testing.T) {
	for _, c := range []struct {
		name           string
		maxEvents      int
		maxBytes       int
		dropNewest     bool
		push           []string
		wantKept       []string
		wantDropped    int
		wantBytesAfter int
	}{
		{"drop oldest by count", 3, 1 << 20, false, []string{"a", "b", "c", "d", "e"}, []string{"c", "d", "e"}, 2, 3 * 2},
		{"drop newest by count", 3, 1 << 20, true, []string{"a", "b", "c", "d", "e"}, []string{"a", "b", "c"}, 2, 3 * 2},
		// Each item is 1 byte of channel plus its payload.
		{"drop oldest by bytes", 100, 10, false, []string{"aaaa", "bbbb", "cc"}, []string{"bbbb", "cc"}, 1, 5 + 3},
		{"drop newest by bytes", 100, 10, true, []string{"aaaa", "bbbb", "cc"}, []string{"aaaa", "bbbb"}, 1, 10},
		{"bigger than the outbox", 100, 10, false, []string{"a", "0123456789"}, []string{"a"}, 1, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := NewOutbox(c.maxEvents, c.maxBytes, c.dropNewest)
			dropped := 0
			for _, p := range c.push {
				n, ok := o.Push(item("x", p, 1))
				if !ok {
					t.Fatal("push refused")
				}
				dropped += n
			}
			if dropped != c.wantDropped {
				t.Errorf("dropped %d, want %d", dropped, c.wantDropped)
			}
			if _, b := o.Depth(); b != c.wantBytesAfter {
				t.Errorf("bytes %d, want %d", b, c.wantBytesAfter)
			}
			batch, _ := o.Take(nil, 100, 0)
			var got []string
			for _, it := range batch {
				got = append(got, string(it.Payload))
			}
			if strings.Join(got, ",") != strings.Join(c.wantKept, ",") {
				t.Errorf("kept %v, want %v", got, c.wantKept)
			}
			if n, b := o.Depth(); n != 0 || b != 0 {
				t.Errorf("after take: depth %d, %d bytes", n, b)
			}
		})
	}
}

func TestOutboxSequenceAndExpiry(t *testing.T) {
	o := NewOutbox(100, 1<<20, false)
	for i, ch := range []string{"a", "b", "a", "a", "b"} {
		o.Push(item(ch, "p", int64(i+1))) // a zero At would be stamped with the clock
	}
	o.Push(Export{Channel: "a", Payload: []byte("raw"), Raw: true, At: 10})
	// Exports made before time 3 are stale.
	batch, expired := o.Take(nil, 2, 3)
	if expired != 2 || len(batch) != 2 {
		t.Fatalf("expired %d, batch %d; want 2, 2", expired, len(batch))
	}
	var seqs []string
	for _, it := range batch {
		seqs = append(seqs, fmt.Sprintf("%s%d", it.Channel, it.Seq))
	}
	batch, _ = o.Take(batch, 10, 0)
	for _, it := range batch {
		seqs = append(seqs, fmt.Sprintf("%s%d", it.Channel, it.Seq))
	}
	// Numbered per channel from 1; raw exports are not numbered.
	if got := strings.Join(seqs, " "); got != "a2 a3 b2 a0" {
		t.Errorf("sequence %q, want %q", got, "a2 a3 b2 a0")
	}
	if n := o.Close(); n != 0 {
		t.Errorf("close: %d left", n)
	}
	if _, ok := o.Push(item("a", "late", 0)); ok {
		t.Error("push after close accepted")
	}
}

func TestOutboxWakesOncePerBurst(t *testing.T) {
	o := NewOutbox(100, 1<<20, false)
	for range 10 {
		o.Push(item("a", "p", 0))
	}
	if len(o.wake) != 1 {
		t.Fatalf("wake has %d tokens, want 1", len(o.wake))
	}
	select {
	case <-o.wake:
	default:
		t.Fatal("no wake token to take")
	}
	o.Take(nil, 100, 0)
	o.Push(item("a", "p", 0))
	if len(o.wake) != 1 {
		t.Fatal("no wake after the outbox emptied")
	}
}

func TestEcho(t *testing.T) {
	now := time.Unix(1000, 0)
	m := NewEcho(time.Second, 3)
	m.Remember("ch", []byte("x"), now)
	m.Remember("ch", []byte("x"), now)
	m.Remember("ch", []byte("y"), now)
	steps := []struct {
		ch, payload string
		at          time.Duration
		want        bool
	}{
		{"ch", "x", 0, true},
		{"other", "y", 0, false}, // the channel counts
		{"ch", "x", 0, true},
		{"ch", "x", 0, false},               // both copies consumed
		{"ch", "y", 2 * time.Second, false}, // expired
	}
	for i, s := range steps {
		if got := m.Consume(s.ch, []byte(s.payload), now.Add(s.at)); got != s.want {
			t.Errorf("step %d (%s %s): %v, want %v", i, s.ch, s.payload, got, s.want)
		}
	}
	if n := m.Len(); n != 0 {
		t.Errorf("%d entries left after expiry", n)
	}
	if len(m.count) != 0 {
		t.Errorf("count map not emptied: %v", m.count)
	}

	// The cap evicts the oldest; a consumed copy expiring does not take a
	// live one with it.
	m.Remember("ch", []byte("a"), now)
	m.Consume("ch", []byte("a"), now)
	m.Remember("ch", []byte("a"), now.Add(500*time.Millisecond))
	if !m.Consume("ch", []byte("a"), now.Add(1200*time.Millisecond)) {
		t.Error("live copy lost when the consumed one expired")
	}
	for i := range 5 {
		m.Remember("ch", []byte{byte(i)}, now.Add(2*time.Second))
	}
	if n := m.Len(); n != 3 {
		t.Errorf("%d entries, want the cap of 3", n)
	}
	if m.Consume("ch", []byte{0}, now.Add(2*time.Second)) {
		t.Error("evicted entry still consumed")
	}
}

// testItem is an imported event as the tests queue it.
type testItem struct {
	topic   string
	payload []byte
}

func testItemSize(it testItem) int { return len(it.topic) + len(it.payload) }

func TestTopicsOrderAndFairness(t *testing.T) {
	q := NewTopics[testItem](1000, 100, 1<<20, testItemSize, func(int) {})
	for i := range 100 {
		for _, topic := range []string{"a", "b", "c"} {
			if !q.Push(topic, testItem{topic: topic, payload: []byte{byte(i)}}) {
				t.Fatal("push refused")
			}
		}
	}
	if q.Push("a", testItem{topic: "a"}) {
		t.Error("push over the per-topic cap accepted")
	}
	var mu sync.Mutex
	got := map[string][]byte{}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.Work(func(it *testItem) {
				mu.Lock()
				got[it.topic] = append(got[it.topic], it.payload[0])
				mu.Unlock()
			})
		}()
	}
	q.Close()
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the workers did not return after close")
	}
	for _, topic := range []string{"a", "b", "c"} {
		if len(got[topic]) != 100 {
			t.Fatalf("%s: %d events", topic, len(got[topic]))
		}
		for i, v := range got[topic] {
			if int(v) != i {
				t.Fatalf("%s: out of order at %d", topic, i)
			}
		}
	}
	if n, b := q.Depth(); n != 0 || b != 0 {
		t.Errorf("depth %d, %d bytes", n, b)
	}
}

// TestTopicsBytes fills the queue with big events: the byte cap refuses
// what the counts would still take, and what is delivered makes room
// again.
func TestTopicsBytes(t *testing.T) {
	q := NewTopics[testItem](1000, 1000, 10_000, testItemSize, func(int) {})
	big := make([]byte, 2999) // 3000 bytes with the topic
	for i := range 3 {
		if !q.Push("t", testItem{topic: "t", payload: big}) {
			t.Fatalf("push %d refused", i)
		}
	}
	if q.Push("u", testItem{topic: "u", payload: big}) {
		t.Fatal("push over the byte cap accepted")
	}
	if !q.Push("u", testItem{topic: "u", payload: big[:999]}) {
		t.Fatal("a push that fits refused")
	}
	if n, b := q.Depth(); n != 4 || b != 10_000 {
		t.Fatalf("depth %d, %d bytes; want 4, 10000", n, b)
	}
	q.Close()
	q.Work(func(*testItem) {})
	if n, b := q.Depth(); n != 0 || b != 0 {
		t.Fatalf("after delivery: depth %d, %d bytes", n, b)
	}
}

func TestTopicsAbort(t *testing.T) {
	var dropped int
	q := NewTopics[testItem](1000, 1000, 1<<20, testItemSize, func(n int) { dropped += n })
	for i := range 10 {
		q.Push("t", testItem{topic: "t", payload: []byte{byte(i)}})
	}
	q.Abort()
	delivered := 0
	q.Work(func(*testItem) { delivered++ })
	if n, b := q.Depth(); delivered != 0 || dropped != 10 || n != 0 || b != 0 {
		t.Errorf("delivered %d, dropped %d, depth %d (%d bytes)", delivered, dropped, n, b)
	}
}

// TestFIFO pushes and pops across chunk boundaries, in bursts and
// interleaved, against a slice as the reference: one fifo alone, and two
// fifos sharing a chunk pool (which must hold no chunk once empty).
func TestFIFO(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fifos int
		pool  *chunkPool[int]
	}{
		{"alone", 1, nil},
		{"pooled", 2, &chunkPool[int]{max: 64}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			qs := make([]fifo[int], tc.fifos)
			refs := make([][]int, tc.fifos)
			for i := range qs {
				qs[i].pool = tc.pool
			}
			next := 0
			for round, burst := range []int{1, chunkSize - 1, chunkSize, chunkSize + 1, 3*chunkSize + 7, 0, 5} {
				for k := range qs {
					q, ref := &qs[k], &refs[k]
					for range burst {
						q.push(next)
						*ref = append(*ref, next)
						next++
					}
				}
				// Pop about half of each, then check the fronts.
				for k := range qs {
					q, ref := &qs[k], &refs[k]
					for range (len(*ref) + 1) / 2 {
						if got := q.pop(); got != (*ref)[0] {
							t.Fatalf("round %d, fifo %d: popped %d, want %d", round, k, got, (*ref)[0])
						}
						*ref = (*ref)[1:]
					}
					if q.len() != len(*ref) {
						t.Fatalf("round %d, fifo %d: len %d, want %d", round, k, q.len(), len(*ref))
					}
					if len(*ref) > 0 && *q.front() != (*ref)[0] {
						t.Fatalf("round %d, fifo %d: front %d, want %d", round, k, *q.front(), (*ref)[0])
					}
				}
			}
			for k := range qs {
				q, ref := &qs[k], &refs[k]
				for len(*ref) > 0 {
					if got := q.pop(); got != (*ref)[0] {
						t.Fatalf("draining fifo %d: popped %d, want %d", k, got, (*ref)[0])
					}
					*ref = (*ref)[1:]
				}
				if q.len() != 0 {
					t.Fatalf("fifo %d: len %d after draining", k, q.len())
				}
				if tc.pool != nil && (q.head != nil || q.tail != nil || q.spare != nil) {
					t.Fatalf("fifo %d holds a chunk once empty", k)
				}
				q.push(-1)
				if q.pop() != -1 || q.len() != 0 {
					t.Fatalf("fifo %d: reuse after draining", k)
				}
			}
			if p := tc.pool; p != nil {
				if len(p.free[0]) == 0 {
					t.Fatal("no chunk in the pool")
				}
				for k, free := range p.free {
					if len(free) > p.max>>(2*k) {
						t.Fatalf("%d chunks of class %d in the pool, want at most %d", len(free), k, p.max>>(2*k))
					}
					for _, c := range free {
						if c.next != nil || len(c.items) != minChunk<<k || slices.ContainsFunc(c.items, func(v int) bool { return v != 0 }) {
							t.Fatalf("a pooled chunk of class %d is not an empty one of %d items: %v", k, minChunk<<k, c.items)
						}
					}
				}
			}
		})
	}
}

// TestOutboxCopiesLent checks that Push copies a lent payload, small ones
// into a shared chunk without overlapping, large ones alone, so that the
// publisher may reuse its buffer as soon as Push returns.
func TestOutboxCopiesLent(t *testing.T) {
	o := NewOutbox(1<<20, 1<<30, false)
	buf := make([]byte, recChunkSize)
	var want [][]byte
	for i, n := range []int{0, 1, 64, 300, bigPayload, bigPayload + 1, recChunkSize / 2, 64, 64} {
		for k := range buf[:n] {
			buf[k] = byte(i + k)
		}
		if _, ok := o.Push(Export{Channel: "c", Payload: buf[:n], Lent: true}); !ok {
			t.Fatal("push refused")
		}
		want = append(want, append([]byte(nil), buf[:n]...))
		clear(buf) // the publisher reuses its buffer
	}
	batch, _ := o.Take(nil, len(want), 0)
	for i, it := range batch {
		if it.Lent || !bytes.Equal(it.Payload, want[i]) {
			t.Errorf("export %d: lent %v, %d bytes, want a copy of %d", i, it.Lent, len(it.Payload), len(want[i]))
		}
		if len(it.Payload) <= bigPayload && cap(it.Payload) != len(it.Payload) {
			t.Errorf("export %d: capacity %d beyond its %d bytes: appending would overwrite the next", i, cap(it.Payload), len(it.Payload))
		}
	}
}

// TestTopicsPushRun queues runs against each bound: the longest prefix
// that fits is queued, and a run refused whole leaves no topic queue
// behind.
func TestTopicsPushRun(t *testing.T) {
	run := func(topic string, n, size int) []testItem {
		items := make([]testItem, n)
		for i := range items {
			items[i] = testItem{topic: topic, payload: append(make([]byte, size-len(topic)-1), byte(i))}
		}
		return items
	}
	for _, c := range []struct {
		name                         string
		maxTotal, maxTopic, maxBytes int
		before                       []testItem // queued first, on topic "a"
		run                          []testItem
		want                         int
	}{
		{"all fit", 100, 100, 1 << 20, nil, run("b", 10, 10), 10},
		{"total", 5, 100, 1 << 20, run("a", 2, 10), run("b", 10, 10), 3},
		{"total full", 5, 100, 1 << 20, run("a", 5, 10), run("b", 10, 10), 0},
		{"topic", 100, 4, 1 << 20, nil, run("b", 10, 10), 4},
		{"topic full", 100, 2, 1 << 20, run("a", 2, 10), run("a", 10, 10), 0},
		{"bytes", 100, 100, 95, run("a", 2, 10), run("b", 10, 10), 7},
		{"bytes full", 100, 100, 25, run("a", 2, 10), run("b", 10, 10), 0},
		{"empty run", 100, 100, 1 << 20, nil, nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := NewTopics[testItem](c.maxTotal, c.maxTopic, c.maxBytes, testItemSize, func(int) {})
			if n := q.PushRun("a", c.before); n != len(c.before) {
				t.Fatalf("setup: %d of %d queued", n, len(c.before))
			}
			topic := "b"
			if len(c.run) > 0 {
				topic = c.run[0].topic
			}
			if got := q.PushRun(topic, c.run); got != c.want {
				t.Fatalf("PushRun queued %d, want %d", got, c.want)
			}
			q.mu.Lock()
			_, has := q.topics["b"]
			q.mu.Unlock()
			if has != (topic == "b" && c.want > 0) {
				t.Fatalf("topic queue of b: %v, with %d queued", has, c.want)
			}
			q.Close()
			var got []testItem
			q.Work(func(it *testItem) { got = append(got, *it) })
			want := append(append([]testItem(nil), c.before...), c.run[:c.want]...)
			if len(got) != len(want) {
				t.Fatalf("delivered %d, want %d", len(got), len(want))
			}
			for i := range got {
				if got[i].topic != want[i].topic || !bytes.Equal(got[i].payload, want[i].payload) {
					t.Fatalf("event %d: %s %v, want %s %v", i, got[i].topic, got[i].payload, want[i].topic, want[i].payload)
				}
			}
		})
	}
}
