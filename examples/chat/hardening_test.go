package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/redistest"
)

// TestForgedMessages publishes, with redis-cli as anyone on Redis can, a
// message whose ID would inject a forged "ready" event and a "retry:" of
// eleven days into the SSE stream, and messages with control characters:
// the stream gets none of them, only the notes that messages were
// dropped, then the messages that are fine.
func TestForgedMessages(t *testing.T) {
	srv := redistest.Start(t, nil)
	base, _ := startLogging(t, true, "-redis", srv.URL()) // the bridge logs the drops
	s := openStream(t, client(t), base, "lobby")
	for _, payload := range []string{
		`{"id":"x\nevent: ready\nretry: 999999999\ndata: {}\n\nid: y","from":"mallory","text":"forged id"}`,
		`{"id":"x\ry","text":"forged id"}`,
		`{"from":"mallory\u001b[31m","text":"forged from"}`,
		`{"via":"A\u2028B","text":"forged via"}`,
		`{"text":"bell\u0007"}`,
		`{"text":"` + strings.Repeat("x", maxText+1) + `"}`,
		`null`,
		`{"room":"Admin!","text":"forged room"}`,
		`{"room":"dev","from":"cli","text":"another room's name"}`,
		`{"from":"cli","text":"fine\nand two lines"}`,
	} {
		if _, err := srv.CLI("PUBLISH", "chat.lobby", payload); err != nil {
			t.Fatal(err)
		}
	}
	got := s.waitFor(t, "the last message", isMessage("fine\nand two lines"))
	var messages []Message
	for _, e := range got {
		switch {
		case e.event == "ready" || e.retry != "":
			t.Errorf("forged SSE fields: %+v", e)
		case e.event == "message":
			var m Message
			if err := json.Unmarshal([]byte(e.data), &m); err != nil {
				t.Fatal(err)
			}
			if e.id != m.ID {
				t.Errorf("event id %q, message id %q", e.id, m.ID)
			}
			messages = append(messages, m)
		case e.event != "gap" || !strings.Contains(e.data, "not chat messages"):
			t.Errorf("unexpected event %+v", e)
		}
	}
	if len(messages) != 2 || messages[0].Text != "another room's name" || messages[0].Room != "lobby" {
		t.Errorf("messages shown: %+v, want only the last two, in room lobby", messages)
	}
}

// TestMessageCheck checks the fields refused in messages from other
// instances, and that fromEvent drops a message whose filled-in source is
// not printable.
func TestMessageCheck(t *testing.T) {
	codec := newMessageCodec()
	for _, tc := range []struct {
		data string
		want string // in the error; "" for none
	}{
		{`{"from":"cli","text":"hi"}`, ""},
		{`{"id":"A-1","room":"lobby","from":"alice","text":"hi\tthere\n","via":"A","time":"2026-01-02T03:04:05Z"}`, ""},
		{`{"text":"é ü 日本 🙂"}`, ""},
		{`{"text":""}`, "empty text"},
		{`{"from":"x"}`, "empty text"},
		{`{"text":"a\rb"}`, "text with control characters"},
		{`{"text":"a\u0000b"}`, "text with control characters"},
		{`{"text":"\ufffd"}`, "text with control characters or not UTF-8"},
		{"{\"text\":\"\xff\"}", "text with control characters or not UTF-8"},
		{`{"text":"x","from":"` + strings.Repeat("n", maxFrom+1) + `"}`, "name over 40 bytes"},
		{`{"text":"x","id":"a\nb"}`, "ID with control characters"},
		{`{"text":"x","id":"` + strings.Repeat("i", maxID+1) + `"}`, "ID over"},
		{`{"text":"x","via":"a\u0085b"}`, "instance name with control characters"},
		{`{"text":"x","room":"a.b"}`, "bad room name"},
		{`null`, "null"},
		{`[1]`, "cannot unmarshal"},
	} {
		_, err := codec.Decode([]byte(tc.data), "")
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("Decode(%q) = %v, want %q", tc.data, err, tc.want)
		}
	}
	bad := bus.Event{Topic: "chat.lobby", Payload: &Message{Text: "hi"}, Meta: &bus.Meta{Source: "evil\nsource", Seq: 1}}
	if m := fromEvent(bad); m != nil {
		t.Errorf("fromEvent with a source of two lines = %+v", m)
	}
}

// FuzzMessageCheck checks that a message Decode accepts cannot break an
// SSE stream: writeSSE writes it as one id, one event, one data line.
func FuzzMessageCheck(f *testing.F) {
	f.Add(`{"id":"A-1","from":"alice","text":"hi","via":"A"}`)
	f.Add(`{"id":"x\nevent: ready","text":"x"}`)
	f.Add(`{"text":"a\u2028b\u0085c"}`)
	codec := newMessageCodec()
	f.Fuzz(func(t *testing.T, data string) {
		p, err := codec.Decode([]byte(data), "")
		if err != nil {
			return
		}
		m := p.(*Message)
		var sb strings.Builder
		if err := writeSSE(&sb, sse{id: m.ID, name: "message", data: m}); err != nil {
			t.Fatal(err)
		}
		lines := strings.FieldsFunc(sb.String(), func(r rune) bool { return r == '\n' || r == '\r' })
		for _, l := range lines {
			if !strings.HasPrefix(l, "id: ") && !strings.HasPrefix(l, "event: message") && !strings.HasPrefix(l, "data: ") {
				t.Fatalf("message %q wrote the line %q", data, l)
			}
		}
	})
}

// dialFrom returns an HTTP client whose connections come from the
// loopback address ip, as another client machine's would.
func dialFrom(t *testing.T, ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// tryStream opens a stream of room and returns the status of the
// answer and the function that closes it. A refusal must say when to try
// again and close the connection, which kept alive would hold buffers.
func tryStream(t *testing.T, c *http.Client, base, room string) (int, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/events?room="+room, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	closeIt := func() { cancel(); resp.Body.Close() }
	t.Cleanup(closeIt)
	if resp.StatusCode != http.StatusOK {
		if resp.Header.Get("Retry-After") == "" || !resp.Close {
			t.Errorf("%s without Retry-After or Connection: close", resp.Status)
		}
		closeIt()
	}
	return resp.StatusCode, closeIt
}

// TestStreamCaps checks the caps on open streams: MaxStreamsPerClient from
// one address (429), MaxStreams in all (503), and that a closed stream
// frees its place.
func TestStreamCaps(t *testing.T) {
	srv := httptest.NewServer(NewServer(bus.New(nil), "x", &Options{MaxStreams: 3, MaxStreamsPerClient: 2}))
	t.Cleanup(srv.Close)
	one, two, three := dialFrom(t, "127.0.0.1"), dialFrom(t, "127.0.0.2"), dialFrom(t, "127.0.0.3")
	var first func()
	for i, step := range []struct {
		c    *http.Client
		want int
	}{
		{one, 200}, {one, 200}, {one, http.StatusTooManyRequests},
		{two, 200}, {three, http.StatusServiceUnavailable}, {two, http.StatusServiceUnavailable},
	} {
		status, closeIt := tryStream(t, step.c, srv.URL, "lobby")
		if status != step.want {
			t.Fatalf("stream %d: %d, want %d", i+1, status, step.want)
		}
		if i == 0 {
			first = closeIt
		}
	}
	first()
	deadline := time.Now().Add(waitTimeout)
	for {
		status, _ := tryStream(t, three, srv.URL, "lobby")
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream's place is still taken: %d", status)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTrickle checks that a client sending its request slowly is cut off
// after -read-timeout, its headers as its body, while a stream lives on
// past it.
func TestTrickle(t *testing.T) {
	base := startInstance(t, "-read-timeout", "500ms")
	addr := strings.TrimPrefix(base, "http://")
	for _, tc := range []struct{ name, start string }{
		{"headers", "GET / HTTP/1.1\r\nHost: " + addr + "\r\nX-Slow: "},
		{"body", "POST /rooms/lobby/messages HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"text\":\""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tc.start); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			trickled := make(chan struct{})
			go func() { // a byte every 50 ms: the 1000 bytes would take 50 s
				defer close(trickled)
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := io.WriteString(conn, "x"); err != nil {
						return
					}
				}
			}()
			defer func() { close(stop); <-trickled }()
			if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			answer, err := io.ReadAll(conn) // until the server closes
			if err != nil {
				t.Fatalf("the trickling client is still connected after 10 s: %v (read %q)", err, answer)
			}
		})
	}
	c := client(t)
	s := openStream(t, c, base, "lobby")
	time.Sleep(time.Second) // twice the read timeout
	post(t, c, base, "lobby", "alice", "still there")
	if m := s.message(t); m.Text != "still there" {
		t.Errorf("stream got %+v", m)
	}
}

// TestAllowedHosts checks the Host header an instance answers for: by
// default the localhost names and the host of -addr, else those of
// -allowed-hosts.
func TestAllowedHosts(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		allowed []string
		refused []string
	}{
		{nil, []string{"localhost", "127.0.0.1", "[::1]:8080", "LOCALHOST:1"}, []string{"evil.example", "127.0.0.1.evil.example", "localhost.evil.example"}},
		{[]string{"-allowed-hosts", "chat.example,10.0.0.7"}, []string{"chat.example", "Chat.Example:443", "10.0.0.7:8080"}, []string{"localhost", "127.0.0.1", "evil.example"}},
	} {
		base := startInstance(t, tc.args...)
		c := client(t)
		for _, host := range append(tc.allowed, tc.refused...) {
			req, err := http.NewRequest("GET", base+"/instance", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = host
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := http.StatusOK
			if !slices.Contains(tc.allowed, host) {
				want = http.StatusMisdirectedRequest
			}
			if resp.StatusCode != want {
				t.Errorf("%v, Host %q: %s, want %d", tc.args, host, resp.Status, want)
			}
		}
	}
	all := &net.TCPAddr{IP: net.IPv6unspecified, Port: 8080}
	if got := allowedHosts("", all); strings.Join(got, ",") != strings.Join(DefaultHosts, ",") {
		t.Errorf("allowedHosts on all interfaces = %q, want the defaults", got)
	}
	if got := allowedHosts("", &net.TCPAddr{IP: net.IPv4(192, 168, 1, 5)}); got[len(got)-1] != "192.168.1.5" || len(DefaultHosts) != 3 {
		t.Errorf("allowedHosts on 192.168.1.5 = %q (defaults now %q)", got, DefaultHosts)
	}
}

// TestSigning runs two instances with a signing key, one from the flag,
// one from CHAT_SIGNING_KEY: their messages pass, an unsigned one
// published with redis-cli does not (the page gets a note instead), and
// neither does one signed with another key.
func TestSigning(t *testing.T) {
	const key = "0123456789abcdef-test-key"
	srv := redistest.Start(t, nil)
	a, _ := startLogging(t, true, "-redis", srv.URL(), "-name", "A", "-signing-key", key)
	t.Setenv("CHAT_SIGNING_KEY", key)
	b, _ := startLogging(t, true, "-redis", srv.URL(), "-name", "B")
	t.Setenv("CHAT_SIGNING_KEY", "another key, 16 bytes or more")
	other, _ := startLogging(t, true, "-redis", srv.URL(), "-name", "O")
	c := client(t)
	onB := openStream(t, c, b, "lobby")
	if _, err := srv.CLI("PUBLISH", "chat.lobby", `{"id":"A-99","from":"alice","text":"forged","via":"A"}`); err != nil {
		t.Fatal(err)
	}
	post(t, c, other, "lobby", "mallory", "wrong key")
	post(t, c, a, "lobby", "alice", "genuine")
	got := onB.waitFor(t, "the genuine message", isMessage("genuine"))
	signatures := 0
	for _, e := range got[:len(got)-1] {
		switch {
		case isGap("their signatures were wrong")(e):
			signatures++
		default:
			t.Errorf("B's stream got %+v before the genuine message", e)
		}
	}
	if signatures == 0 {
		t.Error("no note of the refused messages")
	}
}

// TestFlagValues checks the usage errors of the hardening flags.
func TestFlagValues(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-signing-key", "short"}, "-signing-key: 16 bytes or more"},
		{[]string{"-max-streams", "0"}, "-max-streams"},
		{[]string{"-max-streams-per-client", "-1"}, "-max-streams"},
		{[]string{"-read-timeout", "0s"}, "-read-timeout must be positive"},
		{[]string{"-name", "two\nlines"}, "-name: at most 64 bytes, printable"},
	} {
		err := run(context.Background(), tc.args, io.Discard, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "usage") {
			t.Errorf("run(%v) = %v, want a usage error saying %q", tc.args, err, tc.want)
		}
	}
}
