package bridge

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"

	"github.com/busline/bus/bridge/internal/rconn"
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

	// liveExact and liveGlobs are the channels and globs subscribed on
	// the current connection as the read loop sees it, confirmations
	// and messages in the order Redis sent them: which copies of a
	// message Redis sent follows from them, not from the table, while a
	// SUBSCRIBE or UNSUBSCRIBE is on its way. The read loop's alone.
	liveExact, liveGlobs map[string]bool

	subMu sync.Mutex      // serialises sending subscriptions; protects have
	have  map[string]bool // kind and name of what was sent on cn ("subscribe app:x"); nil before the first

	// cmds are the commands sent after the connection's first ones.
	cmds laterCommands

	// own is how to dial connections of the bridge's own, nil to use
	// go-redis's PubSub (see subconn.go).
	own *rconn.Config

	mu   sync.Mutex      // protects the fields below
	cn   subConn         // the current connection, nil between two
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
	synced *routeTable
	// denied holds, by kind and name, the subscriptions Redis refused
	// when a command sent after the first ones asked for them (a route
	// added at run time the ACL user may not read): the connection stays
	// up for the others, and RouteReady and Ready return the refusal.
	// They are asked for again at each table change and on each new
	// connection, after its first commands.
	denied  map[string]error
	err     error // the last refusal, until the next confirmation
	stopped bool
}

func newPubsubTransport(br *Bridge) *pubsubTransport {
	return &pubsubTransport{br: br, g: newGroup(context.Background()), wake: make(chan struct{}, 1),
		conn: br.conns.add(newConn(ConnPubSub, redisAddr(br.rdb), "")), own: ownConfig(br.rdb)}
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
			return false, t.errFor("subscribe " + ch)
		}
	}
	for _, g := range tab.globs {
		if !t.confirmedLocked("psubscribe " + g.glob) {
			return false, t.errFor("psubscribe " + g.glob)
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
	return t.ok && synced && t.confirmedLocked(kind+" "+name), t.errFor(kind + " " + name)
}

// confirmedLocked reports whether the subscription key ("subscribe
// app:x") is confirmed with no command on it in flight; t.mu is held.
func (t *pubsubTransport) confirmedLocked(key string) bool {
	return t.subs[key] && t.inflight[key] == 0
}

// errFor returns why subscription key is not confirmed, if known: its
// refusal, or the connection's. t.mu is held.
func (t *pubsubTransport) errFor(key string) error {
	if err := t.denied[key]; err != nil {
		return err
	}
	return t.err
}

func (t *pubsubTransport) later() *laterCommands { return &t.cmds }

// refusedLater records that Redis refused c, a command sent after the
// connection's first ones, with err: its subscriptions are recorded as
// refused and reported, and the connection stays up.
func (t *pubsubTransport) refusedLater(c subCommand, err error) bool {
	base, _ := subscriptionKind(c.kind())
	t.mu.Lock()
	if t.denied == nil {
		t.denied = map[string]error{}
	}
	for _, n := range c.args {
		key := base + " " + n
		countDown(t.inflight, key)
		t.denied[key] = err
	}
	t.mu.Unlock()
	t.br.reportLast(err)
	t.br.changed.notify()
	return true
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

// sending records, before they are sent, commands of kind on names; t.mu
// is held. An UNSUBSCRIBE or PUNSUBSCRIBE ends the subscription's
// confirmation at once.
func (t *pubsubTransport) sending(kind string, names []string) {
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
}

// markSynced records that the commands about to be sent come from tab,
// dropping the refusals of subscriptions tab no longer has. t.mu is held.
func (t *pubsubTransport) markSynced(tab *routeTable) {
	t.synced = tab
	for key := range t.denied {
		kind, name, _ := strings.Cut(key, " ")
		if kind == "subscribe" && !tab.exact[name] || kind == "psubscribe" && !tab.hasGlob(name) {
			delete(t.denied, key)
		}
	}
}

// subscribed records a confirmation of the read loop: a subscription
// (on) or the end of one.
func (t *pubsubTransport) subscribed(kind, name string, on bool) {
	t.mu.Lock()
	if t.subs == nil {
		t.subs = map[string]bool{}
	}
	base, _ := subscriptionKind(kind)
	live := &t.liveExact
	if base == "psubscribe" {
		live = &t.liveGlobs
	}
	if on {
		if *live == nil {
			*live = map[string]bool{}
		}
		(*live)[name] = true
	} else {
		delete(*live, name)
	}
	key := base + " " + name
	countDown(t.inflight, key)
	if on {
		t.subs[key] = true
		delete(t.denied, key)
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
	cn := t.cn
	denied := maps.Clone(t.denied)
	t.mu.Unlock()
	if cn == nil || t.have == nil {
		return
	}
	tab := t.br.table.Load()
	fresh, again := t.wanted(tab, denied)
	cmds := append(fresh, again...)
	var unsub, punsub []string
	for k := range t.have {
		kind, name, _ := strings.Cut(k, " ")
		switch {
		case kind == "subscribe" && !tab.exact[name]:
			unsub = append(unsub, name)
		case kind == "psubscribe" && !tab.hasGlob(name):
			punsub = append(punsub, name)
		}
	}
	if len(unsub) > 0 {
		cmds = append(cmds, subCommand{name: "UNSUBSCRIBE", args: unsub})
	}
	if len(punsub) > 0 {
		cmds = append(cmds, subCommand{name: "PUNSUBSCRIBE", args: punsub})
	}
	// Recorded before anything is sent, with the table they come from,
	// so that no RouteReady takes a confirmation these commands are
	// about to undo (see confirmedRoute).
	t.mu.Lock()
	if t.cn != cn {
		// The connection ended since: the loop cleared what it had,
		// and the next one subscribes to the table.
		t.mu.Unlock()
		return
	}
	t.markSynced(tab)
	for _, c := range cmds {
		t.sendingLater(c)
	}
	t.mu.Unlock()
	t.br.changed.notify() // a table with nothing to send is synced now
	for _, c := range cmds {
		if t.send(ctx, cn, c) != nil {
			return // a broken connection: the read loop replaces it
		}
	}
}

// send sends c on cn and records what cn then has.
func (t *pubsubTransport) send(ctx context.Context, cn subConn, c subCommand) error {
	if err := cn.send(ctx, c); err != nil {
		return err
	}
	base, un := subscriptionKind(c.kind())
	for _, n := range c.args {
		if un {
			delete(t.have, base+" "+n)
		} else {
			t.have[base+" "+n] = true
		}
	}
	return nil
}

// wanted returns the SUBSCRIBE and PSUBSCRIBE commands of tab's
// subscriptions not sent on the connection (have): one for the channels
// and one for the globs (fresh), and one for each subscription Redis
// refused before (again, after the others), so that a refusal again
// refuses it alone. The caller holds subMu.
func (t *pubsubTransport) wanted(tab *routeTable, denied map[string]error) (fresh, again []subCommand) {
	channels, globs := tab.subscriptions()
	for _, c := range []subCommand{{name: "SUBSCRIBE", args: channels}, {name: "PSUBSCRIBE", args: globs}} {
		var names []string
		for _, n := range c.args {
			switch key := c.kind() + " " + n; {
			case denied[key] != nil:
				again = append(again, subCommand{name: c.name, args: []string{n}})
			case !t.have[key]:
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			fresh = append(fresh, subCommand{name: c.name, args: names})
		}
	}
	return fresh, again
}

// sendingLater records c, a command about to be sent after the
// connection's first ones: its subscriptions in flight, and the replies
// it is due in cmds. t.mu is held.
func (t *pubsubTransport) sendingLater(c subCommand) {
	t.sending(c.kind(), c.args)
	t.cmds.add(c)
	base, un := subscriptionKind(c.kind())
	if un {
		for _, n := range c.args {
			delete(t.denied, base+" "+n) // not wanted any more
		}
	}
}

func (t *pubsubTransport) stop(context.Context) {
	t.mu.Lock()
	t.stopped = true
	cn := t.cn
	t.mu.Unlock()
	t.g.cancel()
	if cn != nil {
		_ = cn.close() // ends the read in progress
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
// stop. A fresh connection is used each time (a *redis.PubSub, when the
// bridge does not dial its own), so that the bridge, not go-redis, decides
// when to reconnect and knows when the subscriptions of the new connection
// are confirmed.
func (t *pubsubTransport) loop() {
	br := t.br
	ctx := t.g.ctx
	rl := readLoop{br: br, ctx: ctx, sub: t, in: br.newIngest(true, false, nil)}
	back := backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}
	fails := failures{every: br.cfg.ReconnectMax}
	first := true
	for {
		var connected, confirmed bool
		cn, err := t.dialSub(ctx)
		if err == nil {
			t.mu.Lock()
			if t.stopped {
				t.mu.Unlock()
				_ = cn.close()
				return
			}
			t.cn = cn
			t.mu.Unlock()
			connected, confirmed, err = rl.run(cn, first)
			_ = cn.close()
		}
		t.mu.Lock()
		t.cn = nil
		t.subs, t.inflight, t.synced = nil, nil, nil
		t.cmds.reset()
		t.liveExact, t.liveGlobs = nil, nil
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
func (t *pubsubTransport) subscribe(ctx context.Context, cn subConn) ([]subCommand, error) {
	t.subMu.Lock()
	defer t.subMu.Unlock()
	t.have = nil // a new connection: nothing sent on it yet
	tab := t.br.table.Load()
	t.mu.Lock()
	// What Redis refused before is asked for after the first commands,
	// one at a time, so that a refusal again keeps the connection.
	first, again := t.wanted(tab, t.denied)
	for _, c := range first {
		t.sending(c.kind(), c.args)
	}
	for _, c := range again {
		t.sendingLater(c)
	}
	t.markSynced(tab)
	t.mu.Unlock()
	t.have = map[string]bool{}
	for _, c := range append(first, again...) {
		if err := t.send(ctx, cn, c); err != nil {
			return nil, err
		}
	}
	return first, nil
}

func (t *pubsubTransport) confirmed() {
	t.conn.up()
	t.setState(true, nil)
}

func (t *pubsubTransport) refused(err error) error { return fmt.Errorf("%w: %w", ErrSubscribe, err) }

// route returns the topic of a message on channel, sent for the glob
// pattern (none if empty), and the route that imports it, or false when it
// is not imported (counted).
//
// Redis sends one copy of a message per matching subscription. The copy
// of the exact subscription is the one imported when there is one,
// otherwise that of the first confirmed glob of the table, in sorted
// order, whose bus patterns match the topic: Redis sent that copy, since
// a glob matches at least what its patterns match. What is confirmed is
// what the read loop saw confirmed (liveExact, liveGlobs), so that while
// routes are added and removed the copy imported is one Redis sent.
func (t *pubsubTransport) route(channel string, pattern []byte) (string, *route, bool) {
	br := t.br
	c := &br.c
	tab := br.table.Load()
	topic, ok := strings.CutPrefix(channel, br.cfg.Prefix)
	if !ok {
		c.filtered.Add(1)
		return "", nil, false
	}
	if len(pattern) == 0 {
		// Sent for the exact subscription, confirmed: still wanted, or
		// its UNSUBSCRIBE on its way (then the topic's copy is this one
		// as long as a route imports it).
		if !tab.exact[channel] && !t.liveExact[channel] {
			c.filtered.Add(1)
			return "", nil, false
		}
	} else {
		if t.liveExact[channel] {
			// Redis sent the exact subscription's copy too, before this.
			c.duplicateCopies.Add(1)
			return "", nil, false
		}
		// The owner is the first glob of the table, in sorted order,
		// that Redis confirmed and whose patterns match: Redis sent its
		// copy. A glob not confirmed yet sent none.
		owner := ""
	globs:
		for _, g := range tab.globs {
			if !t.liveGlobs[g.glob] {
				continue
			}
			for _, match := range g.matches {
				if match(topic) {
					owner = g.glob
					break globs
				}
			}
		}
		switch owner {
		case string(pattern):
		case "":
			// No glob of the table sent a copy: this one's glob is on
			// its way out (PUNSUBSCRIBE sent), the only copy.
			if !t.liveGlobs[string(pattern)] {
				c.filtered.Add(1)
				return "", nil, false
			}
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
