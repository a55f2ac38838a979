package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/busline/bus"
)

func TestEncodePayload(t *testing.T) {
	for _, tc := range []struct {
		data, contentType string
		enc, value        string
	}{
		{`{"a": [1, 2]}`, "application/json", encJSON, `{"a":[1,2]}`},
		{`42`, "application/json; charset=utf-8", encJSON, `42`},
		{`"s"`, "application/problem+json", encJSON, `"s"`},
		{`{"a":`, "application/json", encText, `"{\"a\":"`}, // not JSON after all
		{"\xff", "application/json", encBase64, `"/w=="`},
		{`{"a":1}`, "text/plain; charset=utf-8", encText, `"{\"a\":1}"`}, // the sender said text
		{"line 1\nline 2\ttab", "text/plain", encText, `"line 1\nline 2\ttab"`},
		{"bell\a", "text/plain", encBase64, `"YmVsbAc="`},
		{"", "", encText, `""`},
		{"hi", "", encText, `"hi"`},
		{"42", "", encText, `"42"`}, // a bare JSON number without a content type is text
		{` [1, {"b": null}] `, "", encJSON, `[1,{"b":null}]`},
		{"{\"s\": \"\xff\"}", "", encBase64, `"eyJzIjogIv8ifQ=="`}, // invalid UTF-8 inside JSON
		{"\xb5\x1e\x01", "", encBase64, `"tR4B"`},
		{"ünïcödé ✓ \uFFFD", "application/octet-stream", encText, `"ünïcödé ✓ ` + "\uFFFD" + `"`},
		{"\x00", "application/octet-stream", encBase64, `"AA=="`},
	} {
		enc, value := encodePayload([]byte(tc.data), tc.contentType)
		if enc != tc.enc || string(value) != tc.value {
			t.Errorf("encodePayload(%q, %q) = %s %s, want %s %s", tc.data, tc.contentType, enc, value, tc.enc, tc.value)
		}
	}
}

func TestFormatEvent(t *testing.T) {
	at := time.Date(2026, 11, 25, 13, 40, 0, 123, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		e    bus.Event
		want string
	}{
		{bus.Event{Topic: "a.b", Payload: []byte("hi"), Meta: &bus.Meta{Source: "redis"}},
			`{"topic":"a.b","source":"redis","seq":0,"time":null,"encoding":"text","payload":"hi"}`},
		{bus.Event{Topic: "o", Payload: []byte(`{"id":1}`), Meta: &bus.Meta{Source: "s1", Seq: 9, Time: at, ContentType: "application/json", Headers: map[string]string{"traceparent": "00-x"}}},
			`{"topic":"o","source":"s1","seq":9,"time":"2026-11-25T12:40:00.000000123Z","content_type":"application/json","headers":{"traceparent":"00-x"},"encoding":"json","payload":{"id":1}}`},
		{bus.Event{Topic: "local", Payload: "text"},
			`{"topic":"local","source":"","seq":0,"time":null,"encoding":"text","payload":"text"}`},
		{bus.Event{Topic: "local", Payload: map[string]int{"n": 1}},
			`{"topic":"local","source":"","seq":0,"time":null,"encoding":"json","payload":{"n":1}}`},
	} {
		got, err := formatEvent(tc.e)
		if err != nil || string(got) != tc.want+"\n" {
			t.Errorf("formatEvent(%+v) = %s, %v; want %s", tc.e, got, err, tc.want)
		}
	}
	if _, err := formatEvent(bus.Event{Topic: "x", Payload: func() {}}); err == nil {
		t.Error("formatEvent of a func payload: no error")
	}
}

// FuzzFormatEvent checks that every message, whatever its bytes and content
// type, makes one line of valid JSON from which the payload can be read
// back exactly.
func FuzzFormatEvent(f *testing.F) {
	for _, seed := range []struct{ data, ct string }{
		{"hi", ""}, {`{"a":1}`, "application/json"}, {"\xff\x00", ""}, {"[1,\n2]", ""},
		{`"x"`, "application/json"}, {"a\u2028b", "text/plain"}, {"\xb5\x1e\x01\x00", "application/octet-stream"},
	} {
		f.Add([]byte(seed.data), seed.ct, "topic")
	}
	f.Fuzz(func(t *testing.T, data []byte, contentType, topic string) {
		out, err := formatEvent(bus.Event{Topic: topic, Payload: data, Meta: &bus.Meta{Source: "s", ContentType: contentType}})
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(out, '\n') != len(out)-1 || !utf8.Valid(out) {
			t.Fatalf("not one line of UTF-8: %q", out)
		}
		var l line
		if err := json.Unmarshal(out, &l); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		switch l.Encoding {
		case encText:
			var s string
			if err := json.Unmarshal(l.Payload, &s); err != nil || s != string(data) {
				t.Fatalf("text payload %s for %q", l.Payload, data)
			}
		case encBase64:
			var s string
			if err := json.Unmarshal(l.Payload, &s); err != nil {
				t.Fatal(err)
			}
			if b, err := base64.StdEncoding.DecodeString(s); err != nil || !bytes.Equal(b, data) {
				t.Fatalf("base64 payload %s for %q", l.Payload, data)
			}
		case encJSON:
			var c bytes.Buffer
			if err := json.Compact(&c, data); err != nil || !bytes.Equal(c.Bytes(), l.Payload) {
				t.Fatalf("json payload %s for %q", l.Payload, data)
			}
		default:
			t.Fatalf("encoding %q", l.Encoding)
		}
	})
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		pos    []string
		raw    bool
		prefix string
	}{
		{[]string{"sub", "a"}, []string{"sub", "a"}, false, "app:"},
		{[]string{"-raw", "sub", "a"}, []string{"sub", "a"}, true, "app:"},
		{[]string{"sub", "a", "-raw", "b", "-prefix", "p:"}, []string{"sub", "a", "b"}, true, "p:"},
		{[]string{"pub", "--", "t", "-raw"}, []string{"pub", "t", "-raw"}, false, "app:"},
		{[]string{"pub", "t", "-"}, []string{"pub", "t", "-"}, false, "app:"},
	} {
		cfg := &config{prefix: "app:", stdout: io.Discard}
		pos, err := parse(cfg.flagSet(), tc.args, io.Discard)
		if err != nil || !slices.Equal(pos, tc.pos) || cfg.raw != tc.raw || cfg.prefix != tc.prefix {
			t.Errorf("parse(%q) = %q, %v, raw %v, prefix %q; want %q, raw %v, prefix %q", tc.args, pos, err, cfg.raw, cfg.prefix, tc.pos, tc.raw, tc.prefix)
		}
	}
	cfg := &config{}
	if _, err := parse(cfg.flagSet(), []string{"-h"}, io.Discard); err != flag.ErrHelp {
		t.Errorf("parse(-h): %v, want flag.ErrHelp", err)
	}
	if _, err := parse(cfg.flagSet(), []string{"-x"}, io.Discard); err == nil || !strings.Contains(err.Error(), "-x") {
		t.Errorf("parse(-x): %v", err)
	}
}
