package bridge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// The Node.js programs of these tests live in testdata/node, with a
// package-lock.json pinning the official CloudEvents SDK (npm cloudevents
// 10.0.0) and the npm redis client; the test command installs them with
// npm ci.
const nodeDir = "testdata/node"

// node returns the node binary, once the packages are installed. Without
// either it skips the test, or fails it under CI, where the test command
// provides both.
func node(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	missing := ""
	switch {
	case err != nil:
		missing = "no node on PATH"
	case !exists(filepath.Join(nodeDir, "node_modules", "cloudevents")) || !exists(filepath.Join(nodeDir, "node_modules", "redis")):
		missing = "no node_modules in " + nodeDir + " (run npm ci there)"
	}
	if missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatal(missing + ": the test command provides node and runs npm ci")
		}
		t.Skip(missing)
	}
	return bin
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// startPeer starts cmd, a program of another language, and waits until
// it prints "ready": then it returns its other lines, and its stderr for
// errors.
func startPeer(t *testing.T, cmd *exec.Cmd) (*bufio.Scanner, *bytes.Buffer) {
	t.Helper()
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(out)
	lines.Buffer(nil, 1<<20)
	if !lines.Scan() || lines.Text() != "ready" {
		t.Fatalf("%s: %q, stderr %s", cmd.Path, lines.Text(), stderr)
	}
	return lines, stderr
}

// nodeExport is what subscribe.mjs prints for each message.
type nodeExport struct {
	Raw   string         `json:"raw"`
	Event map[string]any `json:"event"`
}

// TestCloudEventsNodeExport exports events through CloudEvents routes to a
// Node program that parses them with the official SDK (HTTP.toEvent, then
// validate, and the strict constructor): no validation error, and the
// SDK's attributes and data are those the bridge wrote; signed events
// too, whose buslineepoch and buslinesig the SDK keeps as extensions.
func TestCloudEventsNodeExport(t *testing.T) {
	bin := node(t)
	for _, key := range []string{"", "s3cret"} {
		name := "unsigned"
		if key != "" {
			name = "signed"
		}
		t.Run(name, func(t *testing.T) { testCloudEventsNodeExport(t, bin, []byte(key)) })
	}
}

func testCloudEventsNodeExport(t *testing.T, bin string, key []byte) {
	srv := redistest.Start(t, nil)
	o := testOptions(nil, bridge.Route{Pattern: "node.out", Format: bridge.CloudEvents, Direction: bridge.Export})
	o.InstanceID = "urn:busline:go-1"
	if len(key) > 0 {
		o.SigningKey = key
	}
	in := newInstance(t, srv.Client(t), o)

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "subscribe.mjs", "redis://"+srv.Addr(), "app:node.out", "3")
	cmd.Dir = nodeDir
	lines, stderr := startPeer(t, cmd)

	headers := map[string]string{"traceparent": traceparent, "tracestate": "busline=1", "subject": "order-42"}
	if err := in.bus.PublishEvent(context.Background(), bus.Event{Topic: "node.out", Payload: Order{ID: 42, Items: []string{"thé"}}, Meta: &bus.Meta{Headers: headers}}); err != nil {
		t.Fatal(err)
	}
	publish(t, in.bus, "node.out", "plain text, \"quoted\"")
	publish(t, in.bus, "node.out", []byte{0, 0xff, 0xb5, 0x1e})

	for i := range 3 {
		if !lines.Scan() {
			t.Fatalf("node printed %d events; stderr %s", i, stderr.String())
		}
		t.Logf("node: %s", lines.Text())
		var got nodeExport
		if err := json.Unmarshal(lines.Bytes(), &got); err != nil {
			t.Fatalf("node printed %q: %v", lines.Text(), err)
		}
		var want map[string]any
		if err := json.Unmarshal([]byte(got.Raw), &want); err != nil {
			t.Fatalf("bridge exported %q: %v", got.Raw, err)
		}
		// The SDK keeps milliseconds of the time (a JavaScript Date).
		wt, err := time.Parse(time.RFC3339Nano, want["time"].(string))
		if err != nil {
			t.Fatal(err)
		}
		want["time"] = wt.Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z")
		if !reflect.DeepEqual(got.Event, want) {
			t.Errorf("event %d: the SDK read\n%v\nthe bridge wrote\n%v", i, got.Event, want)
		}
		if got.Event["id"] != "app:node.out:"+string(rune('1'+i)) || got.Event["source"] != "urn:busline:go-1" || got.Event["type"] != "node.out" {
			t.Errorf("event %d: attributes %v", i, got.Event)
		}
		if _, signed := got.Event["buslinesig"].(string); signed != (len(key) > 0) || signed && signCE(unsignCE(got.Raw), key) != got.Raw {
			t.Errorf("event %d: signed %v, with key %q: %s", i, signed, key, got.Raw)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("node: %v, stderr %s", err, stderr.String())
	}
}

// TestCloudEventsNodeImport imports CloudEvents that a Node program built
// with the official SDK and published with the npm redis client, on a
// pub/sub route and a Stream route (an entry without a topic field): Go
// subscribers receive them with their attributes in Meta.
func TestCloudEventsNodeImport(t *testing.T) {
	bin := node(t)
	srv := redistest.Start(t, nil)
	o := testOptions(nil,
		bridge.Route{Pattern: "node.in", Format: bridge.CloudEvents, Direction: bridge.Import},
		bridge.Route{Pattern: "node.s", Format: bridge.CloudEvents, Delivery: bridge.Stream, Direction: bridge.Import},
	)
	o.InstanceID = "go-2"
	in := newInstance(t, srv.Client(t), o)
	rec := record(t, in.bus, "node.*")

	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "publish.mjs", "redis://"+srv.Addr())
	cmd.Dir = nodeDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	sent, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v, stderr %s", err, stderr.String())
	}
	msgs := strings.Split(strings.TrimSpace(string(sent)), "\n")
	if len(msgs) != 2 {
		t.Fatalf("node printed %q", sent)
	}
	sentBy := map[string]map[string]any{}
	for _, m := range msgs {
		t.Logf("node sent: %s", m)
		var ev map[string]any
		if err := json.Unmarshal([]byte(m), &ev); err != nil {
			t.Fatal(err)
		}
		sentBy[ev["id"].(string)] = ev
	}

	for _, e := range rec.waitFor(t, 2) {
		m := e.Meta
		t.Logf("Go subscriber: topic %s payload %s meta %+v", e.Topic, e.Payload, *m)
		want := sentBy[m.Headers["id"]]
		if want == nil {
			t.Errorf("%s: unknown id %q", e.Topic, m.Headers["id"])
			continue
		}
		wantTopic := map[string]string{"node-1": "node.in", "node-2": "node.s"}[m.Headers["id"]]
		wt, _ := time.Parse(time.RFC3339Nano, want["time"].(string))
		if e.Topic != wantTopic || m.Source != "urn:node:publisher" || !m.Time.Equal(wt) || m.Time.IsZero() ||
			m.ContentType != "application/json" || m.Seq != 0 {
			t.Errorf("%s: meta %+v, want source, time and content type of %v", e.Topic, *m, want)
		}
		wantHeaders := map[string]string{
			"id": want["id"].(string), "type": "com.example.order.created", "subject": want["subject"].(string),
			"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "nodeext": "42",
		}
		if !reflect.DeepEqual(m.Headers, wantHeaders) {
			t.Errorf("%s: headers %v, want %v", e.Topic, m.Headers, wantHeaders)
		}
		var data any
		if err := json.Unmarshal(e.Payload.([]byte), &data); err != nil || !reflect.DeepEqual(data, want["data"]) {
			t.Errorf("%s: payload %s (%v), want %v", e.Topic, e.Payload, err, want["data"])
		}
	}
	checkAccounting(t, in.bridge)
}

// pythonCloudEvents is a redis-py program: it subscribes to app:py.ce,
// says "ready", and prints the CloudEvent it receives as json reads it.
const pythonCloudEvents = pythonPrelude + `
import json
p = subscribe('app:py.ce')
print('ready', flush=True)
ev = json.loads(receive(p))
print(json.dumps({k: ev[k] for k in ('specversion', 'id', 'source', 'type', 'buslineseq', 'traceparent', 'data')}, sort_keys=True), flush=True)
`

// TestCloudEventsPython reads what a CloudEvents route exports with
// redis-py and Python's json: the attributes and the data, no decoder of
// ours involved.
func TestCloudEventsPython(t *testing.T) {
	py := python(t)
	srv := redistest.Start(t, nil)
	o := testOptions(nil, bridge.Route{Pattern: "py.ce", Format: bridge.CloudEvents, Direction: bridge.Export})
	o.InstanceID = "go-py"
	in := newInstance(t, srv.Client(t), o)

	host, port, _ := strings.Cut(srv.Addr(), ":")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pythonCloudEvents, host, port)
	lines, stderr := startPeer(t, cmd)
	if err := in.bus.PublishEvent(context.Background(), bus.Event{Topic: "py.ce", Payload: Order{ID: 7, Items: []string{"é"}},
		Meta: &bus.Meta{Headers: map[string]string{"traceparent": traceparent}}}); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() {
		t.Fatalf("python printed nothing more; stderr %s", stderr.String())
	}
	want := `{"buslineseq": "1", "data": {"id": 7, "items": ["\u00e9"]}, "id": "app:py.ce:1", "source": "go-py", "specversion": "1.0", "traceparent": "` + traceparent + `", "type": "py.ce"}`
	if got := lines.Text(); got != want {
		t.Errorf("python read\n%s\nwant\n%s", got, want)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("python: %v, stderr %s", err, stderr.String())
	}
}

// pythonSigned is a redis-py program that checks and makes signatures by
// the documented recipe, with hmac, hashlib and base64 only: it
// subscribes to app:pysig.out, says "ready", verifies the first event it
// receives and a copy of it with the data altered, prints
// {"verified": ..., "altered": ..., "epoch": ...}, then publishes on
// app:pysig.in an event it signed itself, and the same altered.
const pythonSigned = pythonPrelude + `
import json, hmac, hashlib, base64, datetime
key = sys.argv[3].encode()

def mac(body):
    return base64.urlsafe_b64encode(hmac.new(key, body, hashlib.sha256).digest()).rstrip(b'=')

def verify(msg):
    # The last 60 bytes are ,"buslinesig":"<43 characters>"} and the
    # signature is the HMAC of the rest followed by '}'.
    body, suffix = msg[:-60], msg[-60:]
    if not (suffix.startswith(b',"buslinesig":"') and suffix.endswith(b'"}')):
        return False
    return hmac.compare_digest(mac(body + b'}'), suffix[15:-2])

def sign(event):
    return event[:-1] + b',"buslinesig":"' + mac(event) + b'"}'

p = subscribe('app:pysig.out')
print('ready', flush=True)
msg = receive(p)
ev = json.loads(msg)
print(json.dumps({'verified': verify(msg), 'altered': verify(msg.replace(b'"id":7', b'"id":8')),
                  'epoch': ev['buslineepoch']}, sort_keys=True), flush=True)
now = datetime.datetime.now(datetime.timezone.utc).isoformat()
own = json.dumps({'specversion': '1.0', 'id': 'app:pysig.in:1', 'source': 'urn:python', 'type': 'pysig.in',
                  'time': now, 'buslineseq': '1', 'buslineepoch': '00000000000000aa', 'data': {'from': 'python'}},
                 separators=(',', ':')).encode()
r.publish('app:pysig.in', sign(own))
r.publish('app:pysig.in', sign(own).replace(b'python"}', b'pithon"}'))
`

// TestCloudEventsPythonSigned checks signed CloudEvents against a verifier
// and a signer written in Python from the recipe of the documentation:
// Python verifies what the bridge signed (and rejects it altered), and the
// bridge accepts what Python signed with the same key (and rejects it
// altered).
func TestCloudEventsPythonSigned(t *testing.T) {
	py := python(t)
	srv := redistest.Start(t, nil)
	o := testOptions(nil,
		bridge.Route{Pattern: "pysig.out", Format: bridge.CloudEvents, Direction: bridge.Export},
		bridge.Route{Pattern: "pysig.in", Format: bridge.CloudEvents, Direction: bridge.Import})
	o.InstanceID, o.SigningKey = "go-py", []byte("python and go share this key")
	in := newInstance(t, srv.Client(t), o)
	rec := record(t, in.bus, "pysig.in")

	host, port, _ := strings.Cut(srv.Addr(), ":")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pythonSigned, host, port, string(o.SigningKey))
	lines, stderr := startPeer(t, cmd)
	publish(t, in.bus, "pysig.out", Order{ID: 7})
	if !lines.Scan() {
		t.Fatalf("python printed nothing more; stderr %s", stderr.String())
	}
	var got struct {
		Verified, Altered bool
		Epoch             string
	}
	if err := json.Unmarshal(lines.Bytes(), &got); err != nil || !got.Verified || got.Altered || len(got.Epoch) != 16 {
		t.Errorf("python: %s (%v), want verified, the altered copy not, and a 16-digit epoch", lines.Text(), err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("python: %v, stderr %s", err, stderr.String())
	}

	e := rec.waitFor(t, 1)[0]
	if p, _ := e.Payload.([]byte); string(p) != `{"from":"python"}` || e.Meta.Source != "urn:python" || e.Meta.Seq != 1 {
		t.Errorf("imported %q %+v", e.Payload, e.Meta)
	}
	eventually(t, func() bool { return in.bridge.Stats().SignatureRejected == 1 }, "the altered event rejected: %+v", in.bridge.Stats)
	checkAccounting(t, in.bridge)
	if s := in.bridge.Stats(); s.Received != 2 || s.Imported != 1 {
		t.Errorf("stats %+v, want 2 received, 1 imported", s)
	}
}
