package bridge_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestCloseRightAfterHandling closes a durable importer as soon as its
// handler has seen an entry, so that Close cancels the reader while it
// saves the checkpoint or sends the XACK: nothing may be reported (the
// reader saves or acknowledges again with Close's context), and the entry
// must be recorded as handled — a restarted importer does not get it
// again.
func TestCloseRightAfterHandling(t *testing.T) {
	srv := redistest.Start(t, nil)
	for _, tc := range []struct {
		name  string
		route bridge.Route
	}{
		{"stream", bridge.Route{Pattern: "cl.x", Direction: bridge.Import, Delivery: bridge.Stream, Codec: bridge.Text()}},
		{"group", bridge.Route{Pattern: "cl.x", Direction: bridge.Import, Delivery: bridge.Group, Group: "cl", Codec: bridge.Text()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "cl.x", Direction: bridge.Export, Delivery: bridge.Stream, Codec: bridge.Text()}))
			for i := range 20 {
				opts := testOptions(nil, tc.route)
				opts.InstanceID = "closer-" + tc.name
				opts.StreamBlock = 50 * time.Millisecond
				b := bus.New(nil)
				got := make(chan int, 2)
				if _, err := b.Subscribe("cl.x", func(_ context.Context, e bus.Event) {
					if v, err := strconv.Atoi(e.Payload.(string)); err == nil {
						got <- v
					}
				}); err != nil {
					t.Fatal(err)
				}
				imp := newInstanceOn(t, b, srv.Client(t), opts)
				if err := exp.bus.Publish(context.Background(), "cl.x", strconv.Itoa(i)); err != nil {
					t.Fatal(err)
				}
				select {
				case v := <-got:
					if v != i {
						t.Fatalf("round %d: the importer got %d again: it was not recorded as handled", i, v)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("round %d: no event within 10s", i)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := imp.bridge.Close(ctx)
				cancel()
				if err != nil {
					t.Fatalf("round %d: Close: %v", i, err)
				}
				for _, target := range []error{bridge.ErrCheckpoint, bridge.ErrAck} {
					if n := imp.errs.count(target); n > 0 {
						t.Fatalf("round %d: %d reports of %v: %v", i, n, target, imp.errs)
					}
				}
				_ = b.Close(context.Background())
				// A read Close gave up on goes on until its block time
				// ends; an entry it got stays pending for ClaimIdle:
				// let it end before the next round's entry.
				time.Sleep(4 * opts.StreamBlock)
			}
		})
	}
}
