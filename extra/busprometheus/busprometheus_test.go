package busprometheus_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/extra/busprometheus"
	"github.com/busline/bus/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const waitTimeout = 10 * time.Second

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestBusCollector compares what the bus collector gives with what the
// bus did: the totals, and per subscription name the sum of the
// subscriptions sharing it; an unnamed subscription is only in the totals
// unless PatternLabels is set.
func TestBusCollector(t *testing.T) {
	b := bus.New(&bus.Options{Stats: true})
	defer func() { _ = b.Close(context.Background()) }()
	noop := func(context.Context, bus.Event) {}
	for _, o := range []*bus.SubscribeOptions{
		{Name: "mailer", Queue: 8}, {Name: "mailer"}, {},
	} {
		if _, err := b.SubscribeWith("orders.*", noop, o); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := b.Publish(context.Background(), "orders.created", nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the deliveries", func() bool { return b.Stats().Delivered == 9 })

	for _, tc := range []struct {
		name string
		opts *busprometheus.Options
		want string
	}{
		{"names", nil, `
# HELP busline_bus_delivered_total Events whose handling ended in a handler (synchronous ones with bus.Options.Stats only).
# TYPE busline_bus_delivered_total counter
busline_bus_delivered_total 9
# HELP busline_bus_published_total Events published (counted with bus.Options.Stats only).
# TYPE busline_bus_published_total counter
busline_bus_published_total 3
# HELP busline_bus_subscriptions Active subscriptions.
# TYPE busline_bus_subscriptions gauge
busline_bus_subscriptions 3
# HELP busline_subscription_delivered_total Events whose handling ended in the subscription's handler.
# TYPE busline_subscription_delivered_total counter
busline_subscription_delivered_total{subscription="mailer"} 6
# HELP busline_subscription_queue_capacity_events The capacity of the subscription's queue (0 when synchronous).
# TYPE busline_subscription_queue_capacity_events gauge
busline_subscription_queue_capacity_events{subscription="mailer"} 8
`},
		{"patterns", &busprometheus.Options{PatternLabels: true, Namespace: "app", ConstLabels: prometheus.Labels{"bus": "orders"}}, `
# HELP app_bus_delivered_total Events whose handling ended in a handler (synchronous ones with bus.Options.Stats only).
# TYPE app_bus_delivered_total counter
app_bus_delivered_total{bus="orders"} 9
# HELP app_bus_published_total Events published (counted with bus.Options.Stats only).
# TYPE app_bus_published_total counter
app_bus_published_total{bus="orders"} 3
# HELP app_bus_subscriptions Active subscriptions.
# TYPE app_bus_subscriptions gauge
app_bus_subscriptions{bus="orders"} 3
# HELP app_subscription_delivered_total Events whose handling ended in the subscription's handler.
# TYPE app_subscription_delivered_total counter
app_subscription_delivered_total{bus="orders",subscription="mailer"} 6
app_subscription_delivered_total{bus="orders",subscription="pattern:orders.*"} 3
# HELP app_subscription_queue_capacity_events The capacity of the subscription's queue (0 when synchronous).
# TYPE app_subscription_queue_capacity_events gauge
app_subscription_queue_capacity_events{bus="orders",subscription="mailer"} 8
app_subscription_queue_capacity_events{bus="orders",subscription="pattern:orders.*"} 0
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := busprometheus.NewBusCollector(b, tc.opts)
			ns := "busline"
			if tc.opts != nil {
				ns = tc.opts.Namespace
			}
			if err := testutil.CollectAndCompare(c, strings.NewReader(tc.want),
				ns+"_bus_published_total", ns+"_bus_delivered_total", ns+"_bus_subscriptions",
				ns+"_subscription_delivered_total", ns+"_subscription_queue_capacity_events"); err != nil {
				t.Error(err)
			}
			problems, err := testutil.CollectAndLint(c)
			if err != nil || len(problems) > 0 {
				t.Errorf("lint: %v %v", err, problems)
			}
			if err := prometheus.NewPedanticRegistry().Register(c); err != nil {
				t.Errorf("pedantic registry: %v", err)
			}
		})
	}
}

// instance is a bus and its bridge over a real Redis.
func instance(t *testing.T, rdb *redistest.Server, dir bridge.Direction) (*bus.Bus, *bridge.Bridge) {
	t.Helper()
	b := bus.New(&bus.Options{Stats: true})
	var mu sync.Mutex
	var errs []error
	br, err := bridge.New(b, rdb.Client(t), &bridge.Options{
		Prefix: "app:",
		Routes: []bridge.Route{{Pattern: "p.*", Direction: dir}, {Pattern: "p.*", Delivery: bridge.Stream, Direction: dir}},
		OnError: func(err error) {
			if !errors.Is(err, bridge.ErrPatternWidened) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		},
		InstanceID:  t.Name() + dir.String(),
		StreamBlock: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := br.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		_ = b.Close(ctx)
		mu.Lock()
		defer mu.Unlock()
		if len(errs) > 0 {
			t.Errorf("errors reported: %v", errs)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := br.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return b, br
}

// TestScrape bridges events between two instances through a real
// redis-server and scrapes both collectors over HTTP (promhttp on an
// httptest.Server), parsing the text format: the bridge's totals, the
// per-route counts (two routes sharing a pattern told apart by index) and
// the connections' states are what the instances did.
func TestScrape(t *testing.T) {
	srv := redistest.Start(t, nil)
	ba, bra := instance(t, srv, bridge.Export)
	bb, brb := instance(t, srv, bridge.Import)
	const n = 5
	for range n {
		if err := ba.Publish(context.Background(), "p.x", "e"); err != nil {
			t.Fatal(err)
		}
	}
	// The first export route that matches a topic exports it: the
	// pub/sub route, here.
	waitFor(t, "the imports", func() bool { return brb.Stats().Imported == n && bra.Stats().Exported == n })
	waitFor(t, "the connections", func() bool {
		for _, c := range brb.Connections() {
			if !c.Connected {
				return false
			}
		}
		return true
	})

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(
		busprometheus.NewBusCollector(ba, &busprometheus.Options{ConstLabels: prometheus.Labels{"side": "a"}}),
		busprometheus.NewBusCollector(bb, &busprometheus.Options{ConstLabels: prometheus.Labels{"side": "b"}}),
		busprometheus.NewBridgeCollector(bra, &busprometheus.Options{ConstLabels: prometheus.Labels{"side": "a"}}),
		busprometheus.NewBridgeCollector(brb, &busprometheus.Options{ConstLabels: prometheus.Labels{"side": "b"}}),
	)
	hs := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError}))
	defer hs.Close()
	resp, err := http.Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	value := func(name string, labels map[string]string) float64 {
		t.Helper()
		mf, ok := families[name]
		if !ok {
			t.Fatalf("no %s in the scrape", name)
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return metricValue(m)
		}
		t.Fatalf("%s: no series with %v", name, labels)
		return 0
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"busline_bus_published_total", map[string]string{"side": "a"}, n},
		{"busline_bridge_exported_total", map[string]string{"side": "a"}, n},
		{"busline_bridge_received_total", map[string]string{"side": "b"}, n},
		{"busline_bridge_gaps_total", map[string]string{"side": "b"}, 0},
		{"busline_bridge_import_dropped_total", map[string]string{"side": "b", "reason": "queue_full"}, 0},
		{"busline_bridge_outbox_events", map[string]string{"side": "a"}, 0},
		{"busline_bridge_route_exported_total", map[string]string{"side": "a", "route": "p.*#0", "delivery": "pubsub"}, n},
		{"busline_bridge_route_exported_total", map[string]string{"side": "a", "route": "p.*#1", "delivery": "stream"}, 0},
		{"busline_bridge_route_imported_total", map[string]string{"side": "b", "route": "p.*#0"}, n},
		{"busline_bridge_route_errors_total", map[string]string{"side": "b", "route": "p.*#0", "reason": "decode_error"}, 0},
		{"busline_bridge_connection_up", map[string]string{"side": "b", "kind": "pubsub"}, 1},
		{"busline_bridge_connection_up", map[string]string{"side": "b", "kind": "stream reader", "route": "p.*"}, 1},
		{"busline_bridge_connection_failures_total", map[string]string{"side": "b", "kind": "pubsub"}, 0},
	} {
		if got := value(c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, c := range []prometheus.Collector{busprometheus.NewBridgeCollector(bra, nil), busprometheus.NewBridgeCollector(brb, nil)} {
		if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
			t.Errorf("lint: %v %v", err, problems)
		}
	}
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	}
	return -1
}
