package resp

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzReader reads arbitrary bytes as replies: it never panics, never
// returns more than the bound it was given, and a bad frame is an error.
// A message built from the input's fields reads back as itself.
func FuzzReader(f *testing.F) {
	for _, s := range []string{
		"*3\r\n$7\r\nmessage\r\n$5\r\napp:x\r\n$5\r\nhello\r\n",
		">4\r\n$8\r\npmessage\r\n$5\r\napp:*\r\n$5\r\napp:x\r\n$0\r\n\r\n",
		"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n",
		"$4\r\nping\r\n", "-ERR x\r\n", "!3\r\nERR\r\n", "|1\r\n+a\r\n+b\r\n+OK\r\n",
		"%2\r\n+a\r\n:1\r\n+b\r\n~1\r\n#t\r\n", "*-1\r\n", "*3\r\n$7\r\nmessage\r\n$999\r\n",
	} {
		f.Add([]byte(s))
	}
	const bound = 256
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, skip := range []bool{false, true} {
			r := NewReader(bufio.NewReaderSize(bytes.NewReader(in), 16), bound)
			for range 64 {
				var err error
				var p Push
				if skip {
					err = r.Skip()
				} else {
					err = r.ReadPush(&p)
				}
				var rerr Error
				if errors.As(err, &rerr) {
					continue
				}
				if err != nil {
					if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
						t.Fatalf("error %v is neither a protocol error nor the end", err)
					}
					break
				}
				for _, b := range [][]byte{p.Channel, p.Pattern, p.Payload} {
					if len(b) > bound {
						t.Fatalf("a string of %d bytes, bound %d", len(b), bound)
					}
				}
			}
		}
		// Round trip: the input cut in three fields.
		a, b, c := in[:len(in)/3], in[len(in)/3:2*len(in)/3], in[2*len(in)/3:]
		msg := AppendCommand(nil, "pmessage", string(a), string(b), string(c))
		var p Push
		if err := NewReader(bufio.NewReader(bytes.NewReader(msg)), 0).ReadPush(&p); err != nil {
			t.Fatal(err)
		}
		if p.Kind != PMessage || !bytes.Equal(p.Pattern, a) || !bytes.Equal(p.Channel, b) || !bytes.Equal(p.Payload, c) {
			t.Fatalf("read back %+v from %q", p, msg)
		}
	})
}
