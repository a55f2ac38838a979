package bridge

import (
	"fmt"
	"testing"
)

func TestIntern(t *testing.T) {
	var tab internTable
	for i := range 1000 {
		b := []byte(fmt.Sprintf("instance-%d", i%300))
		if got := tab.intern(b); got != string(b) {
			t.Fatalf("intern(%q) = %q", b, got)
		}
	}
	for _, ct := range []string{"", ContentTypeJSON, ContentTypeText, ContentTypeBytes, "application/x-custom"} {
		if got := contentTypeString([]byte(ct)); got != ct {
			t.Fatalf("contentTypeString(%q) = %q", ct, got)
		}
	}
	if raceEnabled {
		return
	}
	b, ct := []byte("instance-a"), []byte(ContentTypeJSON)
	tab.intern(b)
	if n := testing.AllocsPerRun(100, func() { _ = tab.intern(b); _ = contentTypeString(ct) }); n != 0 {
		t.Fatalf("%v allocs on a hit, want 0", n)
	}
}
