package queue

import (
	"hash/maphash"
	"sync"
	"time"
)

// Echo remembers the raw messages this bridge sent on channels it
// also imports, so that their echo can be dropped: a raw message carries
// no source ID. It is a FIFO of (channel, payload) hashes with an expiry
// and a cap; a message that arrives and matches a remembered one consumes
// the oldest copy.
//
// A foreign message identical to one of ours, arriving before our echo,
// is taken for the echo and dropped; our echo is then delivered in its
// place. Counts stay right; only the two identical messages swap.
//
// All methods are safe for concurrent use.
type Echo struct {
	seed   maphash.Seed
	window time.Duration
	max    int

	mu    sync.Mutex // protects the fields below
	fifo  []echoEntry
	head  int // index of the oldest entry in fifo, which is a ring
	n     int
	count map[uint64]*echoCount
}

type echoEntry struct {
	key     uint64
	expires int64 // unix nanoseconds
}

// echoCount tracks the copies of one key: live ones can still consume an
// echo, consumed ones are still in the FIFO. Since both consumption and
// expiry take the oldest copy first, an expiring copy was consumed exactly
// when consumed > 0.
type echoCount struct {
	live, consumed int
}

// NewEcho returns an echo memory that keeps at most max messages, each for
// window.
func NewEcho(window time.Duration, max int) *Echo {
	return &Echo{
		seed:   maphash.MakeSeed(),
		window: window,
		max:    max,
		count:  map[uint64]*echoCount{},
	}
}

func (m *Echo) key(channel string, payload []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(m.seed)
	h.WriteString(channel)
	h.WriteByte(0)
	h.Write(payload)
	return h.Sum64()
}

// Remember records a message about to be sent on channel.
func (m *Echo) Remember(channel string, payload []byte, now time.Time) {
	k := m.key(channel, payload)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now.UnixNano())
	if m.n == m.max {
		m.popLocked()
	}
	if m.n == len(m.fifo) {
		m.growLocked()
	}
	m.fifo[(m.head+m.n)%len(m.fifo)] = echoEntry{key: k, expires: now.Add(m.window).UnixNano()}
	m.n++
	c := m.count[k]
	if c == nil {
		c = &echoCount{}
		m.count[k] = c
	}
	c.live++
}

// Consume reports whether a message received on channel is the echo of
// one we sent, and forgets that one if so.
func (m *Echo) Consume(channel string, payload []byte, now time.Time) bool {
	k := m.key(channel, payload)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireLocked(now.UnixNano())
	c := m.count[k]
	if c == nil || c.live == 0 {
		return false
	}
	c.live--
	c.consumed++
	return true
}

func (m *Echo) expireLocked(now int64) {
	for m.n > 0 && m.fifo[m.head].expires <= now {
		m.popLocked()
	}
}

func (m *Echo) popLocked() {
	e := m.fifo[m.head]
	m.head = (m.head + 1) % len(m.fifo)
	m.n--
	c := m.count[e.key]
	if c.consumed > 0 {
		c.consumed--
	} else {
		c.live--
	}
	if c.live == 0 && c.consumed == 0 {
		delete(m.count, e.key)
	}
}

func (m *Echo) growLocked() {
	size := 2 * len(m.fifo)
	if size == 0 {
		size = 64
	}
	if size > m.max {
		size = m.max
	}
	fifo := make([]echoEntry, size)
	for i := 0; i < m.n; i++ {
		fifo[i] = m.fifo[(m.head+i)%len(m.fifo)]
	}
	m.fifo, m.head = fifo, 0
}

// Len returns the number of remembered messages.
func (m *Echo) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}
