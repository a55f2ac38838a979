package bus

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// hashString hashes a topic for the match cache and the stripes of the
// literal map. It is wyhash's final mixing step over the string read eight
// bytes at a time, seeded per bus.
//
// hash/maphash was the first choice and measured a fifth of a cached
// publish: three calls deep, for topics that are mostly under 64 bytes. The
// hash only picks cache slots and stripes, and every hit is confirmed by
// comparing the topic, so a collision costs a cache miss, never a wrong
// delivery; an adversary who could force collisions would only slow their
// own topics to the uncached path.
func hashString(seed uint64, s string) uint64 {
	const (
		k0 = 0xa0761d6478bd642f
		k1 = 0xe7037ed1a0b428db
		k2 = 0x8ebc6af09c88c6e3
	)
	// Read-only view of the string's bytes; nothing writes through it.
	p := unsafe.Slice(unsafe.StringData(s), len(s))
	n := len(p)
	var a, b uint64
	switch {
	case n > 32:
		for len(p) > 32 {
			seed = mix(binary.LittleEndian.Uint64(p)^k1, binary.LittleEndian.Uint64(p[8:])^seed) ^
				mix(binary.LittleEndian.Uint64(p[16:])^k2, binary.LittleEndian.Uint64(p[24:])^seed)
			p = p[32:]
		}
		fallthrough
	case n > 16:
		// The last 32 bytes, overlapping what came before when n < 32.
		t := unsafe.Slice(unsafe.StringData(s), len(s))[n-32+max(0, 32-n):]
		if n < 32 {
			t = unsafe.Slice(unsafe.StringData(s), len(s))
		}
		seed = mix(binary.LittleEndian.Uint64(t)^k1, binary.LittleEndian.Uint64(t[8:])^seed)
		t = unsafe.Slice(unsafe.StringData(s), len(s))[n-16:]
		a, b = binary.LittleEndian.Uint64(t), binary.LittleEndian.Uint64(t[8:])
	case n >= 8:
		a, b = binary.LittleEndian.Uint64(p), binary.LittleEndian.Uint64(p[n-8:])
	case n >= 4:
		a = uint64(binary.LittleEndian.Uint32(p))<<32 | uint64(binary.LittleEndian.Uint32(p[n-4:]))
	case n > 0:
		a = uint64(p[0])<<16 | uint64(p[n>>1])<<8 | uint64(p[n-1])
	}
	return mix(a^k1^uint64(n), b^seed^k0)
}

func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}
