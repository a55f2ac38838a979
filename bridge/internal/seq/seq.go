// Package seq tracks the sequence numbers of imported envelopes: per
// source and channel, it tells a new event from a duplicate and finds the
// gaps.
package seq

import "github.com/busline/bus/bridge/internal/wire"

// A Tracker remembers the last event seen of each sequence (one source on
// one channel), at most wire.MaxSeqChannels of them: past that, it forgets
// them all and starts over. Its zero value is ready to use. It is not safe
// for concurrent use: each read loop owns one.
type Tracker struct {
	last map[key]state
}

type key struct{ source, channel string }

// state is the last event seen of a sequence.
type state struct {
	seq  uint64
	time int64
}

// Check checks seq, the sequence number of source's event on channel sent
// at time t (Unix nanoseconds), against the last one seen, and records it.
// It reports whether the event is new, and if events are missing before
// it, the first missing number (0 if none): events missing..seq-1 never
// arrived. A number seen already is a duplicate (not new), except a 1 sent
// later than the last event: the source started numbering again (it
// restarted with the same ID, or forgot its counters). Zero means the
// sender does not number its events: always new.
func (tr *Tracker) Check(source, channel string, seq uint64, t int64) (isNew bool, missing uint64) {
	if seq == 0 {
		return true, 0
	}
	if tr.last == nil {
		tr.last = map[key]state{}
	}
	k := key{source, channel}
	last, known := tr.last[k]
	switch {
	case !known:
		if len(tr.last) >= wire.MaxSeqChannels {
			clear(tr.last) // bounded memory; tracking starts over
		}
	case seq == last.seq+1:
	case seq > last.seq+1:
		missing = last.seq + 1
	case seq == 1 && t > last.time:
	default:
		return false, 0
	}
	tr.last[k] = state{seq, t}
	return true, missing
}

// Len returns the number of sequences tracked.
func (tr *Tracker) Len() int { return len(tr.last) }

// MoveTo moves every sequence of tr into dst, leaving tr empty. If dst
// would then track more than wire.MaxSeqChannels sequences, dst forgets
// what it had first. Shard loops use it to keep the sequences of their
// channels in an archive when they stop, for the loop that takes the
// channels over.
func (tr *Tracker) MoveTo(dst *Tracker) {
	if len(tr.last) == 0 {
		return
	}
	if dst.last == nil || len(dst.last)+len(tr.last) > wire.MaxSeqChannels {
		dst.last = make(map[key]state, len(tr.last))
	}
	for k, v := range tr.last {
		dst.last[k] = v
	}
	clear(tr.last)
}

// MoveChannels moves the sequences on the channels for which mine returns
// true from tr into dst, keeping the others in tr.
func (tr *Tracker) MoveChannels(dst *Tracker, mine func(channel string) bool) {
	for k, v := range tr.last {
		if mine(k.channel) {
			if dst.last == nil {
				dst.last = map[key]state{}
			}
			dst.last[k] = v
			delete(tr.last, k)
		}
	}
}
