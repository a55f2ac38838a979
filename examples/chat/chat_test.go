package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// program is the chat built, for the tests that run it as a process; the
// others call run.
var program = progtest.New("chat")

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	progtest.Main(m, program) // goleak included
}

// waitTimeout bounds every wait; things normally happen in milliseconds.
const waitTimeout = 20 * time.Second

// lockedBuffer is a bytes.Buffer safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex // protects b
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startInstance runs the program (run, as main does) with args and
// returns its base URL. At the end of the test it is stopped as by Ctrl-C
// and must exit cleanly, having written nothing to stderr.
func startInstance(t *testing.T, args ...string) string {
	t.Helper()
	base, _ := startLogging(t, false, args...)
	return base
}

// startLogging is startInstance, also returning what the instance writes
// to stderr; that may be anything when logs is true.
func startLogging(t *testing.T, logs bool, args ...string) (base string, stderr *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	stderr = &lockedBuffer{}
	go func() {
		done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), io.Discard, stderr, func(a string) { addr <- a })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("instance %v: %v", args, err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("instance %v did not stop", args)
		}
		if s := stderr.String(); s != "" && !logs {
			t.Errorf("instance %v stderr: %s", args, s)
		}
	})
	select {
	case a := <-addr:
		return "http://" + a, stderr
	case err := <-done:
		t.Fatalf("instance %v: %v", args, err)
	case <-time.After(waitTimeout):
		t.Fatalf("instance %v did not start", args)
	}
	return "", nil
}

// client returns an HTTP client whose connections are closed at the end of
// the test, so that goleak sees no transport goroutine.
func client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	id, event, data string
	retry           string // a retry: field before or in the event
}

// stream is an open /events stream.
type stream struct {
	events chan sseEvent // closed at the end of the stream
	status Status        // the status sent after "ready"
	close  func()        // closes the stream and waits for its reader
}

// openStream follows rooms on the instance at base and waits for the
// "ready" event and the status after it. The stream is closed at the end
// of the test.
func openStream(t *testing.T, c *http.Client, base string, rooms ...string) *stream {
	t.Helper()
	q := url.Values{"room": rooms}
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/events?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET /events: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	s := &stream{events: make(chan sseEvent, 1000)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(s.events)
		sc := bufio.NewScanner(resp.Body)
		var e sseEvent
		for sc.Scan() {
			line := sc.Text()
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "":
				if line == "" && (e.event != "" || e.data != "") {
					s.events <- e
					e = sseEvent{}
				}
			case "id":
				e.id = value
			case "event":
				e.event = value
			case "data":
				e.data += value
			case "retry":
				e.retry = value
			}
		}
	}()
	var once sync.Once
	s.close = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			resp.Body.Close()
		})
	}
	t.Cleanup(s.close)
	e := s.next(t)
	var ready struct {
		Rooms    []string `json:"rooms"`
		Instance string   `json:"instance"`
	}
	if e.event != "ready" || json.Unmarshal([]byte(e.data), &ready) != nil || fmt.Sprint(ready.Rooms) != fmt.Sprint(rooms) {
		t.Fatalf("first event %+v, want ready for %v", e, rooms)
	}
	s.status = s.nextStatus(t)
	return s
}

// nextStatus returns the next event of the stream, which must be a status.
func (s *stream) nextStatus(t *testing.T) Status {
	t.Helper()
	e := s.next(t)
	var st Status
	if e.event != "status" || json.Unmarshal([]byte(e.data), &st) != nil || st.State == "" || st.Text == "" || st.Since.IsZero() {
		t.Fatalf("event %+v, want a status", e)
	}
	return st
}

// next returns the next event of the stream.
func (s *stream) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case e, ok := <-s.events:
		if !ok {
			t.Fatal("the stream ended")
		}
		return e
	case <-time.After(waitTimeout):
		t.Fatal("no event in time")
	}
	return sseEvent{}
}

// message returns the next event of the stream, which must be a message.
func (s *stream) message(t *testing.T) Message {
	t.Helper()
	e := s.next(t)
	var m Message
	if e.event != "message" {
		t.Fatalf("event %+v, want a message", e)
	}
	if err := json.Unmarshal([]byte(e.data), &m); err != nil {
		t.Fatalf("message %q: %v", e.data, err)
	}
	if e.id != m.ID {
		t.Errorf("event id %q, message id %q", e.id, m.ID)
	}
	return m
}

// post posts a message and returns what the server answered.
func post(t *testing.T, c *http.Client, base, room, from, text string) Message {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"from": from, "text": text})
	resp, err := c.Post(base+"/rooms/"+room+"/messages", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m Message
	if resp.StatusCode != http.StatusAccepted || json.NewDecoder(resp.Body).Decode(&m) != nil {
		t.Fatalf("POST %s: %s", room, resp.Status)
	}
	return m
}

// TestTwoInstances runs two instances sharing one redis-server: messages
// posted on A reach B's stream in order, room by room, and the other way.
func TestTwoInstances(t *testing.T) {
	srv := redistest.Start(t, nil)
	a := startInstance(t, "-redis", srv.URL(), "-name", "A")
	b := startInstance(t, "-redis", srv.URL(), "-name", "B", "-prefix", "") // the default, spelt out
	c := client(t)
	onB := openStream(t, c, b, "lobby", "dev")
	onA := openStream(t, c, a, "lobby")
	for _, s := range []*stream{onA, onB} {
		if s.status.State != StateConnected {
			t.Errorf("status %+v, want %s", s.status, StateConnected)
		}
	}

	const n = 60
	var want = map[string][]string{}
	for i := range n {
		room := "lobby"
		if i%3 == 2 {
			room = "dev"
		}
		text := fmt.Sprintf("message %d", i)
		m := post(t, c, a, room, "alice", text)
		if m.Room != room || m.Text != text || m.From != "alice" || m.Via != "A" {
			t.Fatalf("POST answered %+v", m)
		}
		want[room] = append(want[room], text)
	}

	// B follows both rooms: each room's messages arrive in the order they
	// were posted. Messages of different rooms may interleave differently.
	got := map[string][]string{}
	for range n {
		m := onB.message(t)
		if m.Via != "A" || m.From != "alice" || m.Time.IsZero() {
			t.Errorf("B received %+v, want a message from alice via A", m)
		}
		got[m.Room] = append(got[m.Room], m.Text)
	}
	for room := range want {
		if fmt.Sprint(got[room]) != fmt.Sprint(want[room]) {
			t.Errorf("room %s on B:\n%v\nwant:\n%v", room, got[room], want[room])
		}
	}
	// A's own stream, room lobby only, delivered locally.
	for i, text := range want["lobby"] {
		if m := onA.message(t); m.Text != text || m.Room != "lobby" {
			t.Fatalf("A's lobby message %d: %+v, want %q", i, m, text)
		}
	}

	// The other way round, and a room A does not follow is not sent to it.
	post(t, c, b, "dev", "bob", "not for A's stream")
	post(t, c, b, "lobby", "bob", "hello A")
	if m := onA.message(t); m.Text != "hello A" || m.Via != "B" || m.From != "bob" {
		t.Errorf("A received %+v, want bob's hello via B", m)
	}
	for _, text := range []string{"not for A's stream", "hello A"} {
		if m := onB.message(t); m.Text != text || m.Via != "B" {
			t.Errorf("B received %+v, want %q", m, text)
		}
	}
}

// TestAlone runs an instance without Redis: its streams get its messages.
func TestAlone(t *testing.T) {
	base := startInstance(t, "-name", "solo")
	c := client(t)
	s := openStream(t, c, base, "lobby", "lobby") // a room twice counts once
	if s.status.State != StateAlone {
		t.Errorf("status %+v, want %s", s.status, StateAlone)
	}
	post(t, c, base, "lobby", "", "  hi  ")
	if m := s.message(t); m.Text != "hi" || m.From != "anonymous" || m.Via != "solo" || m.ID != "solo-1" {
		t.Errorf("received %+v", m)
	}
}

// TestForeignMessage checks that a message published by another program
// (buscat pub, say) with only from and text is shown with the room, the
// source and the time of its event, and that other payloads are skipped.
func TestForeignMessage(t *testing.T) {
	b := bus.New(nil)
	srv := httptest.NewServer(NewServer(b, "x", nil))
	t.Cleanup(srv.Close) // after the stream's cleanup: Close waits for it
	s := openStream(t, client(t), srv.URL, "lobby")
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ctx := context.Background()
	if err := b.Publish(ctx, "chat.lobby", "not a *Message"); err != nil {
		t.Fatal(err)
	}
	foreign := &Message{From: "cli", Text: "hi"}
	if err := b.PublishEvent(ctx, bus.Event{Topic: "chat.lobby", Payload: foreign, Meta: &bus.Meta{Source: "buscat1", Seq: 3, Time: at}}); err != nil {
		t.Fatal(err)
	}
	want := Message{ID: "buscat1-3", Room: "lobby", From: "cli", Text: "hi", Time: at, Via: "buscat1"}
	if m := s.message(t); m != want {
		t.Errorf("stream sent %+v, want %+v", m, want)
	}
	if foreign.Room != "" {
		t.Error("the shared payload was modified")
	}
}

// TestShutdownEndsStreams checks that stopping an instance ends its open
// streams instead of waiting for them (startInstance's cleanup checks that
// run returns nil).
func TestShutdownEndsStreams(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", "127.0.0.1:0"}, io.Discard, io.Discard, func(a string) { addr <- a })
	}()
	base := "http://" + <-addr
	s := openStream(t, client(t), base, "lobby")
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("run did not return with a stream open")
	}
	select {
	case e, ok := <-s.events:
		if ok {
			t.Fatalf("event %+v after shutdown", e)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the stream did not end")
	}
}

// TestHTTP checks the page and the answers to bad requests. POSTs are
// sent as JSON unless the case sets another Content-Type.
func TestHTTP(t *testing.T) {
	srv := httptest.NewServer(NewServer(bus.New(nil), "x", nil))
	defer srv.Close()
	c := client(t)
	long := strings.Repeat("x", maxText+1)
	rooms17 := strings.Repeat("room=a&", 17)
	asJSON := []string{"Content-Type", "application/json"}
	for _, tc := range []struct {
		method, path, body string
		status             int
		want               string   // in the body
		header             []string // name, value, ...
	}{
		{"GET", "/", "", 200, "new EventSource(", nil},
		{"GET", "/other", "", 404, "", nil},
		{"GET", "/instance", "", 200, `{"name":"x"}`, nil},
		{"GET", "/status", "", 200, `{"state":"alone","text":"This instance is alone`, nil},
		{"GET", "/events", "", 400, "no room", nil},
		{"GET", "/events?room=Lobby", "", 400, `bad room name \"Lobby\": want 1 to 32 of a-z 0-9 _ -`, nil},
		{"GET", "/events?room=a.b", "", 400, "bad room name", nil},
		{"GET", "/events?" + rooms17, "", 400, "17 rooms", nil},
		{"POST", "/rooms/lobby/messages", `{"from":"a","text":"hi"}`, 202, `"text":"hi"`, nil},
		{"POST", "/rooms/lob%20by/messages", `{"text":"hi"}`, 400, "bad room name", nil},
		{"POST", "/rooms/" + strings.Repeat("a", 33) + "/messages", `{"text":"hi"}`, 400, "bad room name", nil},
		{"POST", "/rooms/lobby/messages", `{"text":"  "}`, 400, "empty text", nil},
		{"POST", "/rooms/lobby/messages", `{"text":"` + long + `"}`, 400, "text over", nil},
		{"POST", "/rooms/lobby/messages", `{"text":"hi","admin":true}`, 400, "unknown field", nil},
		{"POST", "/rooms/lobby/messages", `text=hi`, 400, "bad body", nil},
		{"POST", "/rooms/lobby/messages", `{"text":"` + strings.Repeat("x", maxBody) + `"}`, 400, "too large", nil},
		{"GET", "/rooms/lobby/messages", "", 405, "", nil},
		{"POST", "/rooms/lobby/messages", `{"text":"a\u0000b"}`, 400, "text with control characters", nil},
		{"POST", "/rooms/lobby/messages", `{"from":"a\nb","text":"hi"}`, 400, "name with control characters", nil},
		{"POST", "/rooms/lobby/messages", `{"text":"two\nlines\tand a tab"}`, 202, `"text":"two\nlines\tand a tab"`, nil},
		// A cross-origin form or fetch: browsers send text/plain without
		// asking first.
		{"POST", "/rooms/lobby/messages", `{"text":"hi"}`, 415, "want Content-Type: application/json", []string{"Content-Type", "text/plain"}},
		{"POST", "/rooms/lobby/messages", `{"text":"hi"}`, 415, "want Content-Type: application/json", []string{"Content-Type", ""}},
		{"POST", "/rooms/lobby/messages", `{"text":"hi"}`, 202, `"text":"hi"`, []string{"Content-Type", "application/json; charset=utf-8"}},
		{"POST", "/rooms/lobby/messages", `{"text":"hi"}`, 403, "", append(asJSON, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example")},
		// DNS rebinding: a page of another domain that resolves here.
		{"GET", "/", "", 421, `this chat does not answer for the host \"evil.example:80\"`, []string{"Host", "evil.example:80"}},
		{"POST", "/rooms/lobby/messages", `{"text":"hi"}`, 421, "does not answer", append(asJSON, "Host", "evil.example")},
		{"GET", "/status", "", 200, `"state":"alone"`, []string{"Host", "LocalHost.:8080"}},
		{"GET", "/status", "", 200, `"state":"alone"`, []string{"Host", "[::1]:8080"}},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		if tc.method == "POST" {
			req.Header.Set("Content-Type", "application/json")
		}
		for i := 0; i < len(tc.header); i += 2 {
			if tc.header[i] == "Host" {
				req.Host = tc.header[i+1]
			} else {
				req.Header.Set(tc.header[i], tc.header[i+1])
			}
		}
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.want)
		}
	}
}

// TestFlags checks the errors of bad flags and of an unreachable Redis.
func TestFlags(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close()
	for _, tc := range []struct {
		args  []string
		usage bool
		want  string
	}{
		{[]string{"-port", "1"}, true, "-port"},
		{[]string{"extra"}, true, `"extra"`},
		{[]string{"-redis", "http://x"}, true, "-redis: bad Redis URL"},
		{[]string{"-redis", "rediss://127.0.0.1:1?skip_verify=true"}, true, "skip_verify=true turns off"},
		{[]string{"-redis", "redis://" + refused}, false, "cannot reach Redis at " + refused},
		{[]string{"-addr", "256.0.0.1:0"}, false, "listen"},
	} {
		err := run(context.Background(), tc.args, io.Discard, io.Discard, nil)
		if err == nil || errors.Is(err, errUsage) != tc.usage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%v) = %v, want an error saying %q (usage %v)", tc.args, err, tc.want, tc.usage)
		}
	}
}

// TestNoSecret checks that no password of -redis is printed, whatever is
// wrong with it.
func TestNoSecret(t *testing.T) {
	srv := redistest.Start(t, nil)
	progtest.NoSecret(t, srv.Addr(), func(url string) *exec.Cmd {
		return exec.Command(program.Path(t), "-addr", "127.0.0.1:0", "-redis", url)
	})
}
