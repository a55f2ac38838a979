package seq

import (
	"fmt"
	"testing"

	"github.com/busline/bus/bridge/internal/lru"
)

func TestTrackerCheck(t *testing.T) {
	var tr Tracker
	for i, step := range []struct {
		source, channel string
		epoch, seq      uint64
		time            int64
		want            Verdict
		wantMissing     uint64
	}{
		// A sender without epochs (0).
		{"a", "c", 0, 1, 10, New, 0},
		{"a", "c", 0, 2, 11, New, 0},
		{"a", "c", 0, 2, 11, Duplicate, 0}, // a duplicate
		{"a", "c", 0, 1, 5, Duplicate, 0},  // an old copy of the first
		{"a", "c", 0, 5, 12, New, 3},       // 3 and 4 missing
		{"a", "c", 0, 4, 12, Duplicate, 0}, // late: taken for a duplicate
		{"a", "c", 0, 3, 13, Duplicate, 0}, // later, but not a 1: no epochs, no restart
		{"a", "d", 0, 7, 12, New, 0},       // another channel starts anywhere
		{"b", "c", 0, 9, 12, New, 0},       // another source too
		{"a", "c", 0, 1, 20, New, 0},       // a restart: 1, sent later
		{"a", "c", 0, 2, 21, New, 0},       // numbered from there
		{"a", "c", 0, 0, 0, New, 0},        // unnumbered
		{"a", "c", 0, 0, 0, New, 0},        // unnumbered, every time
		{"a", "c", 0, 3, 22, New, 0},       // unnumbered events change nothing
		{"a", "c", 0, 1<<64 - 1, 23, New, 4},

		// Source "e" with epochs.
		{"e", "c", 7, 1, 100, New, 0},
		{"e", "c", 7, 2, 101, New, 0},
		{"e", "d", 7, 5, 102, New, 0},
		{"e", "c", 7, 2, 101, Duplicate, 0},
		{"e", "c", 7, 1, 103, New, 0},       // forgotten by the sender, numbered again
		{"e", "d", 7, 3, 104, New, 1},       // the same, its first two lost
		{"e", "d", 7, 3, 104, Duplicate, 0}, // and a copy of that
		// It restarts: a new epoch, later than everything of the old one.
		{"e", "c", 9, 1, 200, New, 0},
		{"e", "d", 9, 1, 201, New, 0},
		// A replay of the old run, on a channel seen or not.
		{"e", "c", 7, 3, 150, OldEpoch, 0},
		{"e", "x", 7, 1, 104, OldEpoch, 0},
		// A message of an unknown epoch, but older: a replay too.
		{"e", "c", 5, 9, 199, OldEpoch, 0},
		// The current run goes on, undisturbed.
		{"e", "c", 9, 2, 202, New, 0},
	} {
		v, missing := tr.Check(step.source, step.channel, step.epoch, step.seq, step.time)
		if v != step.want || missing != step.wantMissing {
			t.Errorf("step %d (%s %s epoch %d seq %d): %v, missing from %d; want %v, %d",
				i, step.source, step.channel, step.epoch, step.seq, v, missing, step.want, step.wantMissing)
		}
	}
	if tr.Len() != 5 || tr.Sources() != 3 {
		t.Errorf("Len %d, Sources %d; want 5, 3", tr.Len(), tr.Sources())
	}
}

// TestTrackerBounded tracks far more sequences than its budget holds, on
// long channel names, while one hot sequence keeps going: it stays within
// its budget, forgets the oldest sequences one at a time, and never
// forgets the hot one (no duplicate, no gap), as the wholesale reset it
// replaces did.
func TestTrackerBounded(t *testing.T) {
	const budget = 1 << 20
	tr := Tracker{Budget: budget}
	long := fmt.Sprintf("%01000d", 0)
	var hot uint64
	for i := range 20000 {
		if i%100 == 0 {
			hot++
			if v, missing := tr.Check("s", "hot", 1, hot, int64(i)); v != New || missing != 0 {
				t.Fatalf("hot sequence after %d others: %v, missing %d", i, v, missing)
			}
		}
		tr.Check("s", fmt.Sprint(long, i), 1, 1, int64(i))
		if tr.seqs.Bytes() > budget {
			t.Fatalf("%d bytes after %d sequences, budget %d", tr.seqs.Bytes(), i+1, budget)
		}
	}
	if n := tr.Len(); n > budget/(1000+lru.EntryOverhead) || n < 100 {
		t.Errorf("%d sequences tracked", n)
	}
	// Forgotten: the oldest starts anywhere again.
	if v, missing := tr.Check("s", fmt.Sprint(long, 0), 1, 5, 1<<40); v != New || missing != 0 {
		t.Errorf("forgotten sequence: %v, missing %d", v, missing)
	}
	// Sources are bounded too.
	for i := range 20000 {
		tr.Check(fmt.Sprint(long[:200], i), "c", 1, 1, 1)
	}
	if tr.sources.Bytes() > budget {
		t.Errorf("sources: %d bytes, budget %d", tr.sources.Bytes(), budget)
	}
}

// TestTrackerMove checks the hand-over of sequences between shard loops
// through an archive: what a loop moves out, the next loop of the same
// channels resumes, so a duplicate or a gap across the hand-over is seen.
func TestTrackerMove(t *testing.T) {
	var loop1, archive, loop2 Tracker
	loop1.Check("s", "x", 1, 4, 1)
	loop1.Check("s", "y", 1, 8, 1)
	loop1.MoveTo(&archive)
	if loop1.Len() != 0 || archive.Len() != 2 {
		t.Fatalf("after MoveTo: loop %d, archive %d", loop1.Len(), archive.Len())
	}
	archive.MoveChannels(&loop2, func(ch string) bool { return ch == "x" })
	if archive.Len() != 1 || loop2.Len() != 1 {
		t.Fatalf("after MoveChannels: archive %d, loop %d", archive.Len(), loop2.Len())
	}
	if v, _ := loop2.Check("s", "x", 1, 4, 1); v != Duplicate {
		t.Errorf("a duplicate across the hand-over: %v", v)
	}
	if _, missing := loop2.Check("s", "x", 1, 7, 2); missing != 5 {
		t.Errorf("a gap across the hand-over: missing from %d, want 5", missing)
	}
	// The source's epoch went along: its old run is still told apart.
	if v, _ := loop2.Check("s", "z", 0, 1, 0); v != OldEpoch {
		t.Errorf("an old epoch across the hand-over: %v", v)
	}
	// y stayed in the archive.
	if v, _ := archive.Check("s", "y", 1, 8, 1); v != Duplicate {
		t.Errorf("y lost from the archive: %v", v)
	}
}
