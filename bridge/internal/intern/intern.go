// Package intern caches the strings every imported envelope repeats (its
// source instance ID and its content type), so that converting their bytes
// to strings does not allocate on every event: without it, those two
// conversions were a tenth of the import path's allocations.
package intern

import (
	"hash/maphash"
	"sync/atomic"
)

// A Table is a lock-free, fixed-size cache of recent strings: a slot per
// hash, overwritten on a miss. A miss only costs the allocation that
// interning saves on a hit. The zero Table is empty and ready to use; it
// is safe for concurrent use and must not be copied after first use.
type Table struct {
	slots [256]atomic.Pointer[string]
}

var seed = maphash.MakeSeed()

// String returns string(b), reusing a string from t when it has one. It
// does not allocate on a hit.
func (t *Table) String(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	slot := &t.slots[maphash.Bytes(seed, b)%uint64(len(t.slots))]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	slot.Store(&s)
	return s
}
