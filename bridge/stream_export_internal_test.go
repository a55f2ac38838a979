package bridge

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/busline/bus/bridge/internal/queue"

	"github.com/busline/bus/bridge/internal/wire"

	bus "github.com/busline/bus"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// TestDropApplied plays a pipeline that Redis executed in part before the
// connection broke: the first four XADDs of a batch of ten reached the
// stream, followed by another writer's entry and preceded by an entry of
// a previous run of the same exporter with the same sequence number as
// the fifth. dropApplied keeps exactly the six that are missing, and
// counts the four as exported.
func TestDropApplied(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	ctx := context.Background()
	br, err := New(bus.New(nil), rdb, &Options{
		Prefix:     "app:",
		InstanceID: "x",
		Routes:     []Route{{Pattern: "t", Delivery: Stream, Direction: Export}},
		OnError:    func(error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer br.Close(ctx)
	// A flusher of its own, so that the bridge's does not share its memory.
	x := newStreamExport(br, &streamRoute{route: br.table.Load().exports[0], key: StreamKey("app:", "t")})

	now := time.Now().UnixNano()
	for i := range 10 {
		x.batch = append(x.batch, queue.Export{Channel: "app:t", Payload: []byte{byte(i)}, Seq: uint64(i + 1), At: now + int64(i)})
	}
	// The previous run's fifth event: same source and number, older.
	old := queue.Export{Channel: "app:t", Payload: []byte("old"), Seq: 5, At: now - int64(time.Hour)}
	saved := x.batch
	x.batch = []queue.Export{old}
	x.build()
	if err := rdb.XAdd(ctx, &x.args[0]).Err(); err != nil {
		t.Fatal(err)
	}
	x.batch = saved
	x.build()
	for i := range 4 {
		if err := rdb.XAdd(ctx, &x.args[i]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Another writer's entry with the fifth's channel, number and time.
	other := wire.AppendEnvelope(nil, "app:t", &wire.Envelope{Source: "y", Seq: 5, Time: now + 4, Payload: []byte{4}}, nil)
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: x.r.key, Values: []any{"topic", "t", "data", other}}).Err(); err != nil {
		t.Fatal(err)
	}

	before := br.Stats()
	got := x.dropApplied(ctx, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	if want := []int{4, 5, 6, 7, 8, 9}; !slices.Equal(got, want) {
		t.Fatalf("dropApplied kept %v, want %v", got, want)
	}
	after := br.Stats()
	if after.Exported-before.Exported != 4 || after.StreamExported-before.StreamExported != 4 {
		t.Errorf("counted %d exported (%d to streams), want 4", after.Exported-before.Exported, after.StreamExported-before.StreamExported)
	}
}
