package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// TestEpoch: an envelope or a batch with an epoch carries it (flag 0x08,
// 8 bytes after the source), one without reads as epoch 0, and the flag
// without a valid epoch is malformed.
func TestEpoch(t *testing.T) {
	const epoch = 0x0123456789abcdef
	env := Envelope{Source: "a", Epoch: epoch, Seq: 7, Time: 1, ContentType: "text/plain", Payload: []byte("hi")}
	for _, key := range [][]byte{nil, envTestKey} {
		msg := AppendEnvelope(nil, envTestChannel, &env, key)
		if msg[3]&flagEpoch == 0 || len(msg) != EnvelopeLen(&env, key != nil) {
			t.Fatalf("flags %#02x, len %d, EnvelopeLen %d", msg[3], len(msg), EnvelopeLen(&env, key != nil))
		}
		got, err := DecodeEnvelope(envTestChannel, msg, key, 0)
		if err != nil || got.Epoch != epoch || got.Seq != 7 {
			t.Fatalf("decoded %+v, %v", got, err)
		}
		batch := []Envelope{env, env}
		msg = AppendBatch(nil, envTestChannel, batch, key)
		var epochs []uint64
		if _, err := DecodeMessage(envTestChannel, msg, key, 0, func(_ int, e Envelope) { epochs = append(epochs, e.Epoch) }); err != nil ||
			len(epochs) != 2 || epochs[0] != epoch || epochs[1] != epoch {
			t.Fatalf("batch: epochs %x, %v", epochs, err)
		}
	}
	plain := env
	plain.Epoch = 0
	if got, err := DecodeEnvelope(envTestChannel, AppendEnvelope(nil, envTestChannel, &plain, nil), nil, 0); err != nil || got.Epoch != 0 {
		t.Fatalf("without an epoch: %+v, %v", got, err)
	}
	for _, tc := range []struct{ name, hex, want string }{
		{"epoch 0", "b51e0108" + "0161" + "0000000000000000" + "01" + "02" + "00" + "00", "epoch 0"},
		{"truncated", "b51e0108" + "0161" + "000000", "truncated epoch"},
		{"batch epoch 0", "b51e010c" + "0161" + "0000000000000000" + "01" + "02", "epoch 0"},
	} {
		_, err := DecodeMessage("c", envRaw(t, tc.hex), nil, 0, func(int, Envelope) {})
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrMalformed saying %q", tc.name, err, tc.want)
		}
	}
}

// TestPrintable: sources and content types are printable ASCII, on both
// sides: Validate refuses others, decoding rejects them.
func TestPrintable(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  Envelope
		ok   bool
	}{
		{"plain", Envelope{Source: "node-1 (eu)", ContentType: "application/json; charset=utf-8"}, true},
		{"control in source", Envelope{Source: "a\x1b[2J"}, false},
		{"newline in source", Envelope{Source: "a\nb"}, false},
		{"non-ASCII source", Envelope{Source: "caf\u00e9"}, false},
		{"DEL in source", Envelope{Source: "a\x7f"}, false},
		{"control in content type", Envelope{Source: "a", ContentType: "text/plain\r\nX: 1"}, false},
		{"non-ASCII content type", Envelope{Source: "a", ContentType: "text/\u00e9"}, false},
	} {
		err := tc.env.Validate()
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
		msg := AppendEnvelope(nil, "c", &tc.env, nil)
		_, err = DecodeEnvelope("c", msg, nil, 0)
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: decode = %v", tc.name, err)
		}
		if !tc.ok {
			batch := []Envelope{tc.env, tc.env}
			if _, err := DecodeMessage("c", AppendBatch(nil, "c", batch, nil), nil, 0, func(int, Envelope) {}); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: batch decode = %v", tc.name, err)
			}
		}
	}
}

// TestDecodeErrorsLazy: decoding a bad message formats nothing until the
// error's message is read, and then says the same as before.
func TestDecodeErrorsLazy(t *testing.T) {
	msg := AppendEnvelope(nil, "c", &Envelope{Source: "a", Seq: 1}, envTestKey)
	msg[len(msg)-1] ^= 1
	_, err := DecodeEnvelope("c", msg, envTestKey, 0)
	if err == nil || err.Error() != `bridge: bad signature: MAC mismatch on "c"` {
		t.Fatalf("err = %v", err)
	}
	_, err = DecodeEnvelope("c", []byte("\xb5\x1e\x01\x00\x02a"), nil, 0)
	if err == nil || err.Error() != "bridge: malformed envelope: at byte 4: source length 2 but only 1 byte left" {
		t.Fatalf("err = %v", err)
	}
}

// printableBytewise is Printable as its documentation says it.
func printableBytewise(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// TestPrintableEveryByte: every byte value, at every position of strings
// of 0 to 17 bytes (the words Printable reads and the bytes after them),
// among printable ones that lie next to the limits.
func TestPrintableEveryByte(t *testing.T) {
	for n := 1; n <= 17; n++ {
		for _, fill := range []byte{0x20, 0x7e, 'a'} {
			for pos := range n {
				for c := range 256 {
					b := bytes.Repeat([]byte{fill}, n)
					b[pos] = byte(c)
					if got, want := Printable(string(b)), printableBytewise(string(b)); got != want {
						t.Fatalf("Printable(%q) = %v, want %v", b, got, want)
					}
				}
			}
		}
	}
	if !Printable("") {
		t.Fatal(`Printable("") = false`)
	}
}

func BenchmarkPrintable(b *testing.B) {
	for _, s := range []string{"application/octet-stream", "application/json"} {
		b.Run(s, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !Printable(s) {
					b.Fatal("not printable")
				}
			}
		})
		b.Run(s+"/bytewise", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !printableBytewise(s) {
					b.Fatal("not printable")
				}
			}
		})
	}
}
