package cloudevent

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzDecode feeds arbitrary bytes to Decode and Verify. Decode must
// never panic, must fail only with ErrMalformed, and what it accepts must
// be valid JSON whose required attributes encoding/json reads the same,
// and must survive Append and Decode again unchanged, and Append and Sign
// too. Verify must accept exactly the messages that Sign would have made
// of their body (the reference: the documented recipe).
func FuzzDecode(f *testing.F) {
	for _, ev := range roundTripSamples() {
		msg := Append(nil, &ev)
		f.Add(msg)
		f.Add(msg[:len(msg)/2])
		signed := Sign(Append(nil, &ev), 0, testKey)
		f.Add(signed)
		f.Add(signed[:len(signed)-1])
		f.Add(append(signed[:len(signed)-SigSuffixLen:len(signed)-SigSuffixLen], `,"buslinesig":"`+strings.Repeat("A", sigText)+`"}`...))
	}
	for _, s := range []string{
		``, `{}`, `[]`, `{"specversion":"1.0","id":"1","source":"s","type":"t","data":"\ud800x"}`,
		`{"specversion":"1.0","id":"\u0031","source":"s","type":"t","e":-1.5e+3,"f":false}`,
		`{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":"\\\/\b\f\r\t"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		checkVerify(t, msg)
		ev, err := Decode(msg)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !json.Valid(msg) {
			t.Fatalf("accepted invalid JSON %q", msg)
		}
		var ref map[string]any
		if err := json.Unmarshal(msg, &ref); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		if ref["id"] != ev.ID || ref["source"] != ev.Source || ref["type"] != ev.Type {
			t.Fatalf("attributes differ from encoding/json's: %+v vs %v", ev, ref)
		}
		if s, ok := ref["data"].(string); ok && !IsJSON(ev.DataContentType) && s != string(ev.Data) {
			t.Fatalf("data %q, encoding/json %q", ev.Data, s)
		}
		// Append writes strings as they are: an extension that decoded
		// to invalid UTF-8 cannot occur (the scanner rejects it), and
		// U+FFFD replaces bad surrogates.
		for _, v := range ev.Extensions {
			if !utf8.ValidString(v) {
				t.Fatalf("extension value not UTF-8: %q", v)
			}
		}
		again, err := Decode(Append(nil, &ev))
		if err != nil {
			t.Fatalf("re-encoded event rejected: %v\n%s", err, Append(nil, &ev))
		}
		if !equal(again, ev) {
			t.Fatalf("round trip changed the event\n got %+v\nwant %+v", again, ev)
		}
		signed := Sign(Append(nil, &ev), 0, testKey)
		if err := Verify(signed, testKey); err != nil {
			t.Fatalf("Verify(Sign(%s)): %v", signed, err)
		}
		if again, err = Decode(signed); err != nil || !equal(again, ev) {
			t.Fatalf("signing changed the event: %v\n got %+v\nwant %+v", err, again, ev)
		}
	})
}

// checkVerify checks Verify on msg against the recipe of the package
// documentation: msg is signed if it ends in `,"buslinesig":"`, 43
// characters and `"}`, and the HMAC of what precedes, then '}', in
// base64url, is those characters.
func checkVerify(t *testing.T, msg []byte) {
	err := Verify(msg, testKey)
	want := ErrUnsigned
	s := string(msg)
	if i := len(s) - SigSuffixLen; i >= 1 && strings.HasSuffix(s, `"}`) && strings.HasPrefix(s[i:], `,"buslinesig":"`) {
		h := hmac.New(sha256.New, testKey)
		h.Write([]byte(s[:i] + "}"))
		want = ErrBadSignature
		if s[len(s)-45:len(s)-2] == base64.RawURLEncoding.EncodeToString(h.Sum(nil)) {
			want = nil
		}
	}
	if err != want {
		t.Fatalf("Verify(%q): %v, want %v", msg, err, want)
	}
	if err == nil && string(Sign([]byte(s[:len(s)-SigSuffixLen]+"}"), 0, testKey)) != s {
		t.Fatalf("Sign does not remake %q", msg)
	}
}

// FuzzValidJSON checks the scanner against encoding/json on values: both
// accept the same texts, except that the scanner also rejects invalid
// UTF-8 and nesting deeper than maxDepth.
func FuzzValidJSON(f *testing.F) {
	for _, s := range []string{`1`, `-0.5e-7`, `"a\u00e9"`, `[1,{"a":null}]`, `{"a":tru}`, `01`, `"\x"`, ` [ ] `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := validJSON(b), json.Valid(b)
		if got && !want {
			t.Fatalf("validJSON accepts %q, encoding/json does not", b)
		}
		if !got && want && utf8.Valid(b) && bytes.Count(b, []byte("["))+bytes.Count(b, []byte("{")) < maxDepth {
			t.Fatalf("validJSON rejects %q, encoding/json accepts it", b)
		}
	})
}
