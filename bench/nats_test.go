package bench

import (
	"testing"
	"time"

	"github.com/busline/bus/redistest"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NATS: an embedded nats-server (github.com/nats-io/nats-server/v2) on a
// free loopback port, one nats.go publisher connection and one subscriber
// connection, a plain subject, no JetStream. It is the alternative to
// Redis altogether: the server the events cross is NATS's, not
// redis-server, so the Redis server of the scenario is not used. The
// server runs in the benchmark's process: its allocations are counted in
// allocs/op and its goroutines share the two cores with the benchmark (a
// redis-server shares the cores too, but its allocations are not counted).
//
// nats.go buffers publishes and writes them from a flusher goroutine, as
// the bridge's outbox does; flush is Conn.Flush, which writes what is
// buffered and waits for the server's PONG.

const natsBenchSubject = "bench.x"

// startNATS starts an embedded nats-server on a free loopback port; the
// cleanup shuts it down.
func startNATS(tb testing.TB) *server.Server {
	tb.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true})
	if err != nil {
		tb.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		tb.Fatal("nats-server not ready after 10s")
	}
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// natsConnect connects to s; the cleanup closes the connection.
func natsConnect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

func setupNATS(tb testing.TB, _ *redistest.Server, recv func([]byte)) (func([]byte), func()) {
	s := startNATS(tb)
	sub := natsConnect(tb, s)
	// nats.go's default pending limits (512k messages, 64 MiB) would
	// drop a long burst the handler falls behind on: lift them, as the
	// bridge's queues are sized to hold a burst.
	ns, err := sub.Subscribe(natsBenchSubject, func(m *nats.Msg) { recv(m.Data) })
	if err != nil {
		tb.Fatal(err)
	}
	if err := ns.SetPendingLimits(-1, -1); err != nil {
		tb.Fatal(err)
	}
	if err := sub.Flush(); err != nil { // the server has the subscription
		tb.Fatal(err)
	}
	pub := natsConnect(tb, s)
	return func(p []byte) {
			// Publish copies p into the connection's buffer.
			if err := pub.Publish(natsBenchSubject, p); err != nil {
				tb.Error(err)
			}
		}, func() {
			if err := pub.Flush(); err != nil {
				tb.Error(err)
			}
		}
}
