// Package lru is the bounded memory of the bridge's bookkeeping: a map
// whose entries are weighed in bytes, and which evicts the least recently
// used ones to stay within its budget. The sender's sequence numbers
// (wire.Counter) and the receiver's sequences and sources (seq.Tracker)
// live in one each: whatever the number and the length of the channels a
// foreign publisher uses, they hold at most their budget, and the busy
// channels, used all the time, are the last to be forgotten. Clearing the
// whole map when it is full, as the bridge once did, forgot the busy
// channels too, and made genuine events look like duplicates.
package lru

// EntryOverhead is what an entry costs beyond the bytes its owner counts
// for its key: the entry itself, its links and its slot in the map, about.
const EntryOverhead = 96

// A Cache maps keys to values within a budget of bytes. The zero Cache has
// no budget (see SetBudget) and evicts nothing; it must not be copied
// after first use. It is not safe for concurrent use: its owner
// serialises its calls. Get of a known key allocates nothing; Put of a new
// key allocates its entry.
type Cache[K comparable, V any] struct {
	budget, bytes int
	m             map[K]*entry[K, V]
	// head is the sentinel of the list of entries, most recently used
	// first: head.next is the newest, head.prev the oldest.
	head entry[K, V]
}

type entry[K comparable, V any] struct {
	key        K
	val        V
	size       int
	prev, next *entry[K, V]
}

// SetBudget sets the most bytes the cache holds; 0 or less means no limit.
// It evicts what no longer fits.
func (c *Cache[K, V]) SetBudget(bytes int) {
	c.budget = bytes
	c.evict()
}

// Get returns a pointer to the value of k, which the caller may update in
// place until its next call, and marks k as the most recently used.
func (c *Cache[K, V]) Get(k K) (*V, bool) {
	if e := c.head.next; e != nil && e != &c.head && e.key == k {
		return &e.val, true // already the most recently used: no lookup, no move
	}
	e, ok := c.m[k]
	if !ok {
		return nil, false
	}
	c.unlink(e)
	c.pushFront(e)
	return &e.val, true
}

// Put sets the value of k, which weighs size bytes (EntryOverhead is
// added), as the most recently used, and evicts the least recently used
// entries until the cache is within its budget. An entry bigger than the
// budget is not kept.
func (c *Cache[K, V]) Put(k K, v V, size int) {
	size += EntryOverhead
	if c.m == nil {
		c.m = map[K]*entry[K, V]{}
		c.head.prev, c.head.next = &c.head, &c.head
	}
	if e, ok := c.m[k]; ok {
		c.unlink(e)
		c.bytes += size - e.size
		e.val, e.size = v, size
		c.pushFront(e)
	} else {
		e := &entry[K, V]{key: k, val: v, size: size}
		c.m[k] = e
		c.bytes += size
		c.pushFront(e)
	}
	c.evict()
}

// Delete forgets k.
func (c *Cache[K, V]) Delete(k K) {
	if e, ok := c.m[k]; ok {
		c.remove(e)
	}
}

// Len returns the number of entries.
func (c *Cache[K, V]) Len() int { return len(c.m) }

// Bytes returns what the entries weigh, EntryOverhead included.
func (c *Cache[K, V]) Bytes() int { return c.bytes }

// Oldest calls fn for each entry from the least to the most recently used,
// until fn returns false. fn may Delete the entry it is given, and nothing
// else.
func (c *Cache[K, V]) Oldest(fn func(k K, v V, size int) bool) {
	if c.m == nil {
		return
	}
	for e := c.head.prev; e != &c.head; {
		prev := e.prev
		if !fn(e.key, e.val, e.size-EntryOverhead) {
			return
		}
		e = prev
	}
}

// evict removes the oldest entries until the cache is within its budget.
func (c *Cache[K, V]) evict() {
	for c.budget > 0 && c.bytes > c.budget && len(c.m) > 0 {
		c.remove(c.head.prev)
	}
}

func (c *Cache[K, V]) remove(e *entry[K, V]) {
	c.unlink(e)
	delete(c.m, e.key)
	c.bytes -= e.size
	*e = entry[K, V]{} // let the key and value be collected
}

func (c *Cache[K, V]) unlink(e *entry[K, V]) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *Cache[K, V]) pushFront(e *entry[K, V]) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}
