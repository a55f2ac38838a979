package bridge

import (
	"hash/maphash"
	"sync/atomic"
)

// Interning of the strings every imported envelope repeats: its source
// instance ID and its content type. Converting their bytes to strings
// cost two allocations per imported event, a tenth of the import path's.

// internTable is a lock-free, fixed-size cache of recent strings: a slot
// per hash, overwritten on a miss. A miss only costs the allocation that
// interning saves on a hit.
type internTable [256]atomic.Pointer[string]

var (
	internSeed    = maphash.MakeSeed()
	sourceStrings internTable
)

// intern returns string(b), reusing a string from t when it has one.
func (t *internTable) intern(b []byte) string {
	slot := &t[maphash.Bytes(internSeed, b)%uint64(len(t))]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	slot.Store(&s)
	return s
}

// contentTypeString returns string(b), without allocating for the content
// types the codecs of this package produce.
func contentTypeString(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case ContentTypeJSON:
		return ContentTypeJSON
	case ContentTypeText:
		return ContentTypeText
	case ContentTypeBytes:
		return ContentTypeBytes
	}
	return string(b)
}
