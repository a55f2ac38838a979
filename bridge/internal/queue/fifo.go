package queue

// The chunks of a fifo hold from minChunk to chunkSize items: each new
// chunk is as big as the queue already is, within those bounds, so that a
// short queue stays small and a long one costs one allocation per
// chunkSize items.
const (
	minChunk  = 8
	chunkSize = 128
)

// fifo is an unbounded first-in first-out queue made of chunks. Growing it
// never copies what it holds, unlike a slice or a ring that doubles: a
// queue that grows to hundreds of thousands of items during a burst (an
// outbox while Redis is slow, a topic whose subscriber is slow) costs one
// allocation per chunk and no copying.
//
// A fifo without a pool keeps one empty chunk for reuse, also when it is
// empty. A fifo with a pool (see chunkPool) takes its first chunk from the
// pool and gives chunks of minChunk items back as soon as they are empty,
// so that many fifos that are mostly empty or short, such as the import
// queues of thousands of topics, share small chunks instead of holding
// one each.
//
// The zero fifo is empty and ready; it is not safe for concurrent use.
type fifo[T any] struct {
	head, tail *chunk[T]
	hi, ti     int // next item to pop in head, next free slot in tail
	n          int
	spare      *chunk[T]     // without a pool: an empty chunk kept for reuse
	pool       *chunkPool[T] // nil: no pool
}

type chunk[T any] struct {
	items []T // minChunk to chunkSize items
	next  *chunk[T]
}

func newChunk[T any](n int) *chunk[T] { return &chunk[T]{items: make([]T, n)} }

// chunkPool keeps empty chunks of minChunk items for the fifos that share
// it, at most max.
// It is not safe for concurrent use: the fifos that share it must be
// guarded by the same lock.
type chunkPool[T any] struct {
	free []*chunk[T]
	max  int
}

func (p *chunkPool[T]) get() *chunk[T] {
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return c
	}
	return newChunk[T](minChunk)
}

// put keeps c, which must be empty (its items zero), if it has minChunk
// items and the pool is not full.
func (p *chunkPool[T]) put(c *chunk[T]) {
	c.next = nil
	if len(c.items) == minChunk && len(p.free) < p.max {
		p.free = append(p.free, c)
	}
}

func (q *fifo[T]) len() int { return q.n }

// newChunk returns an empty chunk for the next items.
func (q *fifo[T]) newChunk() *chunk[T] {
	if q.n == 0 && q.pool != nil {
		return q.pool.get()
	}
	if c := q.spare; c != nil {
		q.spare = nil
		return c
	}
	return newChunk[T](min(max(q.n, minChunk), chunkSize))
}

// release disposes of an emptied chunk.
func (q *fifo[T]) release(c *chunk[T]) {
	if q.pool != nil {
		q.pool.put(c)
		return
	}
	c.next = nil
	q.spare = c
}

func (q *fifo[T]) push(v T) {
	if q.tail == nil || q.ti == len(q.tail.items) {
		c := q.newChunk()
		if q.tail == nil {
			q.head, q.hi = c, 0
		} else {
			q.tail.next = c
		}
		q.tail, q.ti = c, 0
	}
	q.tail.items[q.ti] = v
	q.ti++
	q.n++
}

// front returns the oldest item; the queue must not be empty.
func (q *fifo[T]) front() *T { return &q.head.items[q.hi] }

// pop removes and returns the oldest item; the queue must not be empty.
func (q *fifo[T]) pop() T {
	var zero T
	v := q.head.items[q.hi]
	q.head.items[q.hi] = zero // let what it points to be collected
	q.hi++
	q.n--
	if q.n == 0 {
		// The last item was in the tail chunk, now empty.
		if q.pool != nil {
			c := q.head
			q.head, q.tail, q.hi, q.ti = nil, nil, 0, 0
			q.pool.put(c)
			return v
		}
		// Reuse it from its start.
		q.hi, q.ti = 0, 0
		return v
	}
	if q.hi == len(q.head.items) {
		old := q.head
		q.head, q.hi = old.next, 0
		q.release(old)
	}
	return v
}
