package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/rconn"
	"github.com/busline/bus/bridge/internal/resp"
	"github.com/redis/go-redis/v9"
)

// subConn is the connection a read loop reads: the classic transport's
// (respConn when the bridge can dial one of its own, go-redis's PubSub
// otherwise) or a node's sharded one (go-redis's). The read loop alone
// calls receive; send may be called from another goroutine at the same
// time (a transport's table sync), and close from any, ending a receive in
// progress.
type subConn interface {
	// send sends a subscription command.
	send(ctx context.Context, c subCommand) error
	// ping sends a PING with payload, answered by a "pong" push.
	ping(ctx context.Context, payload string) error
	// receive returns the next reply, valid until the next receive: a
	// timeout error (isTimeout) if none comes by until, wait from now; an
	// error reply as an error (isRedisError), after which the connection
	// is read further; any other error ends the connection.
	receive(ctx context.Context, until time.Time, wait time.Duration) (*push, error)
	close() error
}

var (
	_ subConn = (*respConn)(nil)
	_ subConn = (*pubsubConn)(nil)
)

// push is one reply of a subscribed connection: a message, a subscription
// confirmation or a PING's answer.
type push struct {
	// kind is that of Redis's reply ("message", "pmessage", "smessage",
	// "subscribe", ..., "pong"); "" for one the read loop ignores.
	kind string
	// channel is the message's channel, or the name a confirmation is
	// about; name is the same as a string when the connection made one
	// for this reply alone (go-redis), "" otherwise.
	channel []byte
	name    string
	pattern []byte // the glob of a pmessage
	payload []byte // the message, or the PING's payload
	// own says that payload is this reply's memory alone (see
	// inbound.own); otherwise it is the connection's buffer, which the
	// next receive reuses.
	own bool
}

// isMessage reports whether p carries a message.
func (p *push) isMessage() bool {
	return p.kind == "message" || p.kind == "pmessage" || p.kind == "smessage"
}

// nameString returns the channel or glob p is about as a string of its own.
func (p *push) nameString() string {
	if p.name != "" || len(p.channel) == 0 {
		return p.name
	}
	return string(p.channel)
}

// respConn is a connection of the bridge's own (package rconn), read in
// place: a message costs no allocation to read. See DESIGN.md, "The
// classic connection".
type respConn struct {
	c *rconn.Conn
	p resp.Push
	m push
}

// dialResp dials a connection with cfg.
func dialResp(ctx context.Context, cfg *rconn.Config) (*respConn, error) {
	c, err := rconn.Dial(ctx, cfg, 0)
	if err != nil {
		return nil, err
	}
	return &respConn{c: c}, nil
}

func (c *respConn) send(_ context.Context, sc subCommand) error {
	return c.c.Send(append([]string{sc.name}, sc.args...)...)
}

func (c *respConn) ping(_ context.Context, payload string) error { return c.c.Send("PING", payload) }

func (c *respConn) receive(_ context.Context, until time.Time, _ time.Duration) (*push, error) {
	if err := c.c.Receive(&c.p, until); err != nil {
		return nil, err
	}
	c.m = push{kind: c.p.Kind.String(), channel: c.p.Channel, pattern: c.p.Pattern, payload: c.p.Payload}
	return &c.m, nil
}

func (c *respConn) close() error { return c.c.Close() }

// pubsubConn reads go-redis's PubSub: for the clients rconn does not serve
// (rconn.ErrUnsupported), and for sharded subscriptions.
type pubsubConn struct {
	ps *redis.PubSub
	m  push
}

func (c *pubsubConn) send(ctx context.Context, sc subCommand) error {
	switch sc.name {
	case "SUBSCRIBE":
		return c.ps.Subscribe(ctx, sc.args...)
	case "PSUBSCRIBE":
		return c.ps.PSubscribe(ctx, sc.args...)
	case "UNSUBSCRIBE":
		return c.ps.Unsubscribe(ctx, sc.args...)
	case "PUNSUBSCRIBE":
		return c.ps.PUnsubscribe(ctx, sc.args...)
	case "SSUBSCRIBE":
		return c.ps.SSubscribe(ctx, sc.args...)
	case "SUNSUBSCRIBE":
		return c.ps.SUnsubscribe(ctx, sc.args...)
	}
	return fmt.Errorf("bridge: no such subscription command %s", sc.name)
}

func (c *pubsubConn) ping(ctx context.Context, payload string) error { return c.ps.Ping(ctx, payload) }

func (c *pubsubConn) receive(ctx context.Context, _ time.Time, wait time.Duration) (*push, error) {
	msg, err := c.ps.ReceiveTimeout(ctx, wait)
	if err != nil {
		return nil, err
	}
	c.m.set(msg)
	return &c.m, nil
}

func (c *pubsubConn) close() error { return c.ps.Close() }

// set makes p the reply msg that go-redis's PubSub returned: a
// *redis.Message, *redis.Subscription or *redis.Pong; any other is
// ignored (kind ""). The strings are go-redis's, the message's alone.
func (p *push) set(msg any) {
	switch m := msg.(type) {
	case *redis.Message:
		kind := "message"
		if m.Pattern != "" {
			kind = "pmessage"
		}
		*p = push{kind: kind, channel: readOnly(m.Channel), name: m.Channel, pattern: readOnly(m.Pattern),
			payload: readOnly(m.Payload), own: true}
	case *redis.Subscription:
		*p = push{kind: m.Kind, channel: readOnly(m.Channel), name: m.Channel}
	case *redis.Pong:
		*p = push{kind: "pong", payload: readOnly(m.Payload)}
	default:
		*p = push{}
	}
}

// dialSub makes the classic transport's next connection: one of its own
// when rconn can dial the client's (t.own), else go-redis's PubSub, which
// connects when the first subscription is sent.
func (t *pubsubTransport) dialSub(ctx context.Context) (subConn, error) {
	if t.own == nil {
		return &pubsubConn{ps: t.br.rdb.Subscribe(ctx)}, nil
	}
	return dialResp(ctx, t.own)
}

// ownConfig returns how the classic transport dials its own connections
// for rdb, or nil to use go-redis's PubSub (rconn.ErrUnsupported).
func ownConfig(rdb redis.UniversalClient) *rconn.Config {
	cfg, err := rconn.FromClient(rdb)
	if errors.Is(err, rconn.ErrUnsupported) {
		return nil
	}
	return cfg
}

// channelNames keeps the channels of the messages a read loop received as
// strings, so that reading a message in place costs no string for its
// channel once it was seen: the channel names the event's sequence and is
// kept in the tracker, so it must be a string of its own. Its memory is
// bounded: it forgets everything when full. A read loop owns one; it is
// not safe for concurrent use.
type channelNames struct {
	m     map[string]string
	bytes int
}

const (
	maxChannelNames     = 4096
	maxChannelNameBytes = 1 << 20
)

// name returns b as a string. A channel longer than any topic with prefix
// is returned as a view of b, without a copy: it is never a topic, so the
// route does not import it or ingest rejects it before keeping anything
// (an error quotes a copy of its start), and a flood of long channels
// costs no memory.
func (c *channelNames) name(b []byte, prefix string) string {
	if len(b) > len(prefix)+bus.MaxTopicLen {
		return unsafe.String(unsafe.SliceData(b), len(b))
	}
	if s, ok := c.m[string(b)]; ok {
		return s
	}
	if c.m == nil || len(c.m) >= maxChannelNames || c.bytes+len(b) > maxChannelNameBytes {
		c.m, c.bytes = make(map[string]string), 0
	}
	s := string(b)
	c.m[s] = s
	c.bytes += len(s)
	return s
}
