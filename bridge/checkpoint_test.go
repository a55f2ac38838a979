package bridge_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// recordingCheckpointer is a Checkpointer that keeps positions in memory
// and checks, when each is saved, that the local subscriber has already
// handled every entry up to it. A position saved before the local publish
// returned would, after a crash at that moment, make the next run skip
// entries nobody handled: a loss that only a SIGKILL landing mid-batch
// would otherwise show.
type recordingCheckpointer struct {
	mu      sync.Mutex   // protects the fields below
	ids     []string     // the IDs of the stream's entries, in order
	handled map[int]bool // indexes in ids of the entries handled
	saves   []string     // every ID saved, in order
	early   []string     // what went wrong, one line each
}

var _ bridge.Checkpointer = (*recordingCheckpointer)(nil)

// Load makes the route read the stream from its start.
func (c *recordingCheckpointer) Load(context.Context, string) (string, error) { return "0", nil }

func (c *recordingCheckpointer) Save(_ context.Context, _, id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saves = append(c.saves, id)
	k := slices.Index(c.ids, id)
	if k < 0 {
		c.early = append(c.early, fmt.Sprintf("saved %s, which is no entry of the stream", id))
		return nil
	}
	for i := 0; i <= k; i++ {
		if !c.handled[i] {
			c.early = append(c.early, fmt.Sprintf("saved %s (entry %d) before entry %d was handled", id, k, i))
			break
		}
	}
	return nil
}

// handle records that the subscriber handled entry i.
func (c *recordingCheckpointer) handle(i int) {
	c.mu.Lock()
	c.handled[i] = true
	c.mu.Unlock()
}

func (c *recordingCheckpointer) results() (saves, early []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.saves), slices.Clone(c.early)
}

// TestCheckpointAfterPublish checks that a Stream route saves its position
// only after the local publish of every entry up to it has returned: the
// stream holds more entries than one read takes (BatchSize), written by a
// plain client, and a recording Checkpointer checks each Save against what
// the subscriber has handled. The last Save is the last entry.
func TestCheckpointAfterPublish(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	ctx := context.Background()
	key := bridge.StreamKey("app:", "cp.x")
	const n = 20
	cp := &recordingCheckpointer{handled: map[int]bool{}}
	for i := range n {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"topic", "cp.x", "data", strconv.Itoa(i)}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		cp.ids = append(cp.ids, id)
	}

	b := newBus()
	if _, err := b.Subscribe("cp.x", func(_ context.Context, e bus.Event) {
		cp.handle(atoi(t, e.Payload))
	}); err != nil {
		t.Fatal(err)
	}
	opts := durableOptions("cp", bridge.Route{Pattern: "cp.x", Direction: bridge.Import, Delivery: bridge.Stream})
	opts.Checkpointer = cp
	opts.BatchSize = 3 // seven reads, seven saves
	in := newInstanceOn(t, b, srv.Client(t), opts)
	eventually(t, func() bool {
		saves, _ := cp.results()
		return len(saves) > 0 && saves[len(saves)-1] == cp.ids[n-1]
	}, "the last entry saved")
	closeInstance(t, in)

	saves, early := cp.results()
	for _, e := range early {
		t.Error(e)
	}
	if len(saves) < n/3 {
		t.Errorf("%d saves for %d entries read %d at a time: %v", len(saves), n, opts.BatchSize, saves)
	}
	if !slices.IsSortedFunc(saves, func(a, b string) int { return slices.Index(cp.ids, a) - slices.Index(cp.ids, b) }) {
		t.Errorf("saves out of order: %v", saves)
	}
	if s := in.bridge.Stats(); s.StreamImported != n {
		t.Errorf("imported %d entries, want %d", s.StreamImported, n)
	}
}

// TestGroupAckAfterPublish checks the same for a Group route, whose
// acknowledgement (XACK) is its checkpoint: while the subscriber handles
// an entry, Redis still lists that entry as pending for the consumer.
func TestGroupAckAfterPublish(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	ctx := context.Background()
	key := bridge.StreamKey("app:", "ack.x")
	if err := rdb.XGroupCreateMkStream(ctx, key, "busline", "0").Err(); err != nil {
		t.Fatal(err)
	}
	const n = 20
	ids := map[string]string{} // payload: entry ID
	for i := range n {
		id, err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"topic", "ack.x", "data", strconv.Itoa(i)}}).Result()
		if err != nil {
			t.Fatal(err)
		}
		ids[strconv.Itoa(i)] = id
	}

	var mu sync.Mutex
	var acked []string // entries found acknowledged while being handled
	handled := 0
	b := newBus()
	if _, err := b.Subscribe("ack.x", func(_ context.Context, e bus.Event) {
		p := string(e.Payload.([]byte))
		pending, err := rdb.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key, Group: "busline", Start: ids[p], End: ids[p], Count: 1}).Result()
		mu.Lock()
		defer mu.Unlock()
		handled++
		if err != nil || len(pending) != 1 || pending[0].Consumer != "w" {
			acked = append(acked, fmt.Sprintf("entry %s (%s): pending %+v, %v", p, ids[p], pending, err))
		}
	}); err != nil {
		t.Fatal(err)
	}
	opts := durableOptions("w", bridge.Route{Pattern: "ack.x", Direction: bridge.Import, Delivery: bridge.Group})
	opts.BatchSize = 3
	in := newInstanceOn(t, b, srv.Client(t), opts)
	eventually(t, func() bool { return in.bridge.Stats().StreamAcked == n }, "every entry acknowledged")
	mu.Lock()
	defer mu.Unlock()
	for _, a := range acked {
		t.Errorf("acknowledged before its local publish returned: %s", a)
	}
	if handled != n {
		t.Errorf("%d entries handled, want %d", handled, n)
	}
}
