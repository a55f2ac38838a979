// Package seq tracks the sequence numbers of imported envelopes: per
// source and channel, it tells a new event from a duplicate and finds the
// gaps; per source, it tells the current run of the source (its epoch)
// from an earlier one.
package seq

import (
	"cmp"

	"github.com/busline/bus/bridge/internal/lru"
	"github.com/busline/bus/bridge/internal/wire"
)

// A Tracker remembers the last event seen of each sequence (one source on
// one channel) and the epoch of each source, within a budget of bytes:
// past it, the sequences and sources least recently seen are forgotten,
// one at a time, never all at once (a forgotten sequence starts anywhere,
// as a new one does). Its zero value is ready to use, with a budget of
// wire.SeqBudget bytes for the sequences and as much for the sources. It
// is not safe for concurrent use: each read loop owns one. It must not be
// copied after first use.
type Tracker struct {
	// Budget bounds the memory of the sequences, and apart from them
	// that of the sources, in bytes; zero means wire.SeqBudget. Set it
	// before the first Check.
	Budget  int
	set     bool // the caches have their budgets
	seqs    lru.Cache[key, state]
	sources lru.Cache[string, epoch]
}

type key struct{ source, channel string }

// state is the last event seen of a sequence.
type state struct {
	epoch, seq uint64
	time       int64
}

// epoch is the current run of a source: its epoch, and the latest time of
// its events seen.
type epoch struct {
	epoch uint64
	time  int64
}

// Verdict is what Check makes of an event.
type Verdict uint8

const (
	// New is an event to deliver.
	New Verdict = iota
	// Duplicate is an event seen already.
	Duplicate
	// OldEpoch is an event of an earlier run of its source: its epoch is
	// not the source's current one, and it is not later than the
	// source's latest event. A replay.
	OldEpoch
)

func (tr *Tracker) init() {
	tr.set = true
	b := cmp.Or(tr.Budget, wire.SeqBudget)
	tr.seqs.SetBudget(b)
	tr.sources.SetBudget(b)
}

// Check checks the event seq of source's run ep (its epoch, 0 for a sender
// without epochs) on channel, sent at time t (Unix nanoseconds), against
// what it saw before, and records it. It returns whether the event is
// new, a duplicate or of an old epoch, and if events are missing before a
// new one, the first missing number (0 if none): events missing..seq-1
// never arrived.
//
// A source whose epoch changes has restarted if the event is later than
// every event seen of the epoch before: its sequences start anywhere
// again. Otherwise the event is a replay of an earlier run (OldEpoch).
// Within an epoch, a number seen already is a duplicate, unless the event
// is later than the last one of its sequence: the source forgot the
// channel (its memory is bounded too) and numbers it again. That is
// reliable because a bridge with epochs stamps the times of a channel's
// events in the order of their numbers; for a sender without epochs, only
// a 1 sent later is taken for a restart. Zero means the sender does not
// number its events: always new, once the epoch is checked.
func (tr *Tracker) Check(source, channel string, ep, seq uint64, t int64) (_ Verdict, missing uint64) {
	if !tr.set {
		tr.init()
	}
	if src, ok := tr.sources.Get(source); !ok {
		tr.sources.Put(source, epoch{ep, t}, len(source))
	} else if src.epoch != ep {
		if t <= src.time {
			return OldEpoch, 0
		}
		*src = epoch{ep, t} // restarted
	} else if t > src.time {
		src.time = t
	}
	if seq == 0 {
		return New, 0
	}
	k := key{source, channel}
	last, known := tr.seqs.Get(k)
	if !known || last.epoch != ep {
		tr.seqs.Put(k, state{ep, seq, t}, len(source)+len(channel))
		return New, 0
	}
	switch {
	case seq == last.seq+1:
	case seq > last.seq+1:
		missing = last.seq + 1
	case t > last.time && (ep != 0 || seq == 1):
		// Numbered again from 1: events before seq are missing.
		if seq > 1 {
			missing = 1
		}
	default:
		return Duplicate, 0
	}
	*last = state{ep, seq, t}
	return New, missing
}

// Len returns the number of sequences tracked.
func (tr *Tracker) Len() int { return tr.seqs.Len() }

// Sources returns the number of sources tracked.
func (tr *Tracker) Sources() int { return tr.sources.Len() }

// MoveTo moves every sequence of tr into dst, leaving tr without any, and
// copies its sources (see MoveChannels); dst keeps within its budget by forgetting what it had seen least
// recently. Shard loops use it to keep the sequences of their channels in
// an archive when they stop, for the loop that takes the channels over.
func (tr *Tracker) MoveTo(dst *Tracker) {
	tr.MoveChannels(dst, func(string) bool { return true })
}

// MoveChannels moves the sequences on the channels for which mine returns
// true from tr into dst, keeping the others in tr, and copies every
// source's epoch into dst unless dst knows a later one.
func (tr *Tracker) MoveChannels(dst *Tracker, mine func(channel string) bool) {
	if !dst.set {
		dst.init()
	}
	tr.sources.Oldest(func(s string, e epoch, size int) bool {
		if d, ok := dst.sources.Get(s); !ok || d.time < e.time {
			dst.sources.Put(s, e, size)
		}
		return true
	})
	tr.seqs.Oldest(func(k key, v state, size int) bool {
		if mine(k.channel) {
			dst.seqs.Put(k, v, size)
			tr.seqs.Delete(k)
		}
		return true
	})
}
