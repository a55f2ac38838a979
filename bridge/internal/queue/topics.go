package queue

import (
	"sync"
	"sync/atomic"
)

// importBatch is the most events a worker delivers from one topic before it
// lets other topics go first.
const importBatch = 64

// Topics hands imported events (T) from the read loops to the workers that
// publish them on the local bus. The read loop never waits: an event that
// does not fit is dropped and counted, so the socket keeps being drained
// whatever the subscribers do and Redis never disconnects us for a full
// output buffer.
//
// Events are queued per topic. A topic is handled by one worker at a time,
// which keeps its events in order, and topics with events take turns, so a
// subscriber that is slow on one topic holds up one worker, not the others.
// Hashing topics onto a fixed set of worker queues was rejected: a slow
// topic would stall every topic that hashes with it.
//
// All methods are safe for concurrent use.
type Topics[T any] struct {
	maxTotal, maxTopic, maxBytes int
	size                         func(T) int // what an event weighs in maxBytes

	mu     sync.Mutex // protects the fields below
	cond   sync.Cond  // signalled when ready gains a topic or closed is set
	topics map[string]*topicQueue[T]
	ready  []*topicQueue[T] // topics with events and no worker, oldest first
	rhead  int
	total  int
	bytes  int  // what the events queued weigh (size), those being delivered included
	idle   int  // topics kept in topics with no events, at most maxIdleTopics
	closed bool // no more pushes; workers exit once everything is delivered
	onDrop func(n int)
	chunks chunkPool[T] // shared by the topics' fifos

	aborted atomic.Bool // workers drop what is left and exit
}

type topicQueue[T any] struct {
	topic string
	items fifo[T]
	busy  bool // a worker is delivering its events
	ready bool // it is in the ready list
	idle  bool // it has no events and is counted in Topics.idle
}

// maxIdleTopics is how many topics without events a Topics keeps:
// dropping a topic's queue the moment it empties made a steady stream pay
// a new queue for every batch. An idle topic holds no chunk of its fifo
// (they go back to the shared pool as soon as they are empty), so one
// costs about a hundred bytes.
const maxIdleTopics = 4096

// maxFreeChunks is how many empty fifo chunks of the smallest size a
// Topics keeps for its topics: enough for as many topics with a few events
// waiting at once (about 450 bytes each). It keeps fewer of the larger
// sizes (see chunkPool): at most about twice their memory in all.
const maxFreeChunks = 1024

// NewTopics returns a queue of at most maxTotal events, maxTopic per
// topic, weighing at most maxBytes in all, an event weighing size(event)
// bytes (its payload and topic, say): a count alone lets a publisher of
// large messages fill memory with a full queue of them. onDrop is called
// with the number of events Abort dropped.
func NewTopics[T any](maxTotal, maxTopic, maxBytes int, size func(T) int, onDrop func(int)) *Topics[T] {
	q := &Topics[T]{
		maxTotal: maxTotal, maxTopic: maxTopic, maxBytes: maxBytes, size: size,
		topics: map[string]*topicQueue[T]{}, onDrop: onDrop,
	}
	q.cond.L = &q.mu
	q.chunks.max = maxFreeChunks
	return q
}

// Push queues it, an event of topic, and reports whether it fit: in the
// total count, the topic's count and the bytes. It never waits for the
// workers.
func (q *Topics[T]) Push(topic string, it T) bool {
	return q.PushRun(topic, []T{it}) == 1
}

// PushRun queues the longest prefix of items, events of topic in order,
// that fits (see Push), under one taking of the lock, and returns its
// length: the events of one message from Redis, which name one topic,
// are queued together. It never waits for the workers, and does not keep
// items.
func (q *Topics[T]) PushRun(topic string, items []T) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	// Checked before the topic gets a queue, which must not be left
	// empty and not idle: what stops the first event after this is the
	// topic's own bound, which means its queue has events.
	if q.closed || len(items) == 0 || q.total >= q.maxTotal || q.bytes+q.size(items[0]) > q.maxBytes {
		return 0
	}
	tq := q.topics[topic]
	if tq == nil {
		tq = &topicQueue[T]{topic: topic}
		tq.items.pool = &q.chunks
		q.topics[topic] = tq
	} else if tq.idle {
		tq.idle = false
		q.idle--
	}
	n := 0
	for _, it := range items {
		size := q.size(it)
		if q.total >= q.maxTotal || q.bytes+size > q.maxBytes || tq.items.len() >= q.maxTopic {
			break
		}
		tq.items.push(it)
		q.total++
		q.bytes += size
		n++
	}
	if n > 0 && !tq.busy && !tq.ready {
		q.readyLocked(tq)
	}
	return n
}

func (q *Topics[T]) readyLocked(tq *topicQueue[T]) {
	tq.ready = true
	if q.rhead > 0 && q.rhead >= len(q.ready)/2 {
		n := copy(q.ready, q.ready[q.rhead:])
		clear(q.ready[n:])
		q.ready = q.ready[:n]
		q.rhead = 0
	}
	q.ready = append(q.ready, tq)
	q.cond.Signal()
}

// Work delivers events, calling deliver for each in the order of its
// topic, until the queue is closed and empty, or aborted. Run it on each
// worker goroutine.
func (q *Topics[T]) Work(deliver func(*T)) {
	var batch []T
	q.mu.Lock()
	for {
		for q.rhead == len(q.ready) && !q.closed {
			q.cond.Wait()
		}
		if q.rhead == len(q.ready) || q.aborted.Load() {
			q.mu.Unlock()
			return
		}
		tq := q.ready[q.rhead]
		q.ready[q.rhead] = nil
		q.rhead++
		tq.ready = false
		tq.busy = true
		batch = batch[:0]
		size := 0
		for tq.items.len() > 0 && len(batch) < importBatch {
			batch = append(batch, tq.items.pop())
			size += q.size(batch[len(batch)-1])
		}
		q.mu.Unlock()

		for i := range batch {
			if q.aborted.Load() {
				q.onDrop(len(batch) - i)
				break
			}
			deliver(&batch[i])
		}
		clear(batch)

		q.mu.Lock()
		q.total -= len(batch)
		q.bytes -= size
		tq.busy = false
		switch {
		case tq.items.len() > 0:
			q.readyLocked(tq)
		case q.idle < maxIdleTopics:
			tq.idle = true
			q.idle++
		default:
			delete(q.topics, tq.topic)
		}
	}
}

// Close stops pushes; the workers deliver what is queued, then exit.
func (q *Topics[T]) Close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// Abort drops what is queued (reporting it to onDrop) and makes the
// workers exit after the event each is delivering.
func (q *Topics[T]) Abort() {
	q.mu.Lock()
	q.closed = true
	q.aborted.Store(true)
	n := 0
	for _, tq := range q.topics {
		n += tq.items.len()
		for tq.items.len() > 0 {
			it := tq.items.pop()
			q.bytes -= q.size(it)
		}
		if !tq.busy {
			delete(q.topics, tq.topic)
		}
		tq.items = fifo[T]{pool: &q.chunks}
	}
	q.total -= n
	q.idle = 0 // the idle topics were not busy: all deleted
	q.ready, q.rhead = nil, 0
	q.cond.Broadcast()
	q.mu.Unlock()
	if n > 0 {
		q.onDrop(n)
	}
}

// Depth returns the number of events waiting and what they weigh, those
// being delivered included.
func (q *Topics[T]) Depth() (n, bytes int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total, q.bytes
}
