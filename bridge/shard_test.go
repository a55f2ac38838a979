package bridge_test

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"testing"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/redis/go-redis/v9"
)

// refSlot is a straightforward reference for HashSlot: the hash tag found
// with strings.Cut, CRC-16/XMODEM computed bit by bit.
func refSlot(name string) int {
	if _, after, ok := strings.Cut(name, "{"); ok {
		if tag, _, ok := strings.Cut(after, "}"); ok && tag != "" {
			name = tag
		}
	}
	var crc uint16
	for _, c := range []byte(name) {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

func TestHashSlot(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int
	}{
		{"123456789", 0x31C3}, // the CRC-16/XMODEM check value
		{"somekey", 11058},    // the examples of the CLUSTER KEYSLOT documentation
		{"foo{hash_tag}", 2515},
		{"bar{hash_tag}", 2515},
		{"hash_tag", 2515},
		{"", 0},
		{"{}", refSlot("{}")}, // an empty tag: the whole name is hashed
		{"foo{}{bar}", refSlot("foo{}{bar}")},
		{"foo{{bar}}zap", refSlot("{bar")}, // the tag runs to the first "}"
		{"foo{bar}{zap}", refSlot("bar")},
		{"x{y", refSlot("x{y")},
	} {
		if got := bridge.HashSlot(tc.name); got != tc.want {
			t.Errorf("HashSlot(%q) = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func FuzzHashSlot(f *testing.F) {
	for _, s := range []string{"", "a", "{", "}", "{}", "{a}", "a{b}c", "a{}b{c}", "{{}}", "é{ü}", "p:{7}.sensor.t1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got := bridge.HashSlot(name)
		if want := refSlot(name); got != want {
			t.Fatalf("HashSlot(%q) = %d, reference %d", name, got, want)
		}
		if got < 0 || got >= 16384 {
			t.Fatalf("HashSlot(%q) = %d out of range", name, got)
		}
	})
}

func refPartition(topic string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(topic))
	return int(h.Sum32() % uint32(n))
}

func FuzzPartition(f *testing.F) {
	f.Add("orders.created", 16)
	f.Add("", 1)
	f.Add("é", 16384)
	f.Fuzz(func(t *testing.T, topic string, n int) {
		if n <= 0 || n > 16384 {
			return
		}
		if got, want := bridge.Partition(topic, n), refPartition(topic, n); got != want {
			t.Fatalf("Partition(%q, %d) = %d, FNV-1a reference %d", topic, n, got, want)
		}
		ch := bridge.ShardChannel("app:", topic, n)
		if want := "app:{" + strconv.Itoa(refPartition(topic, n)) + "}." + topic; ch != want {
			t.Fatalf("ShardChannel = %q, want %q", ch, want)
		}
		// The partition tag decides the slot, whatever the topic holds.
		if got, want := bridge.HashSlot(ch), refSlot(strconv.Itoa(refPartition(topic, n))); got != want {
			t.Fatalf("slot of %q = %d, want the tag's %d", ch, got, want)
		}
	})
}

// TestPartitionSpread checks that partition tags spread many topics evenly:
// 16000 topics over 16 partitions, each within 20% of the mean.
func TestPartitionSpread(t *testing.T) {
	const topics, n = 16000, 16
	counts := make([]int, n)
	slots := map[int]bool{}
	for k := range topics {
		topic := "tenant" + strconv.Itoa(k%97) + ".orders." + strconv.Itoa(k)
		counts[bridge.Partition(topic, n)]++
		slots[bridge.HashSlot(bridge.ShardChannel("app:", topic, n))] = true
	}
	for p, c := range counts {
		if c < topics/n*8/10 || c > topics/n*12/10 {
			t.Errorf("partition %d holds %d topics, mean %d: %v", p, c, topics/n, counts)
		}
	}
	if len(slots) != n {
		t.Errorf("%d topics in %d slots, want %d", topics, len(slots), n)
	}
}

func TestShardChannel(t *testing.T) {
	for _, tc := range []struct {
		prefix, topic string
		n             int
		want          string
	}{
		{"app:", "orders.created", 0, "app:orders.created"},
		{"app:", "orders.created", -1, "app:orders.created"},
		{"", "a", 1, "{0}.a"},
		{"app:", "orders.created", 16, "app:{" + strconv.Itoa(refPartition("orders.created", 16)) + "}.orders.created"},
	} {
		if got := bridge.ShardChannel(tc.prefix, tc.topic, tc.n); got != tc.want {
			t.Errorf("ShardChannel(%q, %q, %d) = %q, want %q", tc.prefix, tc.topic, tc.n, got, tc.want)
		}
	}
}

func TestShardAllocs(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		_ = bridge.HashSlot("app:{12}.orders.created")
		_ = bridge.Partition("orders.created", 16)
	}); n != 0 {
		t.Errorf("HashSlot and Partition allocate %.1f times", n)
	}
}

// TestPartitionOptions checks the validation of Options.Partitions. New
// returns before it uses the client, which is never connected.
func TestPartitionOptions(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, tc := range []struct {
		name string
		opts bridge.Options
		ok   bool
	}{
		{"negative", bridge.Options{Partitions: -1}, false},
		{"more than the slots", bridge.Options{Partitions: 16385}, false},
		{"as many as the slots", bridge.Options{Partitions: 16384}, true},
		{"brace in the prefix", bridge.Options{Prefix: "app{x}:", Partitions: 8}, false},
		{"lone brace in the prefix", bridge.Options{Prefix: "app}:", Partitions: 8}, false},
		{"brace without partitions", bridge.Options{Prefix: "app{x}:"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bus.New(nil)
			br, err := bridge.New(b, rdb, &tc.opts)
			if tc.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				_ = br.Close(t.Context())
				return
			}
			if !errors.Is(err, bridge.ErrInvalidOptions) {
				t.Fatalf("New: %v, want ErrInvalidOptions", err)
			}
		})
	}
}

// ExampleShardChannel shows the channel names a bridge on a Redis Cluster
// uses for exact topics, and that a non-Go client must use with SPUBLISH
// and SSUBSCRIBE to take part in a raw route.
func ExampleShardChannel() {
	// Without partitions: the topic's own slot.
	fmt.Println(bridge.ShardChannel("app:", "orders.created", 0))
	// With Options.Partitions = 16: FNV-1a of the topic, modulo 16.
	ch := bridge.ShardChannel("app:", "orders.created", 16)
	fmt.Println(ch, bridge.Partition("orders.created", 16), bridge.HashSlot(ch))
	// Every topic of partition 5 lands in the slot of "5".
	fmt.Println(bridge.HashSlot("app:{5}.anything") == bridge.HashSlot("5"))
	// Output:
	// app:orders.created
	// app:{2}.orders.created 2 5649
	// true
}
