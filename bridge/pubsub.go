package bridge

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// pubsubTransport imports the classic pub/sub routes: one connection
// holding a SUBSCRIBE for every exact channel and a PSUBSCRIBE for every
// glob, read by one goroutine (loop). A Bridge has one when some import
// route is not durable and not sharded. Their exports go through the
// publisher.
type pubsubTransport struct {
	br *Bridge
	g  *group // loop; its context is the connection's, cancelled by stop
	// conn is the connection's state, for Connections.
	conn *conn

	mu      sync.Mutex // protects the fields below
	ps      *redis.PubSub
	ok      bool  // every subscription of the current connection confirmed
	err     error // the last refusal, until the next confirmation
	stopped bool
}

func newPubsubTransport(br *Bridge) *pubsubTransport {
	return &pubsubTransport{br: br, g: newGroup(context.Background()), conn: br.conns.add(newConn(ConnPubSub, redisAddr(br.rdb), ""))}
}

func (t *pubsubTransport) start() { t.g.run(t.loop) }

func (t *pubsubTransport) ready() (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ok, t.err
}

func (t *pubsubTransport) stop(context.Context) {
	t.mu.Lock()
	t.stopped = true
	ps := t.ps
	t.mu.Unlock()
	t.g.cancel()
	if ps != nil {
		_ = ps.Close() // ends the read in progress
	}
}

func (t *pubsubTransport) wait(ctx context.Context) int {
	t.g.wait(ctx, nil) // stopped already: giving up changes nothing
	return 0
}

func (t *pubsubTransport) stats(*Stats) {}

// setState records whether the subscriptions are confirmed and wakes Ready.
func (t *pubsubTransport) setState(ok bool, err error) {
	t.mu.Lock()
	if !t.stopped {
		t.ok, t.err = ok, err
	}
	t.mu.Unlock()
	t.br.changed.notify()
}

// loop owns the pub/sub connection: it subscribes, reads until the
// connection fails, and makes a new one after a jittered backoff, until
// stop. A fresh *redis.PubSub is used for each connection, so that the
// bridge, not go-redis, decides when to reconnect and knows when the
// subscriptions of the new connection are confirmed.
func (t *pubsubTransport) loop() {
	br := t.br
	ctx := t.g.ctx
	rl := readLoop{br: br, ctx: ctx, sub: t, in: br.newIngest(true, false, br.enqueue)}
	back := backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}
	fails := failures{every: br.cfg.ReconnectMax}
	first := true
	for {
		ps := br.rdb.Subscribe(ctx)
		t.mu.Lock()
		if t.stopped {
			t.mu.Unlock()
			_ = ps.Close()
			return
		}
		t.ps = ps
		t.mu.Unlock()

		connected, confirmed, err := rl.run(ps, first)
		_ = ps.Close()
		t.mu.Lock()
		t.ps = nil
		t.mu.Unlock()
		var subErr error
		if errors.Is(err, ErrSubscribe) {
			subErr = err
		}
		t.setState(false, subErr)
		if ctx.Err() != nil {
			return
		}
		t.conn.down(err)
		if confirmed {
			first = false
			back.reset()
			fails.succeeded()
		}
		switch {
		case errors.Is(err, ErrSubscribe):
			br.reportAttempt(&fails, err)
		case !connected:
			br.reportAttempt(&fails, &connectError{addr: redisAddr(br.rdb), err: err})
		default:
			br.reportAttempt(&fails, fmt.Errorf("%w: %w", ErrDisconnected, err))
		}
		if !sleep(ctx, back.next()) {
			return
		}
	}
}

// subscribe sends the classic subscriptions, SUBSCRIBE for the exact
// channels (sorted) and PSUBSCRIBE for the globs, and returns the commands
// sent.
func (t *pubsubTransport) subscribe(ctx context.Context, ps *redis.PubSub) ([]subCommand, error) {
	br := t.br
	var sent []subCommand
	channels, globs := br.RedisSubscriptions()
	if len(channels) > 0 {
		if err := ps.Subscribe(ctx, channels...); err != nil {
			return nil, err
		}
		sent = append(sent, subCommand{name: "SUBSCRIBE", args: channels})
	}
	if len(globs) > 0 {
		if err := ps.PSubscribe(ctx, globs...); err != nil {
			return nil, err
		}
		sent = append(sent, subCommand{name: "PSUBSCRIBE", args: globs})
	}
	return sent, nil
}

func (t *pubsubTransport) confirmed() {
	t.conn.up()
	t.setState(true, nil)
}

func (t *pubsubTransport) refused(err error) error { return fmt.Errorf("%w: %w", ErrSubscribe, err) }

// route returns the topic of m and the route that imports it, or false
// when m is not imported (counted).
//
// Redis sends one copy of a message per matching subscription. The copy
// of the exact subscription is the one imported when there is one,
// otherwise that of the first glob, in sorted order, whose bus patterns
// match the topic: Redis sent that copy, since a glob matches at least
// what its patterns match.
func (t *pubsubTransport) route(m *redis.Message) (string, *route, bool) {
	br := t.br
	c := &br.c
	topic, ok := strings.CutPrefix(m.Channel, br.cfg.Prefix)
	if !ok {
		c.filtered.Add(1)
		return "", nil, false
	}
	if m.Pattern == "" {
		if !br.exact[m.Channel] {
			c.filtered.Add(1)
			return "", nil, false
		}
	} else {
		if br.exact[m.Channel] {
			c.duplicateCopies.Add(1)
			return "", nil, false
		}
		owner := ""
	globs:
		for _, g := range br.globs {
			for _, match := range g.matches {
				if match(topic) {
					owner = g.glob
					break globs
				}
			}
		}
		switch owner {
		case "":
			c.filtered.Add(1)
			return "", nil, false
		case m.Pattern:
		default:
			c.duplicateCopies.Add(1)
			return "", nil, false
		}
	}
	r := br.importRoute(topic)
	if r == nil {
		c.filtered.Add(1)
		return "", nil, false
	}
	return topic, r, true
}
