package bridge

import (
	"context"
	"testing"

	bus "github.com/busline/bus"
	"github.com/redis/go-redis/v9"
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

// TestCopyImportedIsOneRedisSent adds, then removes, an exact import route
// under a glob route that imports its topic, and checks which copy of a
// message the pub/sub transport imports at each step: until Redis
// confirms the SUBSCRIBE it sends only the glob's copy, which must not be
// dropped as a duplicate; once confirmed, the exact copy is imported and
// the glob's is the duplicate; after UNSUBSCRIBE is sent and until it is
// confirmed, the exact copy still is the one.
func TestCopyImportedIsOneRedisSent(t *testing.T) {
	br := newOffline(t, bus.New(nil), &Options{Prefix: "app:", Routes: []Route{{Pattern: "room.*", Direction: Import}}})
	// A transport of its own, not started: the bridge's has a loop of
	// its own trying to connect, which would reset what it saw.
	ps := &pubsubTransport{br: br}
	ps.subscribed("psubscribe", "app:room.*", true)
	exact := &redis.Message{Channel: "app:room.a", Payload: "x"}
	glob := &redis.Message{Channel: "app:room.a", Pattern: "app:room.*", Payload: "x"}
	imported := func(m *redis.Message) bool {
		_, _, ok := ps.route(m.Channel, readOnly(m.Pattern))
		return ok
	}
	steps := []struct {
		name        string
		do          func()
		exact, glob bool // whether each copy is imported
	}{
		{"the glob route alone", func() {}, false, true},
		{"exact route added, SUBSCRIBE not confirmed", func() {
			if _, err := br.AddRoute(Route{Pattern: "room.a", Direction: Import}); err != nil {
				t.Fatal(err)
			}
		}, true, true},
		{"SUBSCRIBE confirmed", func() { ps.subscribed("subscribe", "app:room.a", true) }, true, false},
		{"exact route removed, UNSUBSCRIBE not confirmed", func() {
			if _, err := br.RemoveRoute(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
		}, true, false},
		{"UNSUBSCRIBE confirmed", func() { ps.subscribed("unsubscribe", "app:room.a", false) }, false, true},
	}
	for _, st := range steps {
		st.do()
		// The exact copy only reaches the bridge while subscribed: its
		// result is checked only then.
		if got := imported(glob); got != st.glob {
			t.Errorf("%s: the glob's copy imported = %v, want %v", st.name, got, st.glob)
		}
		if st.exact {
			if got := imported(exact); !got {
				t.Errorf("%s: the exact copy not imported", st.name)
			}
		}
	}
}
