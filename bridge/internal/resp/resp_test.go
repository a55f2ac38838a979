package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func reader(s string) *Reader {
	return NewReader(bufio.NewReaderSize(strings.NewReader(s), 64), 1<<10)
}

func TestReadPush(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     Push
		err      error // nil, ErrProtocol, io.EOF or an Error
	}{
		{"RESP2 message", "*3\r\n$7\r\nmessage\r\n$5\r\napp:x\r\n$5\r\nhello\r\n",
			Push{Kind: Message, Channel: []byte("app:x"), Payload: []byte("hello")}, nil},
		{"RESP3 message", ">3\r\n$7\r\nmessage\r\n$5\r\napp:x\r\n$0\r\n\r\n",
			Push{Kind: Message, Channel: []byte("app:x"), Payload: []byte{}}, nil},
		{"pmessage", ">4\r\n$8\r\npmessage\r\n$5\r\napp:*\r\n$5\r\napp:x\r\n$3\r\na\r\n\r\n",
			Push{Kind: PMessage, Pattern: []byte("app:*"), Channel: []byte("app:x"), Payload: []byte("a\r\n")}, nil},
		{"smessage", ">3\r\n$8\r\nsmessage\r\n$1\r\nc\r\n$1\r\np\r\n",
			Push{Kind: SMessage, Channel: []byte("c"), Payload: []byte("p")}, nil},
		{"subscribe", "*3\r\n$9\r\nsubscribe\r\n$5\r\napp:x\r\n:1\r\n",
			Push{Kind: Subscribe, Channel: []byte("app:x"), Count: 1}, nil},
		{"psubscribe", ">3\r\n$10\r\npsubscribe\r\n$5\r\napp:*\r\n:2\r\n",
			Push{Kind: PSubscribe, Channel: []byte("app:*"), Count: 2}, nil},
		{"unsubscribe from none", "*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
			Push{Kind: Unsubscribe}, nil},
		{"RESP3 punsubscribe null", ">3\r\n$12\r\npunsubscribe\r\n_\r\n:0\r\n",
			Push{Kind: PUnsubscribe}, nil},
		{"RESP2 pong", "*2\r\n$4\r\npong\r\n$4\r\nping\r\n", Push{Kind: Pong, Payload: []byte("ping")}, nil},
		{"RESP3 pong", "$4\r\nping\r\n", Push{Kind: Pong, Payload: []byte("ping")}, nil},
		{"RESP3 plain PONG", "+PONG\r\n", Push{Kind: Pong, Payload: []byte("PONG")}, nil},
		{"attribute skipped", "|1\r\n+key\r\n*2\r\n:1\r\n:2\r\n$1\r\np\r\n", Push{Kind: Pong, Payload: []byte("p")}, nil},
		{"error", "-NOPERM no permissions to access the 'x' channel\r\n", Push{}, Error("NOPERM no permissions to access the 'x' channel")},
		{"blob error", "!5\r\nERR x\r\n", Push{}, Error("ERR x")},
		{"empty", "", Push{}, io.EOF},
		{"cut", "*3\r\n$7\r\nmessage\r\n$5\r\napp", Push{}, io.ErrUnexpectedEOF},
		{"unknown push", ">3\r\n$10\r\ninvalidate\r\n$1\r\nk\r\n:1\r\n", Push{}, ErrProtocol},
		{"wrong count", "*2\r\n$7\r\nmessage\r\n$5\r\napp:x\r\n", Push{}, ErrProtocol},
		{"too many", "*5\r\n", Push{}, ErrProtocol},
		{"no CRLF", "*3\n", Push{}, ErrProtocol},
		{"bad length", "*3\r\n$7\r\nmessage\r\n$x\r\n", Push{}, ErrProtocol},
		{"negative length", "*3\r\n$7\r\nmessage\r\n$-2\r\n", Push{}, ErrProtocol},
		{"too long", "*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$2000\r\n", Push{}, ErrProtocol},
		{"huge integer", "*3\r\n$7\r\nmessage\r\n$99999999999999999999\r\n", Push{}, ErrProtocol},
		{"bulk not ended", "*3\r\n$7\r\nmessageXX", Push{}, ErrProtocol},
		{"integer reply", ":1\r\n", Push{}, ErrProtocol},
		{"count not integer", "*3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n$1\r\n1\r\n", Push{}, ErrProtocol},
		{"line too long", "+" + strings.Repeat("a", 100) + "\r\n", Push{}, ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p Push
			err := reader(tc.in).ReadPush(&p)
			switch {
			case tc.err == nil && err != nil:
				t.Fatalf("error %v", err)
			case tc.err != nil && !errors.Is(err, tc.err):
				t.Fatalf("error %v, want %v", err, tc.err)
			case tc.err == nil && !samePush(p, tc.want):
				t.Fatalf("got %+v, want %+v", p, tc.want)
			}
		})
	}
}

func samePush(a, b Push) bool {
	eq := func(x, y []byte) bool { return (x == nil) == (y == nil) && bytes.Equal(x, y) }
	return a.Kind == b.Kind && a.Count == b.Count && eq(a.Channel, b.Channel) && eq(a.Pattern, b.Pattern) && eq(a.Payload, b.Payload)
}

// TestReadPushStream reads pushes in a row: each one's slices stay valid
// until the next read, also when the buffer grows under a large payload.
func TestReadPushStream(t *testing.T) {
	big := strings.Repeat("b", 700)
	var in []byte
	in = append(in, ">3\r\n$9\r\nsubscribe\r\n$1\r\nc\r\n:1\r\n"...)
	in = append(in, "-ERR refused\r\n"...) // the connection goes on
	for _, p := range []string{"small", big, "", "x"} {
		in = AppendCommand(in, "pmessage", "c*", "c", p)
	}
	r := reader(string(in))
	var p Push
	if err := r.ReadPush(&p); err != nil || p.Kind != Subscribe {
		t.Fatalf("%+v, %v", p, err)
	}
	if err := r.ReadPush(&p); err != Error("ERR refused") {
		t.Fatalf("%v, want the error reply", err)
	}
	for _, want := range []string{"small", big, "", "x"} {
		if err := r.ReadPush(&p); err != nil {
			t.Fatal(err)
		}
		if p.Kind != PMessage || string(p.Pattern) != "c*" || string(p.Channel) != "c" || string(p.Payload) != want {
			t.Fatalf("got %s %q %q %d bytes, want %d", p.Kind, p.Pattern, p.Channel, len(p.Payload), len(want))
		}
	}
	if err := r.ReadPush(&p); err != io.EOF {
		t.Fatalf("%v at the end, want EOF", err)
	}
}

func TestSkip(t *testing.T) {
	hello := "%3\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n"
	for _, tc := range []struct {
		name, in string
		err      error
	}{
		{"HELLO", hello, nil},
		{"OK", "+OK\r\n", nil},
		{"RESP2 HELLO", "*4\r\n$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:2\r\n", nil},
		{"null array", "*-1\r\n", nil},
		{"set and scalars", "~4\r\n#t\r\n,1.5\r\n(12345\r\n_\r\n", nil},
		{"verbatim", "=8\r\ntxt:abcd\r\n", nil},
		{"attribute", "|1\r\n+a\r\n+b\r\n+OK\r\n", nil},
		{"WRONGPASS", "-WRONGPASS invalid username-password pair\r\n", Error("WRONGPASS invalid username-password pair")},
		{"deep", strings.Repeat("*1\r\n", 20) + ":1\r\n", ErrProtocol},
		{"unknown", "?\r\n", ErrProtocol},
		{"cut", "%3\r\n$6\r\nserver\r\n", io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := reader(tc.in + "+next\r\n")
			err := r.Skip()
			if tc.err == nil {
				if err != nil {
					t.Fatal(err)
				}
				var p Push
				if err := r.ReadPush(&p); err != nil || string(p.Payload) != "next" {
					t.Fatalf("the reply after: %+v, %v", p, err)
				}
				return
			}
			if !errors.Is(err, tc.err) && err != tc.err {
				t.Fatalf("error %v, want %v", err, tc.err)
			}
		})
	}
}

func TestAppendCommand(t *testing.T) {
	got := string(AppendCommand(nil, "SUBSCRIBE", "a", ""))
	if want := "*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$0\r\n\r\n"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}

// TestReadPushAllocs is the budget of reading a message once the buffer
// has grown: none.
func TestReadPushAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	msg := AppendCommand(nil, "pmessage", "app:*", "app:x", strings.Repeat("p", 200))
	src := bytes.NewReader(nil)
	br := bufio.NewReader(src)
	r := NewReader(br, 0)
	var p Push
	n := testing.AllocsPerRun(1000, func() {
		src.Reset(msg)
		br.Reset(src)
		if err := r.ReadPush(&p); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per message, want 0", n)
	}
}
