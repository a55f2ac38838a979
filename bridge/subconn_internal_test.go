package bridge

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestOwnConfig checks that the classic transport dials its own
// connections for a plain client, and falls back to go-redis's PubSub for
// a client with an OnConnect hook, which the tests of both paths use (the
// other clients rconn does not serve: rconn's TestFromClient).
func TestOwnConfig(t *testing.T) {
	plain := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer plain.Close()
	hooked := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", OnConnect: func(context.Context, *redis.Conn) error { return nil }})
	defer hooked.Close()
	if ownConfig(plain) == nil || ownConfig(hooked) != nil {
		t.Errorf("own connection for a plain client %v, for one with OnConnect %v; want true, false",
			ownConfig(plain) != nil, ownConfig(hooked) != nil)
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
