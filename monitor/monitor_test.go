package monitor_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/monitor"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	goleak.VerifyTestMain(m)
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

var ctx = context.Background()

// get fetches path from srv and decodes its JSON into out.
func get(t *testing.T, srv *httptest.Server, path string, out any) {
	t.Helper()
	res, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %s, %s", path, res.Status, res.Header.Get("Content-Type"))
	}
	if err := json.NewDecoder(res.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// TestEndpoints publishes events, some dropped and some failing, on a bus
// bridged through a real redis-server, and checks what each endpoint says.
func TestEndpoints(t *testing.T) {
	m := monitor.New(&monitor.Options{Errors: 4})
	var passed atomic.Int64
	b := bus.New(&bus.Options{OnError: m.OnError(func(error) { passed.Add(1) }), DropReportInterval: time.Nanosecond})
	defer b.Close(ctx)
	m.SetBus(b)
	rs := startBridge(t, m, b, "one")
	srv := httptest.NewServer(m)
	defer srv.Close()

	release := make(chan struct{})
	started := make(chan struct{}, 1)
	if _, err := b.SubscribeWith("orders.*", func(context.Context, bus.Event) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
	}, &bus.SubscribeOptions{Name: "slow projection", Queue: 2, Overflow: bus.DropNewest}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SubscribeFunc("orders.created", func(context.Context, bus.Event) error { return errors.New("no stock") }); err != nil {
		t.Fatal(err)
	}
	_ = b.Publish(ctx, "orders.created", 1)
	<-started // the worker holds the first: the queue has its 2 places
	for i := range 5 {
		_ = b.Publish(ctx, "orders.created", i) // 2 queued, 3 dropped
	}
	close(release)

	var subs monitor.SubscriptionsDoc
	get(t, srv, "/debug/busline/subscriptions", &subs)
	var slow *monitor.Subscription
	for i, s := range subs.Subscriptions {
		if s.Name == "slow projection" {
			slow = &subs.Subscriptions[i]
		}
	}
	if slow == nil || slow.Kind != "async" || slow.Policy != "DropNewest" || slow.Dropped != 3 || slow.Capacity != 2 ||
		slow.HighWater != 2 || !strings.Contains(slow.Where, "monitor_test.go:") {
		t.Errorf("slow projection: %+v", slow)
	}
	if subs.Total != 3 { // the two above and the bridge's export
		t.Errorf("Total %d subscriptions, want 3: %+v", subs.Total, subs.Subscriptions)
	}

	// 6 handler failures and 3 drops reported (each drop at once: the
	// interval is a nanosecond), kept by the ring of 4, passed on too.
	var errs monitor.ErrorsDoc
	get(t, srv, "/errors", &errs)
	if errs.Counts.Total < 9 || errs.Counts.Error != errs.Counts.Total || len(errs.Errors) != 4 || passed.Load() != int64(errs.Counts.Total) {
		t.Errorf("errors: counts %+v, %d kept, %d passed on", errs.Counts, len(errs.Errors), passed.Load())
	}
	if len(errs.Errors) > 0 && (errs.Errors[0].Kind == "" || errs.Errors[0].Attrs["topic"] != "orders.created") {
		t.Errorf("newest error: %+v", errs.Errors[0])
	}

	var stats monitor.StatsDoc
	get(t, srv, "/stats", &stats)
	if stats.Bus == nil || stats.Bus.Dropped != 3 || len(stats.Bridges) != 1 || stats.Bridges[0].Instance != "one" {
		t.Errorf("stats: %+v", stats)
	}
	deadline := time.Now().Add(10 * time.Second)
	var routes monitor.RoutesDoc
	for {
		get(t, srv, "/routes", &routes)
		if len(routes.Routes) == 1 && routes.Routes[0].Exported == 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := routes.Routes; len(r) != 1 || r[0].Pattern != "orders.*" || r[0].Exported != 6 || r[0].Direction != "both" || r[0].Delivery != "pubsub" {
		t.Errorf("routes: %+v", r)
	}
	var conns monitor.ConnectionsDoc
	get(t, srv, "/connections", &conns)
	kinds := map[string]bool{}
	for _, c := range conns.Connections {
		kinds[c.Kind] = c.Connected && c.Node == rs.Addr() && c.Bridge == "one"
	}
	if !kinds["pubsub"] || !kinds["exporter"] || len(kinds) != 2 {
		t.Errorf("connections: %+v", conns.Connections)
	}
	var all monitor.AllDoc
	get(t, srv, "/all", &all)
	if all.Stats.Bus == nil || len(all.Routes.Routes) != 1 || len(all.Subscriptions.Subscriptions) != 3 {
		t.Errorf("all: %+v", all)
	}
}

// startBridge starts a redis-server and a bridge of b with instance ID id
// mirroring "orders.*" through it, shown by m and closed at cleanup.
func startBridge(t *testing.T, m *monitor.Monitor, b *bus.Bus, id string) *redistest.Server {
	t.Helper()
	rs := redistest.Start(t, nil)
	br, err := bridge.New(b, rs.Client(t), &bridge.Options{Prefix: "app:", InstanceID: id,
		Routes: []bridge.Route{{Pattern: "orders.*"}}, OnError: m.OnError(func(error) {})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = br.Close(ctx) })
	m.AddBridge(br)
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := br.Ready(rctx); err != nil {
		t.Fatal(err)
	}
	return rs
}

// TestPageAndMethods checks the static files, their headers, and what the
// handler refuses.
func TestPageAndMethods(t *testing.T) {
	srv := httptest.NewServer(monitor.New(nil))
	defer srv.Close()
	tests := []struct {
		method, path string
		status       int
		ctype, body  string
	}{
		{"GET", "/debug/busline/", 200, "text/html; charset=utf-8", `<script src="monitor.js"`},
		{"GET", "/", 200, "text/html; charset=utf-8", "Busline monitor"},
		{"GET", "/debug/busline/monitor.js", 200, "text/javascript; charset=utf-8", "textContent"},
		{"GET", "/debug/busline/monitor.css", 200, "text/css; charset=utf-8", ".tile"},
		{"GET", "/debug/busline/stats", 200, "application/json", `"Bus": null`},
		{"GET", "/debug/busline/nothing", 404, "", ""},
		{"POST", "/debug/busline/stats", 405, "", ""},
	}
	for _, tc := range tests {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.path, res.StatusCode, tc.status)
			continue
		}
		if tc.status != 200 {
			continue
		}
		if got := res.Header.Get("Content-Type"); got != tc.ctype {
			t.Errorf("%s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		if !strings.Contains(string(body), tc.body) {
			t.Errorf("%s: body lacks %q", tc.path, tc.body)
		}
		if res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", tc.path, res.Header.Get("Cache-Control"))
		}
	}
}
