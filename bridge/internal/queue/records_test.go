package queue

import (
	"bytes"
	"fmt"
	"maps"
	"testing"
)

// TestRecordsRoundTrip pushes exports that differ in every field, some
// sharing their pointer fields with the one before and some not, across
// several chunks, and checks that each comes back as it was pushed, in
// order, with its payload copied unless big and not lent.
func TestRecordsRoundTrip(t *testing.T) {
	type routeKey struct{ name string }
	r1, r2 := &routeKey{"one"}, &routeKey{"two"}
	big := bytes.Repeat([]byte("b"), bigPayload+1)
	headers := map[string]string{"k": "v"}
	cases := []struct {
		name string
		it   Export
	}{
		{"plain", Export{Channel: "orders", Payload: []byte("p1"), Route: r1}},
		{"same run", Export{Channel: "orders", Payload: []byte("p2"), Route: r1, Seq: 7}},
		{"other route", Export{Channel: "invoices", Payload: []byte("p3"), Route: r2}},
		{"content type", Export{Channel: "c", Payload: []byte("{}"), Route: r2, ContentType: "application/json"}},
		{"headers", Export{Channel: "c", Payload: []byte("h"), Route: r2, Headers: headers}},
		{"headers again", Export{Channel: "c", Payload: []byte("h"), Route: r2, Headers: headers}},
		{"cloud event", Export{Channel: "id", Payload: []byte("ce"), Route: r1, Topic: "orders.created", CloudEvent: true}},
		{"flags", Export{Channel: "f", Route: r1, Raw: true, Echo: true, NoSeq: true, At: 99, Pos: 12}},
		{"empty channel and payload", Export{Route: r1}},
		{"big", Export{Channel: "big", Payload: big, Route: r1}},
		{"big lent", Export{Channel: "big", Payload: big, Route: r1, Lent: true}},
		{"chunk sized", Export{Channel: "x", Payload: bytes.Repeat([]byte("x"), bigPayload), Route: r1}},
	}
	var q records
	var want []Export
	for round := range 20 { // 20 rounds of about 5 KiB: several chunks
		for _, c := range cases {
			it := c.it
			it.Pos = uint64(len(want) + 1)
			it.Payload = append([]byte(nil), it.Payload...)
			if len(it.Payload) > bigPayload && !it.Lent {
				it.Payload = c.it.Payload // kept as it is
			}
			if c.it.Payload == nil {
				it.Payload = nil
			}
			q.push(&it)
			if it.Lent {
				clear(it.Payload) // the publisher reuses its buffer
				it.Payload = c.it.Payload
			}
			it.Lent = false
			want = append(want, it)
		}
		if round == 10 { // pop some halfway, to cross chunks while pushing
			for range 5 {
				var got Export
				q.pop(&got)
				checkExport(t, got, want[0])
				want = want[1:]
			}
		}
	}
	if q.len() != len(want) {
		t.Fatalf("%d records, want %d", q.len(), len(want))
	}
	for len(want) > 0 {
		if at, pos, size := q.frontAt(), q.frontPos(), q.frontSize(); at != want[0].At || pos != want[0].Pos || size != want[0].Size() {
			t.Fatalf("front: at %d pos %d size %d, want %d %d %d", at, pos, size, want[0].At, want[0].Pos, want[0].Size())
		}
		var got Export
		q.pop(&got)
		checkExport(t, got, want[0])
		want = want[1:]
	}
	if q.len() != 0 || q.runs.len() != 0 {
		t.Fatalf("emptied: %d records and %d runs left", q.len(), q.runs.len())
	}
}

// TestRecordsEmptiedAtChunkEnd fills chunks exactly or nearly, empties the
// store each time, and pushes again: the next record may start a new
// chunk while the emptied one is still the head.
func TestRecordsEmptiedAtChunkEnd(t *testing.T) {
	var q records
	for n := range 3 * recHeader {
		for pushed := 0; pushed < 3*recChunkSize; {
			it := Export{Channel: "c", Pos: uint64(pushed)}
			if n > 0 { // an empty payload comes back nil
				it.Payload = bytes.Repeat([]byte{byte(n)}, n)
			}
			q.push(&it)
			pushed += recHeader + 1 + n
			var got Export
			q.pop(&got)
			checkExport(t, got, it)
		}
	}
}

func checkExport(t *testing.T, got, want Export) {
	t.Helper()
	g, w := got, want
	g.Payload, w.Payload, g.Headers, w.Headers = nil, nil, nil, nil
	if fmt.Sprint(g) != fmt.Sprint(w) || !bytes.Equal(got.Payload, want.Payload) || (got.Payload == nil) != (want.Payload == nil) ||
		!maps.Equal(got.Headers, want.Headers) {
		t.Fatalf("popped %+v, want %+v", got, want)
	}
	if len(got.Payload) <= bigPayload && cap(got.Payload) != len(got.Payload) {
		t.Fatalf("a payload of %d bytes has capacity %d: appending would overwrite the next record", len(got.Payload), cap(got.Payload))
	}
}
