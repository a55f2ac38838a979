// Package resp reads what Redis sends a connection in subscribed mode
// (RESP2 arrays and RESP3 pushes: messages, subscription confirmations,
// PING answers, error replies) without allocating once its buffer has
// grown: the frame's strings are slices of the Reader's memory, valid
// until the next Read.
//
// It is the reading half of a pub/sub connection the bridge could own
// instead of go-redis's PubSub, which allocates ten times per pmessage
// (a slice of interfaces, four strings and their boxes, the *Message):
// more than the rest of a bridged event together, and half the read
// loop's time. It is not wired into a transport yet.
package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// ErrProtocol is wrapped by the errors of a stream that is not what Redis
// sends a subscribed connection. The connection cannot be read further.
var ErrProtocol = errors.New("resp: protocol error")

// Kind says what a Frame is.
type Kind uint8

const (
	// Message is a message, pmessage or smessage: Channel, Payload, and
	// Pattern for a pmessage.
	Message Kind = iota + 1
	// Subscription confirms a subscribe, psubscribe or ssubscribe, or an
	// unsubscribe of one (Name says which): Channel is the channel or
	// pattern, Count the number of subscriptions the connection has.
	Subscription
	// Pong answers a PING: Payload is its argument ("" for none).
	Pong
	// Error is an error reply: Payload is its text ("ERR ...").
	Error
)

// A Frame is one thing Redis sent. Its slices point into the Reader's
// memory: they are valid until the next Read, and must be copied to be
// kept.
type Frame struct {
	Kind    Kind
	Name    []byte // the frame's first element: "message", "pmessage", "subscribe", "pong", ...
	Pattern []byte
	Channel []byte
	Payload []byte
	Count   int64
	// Oversize is the length of a payload longer than the Reader's
	// limit, which was skipped rather than read (Payload is nil); 0
	// otherwise.
	Oversize int
}

// maxElements is the longest array a subscribed connection receives
// (pmessage: kind, pattern, channel, payload).
const maxElements = 4

// maxLine is the longest line (a length, a simple string or an error)
// accepted before a frame is refused.
const maxLine = 64 << 10

// A Reader reads Frames from a subscribed connection. It is not safe for
// concurrent use.
type Reader struct {
	rd       *bufio.Reader
	maxBulk  int
	buf      []byte // the bulk strings of the frame being read, one after another
	long     []byte // a line longer than rd's buffer
	elements [maxElements]span
}

type span struct{ start, end int }

// NewReader returns a Reader of rd that accepts payloads of at most
// maxBulk bytes: longer ones are skipped (Frame.Oversize), so that a
// flood of huge messages costs no memory. Other strings are bounded by
// it too, and fail the frame.
func NewReader(rd *bufio.Reader, maxBulk int) *Reader {
	return &Reader{rd: rd, maxBulk: maxBulk}
}

// Read reads the next frame into f. It returns an error wrapping
// ErrProtocol for anything a subscribed connection never receives, or the
// reader's error (io.EOF, a timeout); the stream cannot be read further
// after either.
func (r *Reader) Read(f *Frame) error {
	*f = Frame{}
	r.buf = r.buf[:0]
	line, err := r.line()
	if err != nil {
		return err
	}
	switch line[0] {
	case '*', '>':
		n, err := count(line)
		if err != nil {
			return err
		}
		if n < 2 || n > maxElements {
			return fmt.Errorf("%w: an array of %d elements", ErrProtocol, n)
		}
		return r.array(f, n)
	case '+': // RESP3: the answer to a PING without an argument
		if string(line[1:]) != "PONG" {
			return fmt.Errorf("%w: simple string %.40q", ErrProtocol, line[1:])
		}
		f.Kind, f.Name = Pong, r.keep(line[1:])
		return nil
	case '$': // RESP3: the answer to a PING with an argument
		s, err := r.bulk(line, true)
		if err != nil {
			return err
		}
		f.Kind, f.Name, f.Payload = Pong, pong, r.bytes(s)
		return nil
	case '-':
		f.Kind, f.Payload = Error, r.keep(line[1:])
		return nil
	}
	return fmt.Errorf("%w: a frame starting with %q", ErrProtocol, line[0])
}

var pong = []byte("pong")

// array reads the n elements of an array or a push into f.
func (r *Reader) array(f *Frame, n int) error {
	var integer int64
	hasInt := false
	for i := range n {
		line, err := r.line()
		if err != nil {
			return unexpected(err) // within a frame
		}
		switch line[0] {
		case '$':
			// Only the last element of a message is a payload that
			// may be oversize; the others must fit.
			s, err := r.bulk(line, i == n-1)
			if err != nil {
				return err
			}
			if s.start < 0 {
				f.Oversize = s.end
			}
			r.elements[i] = s
		case ':':
			if i != n-1 {
				return fmt.Errorf("%w: an integer as element %d of %d", ErrProtocol, i+1, n)
			}
			if integer, err = number(line[1:]); err != nil {
				return err
			}
			hasInt = true
		default:
			return fmt.Errorf("%w: element %d starting with %q", ErrProtocol, i+1, line[0])
		}
	}
	name := r.bytes(r.elements[0])
	f.Name = name
	switch {
	case !hasInt && n == 3 && (eq(name, "message") || eq(name, "smessage")):
		f.Kind, f.Channel, f.Payload = Message, r.bytes(r.elements[1]), r.bytes(r.elements[2])
	case !hasInt && n == 4 && eq(name, "pmessage"):
		f.Kind, f.Pattern, f.Channel, f.Payload = Message, r.bytes(r.elements[1]), r.bytes(r.elements[2]), r.bytes(r.elements[3])
	case hasInt && n == 3 && subscription(name):
		f.Kind, f.Channel, f.Count = Subscription, r.bytes(r.elements[1]), integer
	case !hasInt && n == 2 && eq(name, "pong"):
		f.Kind, f.Payload = Pong, r.bytes(r.elements[1])
	default:
		return fmt.Errorf("%w: a %.20q frame of %d elements", ErrProtocol, name, n)
	}
	if f.Oversize > 0 && f.Kind != Message {
		return fmt.Errorf("%w: a %d-byte %q", ErrProtocol, f.Oversize, name)
	}
	return nil
}

func subscription(name []byte) bool {
	for _, k := range [...]string{"subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe", "sunsubscribe"} {
		if eq(name, k) {
			return true
		}
	}
	return false
}

// eq compares without converting b to a string on the heap.
func eq(b []byte, s string) bool { return string(b) == s }

// line reads one line without its CRLF. It is valid until the next read
// from r.rd, or the next line.
func (r *Reader) line() ([]byte, error) {
	line, err := r.rd.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		// Longer than the buffer (a long error reply): gather it.
		r.long = append(r.long[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(r.long) <= maxLine {
			line, err = r.rd.ReadSlice('\n')
			r.long = append(r.long, line...)
		}
		line = r.long
	}
	if err != nil {
		return nil, unexpectedIn(err, len(line) > 0)
	}
	if len(line) < 3 || line[len(line)-2] != '\r' || len(line) > maxLine {
		return nil, fmt.Errorf("%w: a malformed line %.40q", ErrProtocol, line)
	}
	return line[:len(line)-2], nil
}

// bulk reads the bulk string whose length line is line into r.buf and
// returns where it lies. Past maxBulk, it skips it if oversize is set
// (returning {-1, its length}), and fails otherwise.
func (r *Reader) bulk(line []byte, oversize bool) (span, error) {
	n, err := count(line)
	if err != nil {
		return span{}, err
	}
	if n > r.maxBulk {
		if !oversize {
			return span{}, fmt.Errorf("%w: a %d-byte string", ErrProtocol, n)
		}
		if _, err := r.rd.Discard(n); err != nil {
			return span{}, err
		}
		return span{-1, n}, r.crlf()
	}
	start := len(r.buf)
	r.buf = growLen(r.buf, n)
	if _, err := io.ReadFull(r.rd, r.buf[start:]); err != nil {
		return span{}, unexpected(err)
	}
	return span{start, len(r.buf)}, r.crlf()
}

// crlf reads the CRLF after a bulk string (byte by byte: a local array
// passed to io.ReadFull would escape, an allocation per string).
func (r *Reader) crlf() error {
	for _, want := range [...]byte{'\r', '\n'} {
		c, err := r.rd.ReadByte()
		if err != nil {
			return unexpected(err)
		}
		if c != want {
			return fmt.Errorf("%w: a string not ended by CRLF", ErrProtocol)
		}
	}
	return nil
}

// unexpectedIn is unexpected for a line, when part of it was read.
func unexpectedIn(err error, partial bool) error {
	if partial {
		return unexpected(err)
	}
	return err
}

// unexpected turns the end of the stream inside a frame into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// keep copies b, a line the next read overwrites, into r.buf.
func (r *Reader) keep(b []byte) []byte {
	start := len(r.buf)
	r.buf = append(r.buf, b...)
	return r.buf[start:len(r.buf):len(r.buf)]
}

// bytes returns the string s of r.buf (nil for a skipped one).
func (r *Reader) bytes(s span) []byte {
	if s.start < 0 {
		return nil
	}
	return r.buf[s.start:s.end:s.end]
}

// growLen returns b extended by n bytes.
func growLen(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), 2*cap(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// count parses the length of an array, push or bulk string line: a
// non-negative decimal after its type byte (a null, -1, is not sent to a
// subscribed connection).
func count(line []byte) (int, error) {
	n, err := number(line[1:])
	if err != nil || n < 0 || n > 1<<40 {
		return 0, fmt.Errorf("%w: a length %.40q", ErrProtocol, line[1:])
	}
	return int(n), nil
}

// number parses a decimal integer, optionally negative, of at most 18
// digits (so that it cannot overflow).
func number(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, fmt.Errorf("%w: a number %.40q", ErrProtocol, b)
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: a number %.40q", ErrProtocol, b)
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}
