package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// frame is a Frame with strings, to compare.
type frame struct {
	kind                            Kind
	name, pattern, channel, payload string
	count                           int64
	oversize                        int
}

func (f *Frame) text() frame {
	return frame{f.Kind, string(f.Name), string(f.Pattern), string(f.Channel), string(f.Payload), f.Count, f.Oversize}
}

// bulk returns s as a RESP bulk string.
func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

func TestRead(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		want frame
	}{
		{"message", "*3\r\n" + bulk("message") + bulk("app:x") + bulk("hello"), frame{kind: Message, name: "message", channel: "app:x", payload: "hello"}},
		{"empty payload", "*3\r\n" + bulk("message") + bulk("app:x") + bulk(""), frame{kind: Message, name: "message", channel: "app:x"}},
		{"binary payload", "*3\r\n" + bulk("message") + bulk("c") + bulk("a\r\nb\x00"), frame{kind: Message, name: "message", channel: "c", payload: "a\r\nb\x00"}},
		{"pmessage", "*4\r\n" + bulk("pmessage") + bulk("app:*") + bulk("app:x") + bulk("hi"), frame{kind: Message, name: "pmessage", pattern: "app:*", channel: "app:x", payload: "hi"}},
		{"smessage", "*3\r\n" + bulk("smessage") + bulk("{s}x") + bulk("hi"), frame{kind: Message, name: "smessage", channel: "{s}x", payload: "hi"}},
		{"RESP3 push", ">3\r\n" + bulk("message") + bulk("app:x") + bulk("hello"), frame{kind: Message, name: "message", channel: "app:x", payload: "hello"}},
		{"subscribe", "*3\r\n" + bulk("subscribe") + bulk("app:x") + ":1\r\n", frame{kind: Subscription, name: "subscribe", channel: "app:x", count: 1}},
		{"psubscribe", ">3\r\n" + bulk("psubscribe") + bulk("app:*") + ":2\r\n", frame{kind: Subscription, name: "psubscribe", channel: "app:*", count: 2}},
		{"sunsubscribe", "*3\r\n" + bulk("sunsubscribe") + bulk("{s}x") + ":0\r\n", frame{kind: Subscription, name: "sunsubscribe", channel: "{s}x"}},
		{"RESP2 pong", "*2\r\n" + bulk("pong") + bulk("busline-bridge-1"), frame{kind: Pong, name: "pong", payload: "busline-bridge-1"}},
		{"RESP3 pong", "+PONG\r\n", frame{kind: Pong, name: "PONG"}},
		{"RESP3 pong with payload", bulk("busline-bridge-2"), frame{kind: Pong, name: "pong", payload: "busline-bridge-2"}},
		{"error", "-NOPERM this user has no permissions to access the 'x' channel\r\n", frame{kind: Error, payload: "NOPERM this user has no permissions to access the 'x' channel"}},
		{"oversize payload", "*3\r\n" + bulk("message") + bulk("app:x") + bulk(strings.Repeat("z", 100)), frame{kind: Message, name: "message", channel: "app:x", oversize: 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Twice in a row, the second after a frame of its own.
			in := tc.in + "*3\r\n" + bulk("message") + bulk("next") + bulk("after") + tc.in
			r := NewReader(bufio.NewReaderSize(strings.NewReader(in), 16), 64)
			var f Frame
			for i, want := range []frame{tc.want, {kind: Message, name: "message", channel: "next", payload: "after"}, tc.want} {
				if err := r.Read(&f); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if got := f.text(); got != want {
					t.Fatalf("frame %d = %+v, want %+v", i, got, want)
				}
			}
			if err := r.Read(&f); err != io.EOF {
				t.Fatalf("after the frames: %v, want io.EOF", err)
			}
		})
	}
}

func TestReadRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"integer reply", ":1\r\n", ErrProtocol},
		{"unknown kind", "*3\r\n" + bulk("mess") + bulk("c") + bulk("p"), ErrProtocol},
		{"message of two", "*2\r\n" + bulk("message") + bulk("c"), ErrProtocol},
		{"array of five", "*5\r\n", ErrProtocol},
		{"array of one", "*1\r\n" + bulk("message"), ErrProtocol},
		{"nested array", "*3\r\n*1\r\n", ErrProtocol},
		{"null bulk", "*3\r\n" + bulk("message") + "$-1\r\n", ErrProtocol},
		{"bad length", "*3\r\n$x\r\n", ErrProtocol},
		{"huge length", "*3\r\n$99999999999999999999\r\n", ErrProtocol},
		{"no CR", "*3\n", ErrProtocol},
		{"no CRLF after a string", "*3\r\n$7\r\nmessageXX", ErrProtocol},
		{"oversize channel", "*3\r\n" + bulk("message") + bulk(strings.Repeat("c", 65)) + bulk("p"), ErrProtocol},
		{"oversize pong", "*2\r\n" + bulk("pong") + bulk(strings.Repeat("p", 65)), ErrProtocol},
		{"integer first", "*3\r\n:1\r\n" + bulk("c") + bulk("p"), ErrProtocol},
		{"simple string", "+OK\r\n", ErrProtocol},
		{"truncated string", "*3\r\n" + bulk("message") + "$5\r\nab", io.ErrUnexpectedEOF},
		{"truncated array", "*3\r\n" + bulk("message"), io.ErrUnexpectedEOF},
		{"truncated line", "*3\r\n$7", io.ErrUnexpectedEOF},
		{"line past the buffer", "*" + strings.Repeat("1", 100) + "\r\n", ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bufio.NewReaderSize(strings.NewReader(tc.in), 16), 64)
			var f Frame
			if err := r.Read(&f); !errors.Is(err, tc.want) {
				t.Fatalf("Read = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestReadAllocs is the budget of reading a pmessage once the buffer has
// grown: none (go-redis's PubSub allocates 10).
func TestReadAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	msg := "*4\r\n" + bulk("pmessage") + bulk("app:*") + bulk("app:orders.created") + bulk(strings.Repeat("p", 200))
	src := &repeat{s: msg}
	r := NewReader(bufio.NewReader(src), 1<<20)
	var f Frame
	if n := testing.AllocsPerRun(1000, func() {
		if err := r.Read(&f); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%.1f allocations per pmessage, want 0", n)
	}
}

// repeat is an endless stream of s.
type repeat struct {
	s   string
	off int
}

func (r *repeat) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], r.s[r.off:])
		n += c
		r.off = (r.off + c) % len(r.s)
	}
	return n, nil
}

func BenchmarkRead(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("pmessage/%dB", size), func(b *testing.B) {
			msg := "*4\r\n" + bulk("pmessage") + bulk("bench:bench.*") + bulk("bench:bench.x") + bulk(strings.Repeat("p", size))
			// Frames back to back, read in large chunks as from a socket.
			r := NewReader(bufio.NewReaderSize(&repeat{s: strings.Repeat(msg, 64<<10/len(msg)+1)}, 32<<10), 1<<20)
			var f Frame
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := r.Read(&f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzRead checks that no input panics the reader or makes it return a
// frame that breaks its invariants, and that a message written from the
// fuzzed strings reads back as it was written.
func FuzzRead(f *testing.F) {
	f.Add([]byte("*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\np\r\n"), "c", "p")
	f.Add([]byte(">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"), "app:*", "")
	f.Add([]byte("-ERR\r\n+PONG\r\n$0\r\n\r\n"), "x", "\r\n")
	f.Fuzz(func(t *testing.T, in []byte, channel, payload string) {
		r := NewReader(bufio.NewReaderSize(bytes.NewReader(in), 16), 64)
		var fr Frame
		for range 8 {
			if err := r.Read(&fr); err != nil {
				break
			}
			if fr.Kind < Message || fr.Kind > Error || fr.Oversize > 0 && (fr.Payload != nil || fr.Kind != Message) || len(fr.Payload) > 64 {
				t.Fatalf("frame %+v from %q", fr.text(), in)
			}
		}
		msg := "*3\r\n" + bulk("message") + bulk(channel) + bulk(payload)
		r = NewReader(bufio.NewReaderSize(strings.NewReader(msg), 16), 1<<20)
		if err := r.Read(&fr); err != nil {
			t.Fatalf("%q: %v", msg, err)
		}
		if got, want := fr.text(), (frame{kind: Message, name: "message", channel: channel, payload: payload}); got != want {
			t.Fatalf("%q read as %+v", msg, got)
		}
	})
}
