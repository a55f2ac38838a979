package busotel_test

import (
	"context"
	"testing"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/extra/busotel"
	"github.com/busline/bus/redistest"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace/noop"
)

// metrics reads what a manual reader collects.
type metrics struct {
	t      testing.TB
	reader *sdkmetric.ManualReader
	rm     metricdata.ResourceMetrics
}

func newMetrics(t testing.TB) (*metrics, *busotel.Telemetry) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	tel, err := busotel.New(&busotel.Options{MeterProvider: mp, TracerProvider: noop.NewTracerProvider()})
	if err != nil {
		t.Fatal(err)
	}
	return &metrics{t: t, reader: reader}, tel
}

func (m *metrics) collect() {
	m.t.Helper()
	if err := m.reader.Collect(context.Background(), &m.rm); err != nil {
		m.t.Fatal(err)
	}
}

// find returns the metric called name, or false.
func (m *metrics) find(name string) (metricdata.Metrics, bool) {
	for _, sm := range m.rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name == name {
				return mt, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// has reports whether set has every attribute of want.
func has(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// value returns the value of the data point of the counter or gauge name
// with the attributes want, failing the test if there is none.
func (m *metrics) value(name string, want ...attribute.KeyValue) int64 {
	m.t.Helper()
	mt, ok := m.find(name)
	if !ok {
		m.t.Fatalf("no metric %q", name)
	}
	sum, ok := mt.Data.(metricdata.Sum[int64])
	if !ok {
		m.t.Fatalf("%s is a %T", name, mt.Data)
	}
	for _, dp := range sum.DataPoints {
		if has(dp.Attributes, want) {
			return dp.Value
		}
	}
	m.t.Fatalf("%s: no data point with %v in %v", name, want, sum.DataPoints)
	return 0
}

// count returns the count of the histogram name's data point with the
// attributes want.
func (m *metrics) count(name string, want ...attribute.KeyValue) uint64 {
	m.t.Helper()
	mt, ok := m.find(name)
	if !ok {
		m.t.Fatalf("no metric %q", name)
	}
	h := mt.Data.(metricdata.Histogram[float64])
	for _, dp := range h.DataPoints {
		if has(dp.Attributes, want) {
			return dp.Count
		}
	}
	m.t.Fatalf("%s: no data point with %v", name, want)
	return 0
}

// TestMetrics bridges events between two instances and reads the
// instruments of both with a manual reader: the counters agree with the
// stats, the histograms count every import and handler call, and an
// unregistered bus is no longer observed.
func TestMetrics(t *testing.T) {
	srv := redistest.Start(t, nil)
	m, tel := newMetrics(t)
	route := bridge.Route{Pattern: "m.*"}
	withHooks := func(dir bridge.Direction) *bridge.Options {
		o := options(nil, oneWay(route, dir))
		o.Hooks = tel.BridgeHooks()
		return o
	}
	a := newInstance(t, srv.Client(t), withHooks(bridge.Export))
	b := newInstance(t, srv.Client(t), withHooks(bridge.Import))
	got := subscribe(t, b, &tracing{tel: tel}, "m.*", "billing")
	busReg, err := tel.ObserveBus(a.bus, attribute.String("side", "a"))
	if err != nil {
		t.Fatal(err)
	}
	subReg, err := tel.ObserveBus(b.bus, attribute.String("side", "b"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = subReg.Unregister() })
	if err != nil {
		t.Fatal(err)
	}
	side := func(s string) attribute.KeyValue { return attribute.String("side", s) }
	for _, in := range []struct {
		br   *bridge.Bridge
		side string
	}{{a.bridge, "a"}, {b.bridge, "b"}} {
		reg, err := tel.ObserveBridge(in.br, side(in.side))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = reg.Unregister() })
	}

	const n = 10
	for range n {
		if err := a.bus.Publish(context.Background(), "m.x", "e"); err != nil {
			t.Fatal(err)
		}
	}
	got.wait(t, n)
	waitFor(t, "the stats", func() bool { return a.bridge.Stats().Exported == n && b.bridge.Stats().Imported == n })
	m.collect()

	system := attribute.String("messaging.system", busotel.System)
	for _, c := range []struct {
		name  string
		attrs []attribute.KeyValue
		want  int64
	}{
		{"busline.bus.published", []attribute.KeyValue{system, side("a")}, n},
		{"busline.bus.subscriptions", []attribute.KeyValue{side("a")}, 1}, // the bridge's export
		{"busline.bus.queue.depth", []attribute.KeyValue{side("a")}, 0},
		{"messaging.client.sent.messages", []attribute.KeyValue{system, side("a"), attribute.String("messaging.operation.name", "publish")}, n},
		{"messaging.client.sent.messages", []attribute.KeyValue{side("a"), attribute.String("messaging.operation.name", "xadd")}, 0},
		{"messaging.client.consumed.messages", []attribute.KeyValue{side("b"), attribute.String("messaging.operation.name", "subscribe")}, n},
		{"busline.bridge.received", []attribute.KeyValue{side("b")}, n},
		{"busline.bridge.import.dropped", []attribute.KeyValue{side("b"), attribute.String("busline.reason", "queue_full")}, 0},
		{"busline.bridge.gaps", []attribute.KeyValue{side("b")}, 0},
		{"busline.bridge.outbox.depth", []attribute.KeyValue{side("a")}, 0},
		{"busline.bridge.route.exported", []attribute.KeyValue{side("a"), attribute.String("busline.route", "m.*"), attribute.Int("busline.route.index", 0)}, n},
		{"busline.bridge.route.imported", []attribute.KeyValue{side("b"), attribute.String("busline.route", "m.*")}, n},
		{"busline.bridge.route.errors", []attribute.KeyValue{side("b"), attribute.String("busline.reason", "decode_error")}, 0},
		{"busline.subscription.delivered", []attribute.KeyValue{side("b"), attribute.String("messaging.destination.subscription.name", "billing")}, n},
		{"busline.subscription.queue.depth", []attribute.KeyValue{side("b"), attribute.String("messaging.destination.subscription.name", "billing")}, 0},
	} {
		if got := m.value(c.name, c.attrs...); got != c.want {
			t.Errorf("%s%v = %d, want %d", c.name, c.attrs, got, c.want)
		}
	}
	if got := m.count("busline.bridge.import.latency", attribute.String("messaging.destination.template", "m.*")); got != n {
		t.Errorf("import latency: %d records, want %d", got, n)
	}
	if got := m.count("messaging.process.duration", attribute.String("messaging.destination.subscription.name", "billing")); got != n {
		t.Errorf("process duration: %d records, want %d", got, n)
	}

	if err := busReg.Unregister(); err != nil {
		t.Fatal(err)
	}
	m.collect()
	mt, _ := m.find("busline.bus.published")
	for _, dp := range mt.Data.(metricdata.Sum[int64]).DataPoints {
		if has(dp.Attributes, []attribute.KeyValue{side("a")}) {
			t.Errorf("an unregistered bus still observed: %v", dp)
		}
	}
}
