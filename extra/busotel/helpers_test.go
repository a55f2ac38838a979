package busotel_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/extra/busotel"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitTimeout bounds every wait of these tests.
const waitTimeout = 10 * time.Second

// tracing is what an instance traces with: its own provider and recorder,
// as if it were a process of its own.
type tracing struct {
	rec *tracetest.SpanRecorder
	tp  *sdktrace.TracerProvider
	tel *busotel.Telemetry
}

func newTracing(t testing.TB) *tracing {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	tel, err := busotel.New(&busotel.Options{TracerProvider: tp, MeterProvider: noop.NewMeterProvider(), Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}
	return &tracing{rec: rec, tp: tp, tel: tel}
}

// root starts a span of tr's own, as an HTTP server would, and returns its
// ctx.
func (tr *tracing) root(name string) (context.Context, trace.Span) {
	return tr.tp.Tracer("test").Start(context.Background(), name)
}

// span waits until tr has ended a span called name that pick accepts (nil
// accepts any), and returns it.
func (tr *tracing) span(t testing.TB, name string, pick func(sdktrace.ReadOnlySpan) bool) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var names []string
		for _, s := range tr.rec.Ended() {
			if s.Name() == name && (pick == nil || pick(s)) {
				return s
			}
			names = append(names, s.Name())
		}
		if time.Now().After(deadline) {
			t.Fatalf("no span %q after %v: %q", name, waitTimeout, names)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// inTrace accepts the spans of the trace of sc.
func inTrace(sc trace.SpanContext) func(sdktrace.ReadOnlySpan) bool {
	return func(s sdktrace.ReadOnlySpan) bool { return s.SpanContext().TraceID() == sc.TraceID() }
}

// attr returns the value of attribute k of s, or "" (and false).
func attr(s sdktrace.ReadOnlySpan, k attribute.Key) (string, bool) {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value.String(), true
		}
	}
	return "", false
}

// wantAttrs checks attributes of s.
func wantAttrs(t testing.TB, s sdktrace.ReadOnlySpan, want map[attribute.Key]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := attr(s, k); !ok || got != v {
			t.Errorf("span %q: %s = %q (set %v), want %q", s.Name(), k, got, ok, v)
		}
	}
}

// childOf checks that s is a child of parent, in its trace.
func childOf(t testing.TB, s sdktrace.ReadOnlySpan, parent trace.SpanContext) {
	t.Helper()
	if s.SpanContext().TraceID() != parent.TraceID() || s.Parent().SpanID() != parent.SpanID() {
		t.Errorf("span %q: trace %s parent %s, want trace %s parent %s", s.Name(),
			s.SpanContext().TraceID(), s.Parent().SpanID(), parent.TraceID(), parent.SpanID())
	}
}

// instance is a bus and its bridge, traced by tr.
type instance struct {
	bus    *bus.Bus
	bridge *bridge.Bridge
	errs   *errLog
}

// options are the bridge options of the tests: fast reconnects, the
// routes, and tr's hooks when tr is not nil.
func options(tr *tracing, routes ...bridge.Route) *bridge.Options {
	o := &bridge.Options{
		Prefix:       "app:",
		Routes:       routes,
		PingInterval: 200 * time.Millisecond,
		PingTimeout:  time.Second,
		ReconnectMin: 10 * time.Millisecond,
		ReconnectMax: 100 * time.Millisecond,
		ResumeDelay:  -1,
		StreamBlock:  100 * time.Millisecond,
	}
	if tr != nil {
		o.Hooks = tr.tel.BridgeHooks()
	}
	return o
}

// newInstance makes a bus and a bridge over rdb, waits until the bridge is
// ready, and closes both at cleanup, failing the test on errors reported.
func newInstance(t testing.TB, rdb redis.UniversalClient, opts *bridge.Options) *instance {
	t.Helper()
	in := &instance{bus: bus.New(&bus.Options{Stats: true}), errs: &errLog{}}
	opts.OnError = in.errs.add
	if opts.InstanceID == "" {
		// Stream import routes want one; unique per instance.
		opts.InstanceID = fmt.Sprintf("i%d", instances.Add(1))
	}
	br, err := bridge.New(in.bus, rdb, opts)
	if err != nil {
		t.Fatal(err)
	}
	in.bridge = br
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := br.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
		_ = in.bus.Close(ctx)
		if errs := in.errs.all(); len(errs) > 0 {
			t.Errorf("errors reported: %v", errs)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := br.Ready(ctx); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	return in
}

// instances numbers the instances of the tests.
var instances atomic.Int64

// errLog collects what a bridge reports.
type errLog struct {
	mu   sync.Mutex // protects errs
	errs []error
}

func (l *errLog) add(err error) {
	if errors.Is(err, bridge.ErrPatternWidened) {
		return
	}
	l.mu.Lock()
	l.errs = append(l.errs, err)
	l.mu.Unlock()
}

func (l *errLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.errs)
}

// received collects the events a subscription got.
type received struct {
	mu     sync.Mutex // protects events
	events []bus.Event
}

func (r *received) add(e bus.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// wait waits until n events came, and returns them.
func (r *received) wait(t testing.TB, n int) []bus.Event {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		r.mu.Lock()
		got := slices.Clone(r.events)
		r.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events after %v, want %d", len(got), waitTimeout, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// subscribe subscribes on in's bus to pattern with tr's middleware named
// name, and collects what comes.
func subscribe(t testing.TB, in *instance, tr *tracing, pattern, name string) *received {
	t.Helper()
	r := &received{}
	opts := &bus.SubscribeOptions{Name: name}
	if tr != nil {
		opts.Middleware = []bus.Middleware{tr.tel.Middleware(name)}
	}
	sub, err := in.bus.SubscribeFuncWith(pattern, func(_ context.Context, e bus.Event) error {
		r.add(e)
		return nil
	}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Unsubscribe)
	return r
}

// names lists the names of spans, for messages.
func names(spans []sdktrace.ReadOnlySpan) string {
	var s []string
	for _, sp := range spans {
		s = append(s, fmt.Sprintf("%s(%s<-%s)", sp.Name(), sp.SpanContext().SpanID(), sp.Parent().SpanID()))
	}
	return strings.Join(s, " ")
}

// waitFor waits until cond holds, failing the test after waitTimeout.
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
