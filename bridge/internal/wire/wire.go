// Package wire is the bridge's wire format: the envelope that carries an
// event's source, sequence number, time, content type, headers and payload
// between bridges, batches of envelopes, and their HMAC signatures. It
// knows nothing of Redis; it is fuzzed on its own.
//
// # Wire format of an envelope, version 1
//
// Messages of enveloped routes carry one envelope each, as the whole Redis
// message, or a batch of events (see Batches below). All multi-byte
// integers are varints as in encoding/binary:
// "uvarint" is an unsigned LEB128 integer (1 to 10 bytes) that must use the
// fewest bytes possible; "varint" is a zigzag-encoded signed integer stored as
// a uvarint. Strings are raw bytes (UTF-8 is expected but not checked). The
// fields come in this order, with nothing between them:
//
//	Field          Encoding                 Notes
//	-------------  -----------------------  ------------------------------------------
//	magic          2 bytes: 0xB5 0x1E       0xB5 cannot begin UTF-8 text, 0x1E is the
//	                                        ASCII record separator: no text publisher
//	                                        produces this by accident
//	version        1 byte: 0x01             other values are rejected (ErrMalformed)
//	flags          1 byte                   bit 0 (0x01): signed, a MAC ends the message
//	                                        bit 1 (0x02): headers present
//	                                        bit 3 (0x08): epoch present
//	                                        other bits must be 0
//	source length  uvarint, 1..255          instance ID of the sending bridge
//	source         bytes                    printable ASCII (0x20..0x7E)
//	epoch          8 bytes, big-endian,     only if flag bit 3: the random number the
//	               not 0                    sender drew when it started
//	seq            uvarint                  per-source, per-channel sequence number
//	time           varint                   Unix time in nanoseconds
//	type length    uvarint, 0..255          content type, "" for none
//	content type   bytes                    printable ASCII (0x20..0x7E)
//	headers        only if flag bit 1:
//	  count        uvarint, 1..64
//	  count times: key length  uvarint, 1..255
//	               key         bytes        keys in strictly increasing byte order
//	               value len   uvarint, 0..4096
//	               value       bytes
//	payload length uvarint                  the payload must end exactly here or
//	payload        bytes                    exactly 32 bytes before the end if signed
//	mac            32 bytes, only if        HMAC-SHA256(key, uvarint(len(channel)) ||
//	               flag bit 0               channel || every byte from magic through
//	                                        payload)
//
// The MAC covers the Redis channel the message is published on, so a signed
// message copied onto another channel fails verification. It does not stop a
// replay on the same channel: receivers detect those by sequence number
// (a copy of an event they saw), by epoch (a message of an earlier run of
// the source: its epoch differs and its time is not later than the
// source's latest) and, on pub/sub routes, by the signed time (older than
// their acceptance window).
//
// # Epochs
//
// Bridges since the epoch flag draw a random epoch when they start and
// put it in every envelope and batch they send (flag bit 3). Receivers that
// know the flag read envelopes with and without it (without: epoch 0, as
// from an older sender). Receivers older than the flag reject every
// message carrying it as malformed (unknown flags 0x08), so upgrade every
// receiver before the senders.
//
// The encoding is canonical: every envelope has exactly one encoding (sorted
// headers, minimal varints, headers flag set only with at least one header),
// so a message that decodes re-encodes to the same bytes.
//
// A message shorter than 2 bytes or not starting with the magic is not an
// envelope: on an enveloped route the bridge delivers it as raw bytes, so that
// plain Redis clients can still publish there.
//
// Example, unsigned, source "a", seq 1, time 0, content type "", no headers,
// payload "hi": B5 1E 01 00 01 61 01 00 00 02 68 69.
//
// # Batches
//
// A bridge coalesces exports to one channel into one message when they are
// waiting together (see Options.CoalesceBytes): a batch, flag bit 2. A batch carries two or more events of one source with consecutive
// sequence numbers; each keeps its own time, content type, headers and
// payload. Its fields:
//
//	Field          Encoding                 Notes
//	-------------  -----------------------  ------------------------------------------
//	magic          2 bytes: 0xB5 0x1E
//	version        1 byte: 0x01
//	flags          1 byte                   bit 2 (0x04): batch; bit 0: signed;
//	                                        bit 3: epoch present;
//	                                        bit 1 must be 0 (headers are per event)
//	source length  uvarint, 1..255
//	source         bytes
//	epoch          8 bytes, only if bit 3   as above
//	seq            uvarint, at least 1      sequence number of the first event; event
//	                                        i (from 0) has seq+i, which must not
//	                                        overflow 64 bits
//	count          uvarint, 2..65536        number of events
//	count times:
//	  event flags  1 byte                   bit 1 (0x02): headers present; other
//	                                        bits must be 0
//	  time         varint
//	  type length  uvarint, 0..255
//	  content type bytes
//	  headers      only if event flag bit 1, encoded as above
//	  payload len  uvarint
//	  payload      bytes
//	mac            32 bytes, only if        HMAC-SHA256 as above, over every byte
//	               flag bit 0               from magic through the last payload
//
// The events must fill the message exactly (up to the MAC). A single event
// is always sent as a plain envelope, never as a batch of one, so the
// encoding stays canonical.
package wire

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/busline/bus/bridge/internal/intern"
	"github.com/busline/bus/bridge/internal/mac"
	"github.com/busline/bus/bridge/internal/plural"
)

const (
	envMagic0   = 0xB5
	envMagic1   = 0x1E
	envVersion  = 1
	envFixedLen = 4 // magic, version, flags
	flagSigned  = 1 << 0
	flagHeaders = 1 << 1
	flagBatch   = 1 << 2
	flagEpoch   = 1 << 3
	flagsKnown  = flagSigned | flagHeaders | flagBatch | flagEpoch
	epochLen    = 8
	// MACLen is the length of the MAC that ends a signed message.
	MACLen       = mac.Size
	maxSourceLen = 255
	// MaxTypeLen is the longest content type an envelope carries.
	MaxTypeLen   = 255
	maxHeaders   = 64
	maxHeaderKey = 255
	maxHeaderVal = 4096
	// MaxBatchEvents is the most events one batch carries.
	MaxBatchEvents = 1 << 16
)

// Envelope is the decoded form of an enveloped message. See the wire format
// above for the limits of each field.
type Envelope struct {
	Source      string            // instance ID of the sender, 1..255 printable ASCII bytes
	Epoch       uint64            // drawn by the sender when it started; 0 for none (older senders)
	Seq         uint64            // per-source sequence number
	Time        int64             // Unix nanoseconds, when the event was exported
	ContentType string            // what the sender's Codec returned, 0..255 printable ASCII bytes
	Headers     map[string]string // optional: at most 64, key 1..255 bytes, value 0..4096 bytes
	// Payload is the event's bytes. After DecodeEnvelope it aliases the
	// message passed in (capacity clipped to the payload, so appending to
	// it copies): the message must not be modified while Payload is used.
	// It is nil when the payload is empty.
	Payload []byte
}

// Strings of imported envelopes, interned: see package intern.
var sources, types intern.Table

// The errors of decoding. Package bridge exports ErrMalformed, ErrSignature
// and ErrTooLarge as its own (the same values), so their messages carry the
// bridge's prefix.
var (
	// ErrNotEnvelope is returned by DecodeEnvelope for a message without the
	// magic prefix: the caller treats the message as raw bytes.
	ErrNotEnvelope = errors.New("bridge: not an envelope")

	// ErrMalformed is wrapped by the errors reported for messages that
	// start with the envelope magic but are not a valid envelope:
	// truncated, an unknown version or flag, a field over its limit,
	// non-canonical encoding or trailing bytes. The message is dropped.
	ErrMalformed = errors.New("bridge: malformed envelope")

	// ErrSignature is wrapped by the errors reported when
	// Options.SigningKey is set and an envelope is unsigned, or its MAC
	// does not match: forged, altered, signed with another key, or copied
	// from another channel. The message is dropped. A bridge without a
	// SigningKey accepts signed envelopes without checking them (it has
	// nothing to check them with), so that signing can be rolled out
	// senders first.
	ErrSignature = errors.New("bridge: bad signature")

	// ErrTooLarge is wrapped by the errors reported for messages, sent or
	// received, larger than Options.MaxMessageBytes.
	ErrTooLarge = errors.New("bridge: message too large")
)

// IsEnvelope reports whether msg starts with the envelope magic. It does not
// validate the rest.
func IsEnvelope(msg []byte) bool {
	return len(msg) >= 2 && msg[0] == envMagic0 && msg[1] == envMagic1
}

// IsBatch reports whether msg starts like a batch: the envelope magic and
// the batch flag. It does not validate the rest; DecodeMessage does.
func IsBatch(msg []byte) bool {
	return IsEnvelope(msg) && len(msg) >= envFixedLen && msg[3]&flagBatch != 0
}

// Validate reports, wrapping ErrMalformed, a field of env over the limits
// of the wire format. AppendEnvelope does not check them (it cannot return an
// error): callers validate envelopes built from user input first, otherwise
// the message they send is one every receiver rejects.
func (env *Envelope) Validate() error {
	switch {
	case len(env.Source) == 0 || len(env.Source) > maxSourceLen:
		return fmt.Errorf("%w: source %.40q is %s, want 1..%d", ErrMalformed, env.Source, plural.Of(uint64(len(env.Source)), "byte"), maxSourceLen)
	case !Printable(env.Source):
		return fmt.Errorf("%w: source %.40q is not printable ASCII", ErrMalformed, env.Source)
	case len(env.ContentType) > MaxTypeLen:
		return fmt.Errorf("%w: content type is %s, limit %d", ErrMalformed, plural.Of(uint64(len(env.ContentType)), "byte"), MaxTypeLen)
	case !Printable(env.ContentType):
		return fmt.Errorf("%w: content type %.40q is not printable ASCII", ErrMalformed, env.ContentType)
	case len(env.Headers) > maxHeaders:
		return fmt.Errorf("%w: %s, limit %d", ErrMalformed, plural.Of(uint64(len(env.Headers)), "header"), maxHeaders)
	}
	for k, v := range env.Headers {
		if len(k) == 0 || len(k) > maxHeaderKey {
			return fmt.Errorf("%w: header key %.40q is %s, want 1..%d", ErrMalformed, k, plural.Of(uint64(len(k)), "byte"), maxHeaderKey)
		}
		if len(v) > maxHeaderVal {
			return fmt.Errorf("%w: header %.40q value is %s, limit %d", ErrMalformed, k, plural.Of(uint64(len(v)), "byte"), maxHeaderVal)
		}
	}
	return nil
}

// Printable reports whether s is made of printable ASCII characters,
// 0x20 (space) to 0x7E (~): what sources and content types may hold, so
// that a foreign publisher cannot put control characters, escape
// sequences or look-alike letters into logs and metrics through them.
//
// It checks eight bytes at a time: every export of an enveloped route
// checks its content type, "application/octet-stream" for bytes.
func Printable(s string) bool {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		w := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
			uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
		// With no byte at 0x80 or over, no sum below carries into the
		// next byte: a byte's high bit is set in w+0x60 per byte when
		// it is 0x20 or over, and in w+0x01 per byte when it is 0x7f.
		if w&high != 0 || (w+0x60*ones)&high != high || (w+ones)&high != 0 {
			return false
		}
	}
	for ; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// EnvelopeLen returns the length of the message AppendEnvelope makes of
// env, signed or not.
func EnvelopeLen(env *Envelope, signed bool) int {
	n := envFixedLen +
		uvarintLen(uint64(len(env.Source))) + len(env.Source) +
		uvarintLen(env.Seq) +
		tailLen(env)
	if env.Epoch != 0 {
		n += epochLen
	}
	if signed {
		n += MACLen
	}
	return n
}

// tailLen returns the length of the fields of env from its time through
// its payload, which plain envelopes and the events of a batch share.
func tailLen(env *Envelope) int {
	n := uvarintLen(zigzag(env.Time)) +
		uvarintLen(uint64(len(env.ContentType))) + len(env.ContentType) +
		uvarintLen(uint64(len(env.Payload))) + len(env.Payload)
	if len(env.Headers) > 0 {
		n += uvarintLen(uint64(len(env.Headers)))
		for k, v := range env.Headers {
			n += uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(v))) + len(v)
		}
	}
	return n
}

// AppendEnvelope appends the encoding of env, published on channel, to dst
// and returns the extended slice. With a non-empty key the message is signed
// with HMAC-SHA256 over the channel name and every byte before the MAC; with
// a nil or empty key it is unsigned (and channel is unused).
//
// It does not allocate when dst has room for the message,
// with or without key, as long as successive calls use the same key. It
// does not validate env (see Validate). It is safe for concurrent use.
func AppendEnvelope(dst []byte, channel string, env *Envelope, key []byte) []byte {
	start := len(dst)
	var flags byte
	if len(key) > 0 {
		flags |= flagSigned
	}
	if len(env.Headers) > 0 {
		flags |= flagHeaders
	}
	if env.Epoch != 0 {
		flags |= flagEpoch
	}
	dst = append(dst, envMagic0, envMagic1, envVersion, flags)
	dst = binary.AppendUvarint(dst, uint64(len(env.Source)))
	dst = append(dst, env.Source...)
	if env.Epoch != 0 {
		dst = binary.BigEndian.AppendUint64(dst, env.Epoch)
	}
	dst = binary.AppendUvarint(dst, env.Seq)
	dst = appendTail(dst, env)
	return appendMAC(dst, start, channel, key)
}

// appendTail appends the fields of env from its time through its payload.
func appendTail(dst []byte, env *Envelope) []byte {
	dst = binary.AppendVarint(dst, env.Time)
	dst = binary.AppendUvarint(dst, uint64(len(env.ContentType)))
	dst = append(dst, env.ContentType...)
	if len(env.Headers) > 0 {
		dst = appendHeaders(dst, env.Headers)
	}
	dst = binary.AppendUvarint(dst, uint64(len(env.Payload)))
	return append(dst, env.Payload...)
}

// appendMAC signs the message dst[start:], published on channel, by
// appending its MAC, if key is not empty.
func appendMAC(dst []byte, start int, channel string, key []byte) []byte {
	if len(key) == 0 {
		return dst
	}
	m := mac.Get(key)
	// Sum appends after reading everything written, so passing a
	// sub-slice of dst as the signed bytes and dst as the destination is
	// safe even if Sum has to grow dst.
	dst = sum(m, dst, channel, dst[start:])
	mac.Put(m)
	return dst
}

// batchHeaderLen returns the length of the fields of a batch before its
// events: count events of source numbered from seq, with an epoch if
// epoch is not 0.
func batchHeaderLen(source string, epoch, seq uint64, count int) int {
	n := envFixedLen +
		uvarintLen(uint64(len(source))) + len(source) +
		uvarintLen(seq) + uvarintLen(uint64(count))
	if epoch != 0 {
		n += epochLen
	}
	return n
}

// BatchOverhead returns the most bytes a batch of events of source,
// numbered from seq, adds to the lengths of its events (BatchEventLen):
// its header with an epoch and the largest event count, and the MAC if
// signed. A batch of events whose lengths add up to n is at most
// BatchOverhead + n bytes.
func BatchOverhead(source string, seq uint64, signed bool) int {
	n := batchHeaderLen(source, 1, seq, MaxBatchEvents)
	if signed {
		n += MACLen
	}
	return n
}

// BatchEventLen returns the length of env as an event of a batch.
func BatchEventLen(env *Envelope) int { return 1 + tailLen(env) }

// AppendBatch appends the encoding of envs, published on channel, as one
// batch, signed if key is not empty, and returns the extended slice. envs
// must hold 2..MaxBatchEvents envelopes of one Source and Epoch numbered
// from envs[0].Seq (at least 1) up by one; their own Source, Epoch and Seq
// are not read. Like AppendEnvelope it does not validate, does not allocate when
// dst has room, and is safe for concurrent use.
func AppendBatch(dst []byte, channel string, envs []Envelope, key []byte) []byte {
	start := len(dst)
	dst = appendBatchHeader(dst, envs[0].Source, envs[0].Epoch, envs[0].Seq, len(envs), len(key) > 0)
	for i := range envs {
		dst = appendBatchEvent(dst, &envs[i])
	}
	return appendMAC(dst, start, channel, key)
}

// appendBatchHeader appends the fields of a batch before its events: count
// events (2..MaxBatchEvents) of source and epoch (0 for none) numbered
// from seq (at least 1), signed if signed is set. Append the events with
// appendBatchEvent, then the MAC with appendMAC. It does not validate its
// arguments.
func appendBatchHeader(dst []byte, source string, epoch, seq uint64, count int, signed bool) []byte {
	flags := byte(flagBatch)
	if signed {
		flags |= flagSigned
	}
	if epoch != 0 {
		flags |= flagEpoch
	}
	dst = append(dst, envMagic0, envMagic1, envVersion, flags)
	dst = binary.AppendUvarint(dst, uint64(len(source)))
	dst = append(dst, source...)
	if epoch != 0 {
		dst = binary.BigEndian.AppendUint64(dst, epoch)
	}
	dst = binary.AppendUvarint(dst, seq)
	return binary.AppendUvarint(dst, uint64(count))
}

// appendBatchEvent appends env, whose Source and Seq are the batch's, as
// the next event of a batch.
func appendBatchEvent(dst []byte, env *Envelope) []byte {
	var flags byte
	if len(env.Headers) > 0 {
		flags = flagHeaders
	}
	return appendTail(append(dst, flags), env)
}

// appendHeaders appends the header count and the headers sorted by key: map
// order is random, and the encoding must be canonical. The keys are sorted
// in an array on the stack, so this does not allocate for up to maxHeaders
// headers.
func appendHeaders(dst []byte, h map[string]string) []byte {
	var arr [maxHeaders]string
	keys := arr[:0]
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = binary.AppendUvarint(dst, uint64(len(keys)))
	for _, k := range keys {
		v := h[k]
		dst = binary.AppendUvarint(dst, uint64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendUvarint(dst, uint64(len(v)))
		dst = append(dst, v...)
	}
	return dst
}

// DecodeEnvelope decodes msg, received on channel, which must be a plain
// envelope: a batch is ErrMalformed here (DecodeMessage reads both). The
// checks come in this order, and the first that fails decides the error:
//   - ErrTooLarge (wrapped) if maxBytes > 0 and msg is longer than maxBytes,
//     whether or not msg is an envelope; maxBytes <= 0 means no limit;
//   - ErrNotEnvelope if msg does not start with the magic, with or without
//     a key: the caller decides (it delivers raw bytes, or rejects them
//     when it requires signatures);
//   - ErrMalformed (wrapped) for a message too short for the version and
//     flags, an unknown version (the error says which) or unknown flags;
//   - ErrSignature (wrapped) if key is non-empty and the envelope is
//     unsigned, or the last 32 bytes are not the MAC key gives for channel
//     and the bytes before them. This comes before parsing the fields, so
//     any change to a signed message after the flags byte, truncation
//     included, is ErrSignature. With a nil or empty key the MAC of a
//     signed envelope is skipped unchecked;
//   - ErrMalformed (wrapped, saying what is wrong at which byte offset) if
//     the fields are not a valid canonical envelope.
//
// The returned Payload aliases msg. Source, ContentType and the headers are
// copies. Allocations: the two strings, and the headers map and its strings
// only when the message has headers; nothing is allocated before the whole
// message has been validated. It never panics and is safe for concurrent
// use.
func DecodeEnvelope(channel string, msg []byte, key []byte, maxBytes int) (Envelope, error) {
	body, flags, err := openMessage(channel, msg, key, maxBytes)
	if err != nil {
		return Envelope{}, err
	}
	if flags&flagBatch != 0 {
		return Envelope{}, malformed(3, "a batch where one event is expected")
	}
	return parseSingle(body, flags)
}

// DecodeMessage decodes msg, received on channel: a plain envelope or a
// batch. It checks the whole message first, as DecodeEnvelope does (same
// errors, in the same order), and only then calls fn for each of its
// events in order, with i counting from 0; env.Payload aliases msg. It
// returns the number of events, 0 with an error. It never panics and is
// safe for concurrent use.
func DecodeMessage(channel string, msg []byte, key []byte, maxBytes int, fn func(i int, env Envelope)) (int, error) {
	body, flags, err := openMessage(channel, msg, key, maxBytes)
	if err != nil {
		return 0, err
	}
	if flags&flagBatch == 0 {
		env, err := parseSingle(body, flags)
		if err != nil {
			return 0, err
		}
		fn(0, env)
		return 1, nil
	}
	return parseBatch(body, flags, fn)
}

// openMessage makes the checks of DecodeEnvelope that come before the
// fields, the MAC included, and returns msg without its MAC and the flags.
func openMessage(channel string, msg []byte, key []byte, maxBytes int) (body []byte, flags byte, err error) {
	if maxBytes > 0 && len(msg) > maxBytes {
		return nil, 0, decodeErr(ErrTooLarge, -1, "%d bytes, limit %d", len(msg), maxBytes)
	}
	if !IsEnvelope(msg) {
		return nil, 0, ErrNotEnvelope
	}
	if len(msg) < envFixedLen {
		return nil, 0, malformed(len(msg), "truncated before the version and flags")
	}
	if v := msg[2]; v != envVersion {
		return nil, 0, decodeErr(ErrMalformed, -1, "unknown version %d (this bridge reads version %d)", v, envVersion)
	}
	flags = msg[3]
	if flags&^flagsKnown != 0 {
		return nil, 0, malformed(3, "unknown flags %#02x", flags&^flagsKnown)
	}
	signed := flags&flagSigned != 0
	end := len(msg) // where the payload must end: before the MAC if signed
	if signed {
		end -= MACLen
	}
	tooShort := end < envFixedLen // signed, and too short to hold the MAC

	// With a key, authenticate before parsing anything else: the MAC is
	// the last 32 bytes whatever the fields say, so forged, altered,
	// truncated and padded messages are all ErrSignature, and the parser
	// only ever sees what a holder of the key wrote.
	if len(key) > 0 {
		if !signed {
			return nil, 0, decodeErr(ErrSignature, -1, "unsigned envelope on %q", channel)
		}
		if tooShort {
			return nil, 0, decodeErr(ErrSignature, -1, "%d bytes, too short to carry a MAC, on %q", len(msg), channel)
		}
		m := mac.Get(key)
		ok := hmac.Equal(sum(m, m.Out[:0], channel, msg[:end]), msg[end:])
		mac.Put(m)
		if !ok {
			return nil, 0, decodeErr(ErrSignature, -1, "MAC mismatch on %q", channel)
		}
	}
	if tooShort {
		return nil, 0, malformed(len(msg), "signed, but too short to hold the %d-byte MAC", MACLen)
	}
	if flags&flagBatch != 0 && flags&flagHeaders != 0 {
		return nil, 0, malformed(3, "headers flag on a batch (headers are per event)")
	}
	return msg[:end], flags, nil
}

// parseSingle decodes the fields of a plain envelope, msg without its MAC.
func parseSingle(msg []byte, flags byte) (Envelope, error) {
	// First pass: validate everything and remember where the fields are,
	// without allocating. The fields must fill msg exactly.
	src, epoch, off, err := readSource(msg, flags)
	if err != nil {
		return Envelope{}, err
	}
	seq, off, err := readUvarint(msg, off, "sequence number", "")
	if err != nil {
		return Envelope{}, err
	}
	t, off, err := parseTail(msg, off, flags&flagHeaders != 0)
	if err != nil {
		return Envelope{}, err
	}
	if off != len(msg) {
		return Envelope{}, malformed(off, "%s after the payload", plural.Of(uint64(len(msg)-off), "byte"))
	}
	// Second pass: build the result from validated bytes.
	env := Envelope{Source: sources.String(src), Epoch: epoch, Seq: seq}
	t.fill(&env)
	return env, nil
}

// readSource reads the source of a plain envelope or a batch, msg, and its
// epoch if flags say it has one, and returns the offset after them.
func readSource(msg []byte, flags byte) (src []byte, epoch uint64, off int, err error) {
	src, off, err = readField(msg, envFixedLen, 1, maxSourceLen, "source")
	if err != nil {
		return nil, 0, off, err
	}
	if !printable(src) {
		return nil, 0, off, malformed(envFixedLen, "source not printable ASCII")
	}
	if flags&flagEpoch == 0 {
		return src, 0, off, nil
	}
	if len(msg)-off < epochLen {
		return nil, 0, off, malformed(off, "truncated epoch")
	}
	if epoch = binary.BigEndian.Uint64(msg[off:]); epoch == 0 {
		return nil, 0, off, malformed(off, "epoch 0 (the flag says there is one)")
	}
	return src, epoch, off + epochLen, nil
}

// printable is Printable for bytes.
func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// parseBatch decodes the fields of a batch, msg without its MAC, and calls
// fn for each event once all of them are valid.
func parseBatch(msg []byte, flags byte, fn func(i int, env Envelope)) (int, error) {
	src, epoch, off, err := readSource(msg, flags)
	if err != nil {
		return 0, err
	}
	seqOff := off
	seq, off, err := readUvarint(msg, off, "sequence number", "")
	if err != nil {
		return 0, err
	}
	if seq == 0 {
		return 0, malformed(seqOff, "batch numbered from 0")
	}
	countOff := off
	count, off, err := readUvarint(msg, off, "event count", "")
	if err != nil {
		return 0, err
	}
	if count < 2 || count > MaxBatchEvents {
		return 0, malformed(countOff, "event count %d, want 2..%d", count, MaxBatchEvents)
	}
	if seq+count-1 < seq {
		return 0, malformed(seqOff, "sequence numbers overflow 64 bits")
	}
	first := off
	for range count {
		if off, err = skipBatchEvent(msg, off); err != nil {
			return 0, err
		}
	}
	if off != len(msg) {
		return 0, malformed(off, "%s after the last event", plural.Of(uint64(len(msg)-off), "byte"))
	}

	// Everything is valid: build the events.
	source := sources.String(src)
	off = first
	for i := range int(count) {
		hasHeaders := msg[off]&flagHeaders != 0
		var t tail
		t, off, _ = parseTail(msg, off+1, hasHeaders)
		env := Envelope{Source: source, Epoch: epoch, Seq: seq + uint64(i)}
		t.fill(&env)
		fn(i, env)
	}
	return int(count), nil
}

// skipBatchEvent validates the event of a batch at msg[off:] and returns
// the offset after it.
func skipBatchEvent(msg []byte, off int) (int, error) {
	if off >= len(msg) {
		return off, malformed(off, "truncated before an event's flags")
	}
	f := msg[off]
	if f&^flagHeaders != 0 {
		return off, malformed(off, "unknown event flags %#02x", f&^flagHeaders)
	}
	_, off, err := parseTail(msg, off+1, f&flagHeaders != 0)
	return off, err
}

// tail locates the fields of an event from its time through its payload,
// validated, in a message.
type tail struct {
	zt       uint64
	ctype    []byte
	nHeaders uint64
	headers  []byte // the encoded headers, after the count
	payload  []byte
}

// parseTail validates the fields of an event from its time through its
// payload at msg[off:], without allocating, and returns where they are and
// the offset after them.
func parseTail(msg []byte, off int, hasHeaders bool) (t tail, _ int, err error) {
	t.zt, off, err = readUvarint(msg, off, "time", "")
	if err != nil {
		return t, off, err
	}
	typeOff := off
	t.ctype, off, err = readField(msg, off, 0, MaxTypeLen, "content type")
	if err != nil {
		return t, off, err
	}
	if !printable(t.ctype) {
		return t, off, malformed(typeOff, "content type not printable ASCII")
	}
	if hasHeaders {
		countOff := off
		t.nHeaders, off, err = readUvarint(msg, off, "header count", "")
		if err != nil {
			return t, off, err
		}
		if t.nHeaders == 0 || t.nHeaders > maxHeaders {
			return t, off, malformed(countOff, "header count %d, want 1..%d", t.nHeaders, maxHeaders)
		}
		hStart := off
		var prev []byte
		for i := uint64(0); i < t.nHeaders; i++ {
			keyOff := off
			var k []byte
			k, off, err = readField(msg, off, 1, maxHeaderKey, "header key")
			if err != nil {
				return t, off, err
			}
			if i > 0 && bytes.Compare(prev, k) >= 0 {
				return t, off, malformed(keyOff, "header keys not in strictly increasing order")
			}
			prev = k
			if _, off, err = readField(msg, off, 0, maxHeaderVal, "header value"); err != nil {
				return t, off, err
			}
		}
		t.headers = msg[hStart:off]
	}
	t.payload, off, err = readField(msg, off, 0, -1, "payload")
	return t, off, err
}

// fill sets the time, content type, headers and payload of env from t.
func (t *tail) fill(env *Envelope) {
	env.Time = unzigzag(t.zt)
	env.ContentType = types.String(t.ctype)
	if len(t.payload) > 0 {
		env.Payload = t.payload[:len(t.payload):len(t.payload)]
	}
	if t.nHeaders > 0 {
		env.Headers = make(map[string]string, t.nHeaders)
		headers := t.headers
		for len(headers) > 0 {
			// Already validated: lengths are minimal and in bounds.
			n, w := binary.Uvarint(headers)
			k := headers[w : w+int(n)]
			headers = headers[w+int(n):]
			n, w = binary.Uvarint(headers)
			env.Headers[string(k)] = string(headers[w : w+int(n)])
			headers = headers[w+int(n):]
		}
	}
}

// malformed returns an error wrapping ErrMalformed that says what is wrong at
// byte offset off.
func malformed(off int, format string, args ...any) error {
	return &decodeError{sentinel: ErrMalformed, off: off, format: format, args: args}
}

// decodeErr returns an error wrapping sentinel that says what is wrong,
// at byte offset off if off is not negative.
func decodeErr(sentinel error, off int, format string, args ...any) error {
	return &decodeError{sentinel: sentinel, off: off, format: format, args: args}
}

// decodeError is an error of decoding whose message is only formatted
// when it is read: a receiver rejects a flood of bad messages, and reports
// few of them (the bridge's reports are rate-limited), so rejecting one
// costs no formatting.
type decodeError struct {
	sentinel error
	off      int // -1: no offset
	format   string
	args     []any
}

func (e *decodeError) Error() string {
	msg := fmt.Sprintf(e.format, e.args...)
	if e.off < 0 {
		return e.sentinel.Error() + ": " + msg
	}
	return fmt.Sprintf("%v: at byte %d: %s", e.sentinel, e.off, msg)
}

func (e *decodeError) Unwrap() error { return e.sentinel }

// readUvarint reads a minimally encoded uvarint at b[off:] and returns it and
// the offset after it. binary.Uvarint is not used because it accepts padded
// encodings (0x80 0x00 for 0), which would make the format non-canonical.
//
// what names the field in errors; suffix is appended to it (" length" for
// a field's length prefix). They are separate so that no string is built
// unless there is an error.
func readUvarint(b []byte, off int, what, suffix string) (uint64, int, error) {
	var x uint64
	var shift uint
	for i := 0; i < binary.MaxVarintLen64; i++ {
		if off+i >= len(b) {
			return 0, off, malformed(off, "truncated %s%s", what, suffix)
		}
		c := b[off+i]
		if c < 0x80 {
			if i == binary.MaxVarintLen64-1 && c > 1 {
				return 0, off, malformed(off, "%s%s overflows 64 bits", what, suffix)
			}
			if c == 0 && i > 0 {
				return 0, off, malformed(off, "%s%s is not minimally encoded", what, suffix)
			}
			return x | uint64(c)<<shift, off + i + 1, nil
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, off, malformed(off, "%s%s overflows 64 bits", what, suffix)
}

// readField reads a uvarint length in [minLen, maxLen] (maxLen < 0: no limit
// but the message's end) and that many bytes, and returns them (aliasing b)
// and the offset after them.
func readField(b []byte, off, minLen, maxLen int, what string) ([]byte, int, error) {
	lenOff := off
	n, off, err := readUvarint(b, off, what, " length")
	if err != nil {
		return nil, lenOff, err
	}
	if n < uint64(minLen) || (maxLen >= 0 && n > uint64(maxLen)) {
		if maxLen < 0 {
			return nil, lenOff, malformed(lenOff, "%s length %d, want at least %d", what, n, minLen)
		}
		return nil, lenOff, malformed(lenOff, "%s length %d, want %d..%d", what, n, minLen, maxLen)
	}
	if n > uint64(len(b)-off) { // compared as uint64: n may not fit an int
		return nil, lenOff, malformed(lenOff, "%s length %d but only %s left", what, n, plural.Of(uint64(len(b)-off), "byte"))
	}
	end := off + int(n)
	return b[off:end], end, nil
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// sum appends to dst the HMAC m computes of uvarint(len(channel)) ||
// channel || signed. The length prefix keeps the channel/message boundary
// unambiguous.
func sum(m *mac.State, dst []byte, channel string, signed []byte) []byte {
	p := binary.AppendUvarint(m.Scratch[:0], uint64(len(channel)))
	m.H.Write(p)
	for len(channel) > 0 {
		n := copy(m.Scratch[:], channel)
		m.H.Write(m.Scratch[:n])
		channel = channel[n:]
	}
	m.H.Write(signed)
	return m.H.Sum(dst)
}
