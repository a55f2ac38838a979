package wire

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// Content types of the samples: those of the bridge's codecs.
const (
	ctBytes = "application/octet-stream"
	ctText  = "text/plain; charset=utf-8"
	ctJSON  = "application/json"
)

var (
	envTestKey   = []byte("0123456789abcdef0123456789abcdef")
	envTestOther = []byte("another key, same length........")
)

const envTestChannel = "app:orders.created"

// envSamples returns valid envelopes covering every field and flag.
func envSamples() []struct {
	name string
	env  Envelope
} {
	full := make(map[string]string, maxHeaders)
	for i := range maxHeaders {
		k := fmt.Sprintf("%03d", i) + strings.Repeat("k", maxHeaderKey-3)
		full[k] = strings.Repeat("v", maxHeaderVal)
	}
	return []struct {
		name string
		env  Envelope
	}{
		{"minimal", Envelope{Source: "a"}},
		{"typical", Envelope{Source: "instance-1", Seq: 42, Time: 1_700_000_000_123_456_789, ContentType: ctJSON, Payload: []byte(`{"id":7}`)}},
		{"empty payload", Envelope{Source: "i", Seq: 1, Time: 1, ContentType: "text/plain"}},
		{"negative time", Envelope{Source: "i", Seq: 1, Time: -1_000_000_007, Payload: []byte{0}}},
		{"extreme numbers", Envelope{Source: "i", Seq: ^uint64(0), Time: -1 << 63, Payload: []byte("x")}},
		{"max int64 time", Envelope{Source: "i", Seq: 1 << 63, Time: 1<<63 - 1, Payload: []byte("x")}},
		{"one header", Envelope{Source: "svc", Seq: 9, Time: 5, ContentType: ctBytes,
			Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
			Payload: []byte("payload")}},
		{"several headers, empty value", Envelope{Source: "svc", Seq: 10,
			Headers: map[string]string{"b": "2", "a": "1", "c": "", "tracestate": "x=y"},
			Payload: []byte("p")}},
		{"binary payload looking like an envelope", Envelope{Source: "s", Payload: []byte{envMagic0, envMagic1, 1, 0, 0xff}}},
		{"max sizes", Envelope{Source: strings.Repeat("s", maxSourceLen), Seq: 1<<64 - 2, Time: 1 << 62,
			ContentType: strings.Repeat("t", MaxTypeLen), Headers: full, Payload: bytes.Repeat([]byte{0xAB}, 1<<20)}},
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, tc := range envSamples() {
		for _, key := range [][]byte{nil, envTestKey} {
			t.Run(fmt.Sprintf("%s/signed=%v", tc.name, key != nil), func(t *testing.T) {
				env := tc.env
				if err := env.Validate(); err != nil {
					t.Fatalf("validate: %v", err)
				}
				msg := AppendEnvelope(nil, envTestChannel, &env, key)
				if got, want := len(msg), EnvelopeLen(&env, key != nil); got != want {
					t.Errorf("len = %d, EnvelopeLen = %d", got, want)
				}
				if !IsEnvelope(msg) {
					t.Fatal("isEnvelope = false")
				}
				// Deterministic despite map order.
				for range 5 {
					if again := AppendEnvelope(nil, envTestChannel, &env, key); !bytes.Equal(again, msg) {
						t.Fatal("two encodings differ")
					}
				}
				// Appending after existing bytes keeps them.
				prefix := []byte("prefix")
				both := AppendEnvelope(prefix[:len(prefix):len(prefix)], envTestChannel, &env, key)
				if !bytes.Equal(both[:6], prefix) || !bytes.Equal(both[6:], msg) {
					t.Fatal("appending to a non-empty dst changed the encoding")
				}

				got, err := decodeEnvelopeSafe(t, envTestChannel, msg, key, 0)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				want := env
				if len(want.Payload) == 0 {
					want.Payload = nil
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("decoded\n%+.200v\nwant\n%+.200v", got, want)
				}
				if len(got.Payload) > 0 && cap(got.Payload) != len(got.Payload) {
					t.Errorf("payload capacity %d not clipped to its length %d", cap(got.Payload), len(got.Payload))
				}
				if len(got.Payload) > 0 && &got.Payload[0] != &msg[len(msg)-len(got.Payload)-signedLen(key)] {
					t.Error("payload does not alias the message")
				}
				// A limit of exactly the message's length is fine.
				if _, err := decodeEnvelopeSafe(t, envTestChannel, msg, key, len(msg)); err != nil {
					t.Errorf("decode with maxBytes = len: %v", err)
				}
				// Without a key, a signed message is read unchecked.
				if key != nil {
					got, err := decodeEnvelopeSafe(t, envTestChannel, msg, nil, 0)
					if err != nil || !reflect.DeepEqual(got, want) {
						t.Fatalf("signed message decoded without key: %v", err)
					}
				}
			})
		}
	}
}

func signedLen(key []byte) int {
	if len(key) > 0 {
		return MACLen
	}
	return 0
}

// TestEnvelopeGolden pins the byte layout documented in wire.go, so that
// a change to the format cannot go unnoticed by non-Go clients.
func TestEnvelopeGolden(t *testing.T) {
	env := Envelope{Source: "a", Seq: 1, Time: 0, Payload: []byte("hi")}
	got := AppendEnvelope(nil, "ch", &env, nil)
	want, _ := hex.DecodeString("b51e01000161010000026869")
	if !bytes.Equal(got, want) {
		t.Fatalf("unsigned = % x, want % x", got, want)
	}

	env = Envelope{Source: "src", Seq: 300, Time: -2, ContentType: "t",
		Headers: map[string]string{"k2": "v", "k1": ""}, Payload: []byte{7}}
	got = AppendEnvelope(nil, "ch", &env, []byte("key"))
	body, _ := hex.DecodeString("b51e0103" + "03737263" + "ac02" + "03" + "0174" +
		"02" + "026b3100" + "026b320176" + "0107")
	if !bytes.Equal(got[:len(got)-MACLen], body) {
		t.Fatalf("signed body = % x, want % x", got[:len(got)-MACLen], body)
	}
	// The MAC is plain HMAC-SHA256 over uvarint(len(channel)), channel, body.
	h := hmac.New(sha256.New, []byte("key"))
	h.Write([]byte{2, 'c', 'h'})
	h.Write(body)
	if mac := h.Sum(nil); !bytes.Equal(got[len(body):], mac) {
		t.Fatalf("MAC = % x, want % x", got[len(body):], mac)
	}
}

// TestEnvelopeMACLongChannel checks the chunked channel write of the MAC
// against crypto/hmac for channels around the scratch buffer's size, and a
// key longer than a SHA-256 block.
func TestEnvelopeMACLongChannel(t *testing.T) {
	key := bytes.Repeat([]byte("K"), 100)
	env := Envelope{Source: "s", Payload: []byte("p")}
	for _, n := range []int{0, 1, 63, 64, 65, 127, 128, 129, 1000} {
		ch := strings.Repeat("c", n)
		msg := AppendEnvelope(nil, ch, &env, key)
		body := msg[:len(msg)-MACLen]
		h := hmac.New(sha256.New, key)
		h.Write(binary.AppendUvarint(nil, uint64(n)))
		h.Write([]byte(ch))
		h.Write(body)
		if !bytes.Equal(msg[len(body):], h.Sum(nil)) {
			t.Fatalf("channel of %d bytes: MAC differs from crypto/hmac", n)
		}
		if _, err := decodeEnvelopeSafe(t, ch, msg, key, 0); err != nil {
			t.Fatalf("channel of %d bytes: %v", n, err)
		}
	}
}

func TestEnvelopeNotEnvelope(t *testing.T) {
	for _, msg := range []string{
		"", "h", "hi", `{"id":7}`, "[1,2]", "plain text", "\xb5", "\xb5x", "\x1e\xb5\x01\x00",
		"µB", // U+00B5 in UTF-8 is C2 B5: not the magic
		"\xef\xbb\xbf{}",
	} {
		for _, key := range [][]byte{nil, envTestKey} {
			if IsEnvelope([]byte(msg)) {
				t.Errorf("IsEnvelope(%q) = true", msg)
			}
			_, err := decodeEnvelopeSafe(t, "ch", []byte(msg), key, 0)
			if err != ErrNotEnvelope {
				t.Errorf("decode(%q, key=%v) = %v, want ErrNotEnvelope", msg, key != nil, err)
			}
		}
	}
}

func TestEnvelopeTruncated(t *testing.T) {
	for _, tc := range envSamples()[:9] { // not the 1 MiB one: quadratic
		for _, sign := range []bool{false, true} {
			var key []byte
			if sign {
				key = envTestKey
			}
			msg := AppendEnvelope(nil, envTestChannel, &tc.env, key)
			for n := range len(msg) {
				cut := bytes.Clone(msg[:n]) // exact length: out-of-range reads would panic
				// Decoded without a key, every truncation is malformed
				// (or too short to carry the magic at all).
				_, err := decodeEnvelopeSafe(t, envTestChannel, cut, nil, 0)
				switch {
				case n < 2 && err != ErrNotEnvelope:
					t.Fatalf("%s signed=%v: cut at %d: %v, want ErrNotEnvelope", tc.name, sign, n, err)
				case n >= 2 && !errors.Is(err, ErrMalformed):
					t.Fatalf("%s signed=%v: cut at %d: %v, want ErrMalformed", tc.name, sign, n, err)
				}
				// With a key, the MAC check comes first: after the
				// flags byte, a truncated signed message is a bad
				// signature.
				if sign {
					_, err = decodeEnvelopeSafe(t, envTestChannel, cut, key, 0)
					switch {
					case n < 2 && err != ErrNotEnvelope:
						t.Fatalf("%s keyed: cut at %d: %v, want ErrNotEnvelope", tc.name, n, err)
					case n >= 2 && n < envFixedLen && !errors.Is(err, ErrMalformed):
						t.Fatalf("%s keyed: cut at %d: %v, want ErrMalformed", tc.name, n, err)
					case n >= envFixedLen && !errors.Is(err, ErrSignature):
						t.Fatalf("%s keyed: cut at %d: %v, want ErrSignature", tc.name, n, err)
					}
				}
			}
		}
	}
}

// envRaw builds a message from hex fragments, for hand-made malformed input.
func envRaw(t *testing.T, parts ...string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(parts, ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEnvelopeMalformed(t *testing.T) {
	const (
		head     = "b51e0100" // magic, version 1, no flags
		headH    = "b51e0102" // headers flag
		src      = "0161"     // source "a"
		seqTime  = "0000"     // seq 0, time 0
		noType   = "00"       // content type ""
		payload0 = "00"       // empty payload
		valid    = head + src + seqTime + noType + payload0
		hdrAB    = "01610162"             // "a" = "b"
		huge10   = "ffffffffffffffffff01" // 1<<64 - 1
	)
	if _, err := decodeEnvelopeSafe(t, "c", envRaw(t, valid), nil, 0); err != nil {
		t.Fatalf("the base message must be valid: %v", err)
	}
	for _, tc := range []struct {
		name, hex string
		inError   string // a substring the error must contain
	}{
		{"version 0", "b51e0000" + src + seqTime + noType + payload0, "version 0"},
		{"version 2", "b51e0200" + src + seqTime + noType + payload0, "version 2"},
		{"version 255", "b51eff00", "version 255"},
		{"magic only", "b51e", "truncated"},
		{"no flags byte", "b51e01", "truncated"},
		{"unknown flag", "b51e0110" + src + seqTime + noType + payload0, "flags"},
		{"high flag", "b51e0180" + src + seqTime + noType + payload0, "flags"},
		{"empty source", head + "00" + seqTime + noType + payload0, "source length 0"},
		{"source 256", head + "8002" + strings.Repeat("61", 256) + seqTime + noType + payload0, "source length 256"},
		{"source length past end", head + "05616263", "source length 5 but only 3"},
		{"source length overflows int", head + huge10, "source length"},
		{"varint over 64 bits", head + src + "ffffffffffffffffff02" + "00" + noType + payload0, "overflows"},
		{"varint of 11 bytes", head + src + "ffffffffffffffffffff01" + "00" + noType + payload0, "overflows"},
		{"non-minimal seq", head + src + "8000" + "00" + noType + payload0, "minimally"},
		{"non-minimal length", head + "8100" + "61" + seqTime + noType + payload0, "minimally"},
		{"non-minimal time", head + src + "00" + "ff80" + "00" + noType + payload0, "minimally"},
		{"content type 256", head + src + seqTime + "8002" + strings.Repeat("74", 256) + payload0, "content type length 256"},
		{"payload length past end", head + src + seqTime + noType + "0a" + "0102", "payload length 10 but only 2"},
		{"payload length 2^63", head + src + seqTime + noType + "80808080808080808001", "payload length"},
		{"payload length 2^64-1", head + src + seqTime + noType + huge10, "payload length"},
		{"trailing byte", valid + "00", "1 byte after the payload"},
		{"trailing text", valid + "6869", "2 bytes after the payload"},
		{"headers flag, count 0", headH + src + seqTime + noType + "00" + payload0, "header count 0"},
		{"65 headers", headH + src + seqTime + noType + "41" + strings.Repeat(hdrAB, 65) + payload0, "header count 65"},
		{"header count huge", headH + src + seqTime + noType + huge10, "header count"},
		{"header count past end", headH + src + seqTime + noType + "02" + hdrAB, "truncated header key length"},
		{"empty header key", headH + src + seqTime + noType + "01" + "00" + "00" + payload0, "header key length 0"},
		{"header key 256", headH + src + seqTime + noType + "01" + "8002" + strings.Repeat("6b", 256) + "00" + payload0, "header key length 256"},
		{"header value 4097", headH + src + seqTime + noType + "01" + "016b" + "8120" + strings.Repeat("76", 4097) + payload0, "header value length 4097"},
		{"duplicate header", headH + src + seqTime + noType + "02" + hdrAB + hdrAB + payload0, "increasing"},
		{"unsorted headers", headH + src + seqTime + noType + "02" + "01620161" + hdrAB + payload0, "increasing"},
		{"signed, too short for a MAC", "b51e0101" + src + seqTime + noType + payload0, "MAC"},
		{"signed, MAC short by one", "b51e0101" + src + seqTime + noType + payload0 + strings.Repeat("00", 31), "truncated payload length"},
		{"signed, byte between payload and MAC", "b51e0101" + src + seqTime + noType + payload0 + "00" + strings.Repeat("00", 32), "1 byte after the payload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := envRaw(t, tc.hex)
			env, err := decodeEnvelopeSafe(t, "c", msg, nil, 0)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode(% x) = %+v, %v; want ErrMalformed", msg, env, err)
			}
			if !strings.Contains(err.Error(), tc.inError) {
				t.Errorf("error %q does not mention %q", err, tc.inError)
			}
			if !strings.HasPrefix(err.Error(), "bridge: malformed envelope") {
				t.Errorf("error %q lacks the sentinel's text", err)
			}
		})
	}
}

func TestEnvelopeTooLarge(t *testing.T) {
	env := Envelope{Source: "s", Payload: bytes.Repeat([]byte("x"), 100)}
	msg := AppendEnvelope(nil, "c", &env, nil)
	for _, tc := range []struct {
		msg      []byte
		maxBytes int
		want     error
	}{
		{msg, len(msg), nil},
		{msg, 0, nil},
		{msg, -1, nil},
		{msg, len(msg) - 1, ErrTooLarge},
		{msg, 1, ErrTooLarge},
		{[]byte("a raw message that is long"), 10, ErrTooLarge},
		{[]byte("short raw"), 10, ErrNotEnvelope},
		{msg[:50], 40, ErrTooLarge}, // size is checked before anything else
	} {
		_, err := decodeEnvelopeSafe(t, "c", tc.msg, nil, tc.maxBytes)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("decode(%d bytes, maxBytes %d) = %v, want %v", len(tc.msg), tc.maxBytes, err, tc.want)
		}
	}
}

func TestEnvelopeSignature(t *testing.T) {
	for _, tc := range envSamples()[:9] {
		t.Run(tc.name, func(t *testing.T) {
			msg := AppendEnvelope(nil, envTestChannel, &tc.env, envTestKey)
			if _, err := decodeEnvelopeSafe(t, envTestChannel, msg, envTestKey, 0); err != nil {
				t.Fatalf("genuine message: %v", err)
			}
			for _, c := range []struct {
				name    string
				channel string
				key     []byte
			}{
				{"other channel", "app:orders.deleted", envTestKey},
				{"channel prefix", envTestChannel[:len(envTestChannel)-1], envTestKey},
				{"empty channel", "", envTestKey},
				{"wrong key", envTestChannel, envTestOther},
				{"key prefix", envTestChannel, envTestKey[:len(envTestKey)-1]},
			} {
				if _, err := decodeEnvelopeSafe(t, c.channel, msg, c.key, 0); !errors.Is(err, ErrSignature) {
					t.Errorf("%s: %v, want ErrSignature", c.name, err)
				}
			}

			// Every altered byte is rejected. Past the fixed header it is
			// a bad signature; in it, the message stops being an
			// envelope (magic), or becomes a malformed one (version,
			// unknown flag) or an unsigned one.
			for i := range msg {
				for _, mask := range []byte{0x01, 0x80, 0xff} {
					bad := bytes.Clone(msg)
					bad[i] ^= mask
					_, err := decodeEnvelopeSafe(t, envTestChannel, bad, envTestKey, 0)
					if want := alteredError(i, bad); !errors.Is(err, want) {
						t.Fatalf("byte %d ^ %#02x: %v, want %v", i, mask, err, want)
					}
				}
			}

			// Extra bytes appended, and the MAC moved: bad signature.
			if _, err := decodeEnvelopeSafe(t, envTestChannel, append(bytes.Clone(msg), 0), envTestKey, 0); !errors.Is(err, ErrSignature) {
				t.Errorf("appended byte: %v, want ErrSignature", err)
			}

			// Unsigned message where a key is configured.
			plain := AppendEnvelope(nil, envTestChannel, &tc.env, nil)
			if _, err := decodeEnvelopeSafe(t, envTestChannel, plain, envTestKey, 0); !errors.Is(err, ErrSignature) {
				t.Errorf("unsigned message with a key: %v, want ErrSignature", err)
			}
			// An unsigned message with the signed flag and a made-up MAC.
			forged := append(bytes.Clone(plain), make([]byte, MACLen)...)
			forged[3] |= flagSigned
			if _, err := decodeEnvelopeSafe(t, envTestChannel, forged, nil, 0); err != nil {
				t.Fatalf("forged message must be well-formed for this test: %v", err)
			}
			if _, err := decodeEnvelopeSafe(t, envTestChannel, forged, envTestKey, 0); !errors.Is(err, ErrSignature) {
				t.Errorf("forged MAC: %v, want ErrSignature", err)
			}
		})
	}
}

// alteredError returns the error that decoding a signed message whose
// byte i was altered, giving bad, must wrap: past the fixed header a bad
// signature; in it, the message stops being an envelope (magic), or
// becomes a malformed one (version, unknown flag) or an unsigned one.
func alteredError(i int, bad []byte) error {
	switch {
	case i < 2:
		return ErrNotEnvelope
	case i == 2:
		return ErrMalformed
	case i == 3 && (bad[3]&^flagsKnown != 0):
		return ErrMalformed
	default:
		return ErrSignature
	}
}

// TestEnvelopeKeyAlternation checks that the pooled HMAC state is rebuilt
// when the key changes, so a state built for one key never signs for another.
func TestEnvelopeKeyAlternation(t *testing.T) {
	env := Envelope{Source: "s", Payload: []byte("p")}
	keys := [][]byte{envTestKey, envTestOther, []byte("k"), bytes.Repeat([]byte("L"), 200)}
	for i := range 40 {
		key := keys[i%len(keys)]
		msg := AppendEnvelope(nil, "c", &env, key)
		h := hmac.New(sha256.New, key)
		h.Write([]byte{1, 'c'})
		h.Write(msg[:len(msg)-MACLen])
		if !bytes.Equal(msg[len(msg)-MACLen:], h.Sum(nil)) {
			t.Fatalf("round %d: MAC with key %d differs from crypto/hmac", i, i%len(keys))
		}
		for j, other := range keys {
			_, err := decodeEnvelopeSafe(t, "c", msg, other, 0)
			if (j == i%len(keys)) != (err == nil) {
				t.Fatalf("round %d: signed with key %d, decoded with key %d: %v", i, i%len(keys), j, err)
			}
		}
	}
}

func TestEnvelopeValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  Envelope
	}{
		{"empty source", Envelope{}},
		{"long source", Envelope{Source: strings.Repeat("s", maxSourceLen+1)}},
		{"long content type", Envelope{Source: "s", ContentType: strings.Repeat("t", MaxTypeLen+1)}},
		{"too many headers", Envelope{Source: "s", Headers: func() map[string]string {
			h := map[string]string{}
			for i := range maxHeaders + 1 {
				h[fmt.Sprint(i)] = ""
			}
			return h
		}()}},
		{"empty header key", Envelope{Source: "s", Headers: map[string]string{"": "v"}}},
		{"long header key", Envelope{Source: "s", Headers: map[string]string{strings.Repeat("k", maxHeaderKey+1): "v"}}},
		{"long header value", Envelope{Source: "s", Headers: map[string]string{"k": strings.Repeat("v", maxHeaderVal+1)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.env.Validate(); !errors.Is(err, ErrMalformed) {
				t.Fatalf("validate = %v, want ErrMalformed", err)
			}
			// appendEnvelope encodes it anyway (it cannot fail), and
			// every receiver rejects the result: the limits are the
			// same on both sides.
			msg := AppendEnvelope(nil, "c", &tc.env, nil)
			if _, err := decodeEnvelopeSafe(t, "c", msg, nil, 0); !errors.Is(err, ErrMalformed) {
				t.Fatalf("decode of an invalid envelope = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestEnvelopeAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocations")
	}
	withHeaders := Envelope{Source: "instance-1", Seq: 42, Time: 1_700_000_000_000_000_000, ContentType: ctJSON,
		Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "a=b"},
		Payload: []byte(`{"id":7,"total":12.5}`)}
	plain := withHeaders
	plain.Headers = nil
	for _, tc := range []struct {
		name string
		env  *Envelope
		key  []byte
	}{
		{"plain", &plain, nil},
		{"headers", &withHeaders, nil},
		{"signed", &plain, envTestKey},
		{"signed headers", &withHeaders, envTestKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			buf := make([]byte, 0, EnvelopeLen(tc.env, tc.key != nil))
			var msg []byte
			if n := testing.AllocsPerRun(100, func() {
				msg = AppendEnvelope(buf[:0], envTestChannel, tc.env, tc.key)
			}); n != 0 {
				t.Errorf("appendEnvelope: %v allocs per run, want 0", n)
			}
			// Decoding allocates the two strings, plus, when there are
			// headers, the map (its header and one group of slots) and
			// its strings; the MAC check nothing.
			want := 2.0
			if tc.env.Headers != nil {
				want += 2 + 2*float64(len(tc.env.Headers))
			}
			if n := testing.AllocsPerRun(100, func() {
				if _, err := DecodeEnvelope(envTestChannel, msg, tc.key, 0); err != nil {
					t.Fatal(err)
				}
			}); n > want {
				t.Errorf("decodeEnvelope: %v allocs per run, want at most %v", n, want)
			}
			// Raw messages are recognized without allocating.
			raw := []byte(`{"raw":true}`)
			if n := testing.AllocsPerRun(100, func() {
				_, _ = DecodeEnvelope(envTestChannel, raw, tc.key, 0)
			}); n != 0 {
				t.Errorf("decodeEnvelope of a raw message: %v allocs per run, want 0", n)
			}
		})
	}
}

func BenchmarkEnvelopeEncode(b *testing.B) {
	for _, bc := range envBenchCases() {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, EnvelopeLen(&bc.env, bc.key != nil))
			b.SetBytes(int64(len(bc.env.Payload)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				buf = AppendEnvelope(buf[:0], envTestChannel, &bc.env, bc.key)
			}
		})
	}
}

func BenchmarkEnvelopeDecode(b *testing.B) {
	for _, bc := range envBenchCases() {
		b.Run(bc.name, func(b *testing.B) {
			msg := AppendEnvelope(nil, envTestChannel, &bc.env, bc.key)
			b.SetBytes(int64(len(bc.env.Payload)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := DecodeEnvelope(envTestChannel, msg, bc.key, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type envBenchCase struct {
	name string
	env  Envelope
	key  []byte
}

func envBenchCases() []envBenchCase {
	small := Envelope{Source: "instance-1", Seq: 123456, Time: 1_700_000_000_000_000_000, ContentType: ctJSON,
		Payload: []byte(`{"id":7,"total":12.5,"items":["a","b"]}`)}
	traced := small
	traced.Headers = map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	large := small
	large.Payload = bytes.Repeat([]byte("x"), 16<<10)
	return []envBenchCase{
		{"small", small, nil},
		{"small-signed", small, envTestKey},
		{"traced", traced, nil},
		{"traced-signed", traced, envTestKey},
		{"16KiB", large, nil},
		{"16KiB-signed", large, envTestKey},
	}
}

// batchLen returns the exact length of the message appendBatch produces
// for envs, as EnvelopeLen does for AppendEnvelope.
func batchLen(envs []Envelope, signed bool) int {
	n := batchHeaderLen(envs[0].Source, envs[0].Epoch, envs[0].Seq, len(envs))
	for i := range envs {
		n += BatchEventLen(&envs[i])
	}
	if signed {
		n += MACLen
	}
	return n
}
