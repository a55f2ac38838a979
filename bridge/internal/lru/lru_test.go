package lru

import (
	"fmt"
	"slices"
	"testing"
)

func keys(c *Cache[string, int]) []string {
	var ks []string
	c.Oldest(func(k string, _ int, _ int) bool { ks = append(ks, k); return true })
	return ks
}

func TestCache(t *testing.T) {
	var c Cache[string, int]
	c.SetBudget(3 * (EntryOverhead + 1))
	for i, k := range []string{"a", "b", "c"} {
		c.Put(k, i, 1)
	}
	if got := keys(&c); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("oldest first: %v", got)
	}
	// Using a makes b the oldest: d evicts b, not a.
	if v, ok := c.Get("a"); !ok || *v != 0 {
		t.Fatalf("Get(a) = %v, %v", v, ok)
	}
	c.Put("d", 3, 1)
	if got := keys(&c); !slices.Equal(got, []string{"c", "a", "d"}) {
		t.Fatalf("after d: %v", got)
	}
	if _, ok := c.Get("b"); ok {
		t.Fatal("b kept")
	}
	// Updating in place through Get.
	v, _ := c.Get("c")
	*v = 42
	if v, _ := c.Get("c"); *v != 42 {
		t.Fatalf("c = %d", *v)
	}
	// A heavier entry evicts as many as it needs to.
	c.Put("big", 9, EntryOverhead+2)
	if got := keys(&c); !slices.Equal(got, []string{"c", "big"}) || c.Bytes() != 2*EntryOverhead+1+EntryOverhead+2 {
		t.Fatalf("after big: %v, %d bytes", got, c.Bytes())
	}
	// Replacing an entry reweighs it.
	c.Put("big", 10, 1)
	if c.Bytes() != 2*(EntryOverhead+1) || c.Len() != 2 {
		t.Fatalf("reweighed: %d bytes, %d entries", c.Bytes(), c.Len())
	}
	// An entry over the whole budget is not kept.
	c.Put("huge", 0, 10*EntryOverhead)
	if _, ok := c.Get("huge"); ok || c.Len() != 0 || c.Bytes() != 0 {
		t.Fatalf("huge kept: %d entries, %d bytes", c.Len(), c.Bytes())
	}
	// Deleting during Oldest.
	for i := range 3 {
		c.Put(fmt.Sprint(i), i, 1)
	}
	c.Oldest(func(k string, v, size int) bool {
		if size != 1 {
			t.Errorf("size %d", size)
		}
		if v%2 == 0 {
			c.Delete(k)
		}
		return true
	})
	if got := keys(&c); !slices.Equal(got, []string{"1"}) {
		t.Fatalf("after deleting the even ones: %v", got)
	}
}

// TestCacheBounded puts many more keys than fit: the cache never weighs
// more than its budget.
func TestCacheBounded(t *testing.T) {
	var c Cache[string, int]
	const budget = 1 << 16
	c.SetBudget(budget)
	for i := range 100000 {
		k := fmt.Sprintf("channel-%d-%0*d", i, i%200, 0)
		c.Put(k, i, len(k))
		if c.Bytes() > budget {
			t.Fatalf("%d bytes after %d puts, budget %d", c.Bytes(), i+1, budget)
		}
	}
	if c.Len() == 0 {
		t.Fatal("empty")
	}
}

func TestCacheGetAllocs(t *testing.T) {
	var c Cache[string, int]
	c.Put("a", 1, 1)
	c.Put("b", 2, 1)
	if n := testing.AllocsPerRun(100, func() { _, _ = c.Get("a"); _, _ = c.Get("b") }); n != 0 {
		t.Errorf("Get: %v allocations, want 0", n)
	}
}

// TestCacheGetFront covers Get's shortcut for the most recently used
// entry: on a cache never used, after the front entry is deleted, and
// after another key became the front.
func TestCacheGetFront(t *testing.T) {
	var c Cache[string, int]
	if _, ok := c.Get("a"); ok {
		t.Fatal("Get on an empty cache found a")
	}
	c.Put("a", 1, 1)
	c.Put("b", 2, 1)
	for _, tc := range []struct {
		do   func()
		key  string
		want int // 0: absent
	}{
		{func() {}, "b", 2},                   // b is the front
		{func() {}, "a", 1},                   // a, looked up and moved to the front
		{func() { c.Delete("a") }, "a", 0},    // the front deleted
		{func() {}, "b", 2},                   // b is the front again
		{func() { c.Delete("b") }, "b", 0},    // the cache empty again
		{func() { c.Put("b", 3, 1) }, "b", 3}, // put again
	} {
		tc.do()
		v, ok := c.Get(tc.key)
		if got := 0; ok {
			got = *v
			if got != tc.want {
				t.Errorf("Get(%q) = %d, want %d", tc.key, got, tc.want)
			}
		} else if tc.want != 0 {
			t.Errorf("Get(%q) found nothing, want %d", tc.key, tc.want)
		}
	}
}
