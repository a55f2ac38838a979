package bridge

import "testing"

// TestIDOf checks the channel check of signed CloudEvents: an id names the
// channel it was exported on only if all before its last colon is that
// channel, so that an event of "app:orders:eu" copied to "app:orders"
// (topics may hold colons) is rejected.
func TestIDOf(t *testing.T) {
	for _, tc := range []struct {
		id, channel string
		want        bool
	}{
		{"app:orders:42", "app:orders", true},
		{"app:orders:eu:42", "app:orders:eu", true},
		{"app:orders:eu:42", "app:orders", false},
		{"app:orders:", "app:orders", true},
		{"app:orders", "app:orders", false},
		{"app:ordersx:42", "app:orders", false},
		{"other:42", "app:orders", false},
		{"", "", false},
	} {
		if got := idOf(tc.id, tc.channel); got != tc.want {
			t.Errorf("idOf(%q, %q) = %v, want %v", tc.id, tc.channel, got, tc.want)
		}
	}
}
