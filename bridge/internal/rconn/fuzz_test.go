package rconn

import (
	"io"
	"net"
	"testing"
)

// FuzzHandshake answers the handshake with arbitrary bytes: it never
// panics, and returns once the replies end (an error unless they made a
// complete handshake).
func FuzzHandshake(f *testing.F) {
	for _, s := range []string{
		"%1\r\n$5\r\nproto\r\n:3\r\n+OK\r\n",
		"-ERR unknown command 'HELLO'\r\n+OK\r\n+OK\r\n+OK\r\n",
		"-WRONGPASS invalid\r\n-WRONGPASS invalid\r\n",
		"+OK\r\n-ERR DB index is out of range\r\n",
		"|1\r\n+a\r\n+b\r\n%0\r\n+OK\r\n+OK\r\n",
	} {
		f.Add([]byte(s), uint8(3))
		f.Add([]byte(s), uint8(2))
	}
	f.Fuzz(func(t *testing.T, replies []byte, proto uint8) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			go func() { _, _ = io.Copy(io.Discard, server) }()
			_, _ = server.Write(replies)
			server.Close()
		}()
		c := newConn(client, 0, 1<<10)
		_ = c.handshake(&Config{Protocol: int(proto%2) + 2, DB: 1, ClientName: "n"}, "u", "p")
		client.Close()
		<-done
	})
}
