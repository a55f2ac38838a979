//go:build unix

package bridge_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/bridge/internal/plural"
	"github.com/busline/bus/redistest"
)

// TestCloseFrozenRedis freezes redis-server (SIGSTOP) while the bridge
// writes to it, and closes the bridge with a 200 ms deadline: Close must
// return within the deadline and 100 ms more (go-redis does not interrupt
// a read when its context is cancelled, and would hold a flusher until its
// read timeout and retries), and count every export it did not send, in
// its error and in Stats, so that exported + unsent == published.
func TestCloseFrozenRedis(t *testing.T) {
	for _, tc := range []struct {
		name  string
		route bridge.Route
	}{
		{"pubsub", bridge.Route{Pattern: "frz.*", Direction: bridge.Export}},
		{"stream", bridge.Route{Pattern: "frz.*", Direction: bridge.Export, Delivery: bridge.Stream}},
		{"stream both ways", bridge.Route{Pattern: "frz.*", Delivery: bridge.Stream}},
		{"group both ways", bridge.Route{Pattern: "frz.*", Delivery: bridge.Group, Group: "frozen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, nil)
			b := bus.New(nil)
			t.Cleanup(func() { _ = b.Close(context.Background()) })
			opts := testOptions(nil, tc.route)
			opts.OutboxMaxEvents = 1 << 20
			opts.OutboxMaxAge = -1
			errs := &errLog{}
			opts.OnError = errs.add
			opts.InstanceID = "frozen"
			br, err := bridge.New(b, srv.Client(t), opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = closeBridge(br) })
			ready(t, br)

			var published atomic.Uint64
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if err := b.Publish(context.Background(), "frz.x", i); err != nil {
						t.Error(err)
						return
					}
					published.Add(1)
					if i%64 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			}()
			eventually(t, func() bool { return br.Stats().Exported > 100 }, "exports to flow")
			thaw := srv.Freeze()
			t.Cleanup(thaw)
			// Long enough for the flusher to be inside a pipeline read.
			time.Sleep(300 * time.Millisecond)
			close(stop)
			recv(t, done, "the publisher to stop")

			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = br.Close(ctx)
			took := time.Since(start)
			t.Logf("Close took %v: %v", took, err)
			if took > 300*time.Millisecond {
				t.Errorf("Close took %v with a 200ms deadline and Redis frozen", took)
			}
			if !errors.Is(err, bridge.ErrNotSent) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Close = %v, want ErrNotSent and DeadlineExceeded", err)
			}
			s := br.Stats()
			if s.OutboxUnsent == 0 {
				t.Errorf("nothing counted unsent: %+v", s)
			}
			// What was counted unsent is not waiting any more: a batch
			// the flusher was sending when Close gave up is in
			// OutboxUnsent, not in OutboxDepth too.
			if s.OutboxDepth != 0 || s.OutboxBytes != 0 {
				t.Errorf("after Close: OutboxDepth %d, OutboxBytes %d, want 0 (unsent %d)", s.OutboxDepth, s.OutboxBytes, s.OutboxUnsent)
			}
			if want := plural.Of(s.OutboxUnsent, "export") + " dropped"; !strings.Contains(err.Error(), want) {
				t.Errorf("Close = %q, want it to say %q", err, want)
			}
			if got := s.Exported + s.OutboxDropped + s.ExportRejected + s.EncodeErrors; got != published.Load() {
				t.Errorf("published %d, exported %d + dropped %d (unsent %d) = %d: %+v",
					published.Load(), s.Exported, s.OutboxDropped, s.OutboxUnsent, got, s)
			}
		})
	}
}

// TestCloseFrozenAtStart closes, with a 200 ms deadline, bridges whose
// durable readers are still looking for their start on a frozen Redis
// (loading the checkpoint, creating the group, claiming pending entries):
// Close must return within the deadline and 100 ms more, without waiting
// for go-redis's read timeout.
func TestCloseFrozenAtStart(t *testing.T) {
	for _, tc := range []struct {
		name  string
		route bridge.Route
	}{
		{"stream", bridge.Route{Pattern: "frz.*", Direction: bridge.Import, Delivery: bridge.Stream}},
		{"group", bridge.Route{Pattern: "frz.*", Direction: bridge.Import, Delivery: bridge.Group, Group: "frozen"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, nil)
			rdb := srv.Client(t)
			if err := rdb.Ping(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
			thaw := srv.Freeze()
			t.Cleanup(thaw)
			b := bus.New(nil)
			t.Cleanup(func() { _ = b.Close(context.Background()) })
			opts := testOptions(nil, tc.route)
			opts.OnError = (&errLog{}).add
			opts.InstanceID = "frozen"
			br, err := bridge.New(b, rdb, opts)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = closeBridge(br) })
			// Long enough for the reader to be inside its first call.
			time.Sleep(300 * time.Millisecond)

			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			err = br.Close(ctx)
			took := time.Since(start)
			t.Logf("Close took %v: %v", took, err)
			if took > 300*time.Millisecond {
				t.Errorf("Close took %v with a 200ms deadline and Redis frozen", took)
			}
		})
	}
}
