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
// empty. A fifo with a pool (see chunkPool) takes its chunks from the pool
// and gives them back as soon as they are empty, so that many fifos that
// are mostly empty or short, such as the import queues of thousands of
// topics, share chunks instead of holding one each, and a burst on one
// topic reuses the chunks of the last one.
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

// chunkPool keeps empty chunks for the fifos that share it, by size class
// (minChunk items, twice as many, and so on to chunkSize): at most max of
// minChunk items, and a quarter as many of each class as of the one
// before, so that the larger ones hold less memory in all than the small
// ones. Without the larger ones, every burst on a topic allocated the
// chunks it grew through again (a tenth of an allocation per imported
// event, in bursts of 64).
// It is not safe for concurrent use: the fifos that share it must be
// guarded by the same lock.
type chunkPool[T any] struct {
	free [classes][]*chunk[T]
	max  int
}

// classes is the number of chunk sizes a pool keeps: minChunk<<class items
// for class 0 to classes-1, the last chunkSize.
const classes = 5

// class returns the size class of chunks of at least n items (at most
// chunkSize), and their size.
func class(n int) (int, int) {
	c, size := 0, minChunk
	for size < n && size < chunkSize {
		c, size = c+1, size*2
	}
	return c, size
}

// get returns an empty chunk of at least n items (at most chunkSize).
func (p *chunkPool[T]) get(n int) *chunk[T] {
	c, size := class(n)
	if k := len(p.free[c]); k > 0 {
		ch := p.free[c][k-1]
		p.free[c][k-1] = nil
		p.free[c] = p.free[c][:k-1]
		return ch
	}
	return newChunk[T](size)
}

// put keeps c, which must be empty (its items zero), if its class is not
// full.
func (p *chunkPool[T]) put(c *chunk[T]) {
	c.next = nil
	k, size := class(len(c.items))
	if size == len(c.items) && len(p.free[k]) < p.max>>(2*k) {
		p.free[k] = append(p.free[k], c)
	}
}

func (q *fifo[T]) len() int { return q.n }

// newChunk returns an empty chunk for the next items.
func (q *fifo[T]) newChunk() *chunk[T] {
	if q.pool != nil {
		return q.pool.get(q.n)
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

// back returns the newest item, or nil if the queue is empty.
func (q *fifo[T]) back() *T {
	if q.n == 0 {
		return nil
	}
	return &q.tail.items[q.ti-1]
}

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
