package wire

import (
	"strconv"
	"testing"

	"github.com/busline/bus/bridge/internal/lru"
)

func TestCounter(t *testing.T) {
	var c Counter
	for _, tc := range []struct {
		channel string
		want    uint64
	}{{"a", 1}, {"a", 2}, {"b", 1}, {"a", 3}, {"b", 2}} {
		if got := c.Next(tc.channel); got != tc.want {
			t.Fatalf("Next(%q) = %d, want %d", tc.channel, got, tc.want)
		}
	}
}

// TestCounterBudget numbers far more channels than its budget holds while
// channel "hot" keeps being used: the counter stays within its budget,
// forgets the cold channels one at a time (the oldest first), and never
// numbers the hot one again from 1, as the wholesale reset it replaces
// did.
func TestCounterBudget(t *testing.T) {
	const budget = 100 * (lru.EntryOverhead + 10)
	c := Counter{Budget: budget}
	var hot uint64
	for i := range 10000 {
		if i%50 == 0 {
			hot++
			if got := c.Next("hot"); got != hot {
				t.Fatalf("hot channel after %d others: %d, want %d", i, got, hot)
			}
		}
		if got := c.Next("cold" + strconv.Itoa(100000+i)); got != 1 {
			t.Fatalf("cold channel %d: %d", i, got)
		}
		if c.seqs.Bytes() > budget {
			t.Fatalf("%d bytes, budget %d", c.seqs.Bytes(), budget)
		}
	}
	if n := c.Len(); n < 50 || n > 100 {
		t.Fatalf("%d channels remembered, want the budget's 50..100", n)
	}
	// The oldest cold channel is forgotten: numbered from 1 again.
	if got := c.Next("cold100000"); got != 1 {
		t.Fatalf("forgotten channel: %d, want 1", got)
	}
}
