package cloudevent

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testTime = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

func TestAppend(t *testing.T) {
	for _, tc := range []struct {
		name string
		ev   Event
		want string
	}{
		{"minimal", Event{ID: "c:1", Source: "a", Type: "t"},
			`{"specversion":"1.0","id":"c:1","source":"a","type":"t"}`},
		{"id from seq", Event{ID: "app:orders", IDSeq: true, Seq: 12, Source: "a", Type: "t"},
			`{"specversion":"1.0","id":"app:orders:12","source":"a","type":"t","buslineseq":"12"}`},
		{"json data", Event{ID: "app:orders:7", Source: "inst-1", Type: "orders", Time: testTime,
			DataContentType: "application/json", Seq: 7, Data: []byte(`{"n":1}`)},
			`{"specversion":"1.0","id":"app:orders:7","source":"inst-1","type":"orders","time":"2025-03-04T05:06:07.123456789Z","datacontenttype":"application/json","buslineseq":"7","data":{"n":1}}`},
		{"json type, not json", Event{ID: "1", Source: "a", Type: "t", DataContentType: "application/json", Data: []byte(`{`)},
			`{"specversion":"1.0","id":"1","source":"a","type":"t","datacontenttype":"application/json","data_base64":"ew=="}`},
		{"no type is JSON", Event{ID: "1", Source: "a", Type: "t", Data: []byte(`[1, 2]`)},
			`{"specversion":"1.0","id":"1","source":"a","type":"t","data":[1, 2]}`},
		{"text", Event{ID: "1", Source: "a", Type: "t", DataContentType: "text/plain; charset=utf-8", Data: []byte("hé \"x\"\n\x01")},
			`{"specversion":"1.0","id":"1","source":"a","type":"t","datacontenttype":"text/plain; charset=utf-8","data":"hé \"x\"\n\u0001"}`},
		{"text not utf-8", Event{ID: "1", Source: "a", Type: "t", DataContentType: "text/plain", Data: []byte{0xff}},
			`{"specversion":"1.0","id":"1","source":"a","type":"t","datacontenttype":"text/plain","data_base64":"/w=="}`},
		{"bytes", Event{ID: "1", Source: "a", Type: "t", DataContentType: "application/octet-stream", Data: []byte{0, 1, 2}},
			`{"specversion":"1.0","id":"1","source":"a","type":"t","datacontenttype":"application/octet-stream","data_base64":"AAEC"}`},
		{"extensions sorted, reserved ignored", Event{ID: "1", Source: "a", Type: "t", Extensions: map[string]string{
			"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "subject": "s", "id": "x", "type": "y", "a1": `q"`}},
			`{"specversion":"1.0","id":"1","source":"a","type":"t","a1":"q\"","subject":"s","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.ev.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			got := string(Append(nil, &tc.ev))
			if got != tc.want {
				t.Fatalf("Append\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("not valid JSON: %s", got)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Event{ID: "1", Source: "a", Type: "t"}
	for _, tc := range []struct {
		name string
		edit func(*Event)
	}{
		{"no id", func(e *Event) { e.ID = "" }},
		{"no type", func(e *Event) { e.Type = "" }},
		{"no source", func(e *Event) { e.Source = "" }},
		{"source with a space", func(e *Event) { e.Source = "my host" }},
		{"source bad escape", func(e *Event) { e.Source = "a%2" }},
		{"type not utf-8", func(e *Event) { e.Type = "\xff" }},
		{"upper-case header", func(e *Event) { e.Extensions = map[string]string{"Trace": "x"} }},
		{"dash in header", func(e *Event) { e.Extensions = map[string]string{"x-id": "x"} }},
		{"header of 21 characters", func(e *Event) { e.Extensions = map[string]string{strings.Repeat("a", 21): "x"} }},
		{"header value not utf-8", func(e *Event) { e.Extensions = map[string]string{"a": "\xff"} }},
		{"empty subject", func(e *Event) { e.Extensions = map[string]string{"subject": ""} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := ok
			tc.edit(&ev)
			if err := ev.Validate(); !errors.Is(err, ErrAttribute) {
				t.Fatalf("Validate = %v, want ErrAttribute", err)
			}
		})
	}
	ev := ok
	ev.Extensions = map[string]string{strings.Repeat("a", 20): "x", "data": "ignored", "source": "ignored"}
	ev.Source = "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"
	if err := ev.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
}

func TestDecode(t *testing.T) {
	const base = `"specversion":"1.0","id":"x1","source":"/sensors/1","type":"com.example.t"`
	for _, tc := range []struct {
		name string
		msg  string
		want Event
	}{
		{"minimal", `{` + base + `}`, Event{ID: "x1", Source: "/sensors/1", Type: "com.example.t"}},
		{"spaces and order", " \n{ \"type\" : \"t\" , \"id\":\"1\",\"source\":\"s\",\"specversion\":\"1.0\" }\t",
			Event{ID: "1", Source: "s", Type: "t"}},
		{"everything", `{` + base + `,"time":"2025-03-04T05:06:07.123456789Z","datacontenttype":"application/json","buslineseq":"18446744073709551615","subject":"s","dataschema":"https://x/s","traceparent":"00-aa-bb-01","n":42,"b":true,"z":null,"data":{"a":[1,"x"]}}`,
			Event{ID: "x1", Source: "/sensors/1", Type: "com.example.t", Time: testTime, DataContentType: "application/json",
				Seq: 1<<64 - 1, Extensions: map[string]string{"subject": "s", "dataschema": "https://x/s", "traceparent": "00-aa-bb-01", "n": "42", "b": "true"},
				Data: []byte(`{"a":[1,"x"]}`)}},
		{"time with offset", `{` + base + `,"time":"2025-03-04T07:06:07.123456789+02:00"}`,
			Event{ID: "x1", Source: "/sensors/1", Type: "com.example.t", Time: testTime}},
		{"text string", `{` + base + `,"datacontenttype":"text/plain","data":"a\"\u00e9\ud83d\ude00"}`,
			Event{ID: "x1", Source: "/sensors/1", Type: "com.example.t", DataContentType: "text/plain", Data: []byte("a\"é😀")}},
		{"JSON string", `{` + base + `,"data":"hi"}`,
			Event{ID: "x1", Source: "/sensors/1", Type: "com.example.t", Data: []byte(`"hi"`)}},
		{"base64", `{` + base + `,"datacontenttype":"application/octet-stream","data_base64":"AAEC"}`,
			Event{ID: "x1", Source: "/sensors/1", Type: "com.example.t", DataContentType: "application/octet-stream", Data: []byte{0, 1, 2}}},
		{"null data", `{` + base + `,"data":null,"datacontenttype":null}`,
			Event{ID: "x1", Source: "/sensors/1", Type: "com.example.t"}},
		{"escaped name", `{` + base + `,"\u0061b":"1"}`,
			Event{ID: "x1", Source: "/sensors/1", Type: "com.example.t", Extensions: map[string]string{"ab": "1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode([]byte(tc.msg))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !got.Time.Equal(tc.want.Time) {
				t.Fatalf("Time = %v, want %v", got.Time, tc.want.Time)
			}
			got.Time, tc.want.Time = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Decode\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	const base = `"specversion":"1.0","id":"x1","source":"s","type":"t"`
	for _, tc := range []struct{ name, msg string }{
		{"empty", ``},
		{"array", `[{` + base + `}]`},
		{"empty object", `{}`},
		{"no specversion", `{"id":"x1","source":"s","type":"t"}`},
		{"no id", `{"specversion":"1.0","source":"s","type":"t"}`},
		{"no source", `{"specversion":"1.0","id":"x1","type":"t"}`},
		{"no type", `{"specversion":"1.0","id":"x1","source":"s"}`},
		{"specversion 0.3", `{"specversion":"0.3","id":"x1","source":"s","type":"t"}`},
		{"id number", `{"specversion":"1.0","id":1,"source":"s","type":"t"}`},
		{"empty id", `{"specversion":"1.0","id":"","source":"s","type":"t"}`},
		{"null type", `{"specversion":"1.0","id":"x1","source":"s","type":null}`},
		{"source not a URI-reference", `{"specversion":"1.0","id":"x1","source":"a b","type":"t"}`},
		{"duplicate id", `{` + base + `,"id":"x2"}`},
		{"duplicate extension", `{` + base + `,"e":"1","e":"2"}`},
		{"bad time", `{` + base + `,"time":"yesterday"}`},
		{"time number", `{` + base + `,"time":1}`},
		{"empty datacontenttype", `{` + base + `,"datacontenttype":""}`},
		{"both data", `{` + base + `,"data":1,"data_base64":"AA=="}`},
		{"bad base64", `{` + base + `,"data_base64":"A"}`},
		{"base64 number", `{` + base + `,"data_base64":1}`},
		{"seq zero", `{` + base + `,"buslineseq":"0"}`},
		{"seq padded", `{` + base + `,"buslineseq":"07"}`},
		{"seq number", `{` + base + `,"buslineseq":7}`},
		{"seq overflow", `{` + base + `,"buslineseq":"18446744073709551616"}`},
		{"upper-case name", `{` + base + `,"Ext":"1"}`},
		{"underscore name", `{` + base + `,"my_ext":"1"}`},
		{"object extension", `{` + base + `,"ext":{"a":1}}`},
		{"empty subject", `{` + base + `,"subject":""}`},
		{"trailing data", `{` + base + `}x`},
		{"trailing comma", `{` + base + `,}`},
		{"truncated", `{` + base},
		{"bad data", `{` + base + `,"data":{"a":}}`},
		{"bad number", `{` + base + `,"data":01}`},
		{"invalid utf-8", "{" + base + ",\"e\":\"\xff\"}"},
		{"control character", "{" + base + ",\"e\":\"\x01\"}"},
		{"bad escape", `{` + base + `,"e":"\x"}`},
		{"deep data", `{` + base + `,"data":` + strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1) + `}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode([]byte(tc.msg)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode(%.80q) = %v, want ErrMalformed", tc.msg, err)
			}
		})
	}
}

func TestIsJSON(t *testing.T) {
	for ct, want := range map[string]bool{
		"": true, "application/json": true, "Application/JSON; charset=utf-8": true,
		"application/cloudevents+json": true, "application/vnd.x+json": true,
		"text/plain": false, "application/octet-stream": false, "+json": false, "; x": false,
	} {
		if got := IsJSON(ct); got != want {
			t.Errorf("IsJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}

// TestRoundTrip encodes events and decodes them again.
func TestRoundTrip(t *testing.T) {
	for _, ev := range roundTripSamples() {
		msg := Append(nil, &ev)
		got, err := Decode(msg)
		if err != nil {
			t.Fatalf("Decode(%s): %v", msg, err)
		}
		if !equal(got, ev) {
			t.Fatalf("round trip of %s\n got %+v\nwant %+v", msg, got, ev)
		}
	}
}

func roundTripSamples() []Event {
	return []Event{
		{ID: "c:1", Source: "a", Type: "t"},
		{ID: "app:orders:7", Source: "inst-1", Type: "orders.created", Time: testTime, DataContentType: "application/json",
			Seq: 7, Data: []byte(`{"n":1,"s":"\u00e9"}`), Extensions: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tracestate": "k=v"}},
		{ID: "1", Source: "a", Type: "t", DataContentType: "text/plain; charset=utf-8", Data: []byte("line\nbreak \"q\" \\ \x7f é")},
		{ID: "1", Source: "a", Type: "t", DataContentType: "application/octet-stream", Data: []byte{0xff, 0, '"'}},
		{ID: "1", Source: "a", Type: "t", Data: []byte{0xff}},
		{ID: "1", Source: "a", Type: "t", Extensions: map[string]string{"subject": "x", "dataschema": "https://s", "e": ""}},
		{ID: "c:3", Source: "a", Type: "t", Seq: 3, Epoch: 0x0123456789abcdef, Data: []byte(`[1]`)},
	}
}

// equal compares events, their times by instant, empty and nil alike.
func equal(a, b Event) bool {
	if !a.Time.Equal(b.Time) || string(a.Data) != string(b.Data) || len(a.Extensions) != len(b.Extensions) {
		return false
	}
	for k, v := range a.Extensions {
		if w, ok := b.Extensions[k]; !ok || w != v {
			return false
		}
	}
	return a.ID == b.ID && a.Source == b.Source && a.Type == b.Type &&
		a.DataContentType == b.DataContentType && a.Seq == b.Seq && a.Epoch == b.Epoch
}

func TestAppendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations differ under the race detector")
	}
	ev := roundTripSamples()[1]
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = Append(buf[:0], &ev) }); n != 0 {
		t.Fatalf("Append: %v allocations, want 0", n)
	}
	msg := Append(nil, &ev)
	// The id, the extensions map (two allocations for a small one) and
	// its two values; source, type, content type and extension names are
	// interned.
	if n := testing.AllocsPerRun(100, func() { _, _ = Decode(msg) }); n > 5 {
		t.Fatalf("Decode: %v allocations, want at most 5", n)
	}
}

func BenchmarkAppend(b *testing.B) {
	ev := roundTripSamples()[1]
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf = Append(buf[:0], &ev)
	}
}

func BenchmarkDecode(b *testing.B) {
	ev := roundTripSamples()[1]
	msg := Append(nil, &ev)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeStdlib is the reference: the same message through
// encoding/json into a map, what a decoder built on it would start from.
func BenchmarkDecodeStdlib(b *testing.B) {
	ev := roundTripSamples()[1]
	msg := Append(nil, &ev)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(msg, &m); err != nil {
			b.Fatal(err)
		}
	}
}
