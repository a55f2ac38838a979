package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/bridge/internal/wire"
	"github.com/busline/bus/internal/progtest"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// replyOptions returns test options with Replies and the given routes.
func replyOptions(id string, routes ...bridge.Route) *bridge.Options {
	o := testOptions(nil, routes...)
	o.Replies = true
	o.InstanceID = id
	return o
}

// respond subscribes a responder on in's bus that answers each request on
// pattern with "re: " and its payload.
func respond(t testing.TB, in *instance, pattern string, opts *bus.SubscribeOptions) {
	t.Helper()
	b := in.bus
	if _, err := b.SubscribeWith(pattern, func(ctx context.Context, e bus.Event) {
		if err := b.Reply(ctx, e, fmt.Sprint("re: ", e.Payload)); err != nil {
			in.errs.add(err)
		}
	}, opts); err != nil {
		t.Fatal(err)
	}
}

// requestAll makes n concurrent requests on topic from b, request i with
// payload fmt.Sprint(i), and fails t unless each gets a remote reply whose
// payload is want(i), none late.
func requestAll(t *testing.T, b *bus.Bus, topic string, n int, want func(i int) string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			e, err := b.Request(ctx, topic, fmt.Sprint(i))
			if err == nil && (e.Payload != want(i) || !e.Remote()) {
				err = fmt.Errorf("request %d: reply %v (remote %v), want %q", i, e.Payload, e.Remote(), want(i))
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed++; failed <= 3 {
			t.Error(err)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d requests failed", failed, n)
	}
	if late := b.Stats().LateReplies; late != 0 {
		t.Fatalf("LateReplies %d, want 0", late)
	}
}

// TestRequestAcrossInstances: requests exported by one instance are
// answered by a responder on another, each by its own reply, which comes
// back to the requesting instance only, unnumbered and as a remote event.
func TestRequestAcrossInstances(t *testing.T) {
	srv := redistest.Start(t, nil)
	requester := newInstance(t, srv.Client(t), replyOptions("req", bridge.Route{Pattern: "rpc.**", Direction: bridge.Export}))
	responder := newInstance(t, srv.Client(t), replyOptions("resp", bridge.Route{Pattern: "rpc.**", Direction: bridge.Import}))
	// A bystander importing every channel, replies to others included,
	// must not hand them to its own requests, which wait meanwhile with
	// the same request numbers.
	bystander := newInstance(t, srv.Client(t), replyOptions("other", bridge.Route{Pattern: "**", Direction: bridge.Import}))
	if _, err := bystander.bus.Subscribe("local.silent", func(context.Context, bus.Event) {}); err != nil {
		t.Fatal(err)
	}
	var bwg sync.WaitGroup
	var stray atomic.Int64
	bctx, bcancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer bcancel()
	for range 100 {
		bwg.Go(func() {
			if _, err := bystander.bus.Request(bctx, "local.silent", nil); !errors.Is(err, context.DeadlineExceeded) {
				stray.Add(1)
			}
		})
	}
	seen := record(t, responder.bus, "rpc.**")
	// A plain client watches the replies on Redis.
	watch := srv.Client(t).PSubscribe(context.Background(), "app:_INBOX.*")
	t.Cleanup(func() { _ = watch.Close() })
	if _, err := watch.Receive(context.Background()); err != nil {
		t.Fatal(err)
	}
	respond(t, responder, "rpc.echo", &bus.SubscribeOptions{Queue: 64, Group: "g"})
	respond(t, responder, "rpc.echo", &bus.SubscribeOptions{Queue: 64, Group: "g"})

	const n = 500
	requestAll(t, requester.bus, "rpc.echo", n, func(i int) string { return fmt.Sprint("re: ", i) })
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	e := seen.waitFor(t, n)[0]
	if h := e.Meta.Headers[bridge.ReplyHeader]; !strings.HasPrefix(h, "app:_INBOX.req.") || h != "app:"+e.Meta.ReplyTo {
		t.Errorf("imported request: ReplyTo %q, header %q; want the channel app:_INBOX.req.*", e.Meta.ReplyTo, h)
	}
	bwg.Wait()
	if s, late := stray.Load(), bystander.bus.Stats().LateReplies; s != 0 || late != 0 {
		t.Errorf("the bystander's requests got %d replies (%d late), want none", s, late)
	}
	// The replies are unnumbered (each channel has one), so that they
	// leave no sequence state behind in sender and receivers.
	for range 3 {
		m, err := watch.ReceiveMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		env, err := wire.DecodeEnvelope(m.Channel, []byte(m.Payload), nil, 1<<20)
		if err != nil || env.Seq != 0 || !strings.HasPrefix(m.Channel, "app:_INBOX.req.") {
			t.Errorf("reply on %q: seq %d, %v; want an unnumbered envelope on the requester's channel", m.Channel, env.Seq, err)
		}
	}
	if st := requester.bridge.Stats(); st.Imported != n || st.Gaps != 0 || st.Duplicates != 0 {
		t.Errorf("requester imported %d (gaps %d, duplicates %d), want %d", st.Imported, st.Gaps, st.Duplicates, n)
	}
	for _, in := range []*instance{requester, responder, bystander} {
		if errs := in.errs.all(); len(errs) > 0 {
			t.Errorf("reported: %v", errs)
		}
	}
}

// TestRequestAcrossInstancesNoReply: across instances, a request nobody
// answers times out (the requesting bus cannot know that the other
// instances have no responder), and a bridge without Replies delivers
// requests its responders cannot answer.
func TestRequestAcrossInstancesNoReply(t *testing.T) {
	srv := redistest.Start(t, nil)
	requester := newInstance(t, srv.Client(t), replyOptions("req", bridge.Route{Pattern: "rpc.**", Direction: bridge.Export}))
	noReplies := testOptions(nil, bridge.Route{Pattern: "rpc.**", Direction: bridge.Import})
	plain := newInstance(t, srv.Client(t), noReplies)
	got := make(chan error, 1)
	if _, err := plain.bus.Subscribe("rpc.plain", func(ctx context.Context, e bus.Event) {
		got <- plain.bus.Reply(ctx, e, "unheard")
	}); err != nil {
		t.Fatal(err)
	}

	for _, topic := range []string{"rpc.nobody", "rpc.plain"} {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := requester.bus.Request(ctx, topic, "x")
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Request(%q): %v, want a timeout", topic, err)
		}
	}
	select {
	case err := <-got:
		if !errors.Is(err, bus.ErrNotRequest) {
			t.Errorf("Reply on a bridge without Replies: %v, want ErrNotRequest", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("the request never reached the other instance")
	}
	// No route exports the topic: no responders, at once.
	if _, err := requester.bus.Request(context.Background(), "local.only", "x"); !errors.Is(err, bus.ErrNoResponders) {
		t.Errorf("Request on a topic no route exports: %v, want ErrNoResponders", err)
	}
}

// TestRequestForeignResponder: a responder that is not a bridge (here
// redis-cli) answers by publishing raw bytes on the channel of the
// request's ReplyHeader.
func TestRequestForeignResponder(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("no redis-cli")
	}
	srv := redistest.Start(t, nil)
	requester := newInstance(t, srv.Client(t), replyOptions("req", bridge.Route{Pattern: "rpc.**", Direction: bridge.Export}))
	// The foreign responder learns the channel from the envelope: here a
	// bridge decodes it for the test, and redis-cli answers.
	watcher := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "rpc.**", Direction: bridge.Import}))
	_, port, _ := net.SplitHostPort(srv.Addr())
	answered := make(chan error, 1)
	if _, err := watcher.bus.SubscribeWith("rpc.cli", func(_ context.Context, e bus.Event) {
		out, err := exec.Command(cli, "-p", port, "PUBLISH", e.Meta.Headers[bridge.ReplyHeader], "pong from redis-cli").CombinedOutput()
		if err == nil && strings.TrimSpace(string(out)) != "1" {
			err = fmt.Errorf("PUBLISH reached %s subscribers, want 1", out)
		}
		answered <- err
	}, &bus.SubscribeOptions{Queue: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	e, err := requester.bus.Request(ctx, "rpc.cli", "ping")
	if err != nil {
		t.Fatalf("Request: %v", err)
	}
	if p, ok := e.Payload.([]byte); !ok || string(p) != "pong from redis-cli" || e.Meta.Source != bridge.RawSource {
		t.Fatalf("reply %#v from %q, want the bytes redis-cli sent", e.Payload, e.Meta.Source)
	}
	if err := <-answered; err != nil {
		t.Fatal(err)
	}
}

// TestRequestACLRules: the reply channels of an instance are one glob that
// ACLRules grants; it needs the InstanceID.
func TestRequestACLRules(t *testing.T) {
	o := replyOptions("web-1", bridge.Route{Pattern: "rpc.echo", Direction: bridge.Export})
	rules, err := bridge.ACLRules(o, '.')
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(rules, "&app:_INBOX.web-1.*") || !slices.Contains(rules, "+psubscribe") {
		t.Errorf("rules %q lack the reply glob", rules)
	}
	o.InstanceID = ""
	if _, err := bridge.ACLRules(o, '.'); !errors.Is(err, bridge.ErrInvalidOptions) {
		t.Errorf("ACLRules without InstanceID: %v, want ErrInvalidOptions", err)
	}

	// A user with exactly those rules runs the requester.
	srv := redistest.Start(t, nil)
	o.InstanceID = "web-1"
	rules, _ = bridge.ACLRules(o, '.')
	admin := srv.Client(t)
	args := []any{"ACL", "SETUSER", "rr", "on", ">pw"}
	for _, r := range rules {
		args = append(args, r)
	}
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "rr", Password: "pw", Protocol: 3})
	t.Cleanup(func() { _ = rdb.Close() })
	requester := newInstance(t, rdb, o)
	responder := newInstance(t, srv.Client(t), replyOptions("resp", bridge.Route{Pattern: "rpc.echo", Direction: bridge.Import}))
	respond(t, responder, "rpc.echo", nil)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if e, err := requester.bus.Request(ctx, "rpc.echo", "acl"); err != nil || e.Payload != "re: acl" {
		t.Fatalf("Request as the ACL user: %v, %v", e.Payload, err)
	}
	if errs := requester.errs.all(); len(errs) > 0 {
		t.Errorf("reported: %v", errs)
	}
	if _, err := bridge.New(bus.New(nil), rdb, replyOptions("bad*id")); !errors.Is(err, bridge.ErrInvalidOptions) {
		t.Errorf("New with Replies and an InstanceID that is no topic segment: %v, want ErrInvalidOptions", err)
	}
}

// responderEnv, when set to a Redis address, makes TestRequestHelperProcess
// run as the responder process of TestRequestTwoProcesses.
const responderEnv = "BUSLINE_BRIDGE_RESPONDER_REDIS"

// TestRequestTwoProcesses: a responder in another OS process answers the
// requests of this one through a real redis-server, each with its own
// reply; once the responder is killed (SIGKILL), a request times out
// cleanly, and no reply is left over or delivered elsewhere.
func TestRequestTwoProcesses(t *testing.T) {
	srv := redistest.Start(t, nil)
	cmd := exec.Command(os.Args[0], "-test.run=^TestRequestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), responderEnv+"="+srv.Addr())
	child := progtest.Start(t, cmd)
	if line := child.Next(t, waitTimeout); line != "ready" {
		t.Fatalf("child said %q, want ready", line)
	}
	parent := newInstance(t, srv.Client(t), replyOptions("parent", bridge.Route{Pattern: "proc.rpc.**", Direction: bridge.Export}))

	const n = 300
	requestAll(t, parent.bus, "proc.rpc.square", n, func(i int) string { return fmt.Sprint(i * i) })

	if err := child.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	if _, err := parent.bus.Request(short, "proc.rpc.square", "3"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Request after the responder was killed: %v, want a timeout", err)
	}
	if st := parent.bus.Stats(); st.LateReplies != 0 {
		t.Errorf("LateReplies %d, want 0", st.LateReplies)
	}
	if st := parent.bridge.Stats(); st.Imported != n {
		t.Errorf("imported %d replies, want %d", st.Imported, n)
	}
	if errs := parent.errs.all(); len(errs) > 0 {
		t.Errorf("reported: %v", errs)
	}
}

// TestRequestHelperProcess is the responder process of
// TestRequestTwoProcesses; it does nothing in a normal test run. It
// answers until it is killed.
func TestRequestHelperProcess(t *testing.T) {
	addr := os.Getenv(responderEnv)
	if addr == "" {
		t.Skip("helper process of TestRequestTwoProcesses")
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 3})
	defer rdb.Close()
	b := bus.New(nil)
	br, err := bridge.New(b, rdb, replyOptions("child", bridge.Route{Pattern: "proc.rpc.**", Direction: bridge.Import}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.SubscribeTyped(b, "proc.rpc.square", func(ctx context.Context, e bus.Event, s string) {
		var i int
		_, _ = fmt.Sscan(s, &i)
		_ = b.Reply(ctx, e, fmt.Sprint(i*i))
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := br.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	<-ctx.Done() // killed long before
}

// TestRequestGroupRoute: requests over a Group route reach one member of
// the consumer group, which answers over pub/sub: each request gets one
// reply, and none is late.
func TestRequestGroupRoute(t *testing.T) {
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "rpc.work", Delivery: bridge.Group}
	exportRoute, importRoute := route, route
	exportRoute.Direction, importRoute.Direction = bridge.Export, bridge.Import
	requester := newInstance(t, srv.Client(t), replyOptions("req", exportRoute))
	var answered [2]atomic.Int64
	for i, id := range []string{"w1", "w2"} {
		w := newInstance(t, srv.Client(t), replyOptions(id, importRoute))
		if _, err := w.bus.Subscribe("rpc.work", func(ctx context.Context, e bus.Event) {
			answered[i].Add(1)
			_ = w.bus.Reply(ctx, e, fmt.Sprint("re: ", e.Payload))
		}); err != nil {
			t.Fatal(err)
		}
	}
	const n = 100
	requestAll(t, requester.bus, "rpc.work", n, func(i int) string { return fmt.Sprint("re: ", i) })
	if a, b := answered[0].Load(), answered[1].Load(); a+b != n {
		t.Errorf("the members answered %d and %d requests, want %d in all", a, b, n)
	}
}

// BenchmarkRequestBridged measures a request answered by another instance
// through a real redis-server, one at a time (a round trip each) and from
// parallel requesters.
func BenchmarkRequestBridged(b *testing.B) {
	srv := redistest.Start(b, nil)
	requester := newInstance(b, srv.Client(b), replyOptions("req", bridge.Route{Pattern: "rpc.echo", Direction: bridge.Export}))
	responder := newInstance(b, srv.Client(b), replyOptions("resp", bridge.Route{Pattern: "rpc.echo", Direction: bridge.Import}))
	if _, err := responder.bus.Subscribe("rpc.echo", func(ctx context.Context, e bus.Event) {
		_ = responder.bus.Reply(ctx, e, e.Payload)
	}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for _, parallel := range []bool{false, true} {
		name := "serial"
		if parallel {
			name = "parallel"
		}
		b.Run(name, func(b *testing.B) {
			request := func() {
				rctx, cancel := context.WithTimeout(ctx, waitTimeout)
				defer cancel()
				if _, err := requester.bus.Request(rctx, "rpc.echo", "ping"); err != nil {
					b.Error(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			if !parallel {
				for b.Loop() {
					request()
				}
				return
			}
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					request()
				}
			})
		})
	}
}

// TestRequestCloudEvents: requests exported on a CloudEvents route, signed
// or not, carry their reply channel as the replyto attribute, and the
// responder's bridge answers them: the replies come back to the requester.
func TestRequestCloudEvents(t *testing.T) {
	for _, key := range [][]byte{nil, []byte("k")} {
		t.Run(fmt.Sprintf("signed=%v", key != nil), func(t *testing.T) {
			srv := redistest.Start(t, nil)
			ro := replyOptions("urn:req", bridge.Route{Pattern: "rpc.**", Direction: bridge.Export, Format: bridge.CloudEvents})
			po := replyOptions("urn:resp", bridge.Route{Pattern: "rpc.**", Direction: bridge.Import, Format: bridge.CloudEvents})
			ro.SigningKey, po.SigningKey = key, key
			requester := newInstance(t, srv.Client(t), ro)
			responder := newInstance(t, srv.Client(t), po)
			respond(t, responder, "rpc.echo", &bus.SubscribeOptions{Queue: 16})
			requestAll(t, requester.bus, "rpc.echo", 20, func(i int) string { return fmt.Sprint("re: ", i) })
			for _, in := range []*instance{requester, responder} {
				if errs := in.errs.all(); len(errs) > 0 {
					t.Errorf("reported: %v", errs)
				}
			}
		})
	}
}
