package bridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// durableOptions returns testOptions with the timings of durable routes
// shortened for tests, and the given instance ID.
func durableOptions(id string, routes ...bridge.Route) *bridge.Options {
	o := testOptions(nil, routes...)
	o.InstanceID = id
	o.StreamBlock = 100 * time.Millisecond
	o.ClaimIdle = 500 * time.Millisecond
	return o
}

// payloads returns the payloads of events as strings.
func payloads(t testing.TB, events []bus.Event) []string {
	t.Helper()
	out := make([]string, len(events))
	for i, e := range events {
		switch p := e.Payload.(type) {
		case string:
			out[i] = p
		case []byte:
			out[i] = string(p)
		default:
			t.Fatalf("event %d: payload %T", i, e.Payload)
		}
	}
	return out
}

// seqStrings returns "from" .. "to-1" as decimal strings.
func seqStrings(from, to int) []string {
	var s []string
	for i := from; i < to; i++ {
		s = append(s, strconv.Itoa(i))
	}
	return s
}

// newInstanceOn is newInstance on a bus the caller made: durable routes
// deliver what the stream holds as soon as the bridge starts, so the
// tests subscribe before they start it, as applications should.
func newInstanceOn(t testing.TB, b *bus.Bus, rdb redis.UniversalClient, opts *bridge.Options) *instance {
	t.Helper()
	in := &instance{bus: b, errs: &errLog{}}
	if opts.OnError == nil {
		opts.OnError = in.errs.add
	}
	br, err := bridge.New(b, rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	in.bridge = br
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := br.Close(ctx); err != nil && !errors.Is(err, bridge.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
		_ = b.Close(ctx)
	})
	ready(t, br)
	return in
}

func closeInstance(t testing.TB, in *instance) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := in.bridge.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// TestStreamRoute exports events of two topics through one pattern route
// into one stream and imports them on another instance: every event
// arrives once, in order, with its metadata; the stream holds entries of
// the documented layout; the counters add up; the importer's checkpoint
// is the last entry.
func TestStreamRoute(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	route := bridge.Route{Pattern: "orders.*", Delivery: bridge.Stream}
	exp, imp := route, route
	exp.Direction, imp.Direction = bridge.Export, bridge.Import
	a := newInstance(t, srv.Client(t), durableOptions("a", exp))
	b := newInstance(t, srv.Client(t), durableOptions("b", imp))
	rec := record(t, b.bus, "orders.*")

	const n = 100
	for i := range n {
		topic := "orders.created"
		if i%2 == 1 {
			topic = "orders.paid"
		}
		publish(t, a.bus, topic, strconv.Itoa(i))
	}
	events := rec.waitFor(t, n)
	if got, want := payloads(t, events), seqStrings(0, n); !slices.Equal(got, want) {
		t.Fatalf("payloads %v, want %v", got, want)
	}
	for i, e := range events {
		if !e.Remote() || e.Meta.Source != "a" || e.Meta.Seq != uint64(i/2+1) || e.Meta.ContentType != bridge.ContentTypeText {
			t.Fatalf("event %d: topic %s meta %+v", i, e.Topic, e.Meta)
		}
	}

	key := bridge.StreamKey("app:", "orders.*")
	if key != "app:stream:orders.*" {
		t.Fatalf("StreamKey = %q", key)
	}
	entries, err := rdb.XRange(context.Background(), key, "-", "+").Result()
	if err != nil || len(entries) != n {
		t.Fatalf("XRANGE: %d entries, %v", len(entries), err)
	}
	for i, m := range entries {
		data, _ := m.Values["data"].(string)
		if len(m.Values) != 2 || m.Values["topic"] != events[i].Topic || !strings.HasPrefix(data, "\xb5\x1e") {
			t.Fatalf("entry %d: %q", i, m.Values)
		}
	}
	cp, err := rdb.HGet(context.Background(), "app:checkpoint:b", key).Result()
	eventually(t, func() bool {
		cp, err = rdb.HGet(context.Background(), "app:checkpoint:b", key).Result()
		return err == nil && cp == entries[n-1].ID
	}, "checkpoint %q (%v), want %q", cp, err, entries[n-1].ID)

	// a counts an export once Redis has replied to its XADD, which can be
	// after b read the entry.
	eventually(t, func() bool { return a.bridge.Stats().Exported >= n }, "a to count %d exports: %+v", n, a.bridge.Stats)
	as, bs := a.bridge.Stats(), b.bridge.Stats()
	if as.Exported != n || as.StreamExported != n || as.OutboxDepth != 0 {
		t.Errorf("exporter: %+v", as)
	}
	if bs.Imported != n || bs.StreamImported != n || bs.Received != n || bs.StreamResumes != 0 {
		t.Errorf("importer: %+v", bs)
	}
	checkAccounting(t, b.bridge)
}

// TestStreamResume closes an importer, exports while it is away, and
// starts another bridge with the same InstanceID: it delivers exactly the
// events it missed, from its checkpoint, and counts the resume.
func TestStreamResume(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "feed", Delivery: bridge.Stream}
	exp, imp := route, route
	exp.Direction, imp.Direction = bridge.Export, bridge.Import
	a := newInstance(t, srv.Client(t), durableOptions("a", exp))

	b1 := newInstance(t, srv.Client(t), durableOptions("b", imp))
	rec1 := record(t, b1.bus, "feed")
	for i := range 50 {
		publish(t, a.bus, "feed", strconv.Itoa(i))
	}
	rec1.waitFor(t, 50)
	closeInstance(t, b1)
	if s := b1.bridge.Stats(); s.StreamImported != 50 {
		t.Fatalf("first run imported %d", s.StreamImported)
	}

	for i := 50; i < 120; i++ {
		publish(t, a.bus, "feed", strconv.Itoa(i))
	}
	eventually(t, func() bool { return a.bridge.Stats().StreamExported == 120 }, "exports")

	bus2 := newBus()
	rec2 := record(t, bus2, "feed")
	b2 := newInstanceOn(t, bus2, srv.Client(t), durableOptions("b", imp))
	rec2.waitFor(t, 70)
	time.Sleep(200 * time.Millisecond) // room for an extra delivery to show
	if got, want := payloads(t, rec2.snapshot()), seqStrings(50, 120); !slices.Equal(got, want) {
		t.Fatalf("second run got %v, want %v", got, want)
	}
	if s := b2.bridge.Stats(); s.StreamResumes != 1 || s.StreamImported != 70 {
		t.Errorf("second run: %+v", s)
	}
}

// fileCheckpointer keeps positions in a JSON file: a Checkpointer outside
// Redis, as a user could write one. Load of a stream it does not know
// returns "0", so that a new route reads the stream from its start.
type fileCheckpointer struct {
	path  string
	mu    sync.Mutex
	saves int
}

func (f *fileCheckpointer) read() map[string]string {
	m := map[string]string{}
	if data, err := os.ReadFile(f.path); err == nil {
		_ = json.Unmarshal(data, &m)
	}
	return m
}

func (f *fileCheckpointer) Load(_ context.Context, stream string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.read()[stream]; ok {
		return id, nil
	}
	return "0", nil
}

func (f *fileCheckpointer) Save(_ context.Context, stream, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.read()
	m[stream] = id
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	f.saves++
	return os.WriteFile(f.path, data, 0o600)
}

// TestStreamCustomCheckpointer reads a stream written by redis-cli (a
// foreign, non-Go writer: no envelope) through a route whose positions a
// file keeps: the first run reads the whole stream (Load said "0"), the
// file ends at the last entry, and a second run delivers only what was
// added since. No checkpoint goes to Redis.
func TestStreamCustomCheckpointer(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	key := bridge.StreamKey("app:", "notes.*")
	cli := func(args ...string) string {
		t.Helper()
		out, err := srv.CLI(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	for i := range 10 {
		cli("XADD", key, "*", "topic", "notes.cli", "data", "note "+strconv.Itoa(i))
	}
	cp := &fileCheckpointer{path: filepath.Join(t.TempDir(), "cp.json")}
	opts := func() *bridge.Options {
		o := durableOptions("", bridge.Route{Pattern: "notes.*", Direction: bridge.Import, Delivery: bridge.Stream})
		o.Checkpointer = cp // with no InstanceID: the checkpoints do not depend on it
		return o
	}

	bus1 := newBus()
	rec1 := record(t, bus1, "notes.*")
	b1 := newInstanceOn(t, bus1, srv.Client(t), opts())
	events := rec1.waitFor(t, 10)
	for i, e := range events {
		if p, ok := e.Payload.([]byte); !ok || string(p) != "note "+strconv.Itoa(i) || e.Meta.Source != bridge.RawSource {
			t.Fatalf("event %d: %#v %+v", i, e.Payload, e.Meta)
		}
	}
	closeInstance(t, b1)
	last := cli("XREVRANGE", key, "+", "-", "COUNT", "1")
	if id := cp.read()[key]; id == "" || !strings.HasPrefix(last, id) {
		t.Fatalf("file checkpoint %q, last entry %q", id, last)
	}

	cli("XADD", key, "*", "topic", "notes.cli", "data", "note 10")
	bus2 := newBus()
	rec2 := record(t, bus2, "notes.*")
	newInstanceOn(t, bus2, srv.Client(t), opts())
	rec2.waitFor(t, 1)
	time.Sleep(200 * time.Millisecond)
	if got := payloads(t, rec2.snapshot()); !slices.Equal(got, []string{"note 10"}) {
		t.Fatalf("second run got %q", got)
	}
	if n, _ := rdb.Exists(context.Background(), "app:checkpoint:").Result(); n != 0 {
		t.Error("a checkpoint went to Redis")
	}
	if keys, _ := rdb.Keys(context.Background(), "app:checkpoint:*").Result(); len(keys) != 0 {
		t.Errorf("checkpoint keys in Redis: %v", keys)
	}
}

// TestStreamEchoAndNoReexport runs two instances that mirror the same
// durable route both ways, enveloped and raw: each gets its own events
// from its bus and the other's from the stream, once; neither re-exports
// what it imported; each drops its own entries as echoes.
func TestStreamEchoAndNoReexport(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) {
			srv := redistest.Start(t, nil)
			route := bridge.Route{Pattern: "chat.*", Delivery: bridge.Stream, Raw: raw}
			if raw {
				route.Codec = bridge.Text() // the payloads are strings
			}
			a := newInstance(t, srv.Client(t), durableOptions("a", route))
			b := newInstance(t, srv.Client(t), durableOptions("b", route))
			ra, rb := record(t, a.bus, "chat.*"), record(t, b.bus, "chat.*")
			const n = 20
			for i := range n {
				publish(t, a.bus, "chat.room", "a"+strconv.Itoa(i))
				publish(t, b.bus, "chat.room", "b"+strconv.Itoa(i))
			}
			ra.waitFor(t, 2*n)
			rb.waitFor(t, 2*n)
			eventually(t, func() bool {
				return a.bridge.Stats().EchoesDropped == n && b.bridge.Stats().EchoesDropped == n
			}, "echoes dropped")
			time.Sleep(200 * time.Millisecond)
			for _, in := range []*instance{a, b} {
				s := in.bridge.Stats()
				if s.StreamExported != n || s.StreamImported != n || s.EchoesDropped != n {
					t.Errorf("%s: %+v", in.bridge.InstanceID(), s)
				}
				checkAccounting(t, in.bridge)
			}
			if ra.len() != 2*n || rb.len() != 2*n {
				t.Errorf("a got %d, b got %d, want %d each", ra.len(), rb.len(), 2*n)
			}
			if l := srv.Client(t).XLen(context.Background(), "app:stream:chat.*").Val(); l != 2*n {
				t.Errorf("stream holds %d entries, want %d: something was exported twice", l, 2*n)
			}
		})
	}
}

// TestStreamSigning signs the entries of a durable route: a bridge with
// the key accepts them, one with another key rejects every one, and an
// unsigned entry written by redis-cli is rejected too.
func TestStreamSigning(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "pay.*", Delivery: bridge.Stream}
	exp, imp := route, route
	exp.Direction, imp.Direction = bridge.Export, bridge.Import
	signed := func(id string, key string, r bridge.Route) *bridge.Options {
		o := durableOptions(id, r)
		o.SigningKey = []byte(key)
		return o
	}
	a := newInstance(t, srv.Client(t), signed("a", "k1", exp))
	good := newInstance(t, srv.Client(t), signed("good", "k1", imp))
	bad := newInstance(t, srv.Client(t), signed("bad", "k2", imp))
	rGood, rBad := record(t, good.bus, "pay.*"), record(t, bad.bus, "pay.*")

	for i := range 10 {
		publish(t, a.bus, "pay.done", strconv.Itoa(i))
	}
	if _, err := srv.CLI("XADD", "app:stream:pay.*", "*", "topic", "pay.done", "data", "forged"); err != nil {
		t.Fatal(err)
	}
	rGood.waitFor(t, 10)
	eventually(t, func() bool { return good.bridge.Stats().SignatureRejected == 1 }, "unsigned entry rejected")
	eventually(t, func() bool { return bad.bridge.Stats().SignatureRejected == 11 }, "other key rejects all: %+v", bad.bridge.Stats())
	if got := payloads(t, rGood.snapshot()); !slices.Equal(got, seqStrings(0, 10)) {
		t.Errorf("good got %v", got)
	}
	if rBad.len() != 0 {
		t.Errorf("bad delivered %d events", rBad.len())
	}
	if bad.errs.count(bridge.ErrSignature) == 0 {
		t.Error("rejections not reported")
	}
	checkAccounting(t, good.bridge)
	checkAccounting(t, bad.bridge)
}

// TestStreamOptions checks the options New rejects for durable routes.
func TestStreamOptions(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer rdb.Close()
	for _, tc := range []struct {
		name string
		opts *bridge.Options
	}{
		{"unknown delivery", &bridge.Options{InstanceID: "x", Routes: []bridge.Route{{Pattern: "a", Delivery: 7}}}},
		{"stream import without InstanceID", &bridge.Options{Routes: []bridge.Route{{Pattern: "a", Delivery: bridge.Stream}}}},
		{"two import routes on one stream", &bridge.Options{InstanceID: "x", Routes: []bridge.Route{
			{Pattern: "a.*", Delivery: bridge.Stream}, {Pattern: "a.b", Delivery: bridge.Group, Stream: "a.*"}}}},
		{"negative MaxDeliveries", &bridge.Options{InstanceID: "x", Routes: []bridge.Route{{Pattern: "a", Delivery: bridge.Group, MaxDeliveries: -1}}}},
		{"retry with a dead-letter topic", &bridge.Options{InstanceID: "x", Routes: []bridge.Route{
			{Pattern: "a", Delivery: bridge.Group, Retry: &bus.RetryPolicy{DeadLetter: "dl"}}}}},
		{"retry with negative attempts", &bridge.Options{InstanceID: "x", Routes: []bridge.Route{
			{Pattern: "a", Delivery: bridge.Stream, Retry: &bus.RetryPolicy{Attempts: -1}}}}},
		{"retry with Max below Initial", &bridge.Options{InstanceID: "x", Routes: []bridge.Route{
			{Pattern: "a", Delivery: bridge.Group, Retry: &bus.RetryPolicy{Initial: time.Second, Max: time.Millisecond}}}}},
		{"retry with a multiplier below 1", &bridge.Options{InstanceID: "x", Routes: []bridge.Route{
			{Pattern: "a", Delivery: bridge.Group, Retry: &bus.RetryPolicy{Multiplier: 0.5}}}}},
		{"retry with a jitter above 1", &bridge.Options{InstanceID: "x", Routes: []bridge.Route{
			{Pattern: "a", Delivery: bridge.Group, Retry: &bus.RetryPolicy{Jitter: 2}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br, err := bridge.New(bus.New(nil), rdb, tc.opts)
			if !errors.Is(err, bridge.ErrInvalidOptions) {
				if br != nil {
					_ = closeBridge(br)
				}
				t.Fatalf("New: %v, want ErrInvalidOptions", err)
			}
		})
	}
	// Accepted: an export-only stream route and a group route need no
	// InstanceID that survives restarts.
	br, err := bridge.New(bus.New(nil), rdb, &bridge.Options{Routes: []bridge.Route{
		{Pattern: "a", Delivery: bridge.Stream, Direction: bridge.Export},
		{Pattern: "b", Delivery: bridge.Group},
	}, OnError: func(error) {}, StreamBlock: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := br.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if bridge.Group.String() != "group" || bridge.PubSub.String() != "pubsub" || bridge.Stream.String() != "stream" {
		t.Error("Delivery.String")
	}
}
