package bridge

import (
	"fmt"
	"strconv"
	"strings"
)

// Channel naming of sharded routes. A non-Go client that wants to take
// part in a raw sharded route computes the same names:
//
//	p       = FNV-1a-32(topic bytes) mod Partitions     (when Partitions > 0)
//	channel = Prefix + "{" + decimal(p) + "}." + topic  (when Partitions > 0)
//	channel = Prefix + topic                            (when Partitions == 0)
//
// and uses SPUBLISH and SSUBSCRIBE on it. FNV-1a-32 starts from 2166136261
// and, for each byte, XORs it in and multiplies by 16777619 (mod 2^32).
// Redis hashes only the text between the first "{" and the next "}" of a
// channel, so all the topics of one partition share one hash slot, and the
// Partitions tags spread them over at most Partitions slots.

// HashSlot returns the Redis Cluster hash slot (0 to 16383) of a key or a
// sharded channel name, as CLUSTER KEYSLOT computes it: CRC16 (XMODEM) of
// the hash tag, the text between the first "{" and the first "}" after it
// when that text is not empty, otherwise of the whole name, modulo 16384.
// It is safe for concurrent use and does not allocate.
func HashSlot(name string) int {
	if i := strings.IndexByte(name, '{'); i >= 0 {
		if j := strings.IndexByte(name[i+1:], '}'); j > 0 {
			name = name[i+1 : i+1+j]
		}
	}
	return int(crc16(name) & (numSlots - 1))
}

// numSlots is the number of hash slots of a Redis Cluster.
const numSlots = 16384

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum
// Redis Cluster uses for key slots.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^s[i]]
	}
	return crc
}

var crc16Table = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

// Partition returns the partition of topic among partitions (which must be
// positive): FNV-1a-32 of the topic's bytes modulo partitions. It is safe
// for concurrent use and does not allocate.
func Partition(topic string, partitions int) int {
	h := uint32(2166136261)
	for i := 0; i < len(topic); i++ {
		h ^= uint32(topic[i])
		h *= 16777619
	}
	return int(h % uint32(partitions))
}

// ShardChannel returns the sharded channel of topic for a bridge on a
// cluster with the given Options.Prefix and Options.Partitions: prefix +
// "{" + Partition(topic, partitions) + "}." + topic, or prefix + topic when
// partitions is 0 or less. Exact-topic routes of a bridge on a
// *redis.ClusterClient use this channel with SPUBLISH and SSUBSCRIBE; see
// the package documentation. It is safe for concurrent use.
func ShardChannel(prefix, topic string, partitions int) string {
	if partitions <= 0 {
		return prefix + topic
	}
	return prefix + "{" + strconv.Itoa(Partition(topic, partitions)) + "}." + topic
}

// maxPartitions bounds Options.Partitions: there are no more slots.
const maxPartitions = numSlots

// checkPartitions validates Options.Partitions against the prefix.
func checkPartitions(o *Options) error {
	switch {
	case o.Partitions < 0:
		return fmt.Errorf("%w: negative Partitions", ErrInvalidOptions)
	case o.Partitions > maxPartitions:
		return fmt.Errorf("%w: Partitions %d over %d, the number of hash slots", ErrInvalidOptions, o.Partitions, maxPartitions)
	case o.Partitions > 0 && strings.ContainsAny(o.Prefix, "{}"):
		// Redis would take a tag of the prefix for the hash tag and put
		// every channel in one slot.
		return fmt.Errorf("%w: Prefix %q holds a brace, which defeats the partition tags", ErrInvalidOptions, o.Prefix)
	}
	return nil
}
