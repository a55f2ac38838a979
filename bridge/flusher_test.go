package bridge

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/busline/bus/bridge/internal/queue"

	"github.com/busline/bus/bridge/internal/wire"
)

// TestFlusherLayout checks the messages the flusher makes of random
// batches (group, then build), decoding them as a receiver would: every
// export is in exactly one message, on its channel, with its sequence
// number, time and payload; each channel's exports keep their order; raw
// and echo-remembered exports keep their place among all others and go
// alone; a message of several events fits the coalescing limit; and
// nothing is coalesced when coalescing is off.
func TestFlusherLayout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		coalesce int
		key      []byte
		channels int
		rawEvery int // every rawEvery-th export is raw (0: none)
	}{
		{"one channel", 64 << 10, nil, 1, 0},
		{"few channels", 64 << 10, nil, 3, 0},
		{"many channels", 64 << 10, nil, 50, 0},
		{"signed", 64 << 10, []byte("k"), 4, 0},
		{"small limit", 300, nil, 3, 0},
		{"raw in between", 64 << 10, nil, 4, 5},
		{"off", -1, nil, 3, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			br := &Bridge{id: "inst", key: tc.key}
			br.echo.Store(queue.NewEcho(time.Minute, 1<<16))
			br.cfg.CoalesceBytes = tc.coalesce
			br.cfg.MaxMessageBytes = 1 << 20
			msgs, exports := 0, 0
			defer func() {
				// With a few channels and nothing in the way, most
				// exports share a message.
				if tc.coalesce > 1000 && tc.channels <= 4 && tc.rawEvery == 0 && msgs*4 > exports {
					t.Errorf("%d exports in %d messages: too few coalesced", exports, msgs)
				}
			}()
			for round := range 50 {
				f := &flusher{br: br}
				seqs := map[string]uint64{}
				n := 1 + rng.IntN(600)
				for i := range n {
					ch := fmt.Sprintf("app:t%d", rng.IntN(tc.channels))
					it := queue.Export{Channel: ch, Payload: fmt.Appendf(nil, "%d-%d", round, i), At: int64(i + 1)}
					switch {
					case tc.rawEvery > 0 && i%tc.rawEvery == 0:
						it.Raw = true
					case rng.IntN(50) == 0:
						it.Echo = true // enveloped, but its echo must be recognisable
						fallthrough
					default:
						seqs[ch]++
						if rng.IntN(30) == 0 {
							seqs[ch]++ // one dropped or expired before sending
						}
						it.Seq = seqs[ch]
					}
					if !it.Raw && rng.IntN(10) == 0 {
						it.Headers = map[string]string{"h": "v"}
					}
					f.batch = append(f.batch, it)
				}
				for i := range f.batch {
					f.pending = append(f.pending, i)
				}
				if tc.coalesce > 0 {
					f.group()
				}
				f.build(true)
				checkLayout(t, f, tc.coalesce, tc.key)
				msgs, exports = msgs+len(f.msgs), exports+len(f.batch)
			}
		})
	}
}

// checkLayout decodes the messages of f and checks them against f.batch.
func checkLayout(t *testing.T, f *flusher, coalesce int, key []byte) {
	t.Helper()
	if len(f.msgs) != len(f.runs) {
		t.Fatalf("%d messages for %d runs", len(f.msgs), len(f.runs))
	}
	var order []int // batch indexes in sending order
	for k, r := range f.runs {
		msg := f.msgs[k]
		first := &f.batch[f.pending[r.start]]
		var idx []int
		for _, i := range f.pending[r.start : r.start+r.n] {
			if f.batch[i].Channel != first.Channel {
				t.Fatalf("message %d mixes channels %q and %q", k, first.Channel, f.batch[i].Channel)
			}
			idx = append(idx, i)
		}
		order = append(order, idx...)
		if first.Raw {
			if r.n != 1 || string(msg) != string(first.Payload) {
				t.Fatalf("raw message %d: %d exports, %q", k, r.n, msg)
			}
			continue
		}
		if r.n > 1 {
			if first.Echo || coalesce <= 0 || len(msg) > coalesce {
				t.Fatalf("message %d coalesces %d exports: echo %v, coalesce %d, %d bytes", k, r.n, first.Echo, coalesce, len(msg))
			}
		}
		got := 0
		_, err := wire.DecodeMessage(first.Channel, msg, key, 0, func(i int, env wire.Envelope) {
			it := &f.batch[idx[i]]
			if env.Source != "inst" || env.Seq != it.Seq || env.Time != it.At || string(env.Payload) != string(it.Payload) ||
				len(env.Headers) != len(it.Headers) {
				t.Fatalf("message %d event %d: %+v, want %+v", k, i, env, *it)
			}
			got++
		})
		if err != nil || got != r.n {
			t.Fatalf("message %d: %d of %d events, %v", k, got, r.n, err)
		}
	}
	// Every export once.
	sorted := slices.Sorted(slices.Values(order))
	for i, v := range sorted {
		if v != i {
			t.Fatalf("exports sent: %v", sorted)
		}
	}
	if len(sorted) != len(f.batch) {
		t.Fatalf("%d of %d exports sent", len(sorted), len(f.batch))
	}
	// Order per channel; raw and echo exports in their place.
	last := map[string]int{}
	for pos, i := range order {
		it := &f.batch[i]
		if p, ok := last[it.Channel]; ok && p > i {
			t.Fatalf("%s: export %d sent after %d", it.Channel, i, p)
		}
		last[it.Channel] = i
		if it.Raw || it.Echo {
			for _, j := range order[:pos] {
				if j > i {
					t.Fatalf("export %d sent before the raw or echo export %d", j, i)
				}
			}
			for _, j := range order[pos+1:] {
				if j < i {
					t.Fatalf("export %d sent after the raw or echo export %d", j, i)
				}
			}
		}
	}
	if coalesce <= 0 && !slices.IsSorted(order) {
		t.Fatalf("without coalescing the outbox order changed: %v", order)
	}
}

// TestFlusherShrinks checks that the flusher lets go of the memory a burst
// grew once batches are small again, and of every message it built, also
// when a retry built fewer than the first attempt.
func TestFlusherShrinks(t *testing.T) {
	br := &Bridge{id: "inst"}
	br.cfg.CoalesceBytes = -1
	br.cfg.BatchSize = 16
	f := &flusher{br: br}
	fill := func(n, size int) {
		f.batch = f.batch[:0]
		for i := range n {
			f.batch = append(f.batch, queue.Export{Channel: "c", Payload: make([]byte, size), Seq: uint64(i + 1)})
		}
		f.pending = f.pending[:0]
		for i := range f.batch {
			f.pending = append(f.pending, i)
		}
		f.build(false)
	}
	fill(4096, 1024) // a burst: 4 MiB of envelopes
	f.shrink()
	if cap(f.arena) < 4<<20 || cap(f.batch) < 4096 {
		t.Fatalf("shrank while in use: arena %d, batch %d", cap(f.arena), cap(f.batch))
	}
	// A retry of the last 88 exports only, then the batch is done.
	f.pending = f.pending[len(f.pending)-88:]
	f.build(false)
	f.done()
	if f.arena != nil {
		t.Fatalf("kept an arena of %d bytes for a retry of 88 exports", cap(f.arena))
	}
	for i, m := range f.msgs[:cap(f.msgs)] {
		if m != nil {
			t.Fatalf("message %d of an earlier attempt still referenced after done", i)
		}
	}
	fill(10, 100)
	f.done()
	if cap(f.arena) > keptArena || cap(f.batch) > 4*br.cfg.BatchSize {
		t.Fatalf("kept arena %d bytes, batch %d exports after a small batch", cap(f.arena), cap(f.batch))
	}
}

// TestFlusherTakeOverflow checks that a huge BatchSize does not overflow
// what a coalescing flusher takes from the outbox at once.
func TestFlusherTakeOverflow(t *testing.T) {
	for _, batch := range []int{1, 512, math.MaxInt / coalesceWindow, math.MaxInt/coalesceWindow + 1, math.MaxInt} {
		br := &Bridge{}
		br.cfg.BatchSize = batch
		br.cfg.CoalesceBytes = 1
		if got := br.flushTake(); got < batch {
			t.Errorf("BatchSize %d: takes %d", batch, got)
		}
	}
}

// TestFlusherArenaGrowsOnce checks that build makes the arena of a batch
// in one allocation, sized before the envelopes are laid out, rather than
// growing it envelope by envelope; that a later batch it holds reuses it;
// and that a larger one replaces it once, with room to spare.
func TestFlusherArenaGrowsOnce(t *testing.T) {
	for _, tc := range []struct {
		name     string
		coalesce int
		key      []byte
	}{
		{"coalesced", 64 << 10, nil},
		{"coalesced signed", 64 << 10, []byte("k")},
		{"uncoalesced", -1, nil},
		{"uncoalesced signed", -1, []byte("k")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := &Bridge{id: "inst", epoch: 7, key: tc.key}
			br.cfg.CoalesceBytes = tc.coalesce
			br.cfg.MaxMessageBytes = 1 << 20
			f := &flusher{br: br}
			fill := func(n, size int) {
				f.batch, f.pending = f.batch[:0], f.pending[:0]
				for i := range n {
					it := queue.Export{Channel: fmt.Sprintf("app:t%d", i%5), Payload: make([]byte, 1+(i*37)%size), Seq: uint64(i/5 + 1), At: int64(i)}
					if i%7 == 0 {
						it.Headers = map[string]string{"h": "v"}
					}
					f.batch = append(f.batch, it)
					f.pending = append(f.pending, i)
				}
				if tc.coalesce > 0 {
					f.group()
				}
			}
			fill(2000, 2000)
			f.build(false)
			checkLayout(t, f, tc.coalesce, tc.key)
			if !raceEnabled && tc.key == nil {
				// Everything but the arena has grown: building again
				// from no arena makes it in one allocation. (Not
				// signed: the collections the large arenas cause empty
				// wire's pool of MAC states now and then.)
				allocs := testing.AllocsPerRun(5, func() {
					f.arena = nil
					f.build(false)
				})
				if allocs != 1 {
					t.Errorf("%.0f allocations to lay out a batch, want 1 (the arena)", allocs)
				}
			}
			if used, c := len(f.arena), cap(f.arena); c < used || c > used+used/4+used/8 {
				t.Errorf("arena of %d bytes for %d used", c, used)
			}
			// A smaller batch reuses it; a larger one replaces it once.
			arena := unsafe.SliceData(f.arena)
			fill(500, 2000)
			f.build(false)
			checkLayout(t, f, tc.coalesce, tc.key)
			if unsafe.SliceData(f.arena) != arena {
				t.Error("a smaller batch made a new arena")
			}
			fill(4000, 2000)
			f.build(false)
			checkLayout(t, f, tc.coalesce, tc.key)
			if used := len(f.arena); cap(f.arena) < used+used/4-used/16 {
				t.Errorf("a larger batch made an arena of %d bytes for %d: no room to spare", cap(f.arena), used)
			}
		})
	}
}
