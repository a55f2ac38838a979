package bench

import (
	"context"
	"encoding/binary"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// The bridge scenarios send events from one side to the other through one
// redis-server that the benchmark starts (redistest: a real
// redis-server on a free loopback port, killed at cleanup), end to end:
// published on one side, received on the other. Payloads are 64 bytes
// carrying their send time.

const bridgePayload = 64

// transport is one way of carrying events through Redis. setup prepares
// both sides; received payloads go to recv. send sends one payload (the
// transport may keep it until flush); flush sends what is held.
type transport struct {
	name  string
	setup func(tb testing.TB, srv *redistest.Server, recv func(payload []byte)) (send func([]byte), flush func())
	// none says why a library has no transport through Redis.
	none string
	// noRedis marks a transport that does not go through the
	// scenario's redis-server (NATS).
	noRedis bool
}

// bridgeServer starts the Redis of a bridge scenario. Pub/sub clients get no
// output-buffer limit, so that a burst measures throughput rather than
// Redis's disconnect policy.
func bridgeServer(tb testing.TB) *redistest.Server {
	return redistest.Start(tb, &redistest.Options{Args: []string{"--client-output-buffer-limit", "pubsub 0 0 0"}})
}

// stamp writes the send time into buf and returns it.
func stamp(buf []byte) []byte {
	binary.LittleEndian.PutUint64(buf, uint64(nanotime()))
	return buf
}

// sentAt reads the send time of a received payload.
func sentAt(p []byte) int64 { return int64(binary.LittleEndian.Uint64(p)) }

// redisCPU returns the CPU time the servers behind clients have used so
// far (used_cpu_user plus used_cpu_sys of INFO cpu), summed: measured
// around a benchmark's timed loop, it gives Redis's own cost per event,
// which the capacity model (SCALING.md) needs and the events/s of a shared
// machine hide.
func redisCPU(tb testing.TB, clients ...*redis.Client) time.Duration {
	tb.Helper()
	var total float64
	for _, c := range clients {
		info, err := c.Info(context.Background(), "cpu").Result()
		if err != nil {
			tb.Fatal(err)
		}
		for line := range strings.Lines(info) {
			k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
			if !ok || (k != "used_cpu_user" && k != "used_cpu_sys") {
				continue
			}
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				tb.Fatalf("INFO cpu: %s: %v", line, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// reportRedisCPU reports the Redis CPU time per event between two
// redisCPU readings, in ns.
func reportRedisCPU(b *testing.B, before, after time.Duration) {
	b.ReportMetric(float64(after-before)/float64(b.N), "redis-ns/ev")
}

// TestRedisCPU: the CPU time read from INFO cpu is positive and grows
// with work the server does.
func TestRedisCPU(t *testing.T) {
	srv := bridgeServer(t)
	c := srv.Client(t)
	before := redisCPU(t, c)
	if before <= 0 {
		t.Fatalf("redisCPU = %v, want > 0", before)
	}
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); redisCPU(t, c) <= before; {
		if time.Now().After(deadline) {
			t.Fatal("redisCPU did not grow after 10 s of commands")
		}
		pipe := c.Pipeline()
		for range 1000 {
			pipe.Publish(ctx, "bench:cpu", "x")
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
