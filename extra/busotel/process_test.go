package busotel_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/extra/busotel"
	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// childEnv, when set to a Redis address, makes TestChildProcess run as the
// other process of TestTraceCrossesProcesses.
const childEnv = "BUSOTEL_CHILD_REDIS"

// The routes of the two processes: the parent exports pings on pub/sub and
// on a stream, the child answers each with a pong on pub/sub.
var (
	pingRoute   = bridge.Route{Pattern: "proc.ping"}
	streamRoute = bridge.Route{Pattern: "proc.stream", Delivery: bridge.Stream}
	pongRoute   = bridge.Route{Pattern: "proc.pong"}
	stopRoute   = bridge.Route{Pattern: "proc.stop"}
)

func oneWay(r bridge.Route, d bridge.Direction) bridge.Route {
	r.Direction = d
	return r
}

// TestTraceCrossesProcesses runs a second OS process (this test binary
// again, as TestChildProcess) with its own bus, bridge and tracer
// provider, which prints the spans it ends. The parent publishes in a span
// of its own, on pub/sub and on a stream, through a real redis-server; the
// child's handler answers on pub/sub with its handler's ctx. One trace
// spans both processes both ways: the child's process span is a remote
// child of the parent's create span, its handler span a child of that, the
// child's create span of the answer a child of its handler span, and the
// parent's process span of the answer a remote child of that.
func TestTraceCrossesProcesses(t *testing.T) {
	srv := redistest.Start(t, nil)
	cmd := exec.Command(os.Args[0], "-test.run=^TestChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+srv.Addr())
	child := progtest.Start(t, cmd)
	if l := child.Next(t, waitTimeout); l != "ready" {
		t.Fatalf("child said %q, want ready", l)
	}

	tr := newTracing(t)
	a := newInstance(t, srv.Client(t), options(tr, oneWay(pingRoute, bridge.Export), oneWay(streamRoute, bridge.Export),
		oneWay(stopRoute, bridge.Export), oneWay(pongRoute, bridge.Import)))
	pongs := subscribe(t, a, tr, "proc.pong", "parent")

	// spans are the child's, by trace and name.
	spans := map[string]childSpan{}
	childSpanOf := func(tid trace.TraceID, name string) childSpan {
		t.Helper()
		for {
			if s, ok := spans[tid.String()+" "+name]; ok {
				return s
			}
			line := child.Next(t, waitTimeout)
			var s childSpan
			if _, err := fmt.Sscanf(line, "span %q %s %s %s %t", &s.name, &s.trace, &s.id, &s.parent, &s.remote); err != nil {
				t.Fatalf("child said %q: %v", line, err)
			}
			spans[s.trace+" "+s.name] = s
		}
	}

	for i, tc := range []struct{ topic, dest string }{
		{"proc.ping", "app:proc.ping"},
		{"proc.stream", bridge.StreamKey("app:", "proc.stream")},
	} {
		ctx, root := tr.root("request " + tc.topic)
		if err := tr.tel.Publish(ctx, a.bus, tc.topic, "ping"); err != nil {
			t.Fatal(err)
		}
		root.End()
		tid := root.SpanContext().TraceID()
		create := tr.span(t, "create "+tc.dest, inTrace(root.SpanContext()))

		process := childSpanOf(tid, "process "+tc.dest)
		if process.parent != create.SpanContext().SpanID().String() || !process.remote {
			t.Errorf("%s: the child's process span has parent %s (remote %v), want the create span %s",
				tc.topic, process.parent, process.remote, create.SpanContext().SpanID())
		}
		handler := childSpanOf(tid, "process child")
		if handler.parent != process.id {
			t.Errorf("%s: the child's handler span has parent %s, want its process span %s", tc.topic, handler.parent, process.id)
		}
		answer := childSpanOf(tid, "create app:proc.pong")
		if answer.parent != handler.id {
			t.Errorf("%s: the child's create span has parent %s, want its handler span %s", tc.topic, answer.parent, handler.id)
		}
		pongs.wait(t, i+1)
		back := tr.span(t, "process app:proc.pong", inTrace(root.SpanContext()))
		if got := back.Parent(); got.SpanID().String() != answer.id || !got.IsRemote() {
			t.Errorf("%s: the answer's process span has parent %s, want the child's create span %s", tc.topic, got.SpanID(), answer.id)
		}
	}
	if err := a.bus.Publish(context.Background(), "proc.stop", nil); err != nil {
		t.Fatal(err)
	}
	var rest []string
	for l := range child.Lines() {
		rest = append(rest, l)
	}
	if err := child.Wait(); err != nil {
		t.Fatalf("child: %v (stderr %q, stdout %q)", err, child.Stderr(), rest)
	}
}

type childSpan struct {
	name, trace, id, parent string
	remote                  bool
}

// TestChildProcess is the child process of TestTraceCrossesProcesses; it
// does nothing in a normal test run.
func TestChildProcess(t *testing.T) {
	addr := os.Getenv(childEnv)
	if addr == "" {
		t.Skip("child process of TestTraceCrossesProcesses")
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(&printer{}))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tel, err := busotel.New(&busotel.Options{TracerProvider: tp, MeterProvider: noop.NewMeterProvider(), Propagator: propagation.TraceContext{}})
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = rdb.Close() }) // after the bridge's Close, a cleanup too
	opts := options(&tracing{tel: tel}, oneWay(pingRoute, bridge.Import), oneWay(streamRoute, bridge.Import),
		oneWay(stopRoute, bridge.Import), oneWay(pongRoute, bridge.Export))
	opts.InstanceID = "child"
	in := newInstance(t, rdb, opts)
	stop := make(chan struct{})
	var once sync.Once
	if _, err := in.bus.Subscribe("proc.stop", func(context.Context, bus.Event) { once.Do(func() { close(stop) }) }); err != nil {
		t.Fatal(err)
	}
	answer := func(ctx context.Context, e bus.Event) error { return in.bus.Publish(ctx, "proc.pong", e.Payload) }
	for _, p := range []string{"proc.ping", "proc.stream"} {
		if _, err := in.bus.SubscribeFuncWith(p, answer, &bus.SubscribeOptions{Middleware: []bus.Middleware{tel.Middleware("child")}}); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("ready")
	<-stop
}

// printer is a span processor that prints each span ended on stdout, one
// line each, for the parent process to read.
type printer struct {
	mu sync.Mutex // serializes the lines
}

func (p *printer) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (p *printer) OnEnd(s sdktrace.ReadOnlySpan) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Printf("span %q %s %s %s %t\n", s.Name(), s.SpanContext().TraceID(), s.SpanContext().SpanID(), s.Parent().SpanID(), s.Parent().IsRemote())
}

func (p *printer) Shutdown(context.Context) error   { return nil }
func (p *printer) ForceFlush(context.Context) error { return nil }
