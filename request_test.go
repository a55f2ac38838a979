package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// requestWait bounds every wait of these tests.
const requestWait = 10 * time.Second

// echo is a responder that replies to each request with "re: " and its
// payload.
func echo(b *Bus) Handler {
	return func(ctx context.Context, e Event) {
		if err := b.Reply(ctx, e, fmt.Sprint("re: ", e.Payload)); err != nil {
			panic(err)
		}
	}
}

// TestRequest runs one request against each kind of responder (or none)
// and checks the reply or the error, and that nothing is left waiting.
func TestRequest(t *testing.T) {
	const short = 50 * time.Millisecond
	for _, tc := range []struct {
		name string
		// setup subscribes the responders on b.
		setup func(t *testing.T, b *Bus)
		// timeout, if set, is the request's; otherwise requestWait.
		timeout time.Duration
		want    string // the reply's payload
		wantErr error
		late    uint64 // Stats.LateReplies once all is over
	}{
		{name: "sync", want: "re: ping", setup: func(t *testing.T, b *Bus) {
			mustSubscribe(t, b, "rpc.echo", echo(b))
		}},
		{name: "async", want: "re: ping", setup: func(t *testing.T, b *Bus) {
			subscribeWith(t, b, "rpc.echo", echo(b), &SubscribeOptions{Queue: 8})
		}},
		{name: "pattern", want: "re: ping", setup: func(t *testing.T, b *Bus) {
			mustSubscribe(t, b, "rpc.*", echo(b))
		}},
		{name: "once", want: "re: ping", setup: func(t *testing.T, b *Bus) {
			subscribeWith(t, b, "rpc.echo", echo(b), &SubscribeOptions{Once: true})
		}},
		{name: "group: one member answers", want: "re: ping", setup: func(t *testing.T, b *Bus) {
			for range 3 {
				subscribeWith(t, b, "rpc.echo", echo(b), &SubscribeOptions{Group: "workers", Queue: 4})
			}
		}},
		{name: "typed responder", want: "re: ping", setup: func(t *testing.T, b *Bus) {
			if _, err := SubscribeTyped(b, "rpc.echo", func(ctx context.Context, e Event, s string) {
				_ = b.Reply(ctx, e, "re: "+s)
			}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "a listener that does not answer, and a responder", want: "re: ping", setup: func(t *testing.T, b *Bus) {
			mustSubscribe(t, b, "rpc.**", func(context.Context, Event) {})
			subscribeWith(t, b, "rpc.echo", echo(b), &SubscribeOptions{Queue: 1})
		}},
		{name: "two responders: the first reply wins", want: "first", late: 1, setup: func(t *testing.T, b *Bus) {
			mustSubscribe(t, b, "rpc.echo", func(ctx context.Context, e Event) { _ = b.Reply(ctx, e, "first") })
			mustSubscribe(t, b, "rpc.echo", func(ctx context.Context, e Event) { _ = b.Reply(ctx, e, "second") })
		}},
		{name: "no subscriber", wantErr: ErrNoResponders, setup: func(t *testing.T, b *Bus) {
			mustSubscribe(t, b, "other.topic", echo(b))
		}},
		{name: "no subscriber left", wantErr: ErrNoResponders, setup: func(t *testing.T, b *Bus) {
			mustSubscribe(t, b, "rpc.echo", echo(b)).Unsubscribe()
		}},
		{name: "silent responder: timeout", timeout: short, wantErr: context.DeadlineExceeded, setup: func(t *testing.T, b *Bus) {
			mustSubscribe(t, b, "rpc.echo", func(context.Context, Event) {})
		}},
		{name: "panicking responder: timeout", timeout: short, wantErr: context.DeadlineExceeded, setup: func(t *testing.T, b *Bus) {
			mustSubscribe(t, b, "rpc.echo", func(context.Context, Event) { panic("boom") })
		}},
		{name: "failing responder: timeout", timeout: short, wantErr: context.DeadlineExceeded, setup: func(t *testing.T, b *Bus) {
			if _, err := b.SubscribeFunc("rpc.echo", func(context.Context, Event) error { return errors.New("no") }); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "responder dies mid-request: timeout", timeout: short, wantErr: context.DeadlineExceeded, setup: func(t *testing.T, b *Bus) {
			var sub *Subscription
			sub = subscribeWith(t, b, "rpc.echo", func(context.Context, Event) { sub.Unsubscribe() }, &SubscribeOptions{Queue: 1})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, errs := collectErrors()
			b := New(opts)
			defer func() { _ = b.Close(ctx) }()
			tc.setup(t, b)
			timeout := tc.timeout
			if timeout == 0 {
				timeout = requestWait
			}
			rctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			e, err := b.Request(rctx, "rpc.echo", "ping")
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Request: %v, want an error wrapping %v", err, tc.wantErr)
			case tc.wantErr == ErrNoResponders && rctx.Err() != nil:
				t.Fatalf("Request waited for its context: %v", err)
			case tc.wantErr == nil && err != nil:
				t.Fatalf("Request: %v", err)
			case tc.wantErr == nil && (e.Payload != tc.want || e.Topic == "" || e.Remote()):
				t.Fatalf("reply %+v, want payload %q", e, tc.want)
			}
			if err != nil {
				t.Logf("error: %v", err)
			}
			if n := b.req.pending(); n != 0 {
				t.Errorf("%d requests still waiting", n)
			}
			if got := b.Stats().LateReplies; got != tc.late {
				t.Errorf("LateReplies %d, want %d", got, tc.late)
			}
			for _, err := range errs() {
				if !errors.Is(err, ErrHandlerPanic) && !errors.Is(err, ErrHandlerFailed) {
					t.Errorf("reported: %v", err)
				}
			}
		})
	}
}

func subscribeWith(t *testing.T, b *Bus, pattern string, h Handler, opts *SubscribeOptions) *Subscription {
	t.Helper()
	s, err := b.SubscribeWith(pattern, h, opts)
	if err != nil {
		t.Fatalf("SubscribeWith(%q): %v", pattern, err)
	}
	return s
}

// TestRequestConcurrent: 1000 concurrent requests, answered out of order by
// a group of asynchronous responders, each get their own reply.
func TestRequestConcurrent(t *testing.T) {
	b := New(nil)
	defer func() { _ = b.Close(ctx) }()
	for range 8 {
		subscribeWith(t, b, "rpc.double", func(ctx context.Context, e Event) {
			_ = b.Reply(ctx, e, 2*e.Payload.(int))
		}, &SubscribeOptions{Group: "g", Queue: 16})
	}
	rctx, cancel := context.WithTimeout(ctx, requestWait)
	defer cancel()
	const n = 1000
	var wg sync.WaitGroup
	var wrong atomic.Int64
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			v, err := RequestTyped[int](rctx, b, "rpc.double", i)
			if err != nil {
				errs <- err
				return
			}
			if v != 2*i {
				wrong.Add(1)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if w := wrong.Load(); w != 0 {
		t.Fatalf("%d requests got another request's reply", w)
	}
	if p, late := b.req.pending(), b.Stats().LateReplies; p != 0 || late != 0 {
		t.Fatalf("%d pending, %d late replies; want none", p, late)
	}
}

// TestRequestLateReply: a reply that comes after its request timed out is
// counted and dropped; the next request gets its own reply, not that one.
func TestRequestLateReply(t *testing.T) {
	b := New(nil)
	defer func() { _ = b.Close(ctx) }()
	release := make(chan struct{})
	replied := make(chan struct{})
	subscribeWith(t, b, "rpc.slow", func(ctx context.Context, e Event) {
		if e.Payload == "first" {
			<-release
		}
		_ = b.Reply(ctx, e, e.Payload)
		if e.Payload == "first" {
			close(replied)
		}
	}, &SubscribeOptions{Queue: 4})

	rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err := b.Request(rctx, "rpc.slow", "first")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("first request: %v, want a timeout", err)
	}
	close(release)
	select {
	case <-replied:
	case <-time.After(requestWait):
		t.Fatal("the responder did not reply")
	}
	if late := b.Stats().LateReplies; late != 1 {
		t.Fatalf("LateReplies %d, want 1", late)
	}
	rctx, cancel = context.WithTimeout(ctx, requestWait)
	defer cancel()
	e, err := b.Request(rctx, "rpc.slow", "second")
	if err != nil || e.Payload != "second" {
		t.Fatalf("second request: %v, %v; want its own reply", e.Payload, err)
	}
}

// TestRequestClose: a request waiting when the bus closes returns
// ErrClosed, and requests and replies fail once it is closed.
func TestRequestClose(t *testing.T) {
	b := New(nil)
	got := make(chan Event, 1)
	mustSubscribe(t, b, "rpc.hold", func(_ context.Context, e Event) { got <- e })
	errc := make(chan error, 1)
	go func() {
		_, err := b.Request(context.Background(), "rpc.hold", nil)
		errc <- err
	}()
	var req Event
	select {
	case req = <-got:
	case <-time.After(requestWait):
		t.Fatal("no request")
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Request: %v, want ErrClosed", err)
		}
	case <-time.After(requestWait):
		t.Fatal("Request still waiting after Close")
	}
	if err := b.Reply(ctx, req, "late"); !errors.Is(err, ErrClosed) {
		t.Errorf("Reply after Close: %v, want ErrClosed", err)
	}
	if _, err := b.Request(ctx, "rpc.hold", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Request after Close: %v, want ErrClosed", err)
	}
}

// TestReplyErrors: Reply needs a request; Request needs a valid topic;
// RequestTyped checks the reply's type.
func TestReplyErrors(t *testing.T) {
	b := New(nil)
	defer func() { _ = b.Close(ctx) }()
	for _, e := range []Event{{Topic: "a"}, {Topic: "a", Meta: &Meta{Source: "x"}}} {
		if err := b.Reply(ctx, e, 1); !errors.Is(err, ErrNotRequest) {
			t.Errorf("Reply(%+v): %v, want ErrNotRequest", e, err)
		}
	}
	if _, err := b.Request(ctx, "a..b", nil); !errors.Is(err, ErrInvalidTopic) {
		t.Errorf("Request on a bad topic: %v, want ErrInvalidTopic", err)
	}
	mustSubscribe(t, b, "rpc.text", echo(b))
	rctx, cancel := context.WithTimeout(ctx, requestWait)
	defer cancel()
	if _, err := RequestTyped[int](rctx, b, "rpc.text", 1); !errors.Is(err, ErrPayloadType) {
		t.Errorf("RequestTyped[int] of a string reply: %v, want ErrPayloadType", err)
	}
	if s, err := RequestTyped[string](rctx, b, "rpc.text", 1); err != nil || s != "re: 1" {
		t.Errorf("RequestTyped[string]: %q, %v", s, err)
	}
}

// TestReplyRemoteInbox: a reply to a request of another instance is
// published on its reply topic, where a bridge takes it; a reply published
// on this bus's inbox topics, as a bridge does with the replies it
// imports, reaches the request, even with an instance ID in front.
func TestReplyRemoteInbox(t *testing.T) {
	b := New(nil)
	defer func() { _ = b.Close(ctx) }()
	var forwarded []Event
	mustSubscribe(t, b, "_INBOX.**", func(_ context.Context, e Event) {
		if e.Meta == nil {
			forwarded = append(forwarded, e)
		}
	})
	remote := Event{Topic: "rpc.x", Meta: &Meta{Source: "other", ReplyTo: "_INBOX.inst.0123456789abcdef.7"}}
	if err := b.Reply(ctx, remote, "answer"); err != nil {
		t.Fatal(err)
	}
	if len(forwarded) != 1 || forwarded[0].Topic != remote.Meta.ReplyTo || forwarded[0].Payload != "answer" {
		t.Fatalf("published %+v, want the answer on %q", forwarded, remote.Meta.ReplyTo)
	}
	if late := b.Stats().LateReplies; late != 0 {
		t.Fatalf("a reply to another bus counted as late here: %d", late)
	}

	// A bridge imports this bus's replies from Redis and publishes them.
	mustSubscribe(t, b, "rpc.bridged", func(_ context.Context, e Event) {
		go func() {
			imported := Event{Topic: "_INBOX.inst." + e.Meta.ReplyTo[len("_INBOX."):], Payload: "from afar", Meta: &Meta{Source: "other"}}
			_ = b.PublishEvent(ctx, imported)
		}()
	})
	rctx, cancel := context.WithTimeout(ctx, requestWait)
	defer cancel()
	e, err := b.Request(rctx, "rpc.bridged", nil)
	if err != nil || e.Payload != "from afar" || !e.Remote() {
		t.Fatalf("Request: %+v, %v", e, err)
	}
}

// TestRequestAllocs is the allocation budget of a request answered in
// process: the reply topic and the Meta. It also checks that the inbox
// subscription leaves ordinary publishes free of allocations.
func TestRequestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	b := New(nil)
	defer func() { _ = b.Close(ctx) }()
	mustSubscribe(t, b, "rpc.echo", func(ctx context.Context, e Event) { _ = b.Reply(ctx, e, e.Payload) })
	mustSubscribe(t, b, "orders.created", func(context.Context, Event) {})
	p := &payload{}
	rctx, cancel := context.WithTimeout(ctx, requestWait)
	defer cancel()
	if allocs := testing.AllocsPerRun(1000, func() { _, _ = b.Request(rctx, "rpc.echo", p) }); allocs > 2 {
		t.Errorf("%v allocs per Request, want at most 2", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = b.Publish(ctx, "orders.created", p) }); allocs != 0 {
		t.Errorf("%v allocs per Publish after a Request, want 0", allocs)
	}
}

func BenchmarkRequest(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts *SubscribeOptions
	}{
		{"sync", nil},
		{"async", &SubscribeOptions{Queue: 64}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bus := New(nil)
			defer func() { _ = bus.Close(ctx) }()
			if _, err := bus.SubscribeWith("rpc.echo", func(ctx context.Context, e Event) { _ = bus.Reply(ctx, e, e.Payload) }, bc.opts); err != nil {
				b.Fatal(err)
			}
			p := &payload{}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := bus.Request(ctx, "rpc.echo", p); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
