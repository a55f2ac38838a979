package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// program is the program under test, built by the first test that runs
// it.
var program = progtest.New("buscat")

// built returns the path of the program, building it on first use.
func built(t *testing.T) string { return program.Path(t) }

func TestMain(m *testing.M) {
	redis.SetLogger(quietLogger{})
	progtest.Main(m, program)
}

// waitTimeout bounds every wait for output; it normally comes in
// milliseconds.
const waitTimeout = 20 * time.Second

// result is what a finished buscat did.
type result struct {
	stdout, stderr string
	code           int
}

// buscat runs the binary to completion with REDIS_URL set to url (unset
// when empty) and stdin as its standard input.
func buscat(t *testing.T, url, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(built(t), args...)
	cmd.Env = env(url)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("buscat %v: %v", args, err)
	}
	return r
}

// mustBuscat runs the binary and fails the test unless it exits 0.
func mustBuscat(t *testing.T, url, stdin string, args ...string) result {
	t.Helper()
	r := buscat(t, url, stdin, args...)
	if r.code != 0 {
		t.Fatalf("buscat %v: exit status %d, stderr %q", args, r.code, r.stderr)
	}
	return r
}

// env is the environment of buscat: this process's without REDIS_URL,
// plus REDIS_URL=url when url is not empty.
func env(url string) []string {
	var e []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REDIS_URL=") {
			e = append(e, kv)
		}
	}
	if url != "" {
		e = append(e, "REDIS_URL="+url)
	}
	return e
}

// subProc is a running `buscat sub`.
type subProc struct {
	cmd    *exec.Cmd
	stdout chan string    // lines
	stderr chan string    // lines
	done   sync.WaitGroup // the readers of stdout and stderr
}

// startSub starts `buscat sub args...` and waits until it says it has
// subscribed. It is killed at the end of the test if still running.
func startSub(t *testing.T, url string, args ...string) *subProc {
	t.Helper()
	p := launchSub(t, url, args...)
	if l := next(t, p.stderr, "stderr"); !strings.HasPrefix(l, "buscat: subscribed: ") {
		t.Fatalf("sub said %q on stderr, want buscat: subscribed: ...", l)
	}
	return p
}

// launchSub starts `buscat sub args...`. It is killed at the end of the
// test if still running.
func launchSub(t *testing.T, url string, args ...string) *subProc {
	t.Helper()
	p := &subProc{
		cmd:    exec.Command(built(t), append([]string{"sub"}, args...)...),
		stdout: make(chan string, 1000),
		stderr: make(chan string, 100),
	}
	p.cmd.Env = env(url)
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done.Add(2)
	go p.read(stdout, p.stdout)
	go p.read(stderr, p.stderr)
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.wait()
		}
	})
	return p
}

func (p *subProc) read(r interface{ Read([]byte) (int, error) }, lines chan<- string) {
	defer p.done.Done()
	defer close(lines)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		lines <- sc.Text()
	}
}

// wait waits for the process and returns its exit status.
func (p *subProc) wait() (int, error) {
	p.done.Wait()
	err := p.cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode(), nil
	}
	return 0, err
}

// next returns the next line from lines, failing the test if none comes.
func next(t *testing.T, lines <-chan string, what string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatalf("%s closed before the line expected", what)
		}
		return l
	case <-time.After(waitTimeout):
		t.Fatalf("no line on %s in time", what)
	}
	return ""
}

// event returns the next JSON line of sub, decoded.
func (p *subProc) event(t *testing.T) line {
	t.Helper()
	s := next(t, p.stdout, "stdout")
	var l line
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		t.Fatalf("sub printed %q: %v", s, err)
	}
	return l
}

// payloadString returns what l's payload stands for: the text, the
// decoded base64, or the JSON.
func payloadString(t *testing.T, l line) string {
	t.Helper()
	switch l.Encoding {
	case encJSON:
		return string(l.Payload)
	case encText, encBase64:
		var s string
		if err := json.Unmarshal(l.Payload, &s); err != nil {
			t.Fatalf("%s payload %s: %v", l.Encoding, l.Payload, err)
		}
		if l.Encoding == encText {
			return s
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("base64 payload %s: %v", l.Payload, err)
		}
		return string(b)
	}
	t.Fatalf("encoding %q", l.Encoding)
	return ""
}

// TestPubSub publishes with `buscat pub` in every mode and checks what
// `buscat sub` prints: raw messages by default (and with -raw, a no-op kept
// for compatibility), envelopes with -envelope.
func TestPubSub(t *testing.T) {
	srv := redistest.Start(t, nil)
	url := srv.URL()
	sub := startSub(t, url, "orders.**", "notifications")
	before := time.Now()
	for _, tc := range []struct {
		name     string
		args     []string // pub's
		stdin    string
		topic    string
		enc      string
		ctype    string // "" for raw
		payload  string // payloadString
		envelope bool
	}{
		{"json", []string{"-envelope", "orders.created", `{"id": 42}`}, "", "orders.created", encJSON, bridge.ContentTypeJSON, `{"id":42}`, true},
		{"json array", []string{"orders.batch", "-envelope", `[1, 2]`}, "", "orders.batch", encJSON, bridge.ContentTypeJSON, `[1,2]`, true},
		{"text", []string{"-envelope", "orders.note", "paid in full"}, "", "orders.note", encText, bridge.ContentTypeText, "paid in full", true},
		{"number as text", []string{"-envelope", "orders.count", "42"}, "", "orders.count", encText, bridge.ContentTypeText, "42", true},
		{"forced json", []string{"-envelope", "-type", "json", "orders.count", "42"}, "", "orders.count", encJSON, bridge.ContentTypeJSON, "42", true},
		{"forced bytes", []string{"-envelope", "-type", "bytes", "orders.b", "abc"}, "", "orders.b", encText, bridge.ContentTypeBytes, "abc", true},
		{"forced auto", []string{"-envelope", "-type", "auto", "orders.b", "abc"}, "", "orders.b", encText, bridge.ContentTypeText, "abc", true},
		{"binary from stdin", []string{"-envelope", "orders.bin"}, "\x00\x01\xff", "orders.bin", encBase64, bridge.ContentTypeBytes, "\x00\x01\xff", true},
		{"zero bytes from stdin", []string{"-envelope", "orders.bin"}, "\x00\x00", "orders.bin", encBase64, bridge.ContentTypeBytes, "\x00\x00", true},
		{"text from stdin", []string{"-envelope", "notifications"}, "multi\nline\n", "notifications", encText, bridge.ContentTypeText, "multi\nline\n", true},
		{"deep topic", []string{"-envelope", "orders.eu.paid", "x"}, "", "orders.eu.paid", encText, bridge.ContentTypeText, "x", true},
		{"raw text", []string{"notifications", "hi"}, "", "notifications", encText, "", "hi", false},
		{"raw json", []string{"notifications", `{"a":1}`}, "", "notifications", encJSON, "", `{"a":1}`, false},
		{"raw number", []string{"orders.count", "42"}, "", "orders.count", encText, "", "42", false},
		{"raw binary", []string{"orders.bin"}, "\xb5", "orders.bin", encBase64, "", "\xb5", false},
		{"raw text from stdin", []string{"notifications"}, "multi\nline\n", "notifications", encText, "", "multi\nline\n", false},
		{"-raw, a no-op", []string{"-raw", "notifications", "hi"}, "", "notifications", encText, "", "hi", false},
		{"-raw after the topic", []string{"notifications", "-raw", `{"a":1}`}, "", "notifications", encJSON, "", `{"a":1}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustBuscat(t, url, tc.stdin, append([]string{"pub"}, tc.args...)...)
			// One receiver: sub.
			if r.stdout != "(integer) 1\n" || r.stderr != "" {
				t.Errorf("pub printed %q, %q; want \"(integer) 1\\n\" and nothing on stderr", r.stdout, r.stderr)
			}
			l := sub.event(t)
			if l.Topic != tc.topic || l.Encoding != tc.enc || l.ContentType != tc.ctype {
				t.Errorf("topic %q, encoding %q, content type %q; want %q, %q, %q", l.Topic, l.Encoding, l.ContentType, tc.topic, tc.enc, tc.ctype)
			}
			if got := payloadString(t, l); got != tc.payload {
				t.Errorf("payload %q, want %q", got, tc.payload)
			}
			if tc.envelope {
				// Each pub is a new bridge: a new source, sequence 1.
				if l.Source == "" || l.Source == bridge.RawSource || l.Seq != 1 || l.Time == nil ||
					l.Time.Before(before.Add(-time.Second)) || l.Time.After(time.Now().Add(time.Second)) {
					t.Errorf("envelope: source %q, seq %d, time %v; want an ID, 1, now", l.Source, l.Seq, l.Time)
				}
			} else if l.Source != bridge.RawSource || l.Seq != 0 || l.Time != nil {
				t.Errorf("raw: source %q, seq %d, time %v; want %q, 0, null", l.Source, l.Seq, l.Time, bridge.RawSource)
			}
		})
	}
	stopSub(t, sub)
}

// TestRedisCLI checks that sub prints what a plain Redis client publishes,
// enveloped route or not, and only on the channels of its patterns.
func TestRedisCLI(t *testing.T) {
	srv := redistest.Start(t, nil)
	sub := startSub(t, srv.URL(), "-prefix", "t1:", "notifications", "room.*")
	for _, tc := range []struct {
		channel, message string
		topic, enc       string
		payload          string
	}{
		{"t1:other", "not mine", "", "", ""},
		{"t1:room.a.b", "too deep for room.*", "", "", ""},
		{"app:notifications", "other prefix", "", "", ""},
		{"t1:notifications", "hi", "notifications", encText, "hi"},
		{"t1:room.lobby", `{"text": "hello"}`, "room.lobby", encJSON, `{"text":"hello"}`},
		{"t1:room.lobby", "héllo wörld ✓", "room.lobby", encText, "héllo wörld ✓"},
	} {
		if _, err := srv.CLI("PUBLISH", tc.channel, tc.message); err != nil {
			t.Fatal(err)
		}
		if tc.topic == "" {
			continue // the next event printed must be the next expected one
		}
		l := sub.event(t)
		if l.Topic != tc.topic || l.Encoding != tc.enc || l.Source != bridge.RawSource || l.Seq != 0 || l.Time != nil {
			t.Errorf("PUBLISH %s: %+v", tc.channel, l)
		}
		if got := payloadString(t, l); got != tc.payload {
			t.Errorf("PUBLISH %s: payload %q, want %q", tc.channel, got, tc.payload)
		}
	}
	stopSub(t, sub)
}

// TestSubRaw checks that sub -raw does not decode envelopes: it prints the
// envelope's bytes, and a raw message as it is.
func TestSubRaw(t *testing.T) {
	srv := redistest.Start(t, nil)
	sub := startSub(t, srv.URL(), "-raw", "x")
	mustBuscat(t, srv.URL(), "", "pub", "-envelope", "x", "hi")
	l := sub.event(t)
	got := payloadString(t, l)
	if l.Encoding != encBase64 || !strings.HasPrefix(got, envelopeMagic) || !strings.HasSuffix(got, "hi") || l.Source != bridge.RawSource {
		t.Errorf("sub -raw printed %+v (payload %q), want the envelope in base64", l, got)
	}
	mustBuscat(t, srv.URL(), "", "pub", "x", "hi")
	if l := sub.event(t); l.Encoding != encText || payloadString(t, l) != "hi" || l.Source != bridge.RawSource {
		t.Errorf("sub -raw printed %+v for a raw message, want the text hi", l)
	}
	stopSub(t, sub)
}

// envelopeMagic is how a Busline envelope starts.
const envelopeMagic = "\xb5\x1e\x01"

// TestPubPlainClient checks what a plain Redis client subscribed to the
// channel receives from pub: the payload's bytes exactly by default (and
// with -raw), each line's with -lines; a Busline envelope with -envelope.
func TestPubPlainClient(t *testing.T) {
	srv := redistest.Start(t, nil)
	ctx := context.Background()
	plain := srv.Client(t).Subscribe(ctx, "notifications")
	defer plain.Close()
	if _, err := plain.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := plain.Channel()
	for _, tc := range []struct {
		name     string
		args     []string // pub's
		stdin    string
		want     []string // the messages, exactly
		envelope bool     // want[i] is the end of an envelope
	}{
		{"text", []string{"notifications", "héllo ✓"}, "", []string{"héllo ✓"}, false},
		{"json", []string{"notifications", `{"id": 42}`}, "", []string{`{"id": 42}`}, false},
		{"binary from stdin", []string{"notifications"}, "\x00\xb5\xff\n", []string{"\x00\xb5\xff\n"}, false},
		{"empty argument", []string{"notifications", ""}, "", []string{""}, false},
		{"-raw", []string{"-raw", "notifications", "hi"}, "", []string{"hi"}, false},
		{"lines", []string{"-lines", "notifications"}, "one\r\ntwo\n\nfour", []string{"one", "two", "", "four"}, false},
		{"envelope", []string{"-envelope", "notifications", "hi"}, "", []string{"hi"}, true},
		{"envelope lines", []string{"-envelope", "-lines", "notifications"}, "a\nb\n", []string{"a", "b"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustBuscat(t, srv.URL(), tc.stdin, append([]string{"pub"}, tc.args...)...)
			if want := strings.Repeat("(integer) 1\n", len(tc.want)); r.stdout != want || r.stderr != "" {
				t.Errorf("pub printed %q, %q; want %q and nothing on stderr", r.stdout, r.stderr, want)
			}
			for _, want := range tc.want {
				var got string
				select {
				case m := <-msgs:
					got = m.Payload
				case <-time.After(waitTimeout):
					t.Fatalf("the plain client received nothing, want %q", want)
				}
				switch {
				case tc.envelope && (!strings.HasPrefix(got, envelopeMagic) || !strings.HasSuffix(got, want)):
					t.Errorf("the plain client received %q, want an envelope of %q", got, want)
				case !tc.envelope && got != want:
					t.Errorf("the plain client received %q, want exactly %q", got, want)
				}
			}
		})
	}
}

// TestOrder publishes many events in one pub, one per line, and checks that
// sub prints them all in order: raw, and enveloped with consecutive
// sequence numbers from one source.
func TestOrder(t *testing.T) {
	srv := redistest.Start(t, nil)
	sub := startSub(t, srv.URL(), "seq.*")
	const n = 500
	var in strings.Builder
	for i := range n {
		fmt.Fprintf(&in, "event %d\n", i)
	}
	for _, envelope := range []bool{false, true} {
		args := []string{"pub", "-lines", "seq.test"}
		if envelope {
			args = append(args, "-envelope")
		}
		r := mustBuscat(t, srv.URL(), in.String(), args...)
		if want := strings.Repeat("(integer) 1\n", n); r.stdout != want {
			t.Errorf("buscat %v printed %d lines (%.40q...), want %d times (integer) 1", args, strings.Count(r.stdout, "\n"), r.stdout, n)
		}
		var source string
		for i := range n {
			l := sub.event(t)
			if got, want := payloadString(t, l), "event "+strconv.Itoa(i); got != want {
				t.Fatalf("buscat %v: event %d: %q, want %q", args, i, got, want)
			}
			switch {
			case !envelope && (l.Source != bridge.RawSource || l.Seq != 0):
				t.Fatalf("buscat %v: event %d from %q seq %d, want %q seq 0", args, i, l.Source, l.Seq, bridge.RawSource)
			case envelope && l.Seq != uint64(i+1):
				t.Fatalf("buscat %v: event %d: seq %d, want %d", args, i, l.Seq, i+1)
			case envelope && i == 0:
				source = l.Source
			case envelope && l.Source != source:
				t.Fatalf("buscat %v: event %d from %q, the first from %q", args, i, l.Source, source)
			}
		}
	}
	stopSub(t, sub)
}

// TestInterop checks buscat against a service's bridge: what the service
// publishes on its bus reaches sub; what pub sends by default reaches the
// service's raw Text route as a string from "redis"; what pub -envelope
// sends reaches its enveloped route as a remote event from buscat's bridge,
// with a content type and the payload type the codec gives.
func TestInterop(t *testing.T) {
	srv := redistest.Start(t, nil)
	ctx := context.Background()
	b := bus.New(nil)
	defer b.Close(ctx)
	type order struct {
		ID int `json:"id"`
	}
	got := make(chan bus.Event, 10)
	for _, p := range []string{"orders.*", "notifications"} {
		if _, err := b.Subscribe(p, func(_ context.Context, e bus.Event) {
			if e.Remote() {
				got <- e
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	received := func(what string) bus.Event {
		t.Helper()
		select {
		case e := <-got:
			return e
		case <-time.After(waitTimeout):
			t.Fatalf("the service did not receive %s", what)
		}
		return bus.Event{}
	}
	// The bridge's default prefix, empty, is buscat's.
	br, err := bridge.New(b, srv.Client(t), &bridge.Options{
		Routes: []bridge.Route{
			{Pattern: "orders.*", Codec: bridge.JSON[*order]()},
			{Pattern: "notifications", Raw: true, Codec: bridge.Text()},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close(ctx)
	if err := br.Ready(ctx); err != nil {
		t.Fatal(err)
	}

	sub := startSub(t, srv.URL(), "orders.*", "notifications")
	if err := b.Publish(ctx, "orders.created", &order{ID: 7}); err != nil {
		t.Fatal(err)
	}
	l := sub.event(t)
	if l.Topic != "orders.created" || l.Source != br.InstanceID() || l.Seq != 1 || l.Encoding != encJSON || string(l.Payload) != `{"id":7}` {
		t.Errorf("sub printed %+v, want orders.created {\"id\":7} from %s seq 1", l, br.InstanceID())
	}

	// Raw, the default: the text route gets the string.
	if r := mustBuscat(t, srv.URL(), "", "pub", "notifications", "hi from buscat"); r.stdout != "(integer) 2\n" {
		t.Errorf("pub printed %q, want (integer) 2: the service and sub", r.stdout)
	}
	if e := received("buscat pub's raw event"); e.Payload != "hi from buscat" || e.Topic != "notifications" ||
		e.Meta.Source != bridge.RawSource || e.Meta.Seq != 0 || e.Meta.ContentType != "" {
		t.Errorf("service received %+v (payload %#v, meta %+v), want the string \"hi from buscat\" on notifications from %q", e, e.Payload, e.Meta, bridge.RawSource)
	}
	if l := sub.event(t); l.Topic != "notifications" || l.Source != bridge.RawSource || payloadString(t, l) != "hi from buscat" {
		t.Errorf("sub printed %+v", l)
	}

	// -envelope: the enveloped route gets buscat's event, from buscat's
	// bridge, whose instance ID sub prints from the same envelope.
	if r := mustBuscat(t, srv.URL(), "", "pub", "-envelope", "orders.paid", `{"id": 8}`); r.stdout != "(integer) 2\n" {
		t.Errorf("pub -envelope printed %q, want (integer) 2: the service and sub", r.stdout)
	}
	e := received("buscat pub -envelope's event")
	if o, ok := e.Payload.(*order); !ok || o.ID != 8 || e.Topic != "orders.paid" || e.Meta.Seq != 1 || e.Meta.ContentType != bridge.ContentTypeJSON {
		t.Errorf("service received %+v (payload %#v, meta %+v), want *order{ID: 8} on orders.paid, seq 1, %s", e, e.Payload, e.Meta, bridge.ContentTypeJSON)
	}
	l = sub.event(t)
	if l.Topic != "orders.paid" || string(l.Payload) != `{"id":8}` {
		t.Errorf("sub printed %+v", l)
	}
	if src := e.Meta.Source; src == "" || src == bridge.RawSource || src == br.InstanceID() || src != l.Source {
		t.Errorf("service received the event from %q, sub from %q; want buscat's instance ID in both", src, l.Source)
	}
	stopSub(t, sub)
}

// TestStats checks stats against subscribers of two prefixes.
func TestStats(t *testing.T) {
	srv := redistest.Start(t, nil)
	url := srv.URL()

	r := mustBuscat(t, url, "", "stats", "-json")
	if want := `{"prefix":"","channels":[],"patterns":0}` + "\n"; r.stdout != want {
		t.Errorf("stats -json with no subscriber: %q, want %q", r.stdout, want)
	}

	s1 := startSub(t, url, "notifications", "orders.*")
	s2 := startSub(t, url, "notifications", "chat.lobby")
	s3 := startSub(t, url, "-prefix", "other:", "notifications")
	r = mustBuscat(t, url, "", "stats", "-json")
	var rep statsReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("stats -json: %q: %v", r.stdout, err)
	}
	// The empty prefix, the default, takes in every channel.
	want := statsReport{Prefix: "", Patterns: 1, Channels: []channelStats{
		{Channel: "chat.lobby", Topic: "chat.lobby", Subscribers: 1},
		{Channel: "notifications", Topic: "notifications", Subscribers: 2},
		{Channel: "other:notifications", Topic: "other:notifications", Subscribers: 1},
	}}
	if fmt.Sprint(rep) != fmt.Sprint(want) {
		t.Errorf("stats -json: %+v, want %+v", rep, want)
	}

	r = mustBuscat(t, url, "", "stats", "-prefix", "other:")
	wantTable := "SUBSCRIBERS  CHANNEL              TOPIC\n" +
		"1            other:notifications  notifications\n" +
		"1 channel of prefix \"other:\" with subscribers; 1 pattern subscription on the server (PUBSUB NUMPAT counts all prefixes)\n"
	if r.stdout != wantTable {
		t.Errorf("stats table:\n%s\nwant:\n%s", r.stdout, wantTable)
	}

	// A prefix with Redis glob metacharacters is taken literally.
	r = mustBuscat(t, url, "", "stats", "-json", "-prefix", "app*")
	if want := `{"prefix":"app*","channels":[],"patterns":1}` + "\n"; r.stdout != want {
		t.Errorf("stats -prefix 'app*': %q, want %q", r.stdout, want)
	}
	for _, s := range []*subProc{s1, s2, s3} {
		stopSub(t, s)
	}
}

// stopSub sends SIGINT to sub and checks that it exits with status 0,
// having printed nothing more.
func stopSub(t *testing.T, p *subProc) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	code, err := p.wait()
	if err != nil || code != 0 {
		t.Errorf("sub after SIGINT: exit status %d, %v; want 0", code, err)
	}
	for l := range p.stdout {
		t.Errorf("sub printed %q after the events expected", l)
	}
	for l := range p.stderr {
		t.Errorf("sub said %q on stderr", l)
	}
}

// TestSIGINTWhileConnecting checks that Ctrl-C ends sub cleanly while it
// still waits for Redis: here a server that accepts connections and never
// answers.
func TestSIGINTWhileConnecting(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns sync.WaitGroup
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cmd := exec.Command(built(t), "sub", "x")
	cmd.Env = env("redis://" + l.Addr().String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // in the first PING, which gets no answer
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil || stderr.Len() != 0 {
		t.Errorf("sub interrupted while connecting: %v, stderr %q; want exit status 0 and nothing said", err, stderr.String())
	}
	l.Close()
	conns.Wait()
}

// TestErrors checks that every error is one line on stderr, with exit
// status 2 for usage errors and 1 for runtime errors.
func TestErrors(t *testing.T) {
	srv := redistest.Start(t, nil)
	refused := progtest.RefusedAddr(t)
	for _, tc := range []struct {
		name  string
		url   string // REDIS_URL
		args  []string
		stdin string
		code  int
		want  string // in stderr
	}{
		{"no command", srv.URL(), nil, "", exitUsage, "no command"},
		{"unknown command", srv.URL(), []string{"cat"}, "", exitUsage, `unknown command "cat"`},
		{"unknown flag", srv.URL(), []string{"sub", "-v", "x"}, "", exitUsage, "flag provided but not defined: -v"},
		{"flag without value", srv.URL(), []string{"sub", "x", "-prefix"}, "", exitUsage, "flag needs an argument: -prefix"},
		{"sub without pattern", srv.URL(), []string{"sub"}, "", exitUsage, "sub: no pattern"},
		{"bad pattern", srv.URL(), []string{"sub", "ok.*", "orders.["}, "", exitUsage, `invalid pattern "orders.["`},
		{"empty segment", srv.URL(), []string{"sub", "a..b"}, "", exitUsage, `invalid pattern "a..b"`},
		{"pub without topic", srv.URL(), []string{"pub"}, "", exitUsage, "pub: no topic"},
		{"pub bad topic", srv.URL(), []string{"pub", "orders.*", "x"}, "", exitUsage, `invalid topic "orders.*"`},
		{"pub too many", srv.URL(), []string{"pub", "t", "a", "b"}, "", exitUsage, "3 arguments"},
		{"pub bad type", srv.URL(), []string{"pub", "-envelope", "-type", "xml", "t", "x"}, "", exitUsage, `bad -type "xml"`},
		{"pub bad json", srv.URL(), []string{"pub", "-envelope", "-type", "json", "t", "{"}, "", exitUsage, "not valid JSON"},
		{"pub -type without -envelope", srv.URL(), []string{"pub", "-type", "json", "t", "{}"}, "", exitUsage, "pub: -type json needs -envelope"},
		{"pub -type auto without -envelope", srv.URL(), []string{"pub", "t", "x", "-type", "auto"}, "", exitUsage, "pub: -type auto needs -envelope"},
		{"pub -type with -raw", srv.URL(), []string{"pub", "-raw", "-type", "text", "t", "x"}, "", exitUsage, "pub: -type text needs -envelope"},
		{"pub -raw -envelope", srv.URL(), []string{"pub", "-raw", "-envelope", "t", "x"}, "", exitUsage, "pub: -raw and -envelope contradict"},
		{"pub empty stdin", srv.URL(), []string{"pub", "t"}, "", exitRuntime, "pub: stdin is empty: nothing to publish"},
		{"pub -lines empty stdin", srv.URL(), []string{"pub", "-lines", "t"}, "", exitRuntime, "pub: stdin is empty: nothing to publish"},
		{"pub -lines no line", srv.URL(), []string{"pub", "-lines", "t", ""}, "", exitRuntime, "pub: -lines: the payload has no line"},
		{"stats argument", srv.URL(), []string{"stats", "x"}, "", exitUsage, `unexpected argument "x"`},
		{"bad url flag", srv.URL(), []string{"-url", "http://127.0.0.1", "stats"}, "", exitUsage, `-url: bad Redis URL "http://127.0.0.1"`},
		{"bad url env", "redis://[::1", []string{"stats"}, "", exitUsage, `-url: bad Redis URL: it does not parse as a URL`},
		{"unreachable sub", "redis://" + refused, []string{"sub", "x"}, "", exitRuntime, "cannot reach Redis at " + refused},
		{"unreachable pub", "", []string{"-url", "redis://" + refused, "pub", "x", "y"}, "", exitRuntime, "cannot reach Redis at " + refused},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := buscat(t, tc.url, tc.stdin, tc.args...)
			if r.code != tc.code {
				t.Errorf("exit status %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			if strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "buscat: ") || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("stderr %q, want one line saying %q", r.stderr, tc.want)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q", r.stdout)
			}
		})
	}
}

// TestACL checks the errors of an ACL user that may use the channels of
// another prefix only: a wrong password, and Redis refusing SUBSCRIBE,
// PSUBSCRIBE and PUBLISH are one line on stderr and exit status 1.
func TestACL(t *testing.T) {
	srv := redistest.Start(t, &redistest.Options{ACL: []string{"user limited on >secret resetchannels &other:* +@all"}})
	good := "redis://limited:secret@" + srv.Addr()
	for _, tc := range []struct {
		name string
		url  string
		args []string
		want string
	}{
		{"wrong password", "redis://limited:nope@" + srv.Addr(), []string{"stats"}, "cannot reach Redis at " + srv.Addr() + ": WRONGPASS"},
		{"subscribe refused", good, []string{"sub", "x"}, "sub: bridge: subscribe refused"},
		{"psubscribe refused", good, []string{"sub", "x.*"}, "sub: bridge: subscribe refused"},
		{"publish refused", good, []string{"pub", "x", "y"}, "pub: Redis took 0 of 1 event: bridge: publish refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := buscat(t, tc.url, "", tc.args...)
			if r.code != exitRuntime || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, "buscat: "+tc.want) {
				t.Errorf("exit status %d, stderr %q; want 1 and one line starting %q", r.code, r.stderr, "buscat: "+tc.want)
			}
		})
	}
	// The same user on its own prefix works.
	sub := startSub(t, good, "-prefix", "other:", "x")
	mustBuscat(t, good, "", "pub", "-prefix", "other:", "x", "allowed")
	if l := sub.event(t); payloadString(t, l) != "allowed" {
		t.Errorf("sub printed %+v", l)
	}
	stopSub(t, sub)
}

// TestHelp checks that -h prints the usage on stdout and exits 0, and
// that it says first how to talk to plain Redis clients.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"sub", "-h"}, {"help"}} {
		r := buscat(t, "", "", args...)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "\nusage: buscat") || !strings.Contains(r.stdout, "-prefix") {
			t.Errorf("buscat %v: status %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
		intro, _, _ := strings.Cut(r.stdout, "usage:")
		for _, want := range []string{"PREFIX+T", "empty by default", "Plain Redis clients", "payload's bytes exactly", "pub -envelope"} {
			if !strings.Contains(intro, want) {
				t.Errorf("buscat %v: the help does not say %q before the usage:\n%s", args, want, intro)
			}
		}
	}
}

// TestDefaultPrefix checks that with the default prefix, empty, a topic is
// the Redis channel of its name: buscat sub notifications prints what
// redis-cli PUBLISH notifications sends, and redis-cli SUBSCRIBE
// notifications prints what buscat pub notifications sends: the text
// exactly, with no flag.
func TestDefaultPrefix(t *testing.T) {
	srv := redistest.Start(t, nil)
	sub := startSub(t, srv.URL(), "notifications")
	if n, err := srv.CLI("PUBLISH", "notifications", "hi"); err != nil || strings.TrimSpace(n) != "1" {
		t.Fatalf("redis-cli PUBLISH notifications hi: %q, %v; want 1 receiver", n, err)
	}
	if l := sub.event(t); l.Topic != "notifications" || payloadString(t, l) != "hi" {
		t.Errorf("sub printed %+v, want hi on notifications", l)
	}

	_, port, _ := strings.Cut(srv.Addr(), ":")
	cli := exec.Command("redis-cli", "-p", port, "SUBSCRIBE", "notifications")
	out, err := cli.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cli.Process.Kill()
		cli.Wait()
	}()
	lines := bufio.NewScanner(out)
	// redis-cli prints a field per line when it does not print to a
	// terminal: the confirmation, then each message.
	for _, want := range []string{"subscribe", "notifications", "1"} {
		if !lines.Scan() || lines.Text() != want {
			t.Fatalf("redis-cli SUBSCRIBE printed %q, want %q", lines.Text(), want)
		}
	}
	const hello = `héllo from buscat: {"a": 1} ✓`
	if r := mustBuscat(t, srv.URL(), "", "pub", "notifications", hello); r.stdout != "(integer) 2\n" {
		t.Errorf("pub printed %q, want (integer) 2: sub and redis-cli", r.stdout)
	}
	for _, want := range []string{"message", "notifications", hello} {
		if !lines.Scan() || lines.Text() != want {
			t.Fatalf("redis-cli SUBSCRIBE printed %q, want %q", lines.Text(), want)
		}
	}
	if l := sub.event(t); l.Source != bridge.RawSource || payloadString(t, l) != hello {
		t.Errorf("sub printed %+v", l)
	}
	stopSub(t, sub)
}

// TestPubReceivers checks that pub prints, for each event, the number of
// clients that received it, as redis-cli PUBLISH does: the number that
// redis-cli PUBLISH gets on the same channel.
func TestPubReceivers(t *testing.T) {
	srv := redistest.Start(t, nil)
	url := srv.URL()
	for _, tc := range []struct {
		name   string
		subs   int // buscat subs of the topic: the receivers
		args   []string
		stdin  string
		events int
	}{
		{"nobody", 0, []string{"pub", "r.t", "x"}, "", 1},
		{"one", 1, []string{"pub", "r.t", "x"}, "", 1},
		{"two", 2, []string{"pub", "r.t", "x"}, "", 1},
		{"two -raw", 2, []string{"pub", "-raw", "r.t", "x"}, "", 1},
		{"lines", 2, []string{"pub", "-lines", "r.t"}, "a\nb\nc\n", 3},
		{"empty argument", 1, []string{"pub", "r.t", ""}, "", 1},
		{"nobody enveloped", 0, []string{"pub", "-envelope", "r.t", "x"}, "", 1},
		{"two enveloped", 2, []string{"pub", "-envelope", "r.t", "x"}, "", 1},
		{"lines enveloped", 2, []string{"pub", "-envelope", "-lines", "r.t"}, "a\nb\nc\n", 3},
		{"empty argument enveloped", 1, []string{"pub", "-envelope", "r.t", ""}, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var subs []*subProc
			for range tc.subs {
				subs = append(subs, startSub(t, url, "r.t"))
			}
			r := mustBuscat(t, url, tc.stdin, tc.args...)
			want := strings.Repeat(fmt.Sprintf("(integer) %d\n", tc.subs), tc.events)
			if r.stdout != want || r.stderr != "" {
				t.Errorf("pub printed %q, %q; want %q and nothing on stderr", r.stdout, r.stderr, want)
			}
			n, err := srv.CLI("PUBLISH", "r.t", "y")
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(n) != strconv.Itoa(tc.subs) {
				t.Errorf("redis-cli PUBLISH reached %s clients, pub says %d", n, tc.subs)
			}
			for _, s := range subs {
				for range tc.events + 1 { // pub's and redis-cli's
					s.event(t)
				}
				stopSub(t, s)
			}
		})
	}
}

// TestPrefixWarning checks that a topic or pattern typed with the prefix
// on it gets a warning on stderr, and goes where buscat says.
func TestPrefixWarning(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	ctx := context.Background()
	plain := rdb.Subscribe(ctx, "app:app:notifications")
	defer plain.Close()
	if _, err := plain.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	r := mustBuscat(t, srv.URL(), "", "-prefix", "app:", "pub", "app:notifications", "doubled")
	want := `buscat: warning: topic "app:notifications" starts with the prefix "app:", which buscat adds, making it "app:app:notifications" on Redis; did you mean topic "notifications"?` + "\n"
	if r.stderr != want || r.stdout != "(integer) 1\n" {
		t.Errorf("pub printed %q, %q; want (integer) 1 and the warning %q", r.stdout, r.stderr, want)
	}
	select {
	case m := <-plain.Channel():
		if m.Channel != "app:app:notifications" || m.Payload != "doubled" {
			t.Errorf("got %q on %s", m.Payload, m.Channel)
		}
	case <-time.After(waitTimeout):
		t.Fatal("nothing on app:app:notifications")
	}

	// No warning without the prefix on the topic, nor without a prefix.
	for _, args := range [][]string{{"-prefix", "app:", "pub", "notifications", "x"}, {"pub", "app:notifications", "x"}} {
		if r := mustBuscat(t, srv.URL(), "", args...); r.stderr != "" {
			t.Errorf("buscat %v: stderr %q, want nothing", args, r.stderr)
		}
	}

	// sub warns too, before it subscribes.
	sub := launchSub(t, srv.URL(), "-prefix", "app:", "app:orders.*")
	for _, want := range []string{
		`buscat: warning: pattern "app:orders.*" starts with the prefix "app:", which buscat adds, making it "app:app:orders.*" on Redis; did you mean pattern "orders.*"?`,
		"buscat: subscribed: PSUBSCRIBE app:app:orders.*",
	} {
		if got := next(t, sub.stderr, "stderr"); got != want {
			t.Fatalf("sub said %q on stderr, want %q", got, want)
		}
	}
	stopSub(t, sub)
}

// TestStdoutFull checks that a line pub or sub cannot print is an error,
// exit status 1, not lost: here stdout is /dev/full, where every write
// fails with ENOSPC.
func TestStdoutFull(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	srv := redistest.Start(t, nil)

	pub := exec.Command(built(t), "pub", "x", "hi")
	pub.Env = env(srv.URL())
	pub.Stdout = full
	var stderr bytes.Buffer
	pub.Stderr = &stderr
	var exit *exec.ExitError
	if err := pub.Run(); !errors.As(err, &exit) || exit.ExitCode() != exitRuntime ||
		!strings.HasPrefix(stderr.String(), "buscat: pub: writing to stdout: ") {
		t.Errorf("pub > /dev/full: %v, stderr %q; want exit status 1 and the write error", err, stderr.String())
	}

	sub := exec.Command(built(t), "sub", "x")
	sub.Env = env(srv.URL())
	sub.Stdout = full
	subErr, err := sub.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	// A sub that does not stop is killed: the checks below then fail.
	timer := time.AfterFunc(waitTimeout, func() { sub.Process.Kill() })
	defer timer.Stop()
	lines := bufio.NewScanner(subErr)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "buscat: subscribed: ") {
		t.Fatalf("sub said %q, want buscat: subscribed: ...", lines.Text())
	}
	mustBuscat(t, srv.URL(), "", "pub", "x", "hi")
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "buscat: sub: writing to stdout: ") {
		t.Errorf("sub > /dev/full said %q, want the write error", lines.Text())
	}
	if err := sub.Wait(); !errors.As(err, &exit) || exit.ExitCode() != exitRuntime {
		t.Errorf("sub > /dev/full: %v, want exit status 1", err)
	}
}
