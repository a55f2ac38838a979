package bench

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/busline/bus/redistest"
	"github.com/centrifugal/centrifuge"
)

// github.com/centrifugal/centrifuge's RedisBroker: how centrifuge nodes
// pass publications to each other through Redis. The sending node
// publishes with Node.Publish (no history: plain PUBLISH, one call per
// event, waiting for its reply, over rueidis); the receiving node's broker
// subscribes the channel, as a node does for its first client subscribed
// to it, and hands each publication to its BrokerEventHandler. Here that
// handler is the benchmark's instead of the node's, which would fan the
// publication out to the node's websocket clients: there are none, and
// that fan-out is not what is compared.

// centrifugeSeq gives each setup prefixes of its own, so that a setup's
// receiver never hears the publications of an earlier one.
var centrifugeSeq atomic.Int64

// centrifugeReceiver is the receiving node's broker event handler.
type centrifugeReceiver struct{ recv func([]byte) }

func (h centrifugeReceiver) HandlePublication(_ string, pub *centrifuge.Publication, _ centrifuge.StreamPosition, _ bool, _ *centrifuge.Publication) error {
	h.recv(pub.Data)
	return nil
}

func (centrifugeReceiver) HandleJoin(string, *centrifuge.ClientInfo) error  { return nil }
func (centrifugeReceiver) HandleLeave(string, *centrifuge.ClientInfo) error { return nil }

var _ centrifuge.BrokerEventHandler = centrifugeReceiver{}

// newCentrifugeBroker makes a node and its Redis broker on srv; the
// cleanup shuts both down.
func newCentrifugeBroker(tb testing.TB, srv *redistest.Server, prefix string) (*centrifuge.Node, *centrifuge.RedisBroker) {
	tb.Helper()
	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelNone})
	if err != nil {
		tb.Fatal(err)
	}
	shard, err := centrifuge.NewRedisShard(node, centrifuge.RedisShardConfig{Address: srv.Addr()})
	if err != nil {
		tb.Fatal(err)
	}
	broker, err := centrifuge.NewRedisBroker(node, centrifuge.RedisBrokerConfig{Prefix: prefix, Shards: []*centrifuge.RedisShard{shard}})
	if err != nil {
		tb.Fatal(err)
	}
	node.SetBroker(broker)
	tb.Cleanup(func() {
		_ = node.Shutdown(context.Background())
		_ = broker.Close(context.Background())
		shard.Close()
	})
	return node, broker
}

func setupCentrifuge(tb testing.TB, srv *redistest.Server, recv func([]byte)) (func([]byte), func()) {
	prefix := "cf" + strconv.FormatInt(centrifugeSeq.Add(1), 10)
	const channel = "bench.x"
	_, rb := newCentrifugeBroker(tb, srv, prefix)
	if err := rb.RegisterBrokerEventHandler(centrifugeReceiver{recv}); err != nil {
		tb.Fatal(err)
	}
	if err := rb.Subscribe(channel); err != nil {
		tb.Fatal(err)
	}
	sender, _ := newCentrifugeBroker(tb, srv, prefix)
	if err := sender.Run(); err != nil {
		tb.Fatal(err)
	}
	return func(p []byte) {
		// The broker encodes the data into its Publication before
		// Publish returns: no copy needed.
		if _, err := sender.Publish(channel, p); err != nil {
			tb.Error(err)
		}
	}, func() {}
}
