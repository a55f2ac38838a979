package wire

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// batchSamples returns valid batches: events of one source numbered up by
// one from the first's Seq, covering every field.
func batchSamples() []struct {
	name string
	envs []Envelope
} {
	var many []Envelope
	for i := range 1000 {
		many = append(many, Envelope{Source: "inst", Seq: uint64(7 + i), Time: int64(i) * 1000, ContentType: ctText,
			Payload: fmt.Appendf(nil, "event %d", i)})
	}
	samples := []struct {
		name string
		envs []Envelope
	}{
		{"two minimal", []Envelope{{Source: "a", Seq: 1}, {Source: "a", Seq: 2}}},
		{"headers on one", []Envelope{
			{Source: "svc", Seq: 41, Time: 5, ContentType: ctJSON, Payload: []byte(`{"id":1}`)},
			{Source: "svc", Seq: 42, Time: -6, ContentType: ctJSON,
				Headers: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a": ""},
				Payload: []byte(`{"id":2}`)},
			{Source: "svc", Seq: 43, Payload: []byte{envMagic0, envMagic1, 1, flagBatch}},
		}},
		{"last sequence numbers", []Envelope{{Source: "s", Seq: ^uint64(0) - 1}, {Source: "s", Seq: ^uint64(0), Payload: []byte("x")}}},
		{"a thousand", many},
	}
	for _, s := range envSamples() {
		if s.env.Seq == 0 || s.env.Seq == ^uint64(0) {
			continue
		}
		next := s.env
		next.Seq++
		next.Payload = []byte("next")
		samples = append(samples, struct {
			name string
			envs []Envelope
		}{"plain sample " + s.name, []Envelope{s.env, next}})
	}
	return samples
}

func TestBatchRoundTrip(t *testing.T) {
	for _, tc := range batchSamples() {
		for _, key := range [][]byte{nil, envTestKey} {
			t.Run(fmt.Sprintf("%s/signed=%v", tc.name, key != nil), func(t *testing.T) {
				msg := AppendBatch(nil, envTestChannel, tc.envs, key)
				if got, want := len(msg), batchLen(tc.envs, key != nil); got != want {
					t.Errorf("len = %d, batchLen = %d", got, want)
				}
				if msg[3]&flagBatch == 0 || (msg[3]&flagSigned != 0) != (key != nil) || msg[3]&flagHeaders != 0 {
					t.Errorf("flags %#02x", msg[3])
				}
				var got []Envelope
				n, err := decodeMessageSafe(t, envTestChannel, msg, key, 0, func(i int, env Envelope) {
					if i != len(got) {
						t.Errorf("event %d delivered as %d", len(got), i)
					}
					got = append(got, env)
				})
				if err != nil {
					t.Fatalf("decodeMessage: %v", err)
				}
				if n != len(tc.envs) || !reflect.DeepEqual(got, tc.envs) {
					t.Fatalf("decoded %d events %+v\nwant %+v", n, got, tc.envs)
				}
				// Canonical: the decoded events encode to the same bytes.
				if again := AppendBatch(nil, envTestChannel, got, key); !bytes.Equal(again, msg) {
					t.Fatalf("re-encoded differently")
				}
				// decodeEnvelope reads one event, never a batch.
				if _, err := decodeEnvelopeSafe(t, envTestChannel, msg, key, 0); !errors.Is(err, ErrMalformed) {
					t.Errorf("decodeEnvelope of a batch: %v, want ErrMalformed", err)
				}
				if _, err := decodeMessageSafe(t, envTestChannel, msg, key, len(msg)-1, nil); !errors.Is(err, ErrTooLarge) {
					t.Errorf("maxBytes len-1: %v, want ErrTooLarge", err)
				}
				if key != nil {
					if _, err := decodeMessageSafe(t, envTestChannel+"x", msg, key, 0, nil); !errors.Is(err, ErrSignature) {
						t.Errorf("other channel: %v, want ErrSignature", err)
					}
					if _, err := decodeMessageSafe(t, envTestChannel, msg, envTestOther, 0, nil); !errors.Is(err, ErrSignature) {
						t.Errorf("other key: %v, want ErrSignature", err)
					}
				}
			})
		}
	}
}

// TestDecodeMessagePlain checks that decodeMessage reads a plain envelope
// as one event, as decodeEnvelope does.
func TestDecodeMessagePlain(t *testing.T) {
	for _, s := range envSamples() {
		msg := AppendEnvelope(nil, envTestChannel, &s.env, envTestKey)
		var got []Envelope
		n, err := decodeMessageSafe(t, envTestChannel, msg, envTestKey, 0, func(i int, env Envelope) { got = append(got, env) })
		if err != nil || n != 1 || len(got) != 1 || !reflect.DeepEqual(got[0], s.env) {
			t.Errorf("%s: %d events %+v, %v", s.name, n, got, err)
		}
	}
}

func TestBatchMalformed(t *testing.T) {
	const (
		head    = "b51e0104" // magic, version 1, batch
		src     = "0161"     // source "a"
		seq1    = "01"
		count2  = "02"
		event0  = "00" + "00" + "00" + "00" // flags, time 0, no type, empty payload
		eventP  = "00" + "00" + "00" + "026869"
		events2 = event0 + eventP
		valid   = head + src + seq1 + count2 + events2
		huge10  = "ffffffffffffffffff01" // 1<<64 - 1
	)
	if n, err := decodeMessageSafe(t, "c", envRaw(t, valid), nil, 0, func(int, Envelope) {}); err != nil || n != 2 {
		t.Fatalf("the base message must be valid: %d, %v", n, err)
	}
	for _, tc := range []struct {
		name, hex string
		inError   string
	}{
		{"headers flag on the batch", "b51e0106" + src + seq1 + count2 + events2, "headers flag on a batch"},
		{"unknown flag with batch", "b51e0114" + src + seq1 + count2 + events2, "flags"},
		{"no source", head, "truncated source length"},
		{"seq 0", head + src + "00" + count2 + events2, "numbered from 0"},
		{"count 0", head + src + seq1 + "00", "event count 0"},
		{"count 1", head + src + seq1 + "01" + event0, "event count 1"},
		{"count over the limit", head + src + seq1 + "81800401" + events2, "event count 65537"},
		{"count huge", head + src + seq1 + huge10, "event count"},
		{"non-minimal count", head + src + seq1 + "8200" + events2, "minimally"},
		{"seq overflows", head + src + huge10 + count2 + events2, "overflow"},
		{"fewer events than counted", head + src + seq1 + "03" + events2, "truncated before an event's flags"},
		{"more events than counted", valid + event0, "4 bytes after the last event"},
		{"trailing byte", valid + "00", "after the last event"},
		{"unknown event flag", head + src + seq1 + count2 + event0 + "01000000", "unknown event flags"},
		{"batch flag on an event", head + src + seq1 + count2 + event0 + "04000000", "unknown event flags"},
		{"event headers flag, count 0", head + src + seq1 + count2 + event0 + "02000000" + "00", "header count 0"},
		{"unsorted event headers", head + src + seq1 + count2 + event0 + "020000" + "02" + "01620161" + "01610162" + "00", "increasing"},
		{"event payload past end", head + src + seq1 + count2 + event0 + "0000000a01", "payload length 10 but only 1"},
		{"event time non-minimal", head + src + seq1 + count2 + event0 + "00800000" + "00", "minimally"},
		{"event type too long", head + src + seq1 + count2 + event0 + "0000" + "8002" + strings.Repeat("74", 256) + "00", "content type length 256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := envRaw(t, tc.hex)
			called := 0
			n, err := decodeMessageSafe(t, "c", msg, nil, 0, func(int, Envelope) { called++ })
			if !errors.Is(err, ErrMalformed) || n != 0 {
				t.Fatalf("decode(% x) = %d, %v; want ErrMalformed", msg, n, err)
			}
			if called != 0 {
				t.Errorf("%d events delivered from a malformed batch", called)
			}
			if !strings.Contains(err.Error(), tc.inError) {
				t.Errorf("error %q does not mention %q", err, tc.inError)
			}
		})
	}
}

// TestBatchAltered checks that every altered byte of a signed batch is
// rejected, as for plain envelopes.
func TestBatchAltered(t *testing.T) {
	envs := batchSamples()[1].envs
	msg := AppendBatch(nil, envTestChannel, envs, envTestKey)
	for i := range msg {
		for _, mask := range []byte{0x01, 0x80, 0xff} {
			bad := bytes.Clone(msg)
			bad[i] ^= mask
			_, err := decodeMessageSafe(t, envTestChannel, bad, envTestKey, 0, func(int, Envelope) {
				t.Fatalf("byte %d ^ %#02x: an event was delivered", i, mask)
			})
			if want := alteredError(i, bad); !errors.Is(err, want) {
				t.Fatalf("byte %d ^ %#02x: %v, want %v", i, mask, err, want)
			}
		}
	}
}

func TestBatchAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocations")
	}
	envs := batchSamples()[3].envs // a thousand events, no headers
	for _, key := range [][]byte{nil, envTestKey} {
		buf := make([]byte, 0, batchLen(envs, key != nil))
		var msg []byte
		if n := testing.AllocsPerRun(20, func() {
			msg = AppendBatch(buf[:0], envTestChannel, envs, key)
		}); n != 0 {
			t.Errorf("appendBatch signed=%v: %v allocs per run, want 0", key != nil, n)
		}
		// The source string, once per batch, and nothing per event: the
		// content types are interned.
		events := 0
		if n := testing.AllocsPerRun(20, func() {
			if _, err := DecodeMessage(envTestChannel, msg, key, 0, func(int, Envelope) { events++ }); err != nil {
				t.Fatal(err)
			}
		}); n > 1 {
			t.Errorf("decodeMessage of %d events, signed=%v: %v allocs per run, want at most 1", len(envs), key != nil, n)
		}
		if events == 0 {
			t.Fatal("no events decoded")
		}
	}
}

// FuzzDecodeMessage feeds arbitrary bytes to decodeMessage. It must never
// panic, must fail only with the documented sentinels and then deliver
// nothing, and what it accepts must be valid, numbered as the format says
// and re-encode to exactly the same bytes.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range batchSamples()[:3] {
		for _, key := range [][]byte{nil, envTestKey} {
			for _, epoch := range []uint64{0, 0x0123456789abcdef} {
				envs := slices.Clone(s.envs)
				envs[0].Epoch = epoch
				msg := AppendBatch(nil, envTestChannel, envs, key)
				f.Add(msg, envTestChannel, key != nil)
				f.Add(msg[:len(msg)/2], envTestChannel, key != nil)
				f.Add(append(bytes.Clone(msg), 0), envTestChannel, key != nil)
			}
		}
	}
	for _, s := range envSamples()[:3] {
		f.Add(AppendEnvelope(nil, "c", &s.env, nil), "c", false)
	}
	f.Add([]byte("\xb5\x1e\x01\x04\x01a\x01\x02\x00\x00\x00\x00\x00\x00\x00\x02hi"), "c", false)
	f.Fuzz(func(t *testing.T, msg []byte, channel string, keyed bool) {
		var key []byte
		if keyed {
			key = envTestKey
		}
		var got []Envelope
		n, err := decodeMessageSafe(t, channel, msg, key, 0, func(i int, env Envelope) {
			if i != len(got) {
				t.Fatalf("event %d delivered as %d", len(got), i)
			}
			got = append(got, env)
		})
		if err != nil {
			if err != ErrNotEnvelope && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignature) {
				t.Fatalf("undocumented error: %v", err)
			}
			if n != 0 || len(got) != 0 {
				t.Fatalf("error %v after %d events", err, len(got))
			}
			return
		}
		if n != len(got) || n == 0 {
			t.Fatalf("returned %d, delivered %d", n, len(got))
		}
		for i := range got {
			if err := got[i].Validate(); err != nil {
				t.Fatalf("event %d invalid: %v", i, err)
			}
		}
		signed := msg[3]&flagSigned != 0
		encKey := key
		want := msg
		if signed && key == nil {
			// Read unchecked: compare with the unsigned encoding.
			want = bytes.Clone(msg[:len(msg)-MACLen])
			want[3] &^= flagSigned
		}
		var re []byte
		if msg[3]&flagBatch == 0 {
			re = AppendEnvelope(nil, channel, &got[0], encKey)
		} else {
			for i := range got {
				if got[i].Seq != got[0].Seq+uint64(i) || got[i].Source != got[0].Source {
					t.Fatalf("event %d: source %q seq %d after %q %d", i, got[i].Source, got[i].Seq, got[0].Source, got[0].Seq)
				}
			}
			re = AppendBatch(nil, channel, got, encKey)
		}
		if !bytes.Equal(re, want) {
			t.Fatalf("re-encoded\n% x\nwant\n% x", re, want)
		}
	})
}
