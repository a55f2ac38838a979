package rconn

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/busline/bus/bridge/internal/resp"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// readCommand reads one command (an array of bulk strings) as a line of
// its words.
func readCommand(br *bufio.Reader) (string, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	var n int
	if _, err := fmt.Sscanf(line, "*%d\r\n", &n); err != nil {
		return "", err
	}
	words := make([]string, n)
	for i := range words {
		if _, err := br.ReadString('\n'); err != nil {
			return "", err
		}
		w, err := br.ReadString('\n')
		if err != nil {
			return "", err
		}
		words[i] = strings.TrimSuffix(w, "\r\n")
	}
	return strings.Join(words, " "), nil
}

// TestHandshake runs the handshake against a server that answers each
// command as the table says, and checks the commands it was sent.
func TestHandshake(t *testing.T) {
	hello := "%1\r\n$5\r\nproto\r\n:3\r\n"
	for _, tc := range []struct {
		name    string
		cfg     Config
		user    string
		pass    string
		replies map[string]string // by command; "+OK\r\n" if absent
		want    []string
		err     string // "" for none
	}{
		{"RESP3 default", Config{}, "", "", map[string]string{"HELLO 3": hello}, []string{"HELLO 3"}, ""},
		{"RESP3 all", Config{DB: 2, ClientName: "b"}, "u", "p",
			map[string]string{"HELLO 3 AUTH u p SETNAME b": hello},
			[]string{"HELLO 3 AUTH u p SETNAME b", "SELECT 2"}, ""},
		{"RESP3 default user", Config{}, "", "p", map[string]string{"HELLO 3 AUTH default p": hello},
			[]string{"HELLO 3 AUTH default p"}, ""},
		{"RESP2", Config{Protocol: 2, DB: 1, ClientName: "b"}, "u", "p", nil,
			[]string{"AUTH u p", "SELECT 1", "CLIENT SETNAME b"}, ""},
		{"RESP2 password only", Config{Protocol: 2}, "", "p", nil, []string{"AUTH p"}, ""},
		{"HELLO unknown: RESP2", Config{ClientName: "b"}, "", "p",
			map[string]string{"HELLO 3 AUTH default p SETNAME b": "-ERR unknown command 'HELLO'\r\n"},
			[]string{"HELLO 3 AUTH default p SETNAME b", "AUTH p", "CLIENT SETNAME b"}, ""},
		{"wrong password", Config{}, "u", "bad",
			map[string]string{"HELLO 3 AUTH u bad": "-WRONGPASS invalid username-password pair\r\n",
				"AUTH u bad": "-WRONGPASS invalid username-password pair\r\n"},
			[]string{"HELLO 3 AUTH u bad", "AUTH u bad"}, "failed to authenticate: WRONGPASS invalid username-password pair"},
		{"SELECT refused", Config{Protocol: 2, DB: 99}, "", "", map[string]string{"SELECT 99": "-ERR DB index is out of range\r\n"},
			[]string{"SELECT 99"}, "ERR DB index is out of range"},
		{"garbage", Config{}, "", "", map[string]string{"HELLO 3": "?what\r\n"}, []string{"HELLO 3"}, "resp: protocol error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			got := make(chan []string, 1)
			go func() {
				defer server.Close()
				var cmds []string
				defer func() { got <- cmds }()
				br := bufio.NewReader(server)
				for {
					cmd, err := readCommand(br)
					if err != nil {
						return
					}
					cmds = append(cmds, cmd)
					reply, ok := tc.replies[cmd]
					if !ok {
						reply = "+OK\r\n"
					}
					if _, err := server.Write([]byte(reply)); err != nil {
						return
					}
				}
			}()
			c := newConn(client, 0, 0)
			err := c.handshake(&tc.cfg, tc.user, tc.pass)
			switch {
			case tc.err == "" && err != nil:
				t.Fatal(err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("error %v, want %q", err, tc.err)
			}
			client.Close()
			if cmds := <-got; strings.Join(cmds, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("sent %q, want %q", cmds, tc.want)
			}
		})
	}
}

func TestFromClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    redis.UniversalClient
		ok   bool
	}{
		{"client", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), true},
		{"OnConnect", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1",
			OnConnect: func(context.Context, *redis.Conn) error { return nil }}), false},
		{"Sentinel", redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}}), false},
		{"Ring", redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}}), false},
		{"Cluster", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer tc.c.Close()
			_, err := FromClient(tc.c)
			if tc.ok != (err == nil) || err != nil && !errors.Is(err, ErrUnsupported) {
				t.Fatalf("error %v, want ok %v", err, tc.ok)
			}
		})
	}
}

// TestSubscribe dials a real server as an ACL user, with a database and a
// name, subscribes and reads a message.
func TestSubscribe(t *testing.T) {
	srv := redistest.Start(t, &redistest.Options{ACL: []string{"user sub on >secret ~* &* +@all"}})
	for _, proto := range []int{2, 3} {
		o := srv.ClientOptions()
		o.Username, o.Password, o.DB, o.ClientName, o.Protocol = "sub", "secret", 3, "subname", proto
		rdb := redis.NewClient(o)
		defer rdb.Close()
		cfg, err := FromClient(rdb)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		c, err := Dial(ctx, cfg, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		list, err := rdb.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(list, "name=subname") || !strings.Contains(list, "db=3") {
			t.Fatalf("CLIENT LIST has no connection named subname on db 3:\n%s", list)
		}
		if err := c.Send("SUBSCRIBE", "a"); err != nil {
			t.Fatal(err)
		}
		var p resp.Push
		if err := c.Receive(&p, time.Now().Add(5*time.Second)); err != nil || p.Kind != resp.Subscribe {
			t.Fatalf("%+v, %v", p, err)
		}
		// No reply yet: a timeout, after which the connection reads on.
		err = c.Receive(&p, time.Now().Add(10*time.Millisecond))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("%v, want a timeout", err)
		}
		if err := rdb.Publish(ctx, "a", "hi").Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.Receive(&p, time.Now().Add(5*time.Second)); err != nil || p.Kind != resp.Message || string(p.Payload) != "hi" {
			t.Fatalf("%+v, %v", p, err)
		}
		if err := c.Send("PING", "x"); err != nil {
			t.Fatal(err)
		}
		if err := c.Receive(&p, time.Now().Add(5*time.Second)); err != nil || p.Kind != resp.Pong || string(p.Payload) != "x" {
			t.Fatalf("%+v, %v", p, err)
		}
	}
	o := srv.ClientOptions()
	o.Username, o.Password = "sub", "wrong"
	rdb := redis.NewClient(o)
	defer rdb.Close()
	cfg, _ := FromClient(rdb)
	if _, err := Dial(context.Background(), cfg, 0); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("%v, want WRONGPASS", err)
	}
}

// TestDialCancel: cancelling the context ends a handshake the server
// never answers.
func TestDialCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c) // never answers, until the client closes
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), DialTimeout: time.Minute})
	defer rdb.Close()
	cfg, _ := FromClient(rdb)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := Dial(ctx, cfg, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("%v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Dial returned after %v", d)
	}
}

// TestReceiveCut: a reply the server stops sending halfway is an error
// after the deadline and midReply, not a timeout; a reply that is late but
// whole is read.
func TestReceiveCut(t *testing.T) {
	defer func(d time.Duration) { midReply = d }(midReply)
	midReply = 200 * time.Millisecond
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	c := newConn(client, 0, 0)
	msg := resp.AppendCommand(nil, "message", "c", "payload")
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		_, _ = server.Write(msg[:10])
		time.Sleep(50 * time.Millisecond)
		_, _ = server.Write(msg[10:])
		_, _ = server.Write(msg[:10]) // and never the rest
	}()
	var p resp.Push
	// The first byte before the deadline, the rest after it: read whole.
	if err := c.Receive(&p, time.Now().Add(20*time.Millisecond)); err != nil || string(p.Payload) != "payload" {
		t.Fatalf("%+v, %v", p, err)
	}
	start := time.Now()
	err := c.Receive(&p, time.Now().Add(time.Second))
	var ne net.Error
	if err == nil || errors.As(err, &ne) || time.Since(start) < time.Second || time.Since(start) > 5*time.Second {
		t.Fatalf("%v after %v, want an error that is not a timeout", err, time.Since(start))
	}
}

// TestReceiveAllocs is the budget of receiving a message once the buffers
// have grown: none.
func TestReceiveAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocates")
	}
	// TCP, as Redis is reached: net.Pipe's deadlines allocate.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	msg := resp.AppendCommand(nil, "pmessage", "app:*", "app:x", strings.Repeat("p", 200))
	const runs = 1000
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		defer server.Close()
		for range runs + 1 {
			if _, err := server.Write(msg); err != nil {
				return
			}
		}
	}()
	c := newConn(client, 0, 0)
	var p resp.Push
	deadline := time.Now().Add(time.Minute)
	n := testing.AllocsPerRun(runs, func() {
		if err := c.Receive(&p, deadline); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per message, want 0", n)
	}
}
