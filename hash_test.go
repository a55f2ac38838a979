package bus

import (
	"fmt"
	"math/bits"
	"testing"
)

// TestHashStringSpread checks the properties the cache relies on: equal
// strings hash equal, and the slot bits of similar topics (the common case:
// one counter in a long name) spread evenly over the slots.
func TestHashStringSpread(t *testing.T) {
	const seed = 0x1234
	if hashString(seed, "orders.created") != hashString(seed, string([]byte("orders.created"))) {
		t.Fatal("equal strings hash differently")
	}
	if hashString(seed, "a") == hashString(seed+1, "a") {
		t.Fatal("the seed does not change the hash")
	}
	for _, format := range []string{"t.%d", "tenant.%d.orders.created", "a.very.long.topic.name.for.the.loop.%d.with.a.tail"} {
		const n, slots = 1 << 16, 1 << 10
		var count [slots]int
		var stripes [numStripes]int
		for i := range n {
			h := hashString(seed, fmt.Sprintf(format, i))
			count[h&(slots-1)]++
			stripes[h>>(64-stripeBits)]++
		}
		// Expect n/slots = 64 per slot; allow a wide margin.
		for i, c := range count {
			if c < 24 || c > 120 {
				t.Fatalf("%q: slot %d got %d of %d keys", format, i, c, n)
			}
		}
		for i, c := range stripes {
			if want := n / numStripes; c < want/2 || c > want*2 {
				t.Fatalf("%q: stripe %d got %d keys, want about %d", format, i, c, want)
			}
		}
	}
	// Every length class changes with every byte.
	for n := 1; n <= 40; n++ {
		base := make([]byte, n)
		h0 := hashString(seed, string(base))
		for i := range n {
			b := append([]byte(nil), base...)
			b[i] = 1
			if h := hashString(seed, string(b)); h == h0 || bits.OnesCount64(h^h0) < 8 {
				t.Fatalf("len %d: flipping byte %d changed the hash by %d bits", n, i, bits.OnesCount64(h^h0))
			}
		}
	}
}
