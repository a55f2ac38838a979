package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// errDecoderPanicked is what the guarded decoders below return when the
// decoder panicked.
var errDecoderPanicked = errors.New("the decoder panicked")

// decodeEnvelopeSafe is decodeEnvelope run under recover. The decoder
// reads bytes from the network and must never panic; if it does (a bounds
// check skipped), a panic in a test would abort the whole test binary and
// lose every other test's result. Here it fails t, naming the input, and
// is returned as errDecoderPanicked, so that the test goes on to its
// other inputs.
func decodeEnvelopeSafe(t testing.TB, channel string, msg, key []byte, maxBytes int) (env Envelope, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("DecodeEnvelope(channel %q, % x, keyed %v, maxBytes %d) panicked: %v", channel, msg, key != nil, maxBytes, r)
			env, err = Envelope{}, errDecoderPanicked
		}
	}()
	return DecodeEnvelope(channel, msg, key, maxBytes)
}

// decodeMessageSafe is decodeMessage run under recover, as
// decodeEnvelopeSafe is decodeEnvelope.
func decodeMessageSafe(t testing.TB, channel string, msg, key []byte, maxBytes int, fn func(i int, env Envelope)) (n int, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("DecodeMessage(channel %q, % x, keyed %v, maxBytes %d) panicked: %v", channel, msg, key != nil, maxBytes, r)
			n, err = 0, errDecoderPanicked
		}
	}()
	if fn == nil {
		fn = func(int, Envelope) {}
	}
	return DecodeMessage(channel, msg, key, maxBytes, fn)
}

// wirePart is one field of an encoded message, as the wire format in
// wire.go lists them.
type wirePart struct {
	field string
	bytes []byte
	// length marks a length prefix or a count: the number of bytes or
	// items that follow. lengthOf is the next part's field, whose length
	// it is ("" for a count).
	length   bool
	lengthOf string
}

// uv returns the minimal uvarint encoding of v.
func uv(v uint64) []byte { return binary.AppendUvarint(nil, v) }

// plainParts lays out env as an unsigned plain envelope, field by field,
// from the wire format's table rather than from appendEnvelope.
func plainParts(env *Envelope) []wirePart {
	flags := byte(0)
	if len(env.Headers) > 0 {
		flags |= flagHeaders
	}
	parts := []wirePart{
		{field: "magic", bytes: []byte{envMagic0, envMagic1}},
		{field: "version", bytes: []byte{envVersion}},
		{field: "flags", bytes: []byte{flags}},
		{field: "source length", bytes: uv(uint64(len(env.Source))), length: true, lengthOf: "source"},
		{field: "source", bytes: []byte(env.Source)},
		{field: "seq", bytes: uv(env.Seq)},
	}
	return append(parts, tailParts("", env)...)
}

// batchParts lays out envs as an unsigned batch, field by field.
func batchParts(envs []Envelope) []wirePart {
	parts := []wirePart{
		{field: "magic", bytes: []byte{envMagic0, envMagic1}},
		{field: "version", bytes: []byte{envVersion}},
		{field: "flags", bytes: []byte{flagBatch}},
		{field: "source length", bytes: uv(uint64(len(envs[0].Source))), length: true, lengthOf: "source"},
		{field: "source", bytes: []byte(envs[0].Source)},
		{field: "seq", bytes: uv(envs[0].Seq)},
		{field: "event count", bytes: uv(uint64(len(envs))), length: true},
	}
	for i := range envs {
		ev := fmt.Sprintf("event %d ", i)
		flags := byte(0)
		if len(envs[i].Headers) > 0 {
			flags = flagHeaders
		}
		parts = append(parts, wirePart{field: ev + "flags", bytes: []byte{flags}})
		parts = append(parts, tailParts(ev, &envs[i])...)
	}
	return parts
}

// tailParts lays out the fields of env from its time through its payload,
// their names prefixed with prefix.
func tailParts(prefix string, env *Envelope) []wirePart {
	p := func(field string, b []byte) wirePart { return wirePart{field: prefix + field, bytes: b} }
	l := func(of string, n int) wirePart {
		return wirePart{field: prefix + of + " length", bytes: uv(uint64(n)), length: true, lengthOf: prefix + of}
	}
	parts := []wirePart{
		p("time", uv(zigzag(env.Time))),
		l("content type", len(env.ContentType)),
		p("content type", []byte(env.ContentType)),
	}
	if len(env.Headers) > 0 {
		parts = append(parts, wirePart{field: prefix + "header count", bytes: uv(uint64(len(env.Headers))), length: true})
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range env.Headers {
				if !yield(k) {
					return
				}
			}
		}) {
			v := env.Headers[k]
			parts = append(parts,
				l("header key", len(k)), p("header key", []byte(k)),
				l("header value", len(v)), p("header value", []byte(v)))
		}
	}
	return append(parts, l("payload", len(env.Payload)), p("payload", env.Payload))
}

// join concatenates parts, replacing part i by with when i >= 0.
func join(parts []wirePart, i int, with []byte) []byte {
	var b []byte
	for k, p := range parts {
		if k == i {
			b = append(b, with...)
		} else {
			b = append(b, p.bytes...)
		}
	}
	return b
}

// TestDecodeFieldByField breaks every field of a plain envelope and of a
// batch in turn, as a message from the network could: cut short at every
// byte of the field, its length or count made to claim more than is left
// or more than the format allows, its varint padded or overflowing 64
// bits. Each must be refused as ErrMalformed, naming the field, without
// delivering anything, and never panic: the guarded decoders turn a panic
// into a failure of this test that names the input, instead of aborting
// the test binary.
func TestDecodeFieldByField(t *testing.T) {
	headers := map[string]string{"traceparent": "00-4bf9-01", "a": ""}
	env := Envelope{Source: "inst", Seq: 300, Time: -7, ContentType: ctJSON, Headers: headers, Payload: []byte(`{"id":7}`)}
	envs := []Envelope{
		{Source: "inst", Seq: 41, Time: 5, ContentType: ctText, Payload: []byte("one")},
		{Source: "inst", Seq: 42, Time: 6, Headers: headers, Payload: []byte("two")},
	}
	for _, tc := range []struct {
		name  string
		parts []wirePart
		want  []byte // what the encoder writes
	}{
		{"plain", plainParts(&env), AppendEnvelope(nil, "c", &env, nil)},
		{"batch", batchParts(envs), AppendBatch(nil, "c", envs, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := join(tc.parts, -1, nil)
			if !bytes.Equal(msg, tc.want) {
				t.Fatalf("the layout of the wire format's table\n% x\ndiffers from the encoder's\n% x", msg, tc.want)
			}
			if _, err := decodeMessageSafe(t, "c", msg, nil, 0, nil); err != nil {
				t.Fatalf("the whole message: %v", err)
			}
			broken := 0
			malformed := func(what string, bad []byte, inError string) {
				t.Helper()
				broken++
				called := 0
				_, err := decodeMessageSafe(t, "c", bad, nil, 0, func(int, Envelope) { called++ })
				switch {
				case errors.Is(err, errDecoderPanicked):
					return // reported
				case !errors.Is(err, ErrMalformed):
					t.Errorf("%s: % x: %v, want ErrMalformed", what, bad, err)
					return
				case !strings.Contains(err.Error(), inError):
					t.Errorf("%s: error %q does not mention %q", what, err, inError)
				}
				if called != 0 {
					t.Errorf("%s: %d events delivered from a malformed message", what, called)
				}
				if tc.name == "plain" {
					if _, err := decodeEnvelopeSafe(t, "c", bad, nil, 0); !errors.Is(err, ErrMalformed) && !errors.Is(err, errDecoderPanicked) {
						t.Errorf("%s: decodeEnvelope: %v, want ErrMalformed", what, err)
					}
				}
			}
			off := 0
			for i, p := range tc.parts {
				name := p.decoderName()
				// Cut at every byte of the field: before its first one,
				// the fields before it are whole.
				for k := range len(p.bytes) {
					if off+k >= 2 { // shorter, not even the magic: not an envelope
						malformed(fmt.Sprintf("cut %d bytes into %s", k, p.field), msg[:off+k], "")
					}
				}
				if p.length {
					if p.lengthOf == "" { // a count
						limit := uint64(maxHeaders)
						if name == "event count" {
							limit = MaxBatchEvents
						}
						malformed(p.field+" over its limit", join(tc.parts, i, uv(limit+1)), name)
					} else {
						rest := len(msg) - off - len(p.bytes) // the bytes after the length
						malformed(p.field+" past the end", join(tc.parts, i, uv(uint64(rest+1))), name)
					}
					malformed(p.field+" 2^64-1", join(tc.parts, i, uv(^uint64(0))), name)
				}
				if p.varint() {
					padded := append(bytes.Clone(p.bytes), 0)
					padded[len(padded)-2] |= 0x80
					malformed(p.field+" not minimal", join(tc.parts, i, padded), name+" is not minimally encoded")
					over := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}
					malformed(p.field+" over 64 bits", join(tc.parts, i, over), name+" overflows 64 bits")
				}
				off += len(p.bytes)
			}
			malformed("a trailing byte", append(bytes.Clone(msg), 0), "1 byte after the")
			t.Logf("%d fields, %d broken messages", len(tc.parts), broken)
		})
	}
}

// varint reports whether p is a varint field: a length, a count, the
// sequence number or a time.
func (p wirePart) varint() bool {
	return p.length || p.field == "seq" || strings.HasSuffix(p.field, "time")
}

// decoderName returns the name decoder errors give p: the event number of
// a batch's field left out, "sequence number" for seq.
func (p wirePart) decoderName() string {
	name := p.field
	if rest, ok := strings.CutPrefix(name, "event "); ok && rest != "count" {
		_, name, _ = strings.Cut(rest, " ")
	}
	if name == "seq" {
		return "sequence number"
	}
	return name
}
