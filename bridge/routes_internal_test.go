package bridge

import (
	"context"
	"testing"

	bus "github.com/busline/bus"
)

// TestRemoveWindowExportCounted is the instant of RemoveRoute(r) between
// r.removed.Store(true) and the store of the table without r, with a local
// Publish on a topic that r and a later export route l both match: the
// event must be queued by one of them or counted as OutboxUnsent, never
// lost without a count.
func TestRemoveWindowExportCounted(t *testing.T) {
	b := bus.New(nil)
	br := newOffline(t, b, &Options{Prefix: "app:", Routes: []Route{
		{Pattern: "room.*", Direction: Export},
		{Pattern: "room.a", Direction: Export},
	}})
	tab := br.table.Load()
	r, l := tab.lookup(0), tab.lookup(1)
	r.removed.Store(true) // RemoveRoute's first step; the new table is not stored yet
	for _, topic := range []string{"room.a", "room.b"} {
		if err := b.Publish(context.Background(), topic, "x"); err != nil {
			t.Fatal(err)
		}
	}
	// room.a is l's now; room.b nobody's: counted as not sent.
	if q, u := l.c.queued.Load(), br.c.outboxUnsent.Load(); q != 1 || u != 1 || r.c.queued.Load() != 0 {
		t.Errorf("published room.a and room.b: l queued %d (want 1), r queued %d (want 0), unsent %d (want 1)", q, r.c.queued.Load(), u)
	}
}
