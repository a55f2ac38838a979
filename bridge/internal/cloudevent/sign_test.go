package cloudevent

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

var testKey = []byte("k3y")

// TestSign checks a signed event against the recipe other languages
// follow, written out with the standard library: the HMAC of the message
// without its last SigSuffixLen bytes, then '}', in base64url.
func TestSign(t *testing.T) {
	ev := Event{ID: "app:t:3", Source: "a", Type: "t", Seq: 3, Epoch: 0xff, Data: []byte(`{"n":1}`)}
	unsigned := Append(nil, &ev)
	msg := Sign(append([]byte("prefix"), unsigned...), len("prefix"), testKey)[len("prefix"):]
	want := `{"specversion":"1.0","id":"app:t:3","source":"a","type":"t","buslineseq":"3","data":{"n":1},"buslineepoch":"00000000000000ff","buslinesig":"`
	if !strings.HasPrefix(string(msg), want) {
		t.Fatalf("Sign\n got %s\nwant %s...", msg, want)
	}
	h := hmac.New(sha256.New, testKey)
	h.Write(msg[:len(msg)-SigSuffixLen])
	h.Write([]byte("}"))
	if got, ref := string(msg[len(want):len(msg)-2]), base64.RawURLEncoding.EncodeToString(h.Sum(nil)); got != ref {
		t.Fatalf("signature %s, recipe %s", got, ref)
	}
	if err := Verify(msg, testKey); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	got, err := Decode(msg)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if !equal(got, ev) || got.Extensions != nil {
		t.Fatalf("Decode\n got %+v\nwant %+v (no extensions)", got, ev)
	}
	for _, epoch := range []string{`"00000000000000FF"`, `"ff"`, `"000000000000000ff"`, `255`, `"0x000000000000ff"`} {
		bad := `{"specversion":"1.0","id":"1","source":"a","type":"t","buslineepoch":` + epoch + `}`
		if _, err := Decode([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("Decode(%s): %v, want ErrMalformed", bad, err)
		}
	}
}

func TestVerify(t *testing.T) {
	ev := roundTripSamples()[1]
	ev.Epoch = 7
	signed := string(Sign(Append(nil, &ev), 0, testKey))
	sig := signed[len(signed)-SigSuffixLen:]
	for _, tc := range []struct {
		name string
		msg  string
		key  string
		want error
	}{
		{"signed", signed, string(testKey), nil},
		{"unsigned", string(Append(nil, &ev)), string(testKey), ErrUnsigned},
		{"other key", signed, "other", ErrBadSignature},
		{"data changed", strings.Replace(signed, `"n":1`, `"n":2`, 1), string(testKey), ErrBadSignature},
		{"attribute changed", strings.Replace(signed, `"orders.created"`, `"orders.deleted"`, 1), string(testKey), ErrBadSignature},
		{"epoch changed", strings.Replace(signed, `"0000000000000007"`, `"0000000000000008"`, 1), string(testKey), ErrBadSignature},
		{"signature changed", signed[:len(signed)-3] + "A\"}", string(testKey), ErrBadSignature},
		{"white space after", signed + " ", string(testKey), ErrUnsigned},
		{"white space inside the suffix", signed[:len(signed)-2] + `" }`, string(testKey), ErrUnsigned},
		{"signature alone", sig, string(testKey), ErrUnsigned},
		{"signature moved", `{"specversion":"1.0","id":"1","source":"a","type":"t"` + sig[:len(sig)-1] + `,"x":"y"}`, string(testKey), ErrUnsigned},
		{"empty", "", string(testKey), ErrUnsigned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Verify([]byte(tc.msg), []byte(tc.key)); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSignAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations differ under the race detector")
	}
	ev := roundTripSamples()[1]
	ev.Epoch = 1
	buf := make([]byte, 0, 1024)
	Verify(Sign(Append(buf, &ev), 0, testKey), testKey) // fill the pool
	if n := testing.AllocsPerRun(100, func() { buf = Sign(Append(buf[:0], &ev), 0, testKey) }); n != 0 {
		t.Fatalf("Append and Sign: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Verify(buf, testKey) }); n != 0 {
		t.Fatalf("Verify: %v allocations, want 0", n)
	}
}

// BenchmarkSign is the cost signing adds to Append: the event of
// BenchmarkAppend with an epoch, then signed.
func BenchmarkSign(b *testing.B) {
	ev := roundTripSamples()[1]
	ev.Epoch = 1
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf = Sign(Append(buf[:0], &ev), 0, testKey)
	}
}

// BenchmarkVerify is the cost of checking the signature of the event of
// BenchmarkSign, which a receiver with a key pays before Decode.
func BenchmarkVerify(b *testing.B) {
	ev := roundTripSamples()[1]
	ev.Epoch = 1
	msg := Sign(Append(nil, &ev), 0, testKey)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := Verify(msg, testKey); err != nil {
			b.Fatal(err)
		}
	}
}
