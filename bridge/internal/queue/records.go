package queue

import (
	"encoding/binary"
	"unsafe"
)

// records is the first-in first-out store of an outbox's exports, laid
// out as bytes in chunks that hold no pointers: the garbage collector
// never scans them, and pushing an export writes no pointer into shared
// memory.
//
// An outbox holding a burst used to keep each export as an Export (128
// bytes and six pointers) in a fifo, and its lent payload in a separate
// chunk. The collector scanned all of it at every cycle, and copying
// exports in and out ran its write barriers: a tenth of the CPU of a
// coalesced burst went to them (bench/NOTES.md).
//
// Each record is a header (recHeader bytes: time, sequence number,
// position, the lengths of the channel and the payload, the flags), then
// the channel's bytes, then the payload's, unless the payload is larger
// than bigPayload, which stays where it is, like the fields that hold
// pointers (Route, ContentType, Headers, Topic): those are kept in runs,
// one per stretch of consecutive records that share them, which is every
// record of a burst from one route.
//
// A chunk is never written again once a record is in it, nor reused once
// its records are popped: pop hands out the channel and the payload as
// memory of the chunk (valid as long as they are referenced), without a
// copy.
//
// The zero records is empty and ready; it is not safe for concurrent use.
type records struct {
	head, tail *recChunk
	off        int // where the next record to pop starts in head.buf
	n          int
	runs       fifo[run] // the pointer fields of the records, in order
}

type recChunk struct {
	buf  []byte // records, appended; never longer than its capacity
	next *recChunk
}

// run is what consecutive records share: the fields of an Export that
// hold pointers, and a payload too big for a record.
type run struct {
	route       any
	contentType string
	headers     map[string]string
	topic       string
	payload     []byte // a payload of more than bigPayload bytes
	n           int    // the records of the run still queued
}

// shares reports whether an export with fields r can join run x: maps
// are never compared, so an export with headers starts a run of its own,
// as does one with a big payload.
func (x *run) shares(r *run) bool {
	return x.route == r.route && x.contentType == r.contentType && x.topic == r.topic &&
		x.headers == nil && r.headers == nil && x.payload == nil && r.payload == nil
}

// recChunkSize is the size of the chunks records are laid out in: a
// record of a few hundred bytes costs a fraction of an allocation, and
// a chunk is collected once every record it holds has been popped and
// handed-out memory let go of.
const recChunkSize = 32 << 10

// bigPayload is the largest payload a record holds itself; a larger one
// is kept with its run, as the caller's memory (or a copy of it of its
// own, if lent), so that a chunk is not mostly one payload.
const bigPayload = recChunkSize / 8

// The layout of a record's header.
const (
	recAt     = 0  // int64
	recSeq    = 8  // uint64
	recPos    = 16 // uint64
	recChLen  = 24 // uint32
	recPayLen = 28 // uint32
	recFlags  = 32 // byte
	recHeader = 33
)

const (
	flagRaw = 1 << iota
	flagEcho
	flagNoSeq
	flagCloudEvent
)

func (q *records) len() int { return q.n }

// push appends it. A lent payload is copied; any other is copied too
// unless big, which the record then refers to.
func (q *records) push(it *Export) {
	r := run{route: it.Route, contentType: it.ContentType, headers: it.Headers, topic: it.Topic}
	pay := it.Payload
	if len(pay) > bigPayload {
		r.payload = pay
		if it.Lent {
			r.payload = append([]byte(nil), pay...)
		}
		pay = nil
	}
	if last := q.runs.back(); last != nil && last.shares(&r) {
		last.n++
	} else {
		r.n = 1
		q.runs.push(r)
	}

	size := recHeader + len(it.Channel) + len(pay)
	c := q.tail
	if c == nil || cap(c.buf)-len(c.buf) < size {
		c = &recChunk{buf: make([]byte, 0, max(recChunkSize, size))}
		if q.n == 0 {
			// Empty, the old chunk is done with (if any): popping
			// starts in the new one.
			q.head, q.off = c, 0
		} else {
			q.tail.next = c
		}
		q.tail = c
	}
	b := c.buf[len(c.buf) : len(c.buf)+size]
	binary.LittleEndian.PutUint64(b[recAt:], uint64(it.At))
	binary.LittleEndian.PutUint64(b[recSeq:], it.Seq)
	binary.LittleEndian.PutUint64(b[recPos:], it.Pos)
	binary.LittleEndian.PutUint32(b[recChLen:], uint32(len(it.Channel)))
	binary.LittleEndian.PutUint32(b[recPayLen:], uint32(len(it.Payload)))
	var f byte
	if it.Raw {
		f |= flagRaw
	}
	if it.Echo {
		f |= flagEcho
	}
	if it.NoSeq {
		f |= flagNoSeq
	}
	if it.CloudEvent {
		f |= flagCloudEvent
	}
	b[recFlags] = f
	copy(b[recHeader+copy(b[recHeader:], it.Channel):], pay)
	c.buf = c.buf[:len(c.buf)+size]
	q.n++
}

// frontAt and frontPos return the time and position of the oldest
// record; the store must not be empty.
func (q *records) frontAt() int64 {
	return int64(binary.LittleEndian.Uint64(q.head.buf[q.off+recAt:]))
}

func (q *records) frontPos() uint64 {
	return binary.LittleEndian.Uint64(q.head.buf[q.off+recPos:])
}

// frontSize returns the Size of the oldest record's export; the store
// must not be empty.
func (q *records) frontSize() int {
	b := q.head.buf[q.off:]
	return int(binary.LittleEndian.Uint32(b[recChLen:])) + int(binary.LittleEndian.Uint32(b[recPayLen:]))
}

// pop removes the oldest record into *it, whose channel and payload are
// then memory of the record's chunk (or the run's); the store must not be
// empty.
func (q *records) pop(it *Export) {
	b := q.head.buf[q.off:]
	chLen := int(binary.LittleEndian.Uint32(b[recChLen:]))
	payLen := int(binary.LittleEndian.Uint32(b[recPayLen:]))
	f := b[recFlags]
	r := q.runs.front()
	*it = Export{
		At:          int64(binary.LittleEndian.Uint64(b[recAt:])),
		Seq:         binary.LittleEndian.Uint64(b[recSeq:]),
		Pos:         binary.LittleEndian.Uint64(b[recPos:]),
		Route:       r.route,
		ContentType: r.contentType,
		Headers:     r.headers,
		Topic:       r.topic,
		Raw:         f&flagRaw != 0,
		Echo:        f&flagEcho != 0,
		NoSeq:       f&flagNoSeq != 0,
		CloudEvent:  f&flagCloudEvent != 0,
	}
	if chLen > 0 {
		// The chunk's bytes are never written again: a string of them
		// is immutable, as Go requires.
		it.Channel = unsafe.String(&b[recHeader], chLen)
	}
	size := recHeader + chLen
	switch {
	case r.payload != nil:
		it.Payload = r.payload
	case payLen > 0:
		it.Payload = b[size : size+payLen : size+payLen]
		size += payLen
	}
	if r.n--; r.n == 0 {
		q.runs.pop()
	}
	q.off += size
	q.n--
	if q.off == len(q.head.buf) && q.head != q.tail {
		q.head, q.off = q.head.next, 0
	}
}
