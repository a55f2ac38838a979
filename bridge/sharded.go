package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/busline/bus/bridge/internal/seq"

	"github.com/redis/go-redis/v9"
)

// Sharded pub/sub on a Redis Cluster.
//
// A bridge on a *redis.ClusterClient sends the exports of exact routes with
// SPUBLISH, in the flusher's pipelines (go-redis splits a cluster pipeline
// by node), and imports the channels of exact routes with SSUBSCRIBE. One
// SSUBSCRIBE may name the channels of one hash slot only, but one
// connection may hold the subscriptions of every slot its node serves, so
// the imported channels are grouped by slot and the slots by node: one
// connection per node that serves an imported channel, each read by its own
// loop with the same liveness probe, reconnects and gap detection as the
// classic connection. Partition tags (Options.Partitions) bound the number
// of slots, and so of SSUBSCRIBE commands, whatever the number of topics.
//
// When a node stops serving a slot (the slot migrated, or a replica took
// over), Redis ends the subscriptions of its channels with an unsolicited
// SUNSUBSCRIBE, and a SSUBSCRIBE sent to the wrong node is answered MOVED.
// The loop then asks the manager to rebuild: it reloads go-redis's view of
// the cluster, groups the slots again and replaces the loops of the nodes
// whose slots changed, leaving the others connected. Rejected design: one
// go-redis PubSub holding every channel, which go-redis resubscribes after
// a reconnect with a single SSUBSCRIBE naming them all, a CROSSSLOT error
// as soon as they span two slots.

// errSlotMoved ends a sharded connection whose node no longer serves (some
// of) its slots.
var errSlotMoved = errors.New("slot moved to another node")

// shardSet holds the sharded routes of a bridge: on a cluster, unless
// Options.ClassicPubSub, the exact routes' channels (with their partition
// tags), the channels exported with SPUBLISH, and the transport of the
// imported ones, which the Bridge runs when there are any. On other
// clients it holds nothing and says so (sharded, publish).
type shardSet struct {
	br         *Bridge
	cc         *redis.ClusterClient // nil: not a cluster
	classic    bool                 // Options.ClassicPubSub: no sharded routes
	partitions int
	g          *group // the manager (run); its context is that of every loop
	// running is set, under Bridge.routesMu, once the route table has
	// sharded channels to import: the set is then a transport.
	running bool

	// The sharded channels are in the route table (fill). regroup: a
	// loop found its slots moved, reload the layout; routes: the table
	// changed. Each has room for one token.
	regroup, routes chan struct{}

	mu    sync.Mutex          // protects the fields below and those of the loops that say so
	loops map[*shardLoop]bool // the current loops, for Ready and Close
	// planned is the table whose channels the current loops subscribe
	// to (or are subscribing to): the set is ready for no other.
	planned *routeTable
	// denied holds, by channel, the refusals of SSUBSCRIBEs sent after a
	// connection's first ones (a route added at run time that the ACL
	// user may not read): the connection stays up for the node's other
	// channels, RouteReady and Ready return the refusal, and the loop
	// asks for the channel again on its own, with backoff, and after
	// the first commands of each new connection. Here rather than in the
	// loop, so that a loop that replaces another after a move does not
	// send it among its first commands, which would refuse them all, nor
	// a loop that gains its slot by a regroup in the SSUBSCRIBE of the
	// slot's other channels.
	denied  map[string]error
	stopped bool
}

// shardedChannel is what an imported sharded channel carries.
type shardedChannel struct {
	topic string
	route *route // the first import route matching topic
}

// newShardSet returns the shard set of a bridge on rdb.
func newShardSet(br *Bridge, rdb redis.UniversalClient) *shardSet {
	cc, _ := rdb.(*redis.ClusterClient)
	s := &shardSet{
		br:         br,
		cc:         cc,
		classic:    br.cfg.ClassicPubSub,
		partitions: br.cfg.Partitions,
		regroup:    make(chan struct{}, 1),
		routes:     make(chan struct{}, 1),
		loops:      map[*shardLoop]bool{},
	}
	s.g = newGroup(context.Background())
	return s
}

// fill records in t its sharded channels. An exact export route exports
// with SPUBLISH unless an earlier pattern route matches its topic: then
// that route exports the topic, with PUBLISH.
func (s *shardSet) fill(t *routeTable) {
	t.shardExports = map[string]bool{}
	t.shardChannels = map[string]shardedChannel{}
	t.slots = map[int][]string{}
	for i, r := range t.exports {
		if r.isPattern || r.durable() {
			continue
		}
		shadowed := false
		for _, e := range t.exports[:i] {
			if e.isPattern && e.match(r.Pattern) {
				shadowed = true
				break
			}
		}
		if !shadowed {
			t.shardExports[r.redisName] = true
		}
	}
	for _, r := range t.imports {
		if r.isPattern {
			continue
		}
		if _, ok := t.shardChannels[r.redisName]; ok {
			continue
		}
		t.shardChannels[r.redisName] = shardedChannel{topic: r.Pattern, route: t.importRoute(r.Pattern)}
		slot := HashSlot(r.redisName)
		t.slots[slot] = append(t.slots[slot], r.redisName)
	}
	for _, chans := range t.slots {
		slices.Sort(chans)
	}
}

// importing reports whether t has sharded channels to import: then the
// Bridge runs the set as a transport.
func (s *shardSet) importing(t *routeTable) bool { return len(t.slots) > 0 }

// routesChanged tells the manager that the route table changed.
func (s *shardSet) routesChanged() {
	t := s.br.table.Load()
	s.mu.Lock()
	s.planned = nil
	for ch := range s.denied {
		if _, ok := t.shardChannels[ch]; !ok {
			delete(s.denied, ch) // no route wants it any more
		}
	}
	s.mu.Unlock()
	select {
	case s.routes <- struct{}{}:
	default:
	}
}

// start starts the manager of the sharded subscriptions.
func (s *shardSet) start() { s.g.run(s.run) }

func (s *shardSet) stop(context.Context) {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.g.cancel()
}

// wait waits until the manager and its loops have returned.
func (s *shardSet) wait(ctx context.Context) int {
	s.g.wait(ctx, nil) // stopped already: giving up changes nothing
	return 0
}

func (s *shardSet) stats(*Stats) {}

// sharded reports whether exact routes use sharded pub/sub.
func (s *shardSet) sharded() bool { return s.cc != nil && !s.classic }

// channel returns the channel of an exact route's topic.
func (s *shardSet) channel(topic string) string {
	return ShardChannel(s.br.cfg.Prefix, topic, s.partitions)
}

// publish adds to p the command that publishes msg on channel: SPUBLISH
// for a sharded channel; on a cluster, a PUBLISH that the pipeline sends
// to the node serving the channel's slot (go-redis spreads keyless
// commands over the nodes in turn, which would reorder the messages of a
// channel, since the nodes forward them to each other's subscribers
// independently); otherwise a plain PUBLISH. The flusher calls it for
// every message.
func (s *shardSet) publish(ctx context.Context, p redis.Pipeliner, channel string, msg []byte) {
	switch {
	case s.cc == nil:
		p.Publish(ctx, channel, msg)
	case s.br.table.Load().shardExports[channel]:
		p.SPublish(ctx, channel, msg)
	default:
		cmd := redis.NewIntCmd(ctx, "publish", channel, msg)
		cmd.SetFirstKeyPos(1)
		_ = p.Process(ctx, cmd)
	}
}

// ready reports whether every sharded subscription of the table is
// confirmed, and if not, the refusal of one, if any.
func (s *shardSet) ready() (bool, error) {
	t := s.br.table.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.planned == t
	var err error
	for l := range s.loops {
		if !l.readyLocked() {
			ok = false
		}
		if err == nil && l.err != nil {
			err = l.err
		}
	}
	for ch, e := range s.denied {
		if err != nil {
			break
		}
		if _, wanted := t.shardChannels[ch]; wanted {
			err = e
		}
	}
	return ok, err
}

// confirmedChannel reports whether Redis confirmed the SSUBSCRIBE of
// channel on the connection of its node, and if not the refusal of one of
// the loops, if any.
func (s *shardSet) confirmedChannel(r *route) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.planned == nil || s.planned.lookup(r.id) != r {
		// The loops may still be sending commands of an earlier table:
		// a SUNSUBSCRIBE of r's channel among them.
		return false, nil
	}
	err := s.denied[r.redisName]
	for l := range s.loops {
		if l.ready && l.confirmedLocked(r.redisName) {
			return true, nil
		}
		if err == nil && l.err != nil {
			err = l.err
		}
	}
	return false, err
}

// run is the manager goroutine: it groups the imported slots by node,
// runs a loop per node and replaces the loops whose slots moved, until the
// bridge's subscription context ends. When the route table changes, it
// groups the slots again without reloading the layout: a loop whose node
// gains or loses channels keeps its connection and sends SSUBSCRIBE or
// SUNSUBSCRIBE on it; a node newly needed gets a loop, one no longer
// needed loses its own.
func (s *shardSet) run() {
	br := s.br
	ctx := s.g.ctx
	current := map[string]*shardLoop{} // by node address
	var archive seq.Tracker            // sequences of stopped loops
	back := backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}
	fails := failures{every: br.cfg.ReconnectMax}
	first := true
	rebuild := false // the plan follows a move: loops whose slots changed are replaced
	defer func() {
		for _, l := range current {
			s.stopLoop(l, &archive)
		}
	}()
	for {
		t := br.table.Load()
		plan, err := s.plan(ctx, t)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			br.reportAttempt(&fails, &connectError{addr: strings.Join(s.cc.Options().Addrs, ","), err: fmt.Errorf("cluster topology: %w", err)})
			if !sleep(ctx, back.next()) {
				return
			}
			continue
		}
		back.reset()
		fails.succeeded()
		for addr, l := range current {
			g, keep := plan[addr]
			// After a move, a loop whose slots changed is replaced, so
			// that the sequences of the channels that moved go with
			// them (archive).
			if !keep || l.moved.Load() || rebuild && !sameSlots(l.groupNow(), g) {
				s.stopLoop(l, &archive)
				delete(current, addr)
			}
		}
		s.mu.Lock()
		stopped := s.stopped
		s.mu.Unlock()
		if stopped {
			return
		}
		for addr, g := range plan {
			if l, ok := current[addr]; ok {
				l.regroup(g)
				continue
			}
			l := s.newLoop(g, &archive)
			current[addr] = l
			s.mu.Lock()
			s.loops[l] = true
			s.mu.Unlock()
			// A loop of the first plan, or of a node that routes
			// added since need, missed nothing: it reports no gap.
			firstPlan := first || !rebuild
			l.g.run(func() { l.loop(firstPlan) })
			l.g.run(l.retryLoop)
		}
		s.mu.Lock()
		if br.table.Load() == t {
			s.planned = t
		}
		s.mu.Unlock()
		br.changed.notify()
		first = false

		select {
		case <-ctx.Done():
			return
		case <-s.routes:
			rebuild = false
			continue
		case <-s.regroup:
		}
		rebuild = true
		br.c.shardRebuilds.Add(1)
		s.cc.ReloadState(ctx)
		// ReloadState is lazy: give it a moment, and give a cluster in
		// the middle of a failover the time to settle.
		if !sleep(ctx, back.next()) {
			return
		}
	}
}

// sameSlots reports whether groups a and b hold the same slots.
func sameSlots(a, b shardGroup) bool {
	if len(a.slots) != len(b.slots) {
		return false
	}
	for i := range a.slots {
		if HashSlot(a.slots[i][0]) != HashSlot(b.slots[i][0]) {
			return false
		}
	}
	return true
}

// shardGroup is the part of the plan one connection serves: the slots, and
// their channels, of one node.
type shardGroup struct {
	addr  string
	slots [][]string // channels per slot, one SSUBSCRIBE each, by slot
}

// plan groups the imported slots of t by the node that serves them,
// according to go-redis's view of the cluster, the one
// ClusterClient.SSubscribe connects by. The groups are by node address.
func (s *shardSet) plan(ctx context.Context, t *routeTable) (map[string]shardGroup, error) {
	slots := make([]int, 0, len(t.slots))
	for slot := range t.slots {
		slots = append(slots, slot)
	}
	slices.Sort(slots)
	plan := map[string]shardGroup{}
	for _, slot := range slots {
		node, err := s.cc.MasterForKey(ctx, t.slots[slot][0])
		if err != nil {
			return nil, fmt.Errorf("node of slot %d: %w", slot, err)
		}
		addr := node.Options().Addr
		g := plan[addr]
		g.addr = addr
		g.slots = append(g.slots, t.slots[slot])
		plan[addr] = g
	}
	return plan, nil
}

// shardLoop reads the sharded subscriptions of one node's slots on one
// connection, and makes a new connection when it fails, like the classic
// subscribeLoop.
type shardLoop struct {
	set   *shardSet
	addr  string // the node's
	rl    readLoop
	g     *group      // the loop's goroutine; a child of the manager's
	moved atomic.Bool // the loop found its slots moved and waits to be replaced
	conn  *conn       // the connection's state, for Connections

	// subMu serialises sending subscriptions on ps: the loop's first
	// ones, the manager's (regroup) and the retries (retryLoop); it
	// protects have.
	subMu sync.Mutex
	have  map[string]bool // the channels SSUBSCRIBEd on ps; nil before the first

	cmds  laterCommands // the commands sent after the connection's first ones
	retry chan struct{} // a refusal for retryLoop; room for one token
	// accepted tells retryLoop that Redis confirmed a channel it had
	// refused: the next refusal starts the backoff over.
	accepted atomic.Bool
	// refusals keeps the reports of refused later SSUBSCRIBEs short
	// while a retry keeps being refused. The read loop's alone.
	refusals failures

	// Protected by set.mu.
	group  shardGroup // what the loop subscribes to: the plan's, changed by regroup
	ps     *redis.PubSub
	ready  bool            // every SSUBSCRIBE sent first on the current connection confirmed
	subs   map[string]bool // "ssubscribe " + the channels Redis confirmed on the current connection
	unsubs map[string]int  // SUNSUBSCRIBEs sent and not confirmed yet, by channel
	// pending counts the SSUBSCRIBEs sent and not confirmed yet, by
	// channel: while one is, a confirmation in subs may be that of an
	// earlier SSUBSCRIBE whose SUNSUBSCRIBE is on its way.
	pending map[string]int
	err     error // the last refusal, until the next confirmation
}

// groupNow returns the loop's group.
func (l *shardLoop) groupNow() shardGroup {
	l.set.mu.Lock()
	defer l.set.mu.Unlock()
	return l.group
}

// readyLocked reports whether every channel of the loop's group is
// confirmed on its connection. The caller holds set.mu.
func (l *shardLoop) readyLocked() bool {
	if !l.ready {
		return false
	}
	for _, chans := range l.group.slots {
		for _, ch := range chans {
			if !l.confirmedLocked(ch) {
				return false
			}
		}
	}
	return true
}

// confirmedLocked reports whether Redis confirmed channel on the loop's
// connection, with no SSUBSCRIBE or SUNSUBSCRIBE of it waiting for its
// confirmation. The caller holds set.mu.
func (l *shardLoop) confirmedLocked(channel string) bool {
	return l.subs["ssubscribe "+channel] && l.pending[channel] == 0 && l.unsubs[channel] == 0
}

// sending records SSUBSCRIBEs of chans about to be sent. The caller holds
// set.mu.
func (l *shardLoop) sending(chans []string) {
	if l.pending == nil {
		l.pending = map[string]int{}
	}
	for _, ch := range chans {
		l.pending[ch]++
	}
}

// regroup makes g, the loop's node's part of a new plan, the loop's
// group, and sends on its connection the SSUBSCRIBE and SUNSUBSCRIBE
// commands that make its subscriptions g's: a channel Redis refused
// before has an SSUBSCRIBE of its own. Without a connection there is
// nothing to send: the next one subscribes to the group. It runs on the
// manager.
func (l *shardLoop) regroup(g shardGroup) {
	l.subMu.Lock()
	defer l.subMu.Unlock()
	l.set.mu.Lock()
	l.group = g
	ps := l.ps
	l.set.mu.Unlock()
	if ps == nil || l.have == nil {
		return
	}
	want := map[string]bool{}
	for _, chans := range g.slots {
		// One SSUBSCRIBE for the slot's missing channels, but one each
		// for those Redis refused before (a slot that moved here from
		// a node where one of its channels was refused), asked for at
		// once as a new connection does: Redis refuses an SSUBSCRIBE
		// whole, so one refused channel among the others would have
		// them all refused, and subscribed only after retryLoop's
		// backoff.
		var fresh []string
		var alone []subCommand
		l.set.mu.Lock()
		for _, ch := range chans {
			want[ch] = true
			switch {
			case l.have[ch]:
			case l.set.denied[ch] != nil:
				alone = append(alone, subCommand{name: "SSUBSCRIBE", args: []string{ch}})
			default:
				fresh = append(fresh, ch)
			}
		}
		var cmds []subCommand
		if len(fresh) > 0 {
			cmds = append(cmds, subCommand{name: "SSUBSCRIBE", args: fresh})
		}
		cmds = append(cmds, alone...)
		for _, c := range cmds {
			l.sendingLater(c)
		}
		l.set.mu.Unlock()
		for _, c := range cmds {
			// In have once sent only: a command that could not be
			// sent broke the connection, and the next one asks for
			// the channel again.
			if ps.SSubscribe(l.g.ctx, c.args...) == nil {
				for _, ch := range c.args {
					l.have[ch] = true
				}
			}
		}
	}
	bySlot := map[int][]string{}
	l.set.mu.Lock()
	for ch := range l.have {
		if want[ch] {
			continue
		}
		if l.pending[ch] == 0 && l.unsubs[ch] == 0 && !l.subs["ssubscribe "+ch] {
			// Sent, nothing in flight and not confirmed: Redis
			// refused it, or ended it itself (its slot moved), so
			// nothing is subscribed here to end. Whether it is
			// refused is the connection's to say, not set.denied,
			// which another loop's confirmation or a removed route
			// clears. Its slot may have moved away, and the node
			// would answer a SUNSUBSCRIBE with MOVED, which ends the
			// connection of the node's other channels.
			delete(l.have, ch)
			continue
		}
		bySlot[HashSlot(ch)] = append(bySlot[HashSlot(ch)], ch)
	}
	l.set.mu.Unlock()
	for _, chans := range bySlot {
		l.set.mu.Lock()
		if l.unsubs == nil {
			l.unsubs = map[string]int{}
		}
		for _, ch := range chans {
			l.unsubs[ch]++
			delete(l.subs, "ssubscribe "+ch)
		}
		l.cmds.add(subCommand{name: "SUNSUBSCRIBE", args: chans})
		l.set.mu.Unlock()
		if ps.SUnsubscribe(l.g.ctx, chans...) != nil {
			return // the connection broke: the read loop replaces it
		}
		for _, ch := range chans {
			delete(l.have, ch)
		}
	}
}

// sendingLater records c, an SSUBSCRIBE about to be sent after the
// connection's first ones. The caller holds set.mu.
func (l *shardLoop) sendingLater(c subCommand) {
	l.sending(c.args)
	l.cmds.add(c)
}

// subscribed records a confirmation of the read loop.
func (l *shardLoop) subscribed(kind, name string, on bool) {
	l.set.mu.Lock()
	if l.subs == nil {
		l.subs = map[string]bool{}
	}
	if on {
		l.subs[kind+" "+name] = true
		countDown(l.pending, name)
		if _, ok := l.set.denied[name]; ok {
			delete(l.set.denied, name) // accepted on a retry
			l.refusals.succeeded()
			l.accepted.Store(true)
		}
	} else {
		delete(l.subs, "ssubscribe "+name)
	}
	l.set.mu.Unlock()
	l.set.br.changed.notify()
}

func (l *shardLoop) later() *laterCommands { return &l.cmds }

// refusedLater records that Redis refused c, a command sent after the
// connection's first ones, with err. A refused SSUBSCRIBE is its
// channels' alone: they are recorded as refused and reported, retryLoop
// asks for them again, and the connection stays up for the node's other
// channels. An error reply a cluster gives while it reconfigures (MOVED
// after a slot moved, TRYAGAIN, CLUSTERDOWN) is no refusal, nor is an
// error reply to SUNSUBSCRIBE: the connection ends, and the loop
// reconnects or is moved.
func (l *shardLoop) refusedLater(c subCommand, err error) bool {
	if c.name != "SSUBSCRIBE" || transientReply(err) {
		return false
	}
	s := l.set
	s.mu.Lock()
	if s.denied == nil {
		s.denied = map[string]error{}
	}
	for _, ch := range c.args {
		countDown(l.pending, ch)
		s.denied[ch] = err
	}
	s.mu.Unlock()
	s.br.reportAttempt(&l.refusals, err)
	s.br.changed.notify()
	select {
	case l.retry <- struct{}{}:
	default:
	}
	return true
}

// retryLoop asks again, after a backoff, for the channels of the loop
// whose SSUBSCRIBE Redis refused, until the loop stops: the ACL user may
// have been given them since. Each channel has its own SSUBSCRIBE, so
// that a refusal again is that channel's alone; the backoff grows while
// refusals keep coming, and starts over once Redis accepted one.
func (l *shardLoop) retryLoop() {
	br := l.set.br
	back := backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}
	for {
		select {
		case <-l.retry:
		case <-l.g.ctx.Done():
			return
		}
		if l.accepted.Swap(false) {
			back.reset()
		}
		if !sleep(l.g.ctx, back.next()) {
			return
		}
		if l.resubscribe() == 0 {
			back.reset() // nothing refused any more
		}
	}
}

// resubscribe sends on the current connection an SSUBSCRIBE for each
// channel of the loop's group that Redis refused and that is not asked
// for already, and returns how many it sent. Without a connection there
// is nothing to send: the next one asks for them after its first
// commands.
func (l *shardLoop) resubscribe() int {
	l.subMu.Lock()
	defer l.subMu.Unlock()
	s := l.set
	s.mu.Lock()
	ps := l.ps
	var again []subCommand
	if ps != nil && l.have != nil {
		again = l.againLocked()
		for _, c := range again {
			l.sendingLater(c)
		}
	}
	s.mu.Unlock()
	for _, c := range again {
		if ps.SSubscribe(l.g.ctx, c.args...) != nil {
			break // a broken connection: the read loop replaces it
		}
	}
	return len(again)
}

// againLocked returns an SSUBSCRIBE for each channel of the loop's group
// that Redis refused and that is not asked for already. The caller holds
// set.mu.
func (l *shardLoop) againLocked() []subCommand {
	var again []subCommand
	for _, chans := range l.group.slots {
		for _, ch := range chans {
			if l.set.denied[ch] != nil && l.pending[ch] == 0 {
				again = append(again, subCommand{name: "SSUBSCRIBE", args: []string{ch}})
			}
		}
	}
	return again
}

// unsubscribed reports whether the end of the subscription to channel
// means that its slot moved: not when the bridge unsubscribed it (a
// SUNSUBSCRIBE not yet confirmed), nor when no route wants it any more.
func (l *shardLoop) unsubscribed(channel string) bool {
	l.set.mu.Lock()
	defer l.set.mu.Unlock()
	if l.unsubs[channel] > 0 {
		countDown(l.unsubs, channel)
		l.cmds.confirmed() // the reply to the bridge's SUNSUBSCRIBE
		return false
	}
	_, wanted := l.set.br.table.Load().shardChannels[channel]
	return wanted
}

// newLoop makes the loop of group g, resuming the sequences of its channels
// from archive.
func (s *shardSet) newLoop(g shardGroup, archive *seq.Tracker) *shardLoop {
	l := &shardLoop{set: s, addr: g.addr, group: g, g: newGroup(s.g.ctx), retry: make(chan struct{}, 1),
		refusals: failures{every: s.br.cfg.ReconnectMax}, conn: s.br.conns.add(newConn(ConnShard, g.addr, ""))}
	// Its sequences: those of the channels of g, which may have moved
	// from a stopped loop. A loop kept through regroups keeps its own.
	l.rl = readLoop{br: s.br, ctx: s.g.ctx, sub: l, in: s.br.newIngest(true, false, nil)}
	mine := map[string]bool{}
	for _, chans := range g.slots {
		for _, ch := range chans {
			mine[ch] = true
		}
	}
	archive.MoveChannels(&l.rl.in.seqs, func(ch string) bool { return mine[ch] })
	return l
}

// stopLoop ends loop l, waits for it, and keeps its sequences in archive.
func (s *shardSet) stopLoop(l *shardLoop, archive *seq.Tracker) {
	l.g.cancel()
	s.mu.Lock()
	if l.ps != nil {
		_ = l.ps.Close() // ends the read in progress
	}
	s.mu.Unlock()
	l.g.wait(context.Background(), nil)
	s.mu.Lock()
	delete(s.loops, l)
	s.mu.Unlock()
	s.br.conns.remove(l.conn)
	s.br.changed.notify()
	l.rl.in.seqs.MoveTo(archive)
}

// loop runs connections until the loop is stopped or its slots move.
// first says whether this loop belongs to the bridge's first plan: a loop
// started by a rebuild reports a possible gap when it is confirmed.
func (l *shardLoop) loop(first bool) {
	br := l.set.br
	back := backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}
	fails := failures{every: br.cfg.ReconnectMax}
	for {
		// No channels yet: the first SSubscribe, of the first slot,
		// makes the connection, to the node go-redis sees serving it.
		ps := l.set.cc.SSubscribe(l.g.ctx)
		l.set.mu.Lock()
		if l.set.stopped || l.g.ctx.Err() != nil {
			l.set.mu.Unlock()
			_ = ps.Close()
			return
		}
		l.ps = ps
		l.set.mu.Unlock()

		connected, confirmed, err := l.rl.run(&pubsubConn{ps: ps}, first)
		_ = ps.Close()
		moved := errors.Is(err, errSlotMoved) || isMoved(err)
		l.subMu.Lock()
		l.have = nil
		l.subMu.Unlock()
		l.set.mu.Lock()
		l.ps = nil
		l.ready = false
		l.subs, l.unsubs, l.pending = nil, nil, nil
		l.cmds.reset()
		if errors.Is(err, ErrSubscribe) && !moved && !transientReply(err) {
			l.err = err
		}
		l.set.mu.Unlock()
		br.changed.notify()
		if l.g.ctx.Err() != nil {
			return
		}
		l.conn.down(err)
		if confirmed {
			first = false
			back.reset()
			fails.succeeded()
		}
		switch {
		case moved:
			br.rep.report(chain(ErrDisconnected, "node "+l.addr, err))
			l.moved.Store(true)
			l.set.askRegroup()
			// Wait for the manager to stop this loop: until then, keep
			// the slots' sequences here.
			<-l.g.ctx.Done()
			return
		case errors.Is(err, ErrSubscribe) && !transientReply(err):
			br.reportAttempt(&fails, err) // it names the node
		case !connected:
			br.reportAttempt(&fails, &connectError{addr: l.addr, err: err})
		default:
			br.reportAttempt(&fails, chain(ErrDisconnected, "node "+l.addr, err))
		}
		if !errors.Is(err, ErrSubscribe) || transientReply(err) {
			// The node may be gone for good, its replica promoted:
			// go-redis would keep dialling it from its cached layout
			// until its periodic reload (a minute), so the manager
			// reloads the layout now, and moves the loop if the slots
			// have a new master.
			l.set.askRegroup()
		}
		if !sleep(l.g.ctx, back.next()) {
			return
		}
	}
}

// askRegroup asks the manager to reload the cluster's layout and to group
// the slots again; a request already waiting covers this one.
func (s *shardSet) askRegroup() {
	select {
	case s.regroup <- struct{}{}:
	default:
	}
}

// subscribe sends one SSUBSCRIBE per slot of the loop's group and returns
// the commands sent. The channels Redis refused before are asked for
// after them, one at a time (later commands), so that a refusal again
// keeps the connection.
func (l *shardLoop) subscribe(ctx context.Context, cn subConn) ([]subCommand, error) {
	l.subMu.Lock()
	defer l.subMu.Unlock()
	s := l.set
	s.mu.Lock()
	var first []subCommand
	for _, chans := range l.group.slots {
		fresh := slices.DeleteFunc(slices.Clone(chans), func(ch string) bool { return s.denied[ch] != nil })
		if len(fresh) > 0 {
			first = append(first, subCommand{name: "SSUBSCRIBE", args: fresh})
			l.sending(fresh)
		}
	}
	again := l.againLocked()
	for _, c := range again {
		l.sendingLater(c)
	}
	s.mu.Unlock()
	have := map[string]bool{}
	for _, c := range append(first, again...) {
		if err := cn.send(ctx, c); err != nil {
			return nil, err
		}
		for _, ch := range c.args {
			have[ch] = true
		}
	}
	l.have = have
	return first, nil
}

// confirmed records that every subscription of the current connection is
// confirmed.
func (l *shardLoop) confirmed() {
	l.conn.up()
	l.set.mu.Lock()
	if !l.set.stopped {
		l.ready, l.err = true, nil
	}
	l.set.mu.Unlock()
	l.set.br.changed.notify()
}

func (l *shardLoop) refused(err error) error {
	return fmt.Errorf("%w: node %s: %w", ErrSubscribe, l.addr, err)
}

// route returns the topic and route of a sharded channel: one
// subscription per channel, of an exact route.
func (l *shardLoop) route(channel string, _ []byte) (string, *route, bool) {
	sc, ok := l.set.br.table.Load().shardChannels[channel]
	if !ok {
		l.set.br.c.filtered.Add(1)
		return "", nil, false
	}
	return sc.topic, sc.route, true
}

// isMoved reports whether err is a MOVED or ASK redirection.
func isMoved(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	return strings.HasPrefix(msg, "MOVED ") || strings.HasPrefix(msg, "ASK ")
}

// transientReply reports whether err is an error reply that a cluster (or
// a server) gives while it reconfigures or recovers, rather than a refusal:
// the command is retried instead of dropped.
func transientReply(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, p := range []string{"MOVED ", "ASK ", "TRYAGAIN ", "CLUSTERDOWN ", "LOADING ", "MASTERDOWN "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// ShardChannels returns the channels the bridge subscribes to with
// SSUBSCRIBE, sorted: those of its live exact import routes when it runs on a
// *redis.ClusterClient (see ShardChannel), none otherwise.
//
// # Redis Cluster
//
// On a *redis.ClusterClient, exact-topic routes use sharded pub/sub (Redis
// 7): exports are sent with SPUBLISH, which go-redis pipelines to the node
// serving each channel's hash slot, and imports subscribe with SSUBSCRIBE
// on that node. A message then travels to its node only, instead of being
// forwarded to every node of the cluster as PUBLISH is. The bridge groups
// the imported channels by slot (one SSUBSCRIBE may name the channels of
// one slot only) and the slots by node: it holds one connection per node
// that serves one of its channels, each with the liveness probe,
// reconnects and gap reports described under Reliability. When a node
// stops serving a slot (resharding, failover), Redis ends the
// subscriptions of its channels with an unsolicited SUNSUBSCRIBE, or
// answers MOVED: the bridge reloads the cluster's layout and rebuilds the
// subscriptions of the nodes concerned by itself (Stats.ShardRebuilds),
// reporting ErrDisconnected and then ErrPossibleGap. Error replies a
// cluster gives while it reconfigures (MOVED, ASK, TRYAGAIN, CLUSTERDOWN,
// LOADING, MASTERDOWN) make exports wait and retry, never drop.
//
// Without partitions the sharded channel of a topic is Prefix + topic, in
// the slot of its own name, so that N topics use up to N slots. With
// Options.Partitions = P the channel carries a partition tag,
//
//	Prefix + "{" + p + "}." + topic   with p = FNV-1a-32(topic) mod P
//
// (see [ShardChannel], [Partition] and [HashSlot]): Redis hashes only the
// tag, so any number of topics spread evenly over at most P slots, and
// over at most one connection per node. Every instance sharing the topics,
// and every non-Go client of a raw sharded route, must use the same
// Prefix and P, and SPUBLISH and SSUBSCRIBE:
//
//	redis-cli -c SPUBLISH 'app:{2}.orders.created' hi   # P = 16
//
// Pattern routes cannot be sharded (Redis has no sharded PSUBSCRIBE): on a
// cluster they keep classic PSUBSCRIBE and PUBLISH, without partition tags.
// The bridge sends the PUBLISHes of a channel through one node, the one
// serving the slot of its name, so that they keep their order. Sharded and
// classic messages do not meet: SSUBSCRIBE does not see PUBLISH, nor
// PSUBSCRIBE SPUBLISH. So on a cluster a topic must be routed the same way
// by every instance: exactly everywhere, or by patterns everywhere. Set
// Options.ClassicPubSub on every instance to use classic pub/sub for exact
// routes too, as on a single server.
//
// An ACL user for a cluster also needs SPUBLISH, SSUBSCRIBE and PING, and
// the commands go-redis uses to learn the cluster's layout (CLUSTER SLOTS
// or SHARDS, COMMAND): [ClusterACLRules] lists them.
func (br *Bridge) ShardChannels() []string {
	if !br.shards.sharded() {
		return nil
	}
	var chans []string
	for ch := range br.table.Load().shardChannels {
		chans = append(chans, ch)
	}
	slices.Sort(chans)
	return chans
}
