package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// pubsubTransport imports the classic pub/sub routes: one connection
// holding a SUBSCRIBE for every exact channel and a PSUBSCRIBE for every
// glob of the route table, read by one goroutine (loop). A Bridge has one
// once some import route is not durable and not sharded. Their exports go
// through the publisher.
//
// The routes change while the connection lives: a second goroutine
// (syncLoop), woken by resync, sends the SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE
// and PUNSUBSCRIBE that bring the connection's subscriptions to the
// table's. go-redis lets them be sent while the loop reads. A new
// connection subscribes to the table of the moment; subMu keeps the two
// goroutines from sending at once, so that each sends from the table it
// read and what the connection has (have) stays true.
type pubsubTransport struct {
	br *Bridge
	g  *group // loop and syncLoop; its context is the connection's, cancelled by stop
	// conn is the connection's state, for Connections.
	conn *conn
	wake chan struct{} // a table change for syncLoop; room for one token

	subMu sync.Mutex      // serialises sending subscriptions; protects have
	have  map[string]bool // kind and name of what was sent on ps ("subscribe app:x"); nil before the first

	mu   sync.Mutex // protects the fields below
	ps   *redis.PubSub
	ok   bool            // every subscription of the current connection's first commands confirmed
	subs map[string]bool // kind and name of the subscriptions Redis confirmed on the current connection
	// inflight counts, by kind and name ("subscribe app:x"), the
	// commands sent on the current connection whose confirmation has
	// not come back: a subscription counts as confirmed only when none
	// is, or an earlier SUBSCRIBE's confirmation could stand for one
	// whose UNSUBSCRIBE is still on its way.
	inflight map[string]int
	// synced is the table the commands sent last were computed from: a
	// route is confirmed only once it is in it, or a sync under way
	// could still unsubscribe its channel for an earlier table.
	synced  *routeTable
	err     error // the last refusal, until the next confirmation
	stopped bool
}

func newPubsubTransport(br *Bridge) *pubsubTransport {
	return &pubsubTransport{br: br, g: newGroup(context.Background()), wake: make(chan struct{}, 1),
		conn: br.conns.add(newConn(ConnPubSub, redisAddr(br.rdb), ""))}
}

func (t *pubsubTransport) start() {
	t.g.run(t.loop)
	t.g.run(t.syncLoop)
}

// ready reports whether Redis confirmed every subscription of the table
// on the current connection.
func (t *pubsubTransport) ready() (bool, error) {
	tab := t.br.table.Load()
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.ok {
		return false, t.err
	}
	if t.synced != tab {
		return false, t.err
	}
	for ch := range tab.exact {
		if !t.confirmedLocked("subscribe " + ch) {
			return false, t.err
		}
	}
	for _, g := range tab.globs {
		if !t.confirmedLocked("psubscribe " + g.glob) {
			return false, t.err
		}
	}
	return true, nil
}

// confirmedRoute reports whether Redis confirmed, on the current
// connection, the subscription of kind to name that route r needs: r is
// in the table the last commands were computed from, and no command on
// name is waiting for its confirmation.
func (t *pubsubTransport) confirmedRoute(r *route, kind, name string) (bool, error) {
	if t == nil {
		return false, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	synced := t.synced != nil && t.synced.lookup(r.id) == r
	return t.ok && synced && t.confirmedLocked(kind+" "+name), t.err
}

// confirmedLocked reports whether the subscription key ("subscribe
// app:x") is confirmed with no command on it in flight; t.mu is held.
func (t *pubsubTransport) confirmedLocked(key string) bool {
	return t.subs[key] && t.inflight[key] == 0
}

// subscriptionKind returns the subscription a command or confirmation of
// kind is about ("subscribe" for "unsubscribe", "psubscribe" for
// "punsubscribe") and whether it ends it.
func subscriptionKind(kind string) (base string, ends bool) {
	switch kind {
	case "unsubscribe":
		return "subscribe", true
	case "punsubscribe":
		return "psubscribe", true
	case "sunsubscribe":
		return "ssubscribe", true
	}
	return kind, false
}

// sending records, before they are sent, commands of kind on names,
// computed from table tab; t.mu is held. An UNSUBSCRIBE or PUNSUBSCRIBE
// ends the subscription's confirmation at once.
func (t *pubsubTransport) sending(tab *routeTable, kind string, names []string) {
	if t.inflight == nil {
		t.inflight = map[string]int{}
	}
	base, un := subscriptionKind(kind)
	for _, n := range names {
		key := base + " " + n
		t.inflight[key]++
		if un {
			delete(t.subs, key)
		}
	}
	t.synced = tab
}

// subscribed records a confirmation of the read loop: a subscription
// (on) or the end of one.
func (t *pubsubTransport) subscribed(kind, name string, on bool) {
	t.mu.Lock()
	if t.subs == nil {
		t.subs = map[string]bool{}
	}
	base, _ := subscriptionKind(kind)
	key := base + " " + name
	if n := t.inflight[key]; n > 1 {
		t.inflight[key] = n - 1
	} else {
		delete(t.inflight, key)
	}
	if on {
		t.subs[key] = true
	} else {
		delete(t.subs, key)
	}
	t.mu.Unlock()
	t.br.changed.notify()
}

// unsubscribed reports whether the end of a subscription, which Redis
// confirmed, means that the channel's slot moved: never for classic ones,
// which end only when the bridge unsubscribes.
func (t *pubsubTransport) unsubscribed(string) bool { return false }

// resync asks syncLoop to bring the subscriptions to the table's.
func (t *pubsubTransport) resync() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// syncLoop sends the subscription changes of the table, until stop.
func (t *pubsubTransport) syncLoop() {
	for {
		select {
		case <-t.wake:
			t.sync(t.g.ctx)
		case <-t.g.ctx.Done():
			return
		}
	}
}

// sync sends on the current connection the commands that make its
// subscriptions the table's: what the table has and the connection not,
// and what the connection has and the table not. Without a connection
// there is nothing to do: the next one subscribes to the table. A command
// that cannot be sent means a broken connection, which the read loop
// sees and replaces.
func (t *pubsubTransport) sync(ctx context.Context) {
	t.subMu.Lock()
	defer t.subMu.Unlock()
	t.mu.Lock()
	ps := t.ps
	t.mu.Unlock()
	if ps == nil || t.have == nil {
		return
	}
	tab := t.br.table.Load()
	channels, globs := tab.subscriptions()
	var sub, psub, unsub, punsub []string
	for _, ch := range channels {
		if !t.have["subscribe "+ch] {
			sub = append(sub, ch)
		}
	}
	for _, g := range globs {
		if !t.have["psubscribe "+g] {
			psub = append(psub, g)
		}
	}
	for k := range t.have {
		kind, name, _ := strings.Cut(k, " ")
		switch {
		case kind == "subscribe" && !tab.exact[name]:
			unsub = append(unsub, name)
		case kind == "psubscribe" && !slices.Contains(globs, name):
			punsub = append(punsub, name)
		}
	}
	// Recorded before anything is sent, with the table they come from,
	// so that no RouteReady takes a confirmation these commands are
	// about to undo (see confirmedRoute).
	t.mu.Lock()
	if t.ps != ps {
		// The connection ended since: the loop cleared what it had,
		// and the next one subscribes to the table.
		t.mu.Unlock()
		return
	}
	t.sending(tab, "subscribe", sub)
	t.sending(tab, "psubscribe", psub)
	t.sending(tab, "unsubscribe", unsub)
	t.sending(tab, "punsubscribe", punsub)
	t.mu.Unlock()
	t.br.changed.notify() // a table with nothing to send is synced now
	send := func(kind string, names []string, f func(context.Context, ...string) error) {
		if len(names) == 0 || f(ctx, names...) != nil {
			return
		}
		base, un := subscriptionKind(kind)
		for _, n := range names {
			if un {
				delete(t.have, base+" "+n)
			} else {
				t.have[kind+" "+n] = true
			}
		}
	}
	send("subscribe", sub, ps.Subscribe)
	send("psubscribe", psub, ps.PSubscribe)
	send("unsubscribe", unsub, ps.Unsubscribe)
	send("punsubscribe", punsub, ps.PUnsubscribe)
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
		t.subs, t.inflight, t.synced = nil, nil, nil
		t.mu.Unlock()
		t.subMu.Lock()
		t.have = nil
		t.subMu.Unlock()
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

// subscribe sends the classic subscriptions of the table, SUBSCRIBE for
// the exact channels (sorted) and PSUBSCRIBE for the globs, and returns
// the commands sent.
func (t *pubsubTransport) subscribe(ctx context.Context, ps *redis.PubSub) ([]subCommand, error) {
	t.subMu.Lock()
	defer t.subMu.Unlock()
	var sent []subCommand
	have := map[string]bool{}
	tab := t.br.table.Load()
	channels, globs := tab.subscriptions()
	t.mu.Lock()
	t.sending(tab, "subscribe", channels)
	t.sending(tab, "psubscribe", globs)
	t.mu.Unlock()
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
	for _, c := range sent {
		for _, a := range c.args {
			have[c.kind()+" "+a] = true
		}
	}
	t.have = have
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
	tab := br.table.Load()
	topic, ok := strings.CutPrefix(m.Channel, br.cfg.Prefix)
	if !ok {
		c.filtered.Add(1)
		return "", nil, false
	}
	if m.Pattern == "" {
		if !tab.exact[m.Channel] {
			c.filtered.Add(1)
			return "", nil, false
		}
	} else {
		if tab.exact[m.Channel] {
			c.duplicateCopies.Add(1)
			return "", nil, false
		}
		owner := ""
	globs:
		for _, g := range tab.globs {
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
	r := tab.importRoute(topic)
	if r == nil {
		c.filtered.Add(1)
		return "", nil, false
	}
	return topic, r, true
}
