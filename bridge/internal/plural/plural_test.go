package plural

import "testing"

func TestOf(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		noun string
		want string
	}{
		{0, "event", "0 events"}, {1, "event", "1 event"}, {2, "byte", "2 bytes"},
		{1, "entry", "1 entry"}, {3, "entry", "3 entries"},
	} {
		if got := Of(tc.n, tc.noun); got != tc.want {
			t.Errorf("Of(%d, %q) = %q, want %q", tc.n, tc.noun, got, tc.want)
		}
	}
}
