package seq

import (
	"fmt"
	"testing"

	"github.com/busline/bus/bridge/internal/wire"
)

func TestTrackerCheck(t *testing.T) {
	var tr Tracker
	for i, step := range []struct {
		source, channel string
		seq             uint64
		time            int64
		wantNew         bool
		wantMissing     uint64
	}{
		{"a", "c", 1, 10, true, 0},
		{"a", "c", 2, 11, true, 0},
		{"a", "c", 2, 11, false, 0}, // a duplicate
		{"a", "c", 1, 5, false, 0},  // an old copy of the first
		{"a", "c", 5, 12, true, 3},  // 3 and 4 missing
		{"a", "c", 4, 12, false, 0}, // late: taken for a duplicate
		{"a", "d", 7, 12, true, 0},  // another channel starts anywhere
		{"b", "c", 9, 12, true, 0},  // another source too
		{"a", "c", 1, 20, true, 0},  // a restart: 1, sent later
		{"a", "c", 2, 21, true, 0},  // numbered from there
		{"a", "c", 0, 0, true, 0},   // unnumbered
		{"a", "c", 0, 0, true, 0},   // unnumbered, every time
		{"a", "c", 3, 22, true, 0},  // unnumbered events change nothing
		{"a", "c", 1<<64 - 1, 23, true, 4},
	} {
		isNew, missing := tr.Check(step.source, step.channel, step.seq, step.time)
		if isNew != step.wantNew || missing != step.wantMissing {
			t.Errorf("step %d (%s %s %d): new %v, missing from %d; want %v, %d",
				i, step.source, step.channel, step.seq, isNew, missing, step.wantNew, step.wantMissing)
		}
	}
	if tr.Len() != 3 {
		t.Errorf("Len %d, want 3", tr.Len())
	}
}

func TestTrackerBounded(t *testing.T) {
	var tr Tracker
	for i := range wire.MaxSeqChannels {
		tr.Check("s", fmt.Sprint(i), 1, 1)
	}
	if tr.Len() != wire.MaxSeqChannels {
		t.Fatalf("Len %d", tr.Len())
	}
	// A new sequence past the bound starts over.
	tr.Check("s", "new", 1, 1)
	if tr.Len() != 1 {
		t.Fatalf("Len %d after the bound, want 1", tr.Len())
	}
	// Forgotten: channel 0 starts anywhere again.
	if isNew, missing := tr.Check("s", "0", 5, 2); !isNew || missing != 0 {
		t.Errorf("forgotten sequence: new %v, missing %d", isNew, missing)
	}
}

// TestTrackerMove checks the hand-over of sequences between shard loops
// through an archive: what a loop moves out, the next loop of the same
// channels resumes, so a duplicate or a gap across the hand-over is seen.
func TestTrackerMove(t *testing.T) {
	var loop1, archive, loop2 Tracker
	loop1.Check("s", "x", 4, 1)
	loop1.Check("s", "y", 8, 1)
	loop1.MoveTo(&archive)
	if loop1.Len() != 0 || archive.Len() != 2 {
		t.Fatalf("after MoveTo: loop %d, archive %d", loop1.Len(), archive.Len())
	}
	archive.MoveChannels(&loop2, func(ch string) bool { return ch == "x" })
	if archive.Len() != 1 || loop2.Len() != 1 {
		t.Fatalf("after MoveChannels: archive %d, loop %d", archive.Len(), loop2.Len())
	}
	if isNew, _ := loop2.Check("s", "x", 4, 1); isNew {
		t.Error("a duplicate across the hand-over taken for new")
	}
	if _, missing := loop2.Check("s", "x", 7, 2); missing != 5 {
		t.Errorf("a gap across the hand-over: missing from %d, want 5", missing)
	}
	// y stayed in the archive.
	if isNew, _ := archive.Check("s", "y", 8, 1); isNew {
		t.Error("y lost from the archive")
	}
	// The archive stays bounded.
	var big Tracker
	for i := range wire.MaxSeqChannels {
		big.Check("s", fmt.Sprint(i), 1, 1)
	}
	big.MoveTo(&archive)
	if archive.Len() != wire.MaxSeqChannels {
		t.Errorf("archive %d, want %d (the old one forgotten)", archive.Len(), wire.MaxSeqChannels)
	}
}
