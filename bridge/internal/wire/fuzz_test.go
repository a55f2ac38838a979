package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzDecodeEnvelope feeds arbitrary bytes to decodeEnvelope. It must never
// panic, must fail only with the documented sentinels, and whatever it
// accepts must be valid and re-encode to exactly the same bytes (the format
// is canonical).
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range envSamples()[:9] {
		for _, key := range [][]byte{nil, envTestKey} {
			for _, epoch := range []uint64{0, 1, 0xfedcba9876543210} {
				env := s.env
				env.Epoch = epoch
				msg := AppendEnvelope(nil, envTestChannel, &env, key)
				f.Add(msg, envTestChannel, key != nil)
				f.Add(msg, envTestChannel, key == nil)
				f.Add(msg[:len(msg)/2], envTestChannel, key != nil)
				f.Add(append(bytes.Clone(msg), 0), envTestChannel, key != nil)
			}
		}
	}
	for _, raw := range []string{
		"", "hi", `{"id":7}`, "\xb5\x1e", "\xb5\x1e\x02\x00", "\xb5\x1e\x01\x04",
		"\xb5\x1e\x01\x00\x01a\x80\x00\x00\x00\x00",                                 // non-minimal varint
		"\xb5\x1e\x01\x00\x01a\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", // huge payload length
		"\xb5\x1e\x01\x02\x01a\x00\x00\x00\x02\x01b\x00\x01a\x00\x00",               // unsorted headers
		"\xb5\x1e\x01\x08\x01a\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00",     // epoch 0 with its flag
		"\xb5\x1e\x01\x08\x01a\x00\x00\x01",                                         // truncated epoch
		"\xb5\x1e\x01\x00\x01\x1b\x01\x00\x00\x00",                                  // control character in the source
		"\xb5\x1e\x01\x00\x01a\x01\x00\x01\n\x00",                                   // and in the content type
	} {
		f.Add([]byte(raw), "c", false)
	}
	f.Fuzz(func(t *testing.T, msg []byte, channel string, keyed bool) {
		var key []byte
		if keyed {
			key = envTestKey
		}
		env, err := decodeEnvelopeSafe(t, channel, msg, key, 0)
		if (err == ErrNotEnvelope) != !IsEnvelope(msg) {
			t.Fatalf("isEnvelope = %v but decode error = %v", IsEnvelope(msg), err)
		}
		if len(msg) > 1 { // maxBytes 0 means no limit
			if _, err := decodeEnvelopeSafe(t, channel, msg, key, len(msg)-1); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("maxBytes len-1: %v, want ErrTooLarge", err)
			}
		}
		if err != nil {
			if err != ErrNotEnvelope && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignature) {
				t.Fatalf("undocumented error: %v", err)
			}
			return
		}
		if err := env.Validate(); err != nil {
			t.Fatalf("decoded an invalid envelope: %v", err)
		}
		signed := msg[3]&flagSigned != 0
		if signed && key == nil {
			// Read unchecked: compare with the unsigned encoding.
			re := AppendEnvelope(nil, channel, &env, nil)
			want := bytes.Clone(msg[:len(msg)-MACLen])
			want[3] &^= flagSigned
			if !bytes.Equal(re, want) {
				t.Fatalf("re-encoded unsigned\n% x\nwant\n% x", re, want)
			}
			return
		}
		if re := AppendEnvelope(nil, channel, &env, key); !bytes.Equal(re, msg) {
			t.Fatalf("re-encoded\n% x\nwant\n% x", re, msg)
		}
	})
}

// FuzzEnvelopeRoundTrip encodes arbitrary valid envelopes and checks that
// they decode to the same values, and that a signed one is bound to its
// channel.
func FuzzEnvelopeRoundTrip(f *testing.F) {
	f.Add("instance-1", uint64(0x0123456789abcdef), uint64(42), int64(1_700_000_000_000_000_000), "application/json",
		"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", "",
		[]byte(`{"id":7}`), "app:orders", true)
	f.Add("a", uint64(0), uint64(0), int64(0), "", "", "", "", "", []byte(nil), "", false)
	f.Add("\xb5\x1e", ^uint64(0), ^uint64(0), int64(-1<<63), "\x00", "a", "", "b", "x", []byte{0xb5, 0x1e, 1, 0}, "c", true)
	f.Add("b5 1e", uint64(1), ^uint64(0), int64(-1<<63), " ", "a", "", "b", "x", []byte{0xb5, 0x1e, 1, 0}, "c", true)
	f.Fuzz(func(t *testing.T, source string, epoch, seq uint64, tm int64, ctype, k1, v1, k2, v2 string,
		payload []byte, channel string, keyed bool) {
		env := Envelope{Source: source, Epoch: epoch, Seq: seq, Time: tm, ContentType: ctype, Payload: payload}
		if k1 != "" || k2 != "" {
			env.Headers = map[string]string{k1: v1, k2: v2}
		}
		if len(payload) == 0 {
			env.Payload = nil
		}
		if env.Validate() != nil {
			return
		}
		var key []byte
		if keyed {
			key = envTestKey
		}
		msg := AppendEnvelope(nil, channel, &env, key)
		if len(msg) != EnvelopeLen(&env, keyed) {
			t.Fatalf("len %d, EnvelopeLen %d", len(msg), EnvelopeLen(&env, keyed))
		}
		got, err := decodeEnvelopeSafe(t, channel, msg, key, 0)
		if err != nil {
			t.Fatalf("decode: %v\n% x", err, msg)
		}
		if !reflect.DeepEqual(got, env) {
			t.Fatalf("decoded %+v, want %+v", got, env)
		}
		if keyed {
			if _, err := decodeEnvelopeSafe(t, channel+"x", msg, key, 0); !errors.Is(err, ErrSignature) {
				t.Fatalf("other channel: %v, want ErrSignature", err)
			}
		}
	})
}

// FuzzPrintable: Printable agrees with its definition, byte by byte.
func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"", "application/octet-stream", "node-1 (eu)", "a\x7f", "caf\u00e9", "text/plain\r\n", "~~~~~~~~ "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := Printable(s), printableBytewise(s); got != want {
			t.Fatalf("Printable(%q) = %v, want %v", s, got, want)
		}
	})
}
