package bridge_test

import (
	"context"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// pythonPrelude starts the redis-py programs of the tests, which take
// the host and the port of Redis as their first arguments: r is the
// client, subscribe(channel) returns a pubsub once Redis confirmed the
// subscription, receive(p) the next message's bytes.
const pythonPrelude = `
import sys, redis
r = redis.Redis(host=sys.argv[1], port=int(sys.argv[2]))

def subscribe(channel):
    p = r.pubsub()
    p.subscribe(channel)
    while True:
        m = p.get_message(timeout=20)
        if m is None:
            sys.exit('no subscribe confirmation')
        if m['type'] == 'subscribe':
            return p

def receive(p):
    while True:
        m = p.get_message(timeout=20)
        if m is None:
            sys.exit('nothing from the bridge')
        if m['type'] == 'message':
            return m['data']
`

// pythonPeer is a redis-py program: it subscribes to app:py.out, says
// "ready", publishes raw bytes on app:py.in and text on app:py.env, then
// prints "got <hex>" for the first message it receives.
const pythonPeer = pythonPrelude + `
p = subscribe('app:py.out')
print('ready', flush=True)
r.publish('app:py.in', b'hi from python \xc3\xa9\x00')
r.publish('app:py.env', 'text from python')
print('got ' + receive(p).hex(), flush=True)
`

// python returns a Python interpreter that has redis-py (the Debian
// package python3-redis, which the test command installs). Without one
// it skips the test, or fails it under CI.
func python(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import redis").Run() == nil {
			return py
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no python3 with redis-py: the test command installs python3-redis")
	}
	t.Skip("no python3 with redis-py (apt-get install python3-redis)")
	return ""
}

// TestPythonInterop runs a redis-py publisher and subscriber against the
// bridge: its raw bytes reach local subscribers exactly, on a raw route
// and, without the envelope magic, on an enveloped one; and what the
// bridge exports on a raw route reaches it byte for byte.
func TestPythonInterop(t *testing.T) {
	py := python(t)
	srv := redistest.Start(t, nil)
	in := newInstance(t, srv.Client(t), testOptions(nil,
		bridge.Route{Pattern: "py.in", Raw: true},
		bridge.Route{Pattern: "py.out", Raw: true},
		bridge.Route{Pattern: "py.env"},
	))
	rec := record(t, in.bus, "py.*")

	host, port, _ := strings.Cut(srv.Addr(), ":")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pythonPeer, host, port)
	lines, stderr := startPeer(t, cmd)

	// Topics are imported by separate workers: compare by topic.
	want := map[string]string{"py.in": "hi from python \xc3\xa9\x00", "py.env": "text from python"}
	for _, e := range rec.waitFor(t, 2) {
		p, ok := e.Payload.([]byte)
		if !ok || string(p) != want[e.Topic] || e.Meta.Source != bridge.RawSource {
			t.Errorf("%s: %T %q source %q; want []byte %q", e.Topic, e.Payload, e.Payload, e.Meta.Source, want[e.Topic])
		}
		delete(want, e.Topic)
	}
	if len(want) != 0 {
		t.Errorf("not delivered: %v", want)
	}

	sent := []byte{0x00, 0xff, 'b', 'u', 's', 0xb5, 0x1e}
	publish(t, in.bus, "py.out", sent)
	if !lines.Scan() {
		t.Fatalf("python printed nothing more; stderr %s", stderr.String())
	}
	if got, want := lines.Text(), "got "+hex.EncodeToString(sent); got != want {
		t.Errorf("python received %q, want %q", got, want)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("python: %v, stderr %s", err, stderr.String())
	}
	checkAccounting(t, in.bridge)
}
