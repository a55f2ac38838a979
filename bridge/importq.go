package bridge

import (
	"sync"
	"sync/atomic"

	bus "github.com/busline/bus"
)

// importItem is one imported event waiting to be published locally.
type importItem struct {
	topic   string
	route   *route
	payload []byte
	meta    *bus.Meta
}

// importBatch is the most events a worker delivers from one topic before it
// lets other topics go first.
const importBatch = 64

// importQueue hands imported events from the read loop to the workers that
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
type importQueue struct {
	maxTotal, maxTopic int

	mu     sync.Mutex // protects the fields below
	cond   sync.Cond  // signalled when ready gains a topic or closed is set
	topics map[string]*topicQueue
	ready  []*topicQueue // topics with events and no worker, oldest first
	rhead  int
	total  int
	idle   int  // topics kept in topics with no events, at most maxIdleTopics
	closed bool // no more pushes; workers exit once everything is delivered
	onDrop func(n int)
	chunks chunkPool[importItem] // shared by the topics' fifos

	aborted atomic.Bool // workers drop what is left and exit
}

type topicQueue struct {
	topic string
	items fifo[importItem]
	busy  bool // a worker is delivering its events
	ready bool // it is in the ready list
	idle  bool // it has no events and is counted in importQueue.idle
}

// maxIdleTopics is how many topics without events an importQueue keeps:
// dropping a topic's queue the moment it empties made a steady stream pay
// a new queue for every batch. An idle topic holds no chunk of its fifo
// (they go back to the shared pool as soon as they are empty), so one
// costs about a hundred bytes.
const maxIdleTopics = 4096

// maxFreeChunks is how many empty fifo chunks an importQueue keeps for its
// topics: enough for as many topics with a few events waiting at once
// (about 450 bytes each).
const maxFreeChunks = 1024

func newImportQueue(maxTotal, maxTopic int, onDrop func(int)) *importQueue {
	q := &importQueue{maxTotal: maxTotal, maxTopic: maxTopic, topics: map[string]*topicQueue{}, onDrop: onDrop}
	q.cond.L = &q.mu
	q.chunks.max = maxFreeChunks
	return q
}

// push queues it and reports whether it fit.
func (q *importQueue) push(it importItem) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.total >= q.maxTotal {
		return false
	}
	tq := q.topics[it.topic]
	if tq == nil {
		tq = &topicQueue{topic: it.topic}
		tq.items.pool = &q.chunks
		q.topics[it.topic] = tq
	} else if tq.idle {
		tq.idle = false
		q.idle--
	}
	if tq.items.len() >= q.maxTopic {
		return false
	}
	tq.items.push(it)
	q.total++
	if !tq.busy && !tq.ready {
		q.readyLocked(tq)
	}
	return true
}

func (q *importQueue) readyLocked(tq *topicQueue) {
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

// work delivers events until the queue is closed and empty, or aborted.
func (q *importQueue) work(deliver func(*importItem)) {
	var batch []importItem
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
		for tq.items.len() > 0 && len(batch) < importBatch {
			batch = append(batch, tq.items.pop())
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

// close stops pushes; the workers deliver what is queued, then exit.
func (q *importQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// abort drops what is queued (reporting it to onDrop) and makes the
// workers exit after the event each is delivering.
func (q *importQueue) abort() {
	q.mu.Lock()
	q.closed = true
	q.aborted.Store(true)
	n := 0
	for _, tq := range q.topics {
		n += tq.items.len()
		if !tq.busy {
			delete(q.topics, tq.topic)
		}
		tq.items = fifo[importItem]{pool: &q.chunks}
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

// depth returns the number of events waiting, those being delivered
// included.
func (q *importQueue) depth() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.total
}
