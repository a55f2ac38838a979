package bridge

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestOwnConfig checks which clients the classic transport dials its own
// connections for, and which fall back to go-redis's PubSub.
func TestOwnConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		rdb  redis.UniversalClient
		own  bool
	}{
		{"client", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), true},
		{"ACL user and DB", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Username: "u", Password: "p", DB: 2}), true},
		{"OnConnect", redis.NewClient(&redis.Options{Addr: "127.0.0.1:1",
			OnConnect: func(context.Context, *redis.Conn) error { return nil }}), false},
		{"Sentinel", redis.NewFailoverClient(&redis.FailoverOptions{MasterName: "m", SentinelAddrs: []string{"127.0.0.1:1"}}), false},
		{"Ring", redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}}), false},
		{"Cluster", redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}}), false},
	} {
		if own := ownConfig(tc.rdb) != nil; own != tc.own {
			t.Errorf("%s: own connection %v, want %v", tc.name, own, tc.own)
		}
		_ = tc.rdb.Close()
	}
}

// pushOf returns m as go-redis's PubSub hands it to the read loop: strings
// of its own.
func pushOf(m *redis.Message) *push {
	p := new(push)
	p.set(m)
	return p
}

// inPlace returns m as the bridge's own connection hands it to the read
// loop: bytes of the connection's buffer, no strings.
func inPlace(m *redis.Message) *push {
	p := pushOf(m)
	p.name, p.own = "", false
	p.channel, p.pattern, p.payload = []byte(m.Channel), []byte(m.Pattern), []byte(m.Payload)
	return p
}

// origin says which connection p comes as from.
func (p *push) origin() string {
	if p.own {
		return "go-redis"
	}
	return "in place"
}
