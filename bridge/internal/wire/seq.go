package wire

import (
	"cmp"

	"github.com/busline/bus/bridge/internal/lru"
)

// SeqBudget is the default memory budget, in bytes, of the per-channel
// sequence numbers a sender keeps (Counter) and of the sequences a
// receiver tracks (seq.Tracker): about 70,000 channels of 30 bytes. Past
// it, the least recently used channels are forgotten, one at a time: a
// sender numbers a forgotten channel from 1 again, and its receivers tell
// that from a duplicate by the event's time, which only goes up (see
// seq.Tracker.Check).
const SeqBudget = 8 << 20

// A Counter numbers a sender's envelopes: per channel, from 1, up by one.
// Its zero value is ready to use, with a budget of SeqBudget bytes. It is
// not safe for concurrent use: its owner serialises Next with the order in
// which the envelopes are sent (the outbox calls it under its lock).
type Counter struct {
	// Budget bounds the memory of the numbers, in bytes; zero means
	// SeqBudget. Set it before the first Next.
	Budget int
	seqs   lru.Cache[string, uint64]
	set    bool // seqs has its budget
}

// Next returns the sequence number of the next envelope on channel. A
// channel it no longer remembers (the least recently used are forgotten
// past Budget) is numbered from 1 again. It allocates only for a channel
// it does not remember.
func (c *Counter) Next(channel string) uint64 {
	if n, ok := c.seqs.Get(channel); ok {
		*n++
		return *n
	}
	if !c.set {
		c.set = true
		c.seqs.SetBudget(cmp.Or(c.Budget, SeqBudget))
	}
	c.seqs.Put(channel, 1, len(channel))
	return 1
}

// Len returns the number of channels remembered.
func (c *Counter) Len() int { return c.seqs.Len() }
