package intern

import (
	"fmt"
	"testing"
)

func TestTable(t *testing.T) {
	var tab Table
	for i := range 1000 {
		b := []byte(fmt.Sprintf("instance-%d", i%300))
		if got := tab.String(b); got != string(b) {
			t.Fatalf("String(%q) = %q", b, got)
		}
	}
	for _, ct := range []string{"", "application/json", "text/plain; charset=utf-8", "application/x-custom"} {
		if got := tab.String([]byte(ct)); got != ct {
			t.Fatalf("String(%q) = %q", ct, got)
		}
	}
	if raceEnabled {
		return
	}
	a, ct := []byte("instance-a"), []byte("application/json")
	tab.String(a)
	tab.String(ct)
	if n := testing.AllocsPerRun(100, func() { _ = tab.String(a); _ = tab.String(ct); _ = tab.String(nil) }); n != 0 {
		t.Fatalf("%v allocs on a hit, want 0", n)
	}
}
