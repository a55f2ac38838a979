// Package resp reads the replies a subscribed Redis connection receives,
// in RESP2 or RESP3: the pushes of pub/sub (message, pmessage, smessage,
// and the confirmations of SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and their
// UNSUBSCRIBEs), the answers to PING, and error replies. It also writes
// commands and skips the replies of a connection's handshake.
//
// A Push read points into the Reader's buffer rather than into strings of
// its own: reading a message allocates nothing once the buffer has grown,
// where go-redis allocates the channel, the pattern and the payload of
// each, and a *redis.Message to hold them.
package resp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Kind is what a Push is.
type Kind uint8

// The kinds of Push.
const (
	Message      Kind = iota + 1 // message: Channel, Payload
	PMessage                     // pmessage: Pattern, Channel, Payload
	SMessage                     // smessage: Channel, Payload
	Subscribe                    // subscribe confirmation: Channel, Count
	Unsubscribe                  // unsubscribe confirmation: Channel (nil for none), Count
	PSubscribe                   // psubscribe confirmation: Channel (the glob), Count
	PUnsubscribe                 // punsubscribe confirmation
	SSubscribe                   // ssubscribe confirmation
	SUnsubscribe                 // sunsubscribe confirmation
	Pong                         // the answer to PING: Payload
)

var kinds = [...]string{Message: "message", PMessage: "pmessage", SMessage: "smessage",
	Subscribe: "subscribe", Unsubscribe: "unsubscribe", PSubscribe: "psubscribe",
	PUnsubscribe: "punsubscribe", SSubscribe: "ssubscribe", SUnsubscribe: "sunsubscribe", Pong: "pong"}

// String returns the kind's name in Redis's replies ("pmessage").
func (k Kind) String() string {
	if int(k) < len(kinds) && kinds[k] != "" {
		return kinds[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// A Push is one reply of a subscribed connection. Its slices point into the
// Reader's buffer: they are valid until the next read, and must not be
// written to.
type Push struct {
	Kind                      Kind
	Channel, Pattern, Payload []byte
	Count                     int64 // subscriptions left, for confirmations
}

// Error is an error reply from Redis: "NOPERM this user has no
// permissions ...". Its text is the reply's, as go-redis's is.
type Error string

func (e Error) Error() string { return string(e) }

// ErrProtocol is wrapped by the errors of frames that are not valid RESP
// or not a reply a subscribed connection expects. The connection cannot
// be read further.
var ErrProtocol = errors.New("resp: protocol error")

// MaxBulk is the default bound on a bulk string's length: Redis's own
// (proto-max-bulk-len).
const MaxBulk = 512 << 20

// maxDepth bounds the nesting of the aggregates Skip walks through.
const maxDepth = 16

// maxElems bounds the elements of an aggregate Skip walks through (HELLO
// answers with about a dozen).
const maxElems = 1 << 16

// A Reader reads replies from a bufio.Reader. It is not safe for
// concurrent use; its zero value is not usable (see NewReader).
type Reader struct {
	br  *bufio.Reader
	max int    // bound on bulk strings
	buf []byte // where the strings of the Push being read are copied
	// off are the offsets in buf of the strings read so far for the
	// current Push: buf may move while it grows.
	off [4][2]int
}

// NewReader returns a Reader of br whose bulk strings are at most maxBulk
// bytes (MaxBulk if maxBulk <= 0): a longer one is an error.
func NewReader(br *bufio.Reader, maxBulk int) *Reader {
	if maxBulk <= 0 {
		maxBulk = MaxBulk
	}
	return &Reader{br: br, max: maxBulk}
}

// shrinkAbove is the size of buffer kept between pushes: one a large
// message grew beyond is dropped, so that a rare large payload does not
// pin its memory.
const shrinkAbove = 1 << 20

// ReadPush reads the next reply into p. An error reply is returned as an
// Error, and the connection can be read further; a frame that is not
// valid, or a reply a subscribed connection does not expect, wraps
// ErrProtocol. Attributes (RESP3) are skipped.
func (r *Reader) ReadPush(p *Push) error {
	if cap(r.buf) > shrinkAbove {
		r.buf = nil
	}
	r.buf = r.buf[:0]
	*p = Push{}
	for {
		line, err := r.line()
		if err != nil {
			return err
		}
		switch line[0] {
		case '|': // an attribute precedes the reply: skip it
			n, err := r.count(line)
			if err != nil {
				return err
			}
			if err := r.skipN(2*n, 1); err != nil {
				return err
			}
			continue
		case '-', '!':
			msg, err := r.errorReply(line)
			if err != nil {
				return err
			}
			return Error(msg)
		case '+', '$':
			// RESP3 answers PING as any command, even when subscribed.
			if err := r.str(line, 0); err != nil {
				return err
			}
			p.Kind, p.Payload = Pong, r.field(0)
			if p.Payload == nil {
				p.Payload = []byte{}
			}
			return nil
		case '*', '>':
			return r.push(line, p)
		}
		return fmt.Errorf("%w: unexpected reply %q", ErrProtocol, clip(line))
	}
}

// push reads the elements of the push or array of header line into p.
func (r *Reader) push(line []byte, p *Push) error {
	n, err := r.count(line)
	if err != nil {
		return err
	}
	if n < 2 || n > 4 {
		return fmt.Errorf("%w: a push of %d elements", ErrProtocol, n)
	}
	kind, err := r.line()
	if err != nil {
		return err
	}
	if err := r.str(kind, 0); err != nil {
		return err
	}
	k := kindOf(r.field(0))
	want := 3 // message, confirmations
	switch k {
	case PMessage:
		want = 4
	case Pong:
		want = 2
	case 0:
		return fmt.Errorf("%w: unexpected push %q", ErrProtocol, clip(r.field(0)))
	}
	if n != want {
		return fmt.Errorf("%w: a %s push of %d elements", ErrProtocol, k, n)
	}
	p.Kind = k
	switch k {
	case Pong:
		if err := r.next(1); err != nil {
			return err
		}
		p.Payload = r.field(1)
	case Message, SMessage:
		if err := r.next(1); err != nil {
			return err
		}
		if err := r.next(2); err != nil {
			return err
		}
		p.Channel, p.Payload = r.field(1), r.field(2)
	case PMessage:
		for i := 1; i <= 3; i++ {
			if err := r.next(i); err != nil {
				return err
			}
		}
		p.Pattern, p.Channel, p.Payload = r.field(1), r.field(2), r.field(3)
	default: // a confirmation: the name (null when unsubscribing from none) and a count
		if err := r.next(1); err != nil {
			return err
		}
		p.Channel = r.field(1)
		line, err := r.line()
		if err != nil {
			return err
		}
		if line[0] != ':' {
			return fmt.Errorf("%w: a %s count of %q", ErrProtocol, k, clip(line))
		}
		if p.Count, err = parseInt(line[1:]); err != nil {
			return err
		}
	}
	if p.Payload == nil && k >= Message && k <= SMessage {
		p.Payload = []byte{}
	}
	return nil
}

// next reads the next element, a string or a null, as field i.
func (r *Reader) next(i int) error {
	line, err := r.line()
	if err != nil {
		return err
	}
	return r.str(line, i)
}

func kindOf(b []byte) Kind {
	for k, s := range kinds {
		if s != "" && s == string(b) {
			return Kind(k)
		}
	}
	return 0
}

// field returns string i of the Push being read; nil if it was a null.
func (r *Reader) field(i int) []byte {
	o := r.off[i]
	if o[0] < 0 {
		return nil
	}
	return r.buf[o[0]:o[1]:o[1]]
}

// str reads the string whose header is line (simple or bulk, or a null)
// into buf as field i.
func (r *Reader) str(line []byte, i int) error {
	switch line[0] {
	case '+':
		start := len(r.buf)
		r.buf = append(r.buf, line[1:]...)
		r.off[i] = [2]int{start, len(r.buf)}
		return nil
	case '_':
		if len(line) != 1 {
			return fmt.Errorf("%w: bad null %q", ErrProtocol, clip(line))
		}
		r.off[i] = [2]int{-1, -1}
		return nil
	case '$':
		return r.bulk(line[1:], i)
	}
	return fmt.Errorf("%w: a string expected, got %q", ErrProtocol, clip(line))
}

// bulk reads the bulk string of length header n (a null if -1) into buf as
// field i.
func (r *Reader) bulk(header []byte, i int) error {
	n, err := parseInt(header)
	if err != nil {
		return err
	}
	if n == -1 {
		r.off[i] = [2]int{-1, -1}
		return nil
	}
	if n < 0 || n > int64(r.max) {
		return fmt.Errorf("%w: a bulk string of %d bytes", ErrProtocol, n)
	}
	start := len(r.buf)
	r.buf = append(r.buf, make([]byte, int(n)+2)...)
	if _, err := io.ReadFull(r.br, r.buf[start:]); err != nil {
		return err
	}
	if r.buf[len(r.buf)-2] != '\r' || r.buf[len(r.buf)-1] != '\n' {
		return fmt.Errorf("%w: a bulk string not ended by CRLF", ErrProtocol)
	}
	r.buf = r.buf[:len(r.buf)-2]
	r.off[i] = [2]int{start, len(r.buf)}
	return nil
}

// errorReply returns the message of the error reply of header line.
func (r *Reader) errorReply(line []byte) (string, error) {
	if line[0] == '-' {
		return string(line[1:]), nil
	}
	if err := r.bulk(line[1:], 0); err != nil {
		return "", err
	}
	return string(r.field(0)), nil
}

// line reads one line, without its CRLF; it is never empty, and valid until
// the next read.
func (r *Reader) line() ([]byte, error) {
	b, err := r.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("%w: a line longer than %d bytes", ErrProtocol, r.br.Size())
		}
		return nil, err
	}
	if len(b) < 3 || b[len(b)-2] != '\r' {
		return nil, fmt.Errorf("%w: bad line %q", ErrProtocol, clip(b))
	}
	return b[:len(b)-2], nil
}

// count returns the element count of an aggregate's header line, which
// must not be null.
func (r *Reader) count(line []byte) (int, error) {
	n, err := parseInt(line[1:])
	if err != nil {
		return 0, err
	}
	if n < 0 || n > maxElems {
		return 0, fmt.Errorf("%w: an aggregate of %d elements", ErrProtocol, n)
	}
	return int(n), nil
}

// Skip reads one reply and discards it, returning an Error if it is an
// error reply: the replies of a handshake (HELLO, AUTH, SELECT).
func (r *Reader) Skip() error {
	r.buf = r.buf[:0]
	line, err := r.line()
	if err != nil {
		return err
	}
	for line[0] == '|' {
		n, err := r.count(line)
		if err != nil {
			return err
		}
		if err := r.skipN(2*n, 1); err != nil {
			return err
		}
		if line, err = r.line(); err != nil {
			return err
		}
	}
	if line[0] == '-' || line[0] == '!' {
		msg, err := r.errorReply(line)
		if err != nil {
			return err
		}
		return Error(msg)
	}
	return r.skipValue(line, 0)
}

// skipN skips n values at nesting depth.
func (r *Reader) skipN(n, depth int) error {
	for range n {
		line, err := r.line()
		if err != nil {
			return err
		}
		if err := r.skipValue(line, depth); err != nil {
			return err
		}
	}
	return nil
}

// skipValue skips the value of header line, at nesting depth.
func (r *Reader) skipValue(line []byte, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: nested deeper than %d", ErrProtocol, maxDepth)
	}
	switch line[0] {
	case '+', '-', ':', '_', '#', ',', '(':
		return nil
	case '$', '=', '!':
		r.buf = r.buf[:0]
		return r.bulk(line[1:], 0)
	case '*', '~', '>':
		if n, err := parseInt(line[1:]); err == nil && n == -1 && line[0] == '*' {
			return nil
		}
		n, err := r.count(line)
		if err != nil {
			return err
		}
		return r.skipN(n, depth+1)
	case '%', '|':
		n, err := r.count(line)
		if err != nil {
			return err
		}
		return r.skipN(2*n, depth+1)
	}
	return fmt.Errorf("%w: unknown type %q", ErrProtocol, clip(line))
}

// parseInt parses a RESP integer, bounded to what fits an int64.
func parseInt(b []byte) (int64, error) {
	neg := false
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 18 {
		return 0, fmt.Errorf("%w: bad integer %q", ErrProtocol, clip(b))
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: bad integer %q", ErrProtocol, clip(b))
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// clip shortens what an error quotes.
func clip(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// AppendCommand appends the command args to b as a RESP array of bulk
// strings, as every command is sent.
func AppendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}
