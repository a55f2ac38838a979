package wire

// MaxSeqChannels bounds the per-channel sequence numbers a sender keeps
// (Counter) and a receiver tracks. When a sender has numbered more
// channels, it forgets them all and numbers from 1 again: receivers take a
// 1 for a restart of the source, not a gap.
const MaxSeqChannels = 1 << 16

// A Counter numbers a sender's envelopes: per channel, from 1, up by one.
// Its zero value is ready to use. It is not safe for concurrent use: its
// owner serialises Next with the order in which the envelopes are sent
// (the outbox calls it under its lock).
type Counter struct {
	seqs map[string]uint64
}

// Next returns the sequence number of the next envelope on channel. After
// MaxSeqChannels channels, a new channel makes it forget every channel.
func (c *Counter) Next(channel string) uint64 {
	if c.seqs == nil {
		c.seqs = map[string]uint64{}
	}
	if len(c.seqs) >= MaxSeqChannels {
		if _, known := c.seqs[channel]; !known {
			clear(c.seqs)
		}
	}
	c.seqs[channel]++
	return c.seqs[channel]
}
