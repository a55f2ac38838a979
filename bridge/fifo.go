package bridge

// chunkSize is the number of items per chunk of a fifo.
const chunkSize = 128

// fifo is an unbounded first-in first-out queue made of fixed-size chunks.
// Growing it never copies what it holds, unlike a slice or a ring that
// doubles: a queue that grows to hundreds of thousands of items during a
// burst (an outbox while Redis is slow, a topic whose subscriber is slow)
// costs one allocation per chunk and no copying. One empty chunk is kept
// for reuse. The zero fifo is empty and ready; it is not safe for
// concurrent use.
type fifo[T any] struct {
	head, tail *chunk[T]
	hi, ti     int // next item to pop in head, next free slot in tail
	n          int
	spare      *chunk[T]
}

type chunk[T any] struct {
	items [chunkSize]T
	next  *chunk[T]
}

func (q *fifo[T]) len() int { return q.n }

func (q *fifo[T]) push(v T) {
	if q.tail == nil || q.ti == chunkSize {
		c := q.spare
		if c != nil {
			q.spare = nil
		} else {
			c = new(chunk[T])
		}
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
		// The last item was in the tail chunk: reuse it from its start.
		q.hi, q.ti = 0, 0
		return v
	}
	if q.hi == chunkSize {
		old := q.head
		q.head, q.hi = old.next, 0
		old.next = nil
		q.spare = old
	}
	return v
}
