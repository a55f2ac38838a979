package bridge_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestHighCardinalityNoFalseDuplicates runs a sender and a receiver far
// past the budget of their sequence bookkeeping (scaled down to 64 KiB,
// about 500 channels, so that it takes seconds): four goroutines publish
// on 16 hot topics while a fifth publishes on a new topic every time. The
// bookkeeping forgets the cold channels, never the hot ones, and not all
// at once: every event is delivered, none dropped as a duplicate, none
// reported missing. With the wholesale reset of a full table, and times
// taken before numbers, the receiver dropped genuine events as
// duplicates (143 of 1.7M in the run, at the real caps).
func TestHighCardinalityNoFalseDuplicates(t *testing.T) {
	bridge.SetSeqBudget(t, 64<<10)
	srv := redistest.Start(t, nil)
	route := bridge.Route{Pattern: "hc.**"}
	from := newInstance(t, srv.Client(t), testOptions(nil, bridge.Route{Pattern: "hc.**", Direction: bridge.Export}))
	opts := testOptions(nil, bridge.Route{Pattern: route.Pattern, Direction: bridge.Import})
	opts.ImportQueueSize = 1 << 20
	opts.ImportTopicQueueSize = 1 << 20
	b := newBus()
	var delivered atomic.Uint64
	if _, err := b.Subscribe("hc.**", func(context.Context, bus.Event) { delivered.Add(1) }); err != nil {
		t.Fatal(err)
	}
	to := newInstanceOn(t, b, srv.Client(t), opts)

	const hotPerWorker, cold = 25000, 50000
	ctx := context.Background()
	var wg sync.WaitGroup
	var stopCold atomic.Bool
	var colds atomic.Uint64
	for w := range 4 {
		wg.Go(func() {
			for i := range hotPerWorker {
				_ = from.bus.Publish(ctx, fmt.Sprintf("hc.hot.%d", (w*7+i)%16), i)
			}
		})
	}
	var coldDone sync.WaitGroup
	coldDone.Go(func() {
		for i := 0; i < cold || !stopCold.Load(); i++ {
			_ = from.bus.Publish(ctx, fmt.Sprintf("hc.cold.%d", i), i)
			colds.Add(1)
			if i >= 4*cold {
				return
			}
		}
	})
	waitGroup(t, &wg, "hot publishers")
	stopCold.Store(true)
	waitGroup(t, &coldDone, "cold publisher")
	published := 4*hotPerWorker + colds.Load()

	eventually(t, func() bool {
		s := to.bridge.Stats()
		return s.Received == published && s.ImportDepth == 0
	}, "%d of %d events received", func() int { return int(to.bridge.Stats().Received) }, func() int { return int(published) })
	checkAccounting(t, to.bridge)
	// The sender counts an export once Redis has replied to it, which can
	// be after the receiver got the message.
	eventually(t, func() bool { return from.bridge.Stats().Exported >= published }, "exported %d of %d",
		func() int { return int(from.bridge.Stats().Exported) }, func() int { return int(published) })
	s, fs := to.bridge.Stats(), from.bridge.Stats()
	t.Logf("%d events (%d on new topics): sender exported %d in %d messages; receiver imported %d, %d duplicates, %d gaps (%d events)",
		published, colds.Load(), fs.Exported, fs.ExportMessages, s.Imported, s.Duplicates, s.Gaps, s.GapEvents)
	if fs.Exported != published {
		t.Errorf("exported %d of %d", fs.Exported, published)
	}
	if s.Duplicates != 0 || s.GapEvents != 0 || s.Imported != published || delivered.Load() != published {
		t.Errorf("published %d: imported %d, delivered %d, %d genuine events dropped as duplicates, %d reported missing",
			published, s.Imported, delivered.Load(), s.Duplicates, s.GapEvents)
	}
}
