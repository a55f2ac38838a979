package mac

import (
	"crypto/hmac"
	"crypto/sha256"
	"testing"
)

// TestGet checks that a pooled state computes the MAC of its key, after a
// state of another key went back to the pool too.
func TestGet(t *testing.T) {
	for _, key := range []string{"k1", "k2", "k1", "k1"} {
		m := Get([]byte(key))
		m.H.Write([]byte("message"))
		got := m.H.Sum(m.Out[:0])
		ref := hmac.New(sha256.New, []byte(key))
		ref.Write([]byte("message"))
		if !hmac.Equal(got, ref.Sum(nil)) {
			t.Fatalf("key %q: MAC %x, want %x", key, got, ref.Sum(nil))
		}
		Put(m)
	}
}
