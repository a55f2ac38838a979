package bench

import (
	"encoding/binary"
	"testing"

	"github.com/busline/bus/redistest"
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
