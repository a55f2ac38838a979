package wire

import (
	"strconv"
	"testing"
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
	// Past MaxSeqChannels, a new channel restarts every channel from 1.
	for i := 2; i < MaxSeqChannels; i++ {
		c.Next("c" + strconv.Itoa(i))
	}
	if got := c.Next("a"); got != 4 {
		t.Fatalf("a known channel at the limit: Next = %d, want 4", got)
	}
	if got := c.Next("new"); got != 1 {
		t.Fatalf("a new channel at the limit: Next = %d, want 1", got)
	}
	if got := c.Next("a"); got != 1 {
		t.Fatalf("after the reset: Next(a) = %d, want 1", got)
	}
}
