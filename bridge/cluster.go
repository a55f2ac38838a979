package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// shardSet holds the sharded routes of a bridge on a cluster. It is nil on
// other clients.
type shardSet struct {
	br         *Bridge
	cc         *redis.ClusterClient
	classic    bool // Options.ClassicPubSub: no sharded routes
	partitions int

	// Set up by New, read-only afterwards.
	exports  map[string]bool           // channels exported with SPUBLISH
	channels map[string]shardedChannel // channels imported with SSUBSCRIBE
	slots    map[int][]string          // imported channels by slot, sorted

	regroup chan struct{} // a loop found its slots moved; room for one token
	done    chan struct{} // closed when the manager has stopped its loops

	// Protected by br.mu: the current loops, for Ready and Close.
	loops   map[*shardLoop]bool
	planned bool // the loops of the current plan are running
}

// shardedChannel is what an imported sharded channel carries.
type shardedChannel struct {
	topic string
	route *route // the first import route matching topic
}

// newShardSet returns the shard set of a bridge on rdb, or nil when rdb is
// not a cluster client.
func newShardSet(br *Bridge, rdb redis.UniversalClient) *shardSet {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return nil
	}
	return &shardSet{
		br:         br,
		cc:         cc,
		classic:    br.cfg.ClassicPubSub,
		partitions: br.cfg.Partitions,
		exports:    map[string]bool{},
		channels:   map[string]shardedChannel{},
		slots:      map[int][]string{},
		regroup:    make(chan struct{}, 1),
		done:       make(chan struct{}),
		loops:      map[*shardLoop]bool{},
	}
}

// finish records the sharded channels once every route is compiled. An
// exact export route exports with SPUBLISH unless an earlier pattern route
// matches its topic: then that route exports the topic, with PUBLISH.
func (s *shardSet) finish() {
	if !s.sharded() {
		return
	}
	br := s.br
	for i, r := range br.exports {
		if r.isPattern || r.durable() {
			continue
		}
		shadowed := false
		for _, e := range br.exports[:i] {
			if e.isPattern && e.match(r.Pattern) {
				shadowed = true
				break
			}
		}
		if !shadowed {
			s.exports[r.redisName] = true
		}
	}
	for _, r := range br.imports {
		if r.isPattern {
			continue
		}
		if _, ok := s.channels[r.redisName]; ok {
			continue
		}
		s.channels[r.redisName] = shardedChannel{topic: r.Pattern, route: br.importRoute(r.Pattern)}
		slot := HashSlot(r.redisName)
		s.slots[slot] = append(s.slots[slot], r.redisName)
	}
	for _, chans := range s.slots {
		slices.Sort(chans)
	}
}

// start starts the manager of the sharded subscriptions, if there are
// any. s may be nil.
func (s *shardSet) start() {
	if s == nil {
		return
	}
	if len(s.slots) == 0 {
		close(s.done)
		return
	}
	go s.run()
}

// wait waits until the manager and its loops have returned; Close calls it
// after cancelling the subscription context. s may be nil.
func (s *shardSet) wait() {
	if s != nil {
		<-s.done
	}
}

// sharded reports whether exact routes use sharded pub/sub. s may be nil.
func (s *shardSet) sharded() bool { return s != nil && !s.classic }

// channel returns the channel of an exact route's topic.
func (s *shardSet) channel(topic string) string {
	return ShardChannel(s.br.cfg.Prefix, topic, s.partitions)
}

// publish returns a PUBLISH of msg on channel that a cluster pipeline sends
// to the node serving the channel's slot: go-redis spreads keyless
// commands over the nodes in turn, which would reorder the messages of a
// channel, since the nodes forward them to each other's subscribers
// independently.
func (s *shardSet) publish(ctx context.Context, channel string, msg []byte) redis.Cmder {
	cmd := redis.NewIntCmd(ctx, "publish", channel, msg)
	cmd.SetFirstKeyPos(1)
	return cmd
}

// spublish reports whether channel is exported with SPUBLISH. It is called
// by the flusher for every export; s may be nil.
func (s *shardSet) spublish(channel string) bool {
	return s != nil && s.exports[channel] // nil map when not sharded
}

// readyLocked reports whether every sharded subscription is confirmed.
func (s *shardSet) readyLocked() bool {
	if s == nil || len(s.slots) == 0 {
		return true
	}
	if !s.planned {
		return false
	}
	for l := range s.loops {
		if !l.ready {
			return false
		}
	}
	return true
}

// errLocked returns the refusal of a sharded subscription, if any.
func (s *shardSet) errLocked() error {
	if s == nil {
		return nil
	}
	for l := range s.loops {
		if l.err != nil {
			return l.err
		}
	}
	return nil
}

// wakeLocked wakes the callers of Ready after a change of the sharded
// subscriptions' state.
func (s *shardSet) wakeLocked() {
	br := s.br
	close(br.changed)
	br.changed = make(chan struct{})
}

// run is the manager goroutine: it groups the imported slots by node,
// runs a loop per node and replaces the loops whose slots moved, until the
// bridge's subscription context ends.
func (s *shardSet) run() {
	defer close(s.done)
	br := s.br
	ctx := br.subCtx
	current := map[string]*shardLoop{} // by plan key
	var archive seq.Tracker            // sequences of stopped loops
	back := backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}
	first := true
	defer func() {
		for _, l := range current {
			s.stop(l, &archive)
		}
	}()
	for {
		plan, err := s.plan(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			br.reportLast(&connectError{addr: strings.Join(s.cc.Options().Addrs, ","), err: fmt.Errorf("cluster topology: %w", err)})
			if !sleep(ctx, back.next()) {
				return
			}
			continue
		}
		back.reset()
		for key, l := range current {
			if _, keep := plan[key]; !keep || l.moved.Load() {
				s.stop(l, &archive)
				delete(current, key)
			}
		}
		br.mu.Lock()
		closed := br.closed
		br.mu.Unlock()
		if closed {
			return
		}
		for key, g := range plan {
			if _, ok := current[key]; ok {
				continue
			}
			l := s.newLoop(g, &archive)
			current[key] = l
			br.mu.Lock()
			s.loops[l] = true
			br.mu.Unlock()
			go l.loop(first)
		}
		br.mu.Lock()
		s.planned = true
		s.wakeLocked()
		br.mu.Unlock()
		first = false

		select {
		case <-ctx.Done():
			return
		case <-s.regroup:
		}
		br.c.shardRebuilds.Add(1)
		s.cc.ReloadState(ctx)
		// ReloadState is lazy: give it a moment, and give a cluster in
		// the middle of a failover the time to settle.
		if !sleep(ctx, back.next()) {
			return
		}
	}
}

// shardGroup is the part of the plan one connection serves: the slots, and
// their channels, of one node.
type shardGroup struct {
	addr  string
	slots [][]string // channels per slot, one SSUBSCRIBE each
}

// plan groups the imported slots by the node that serves them, according
// to go-redis's view of the cluster, the one ClusterClient.SSubscribe
// connects by. The key of a group names its node and its slots, so that a
// loop whose node still serves exactly the same slots is kept.
func (s *shardSet) plan(ctx context.Context) (map[string]shardGroup, error) {
	slots := make([]int, 0, len(s.slots))
	for slot := range s.slots {
		slots = append(slots, slot)
	}
	slices.Sort(slots)
	byAddr := map[string][]int{}
	for _, slot := range slots {
		node, err := s.cc.MasterForKey(ctx, s.slots[slot][0])
		if err != nil {
			return nil, fmt.Errorf("node of slot %d: %w", slot, err)
		}
		addr := node.Options().Addr
		byAddr[addr] = append(byAddr[addr], slot)
	}
	plan := make(map[string]shardGroup, len(byAddr))
	for addr, slots := range byAddr {
		var key strings.Builder
		key.WriteString(addr)
		g := shardGroup{addr: addr}
		for _, slot := range slots {
			key.WriteByte(' ')
			key.WriteString(strconv.Itoa(slot))
			g.slots = append(g.slots, s.slots[slot])
		}
		plan[key.String()] = g
	}
	return plan, nil
}

// shardLoop reads the sharded subscriptions of one node's slots on one
// connection, and makes a new connection when it fails, like the classic
// subscribeLoop.
type shardLoop struct {
	set    *shardSet
	group  shardGroup
	rl     readLoop
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	moved  atomic.Bool // the loop found its slots moved and waits to be replaced

	// Protected by br.mu.
	ps    *redis.PubSub
	ready bool  // every SSUBSCRIBE of the current connection confirmed
	err   error // the last refusal, until the next confirmation
}

// newLoop makes the loop of group g, resuming the sequences of its channels
// from archive.
func (s *shardSet) newLoop(g shardGroup, archive *seq.Tracker) *shardLoop {
	l := &shardLoop{set: s, group: g, done: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(s.br.subCtx)
	l.rl = readLoop{br: s.br, shard: l}
	mine := map[string]bool{}
	for _, chans := range g.slots {
		for _, ch := range chans {
			mine[ch] = true
		}
	}
	archive.MoveChannels(&l.rl.seqs, func(ch string) bool { return mine[ch] })
	return l
}

// stop ends loop l, waits for it, and keeps its sequences in archive.
func (s *shardSet) stop(l *shardLoop, archive *seq.Tracker) {
	br := s.br
	l.cancel()
	br.mu.Lock()
	if l.ps != nil {
		_ = l.ps.Close() // ends the read in progress
	}
	br.mu.Unlock()
	<-l.done
	br.mu.Lock()
	delete(s.loops, l)
	s.wakeLocked()
	br.mu.Unlock()
	l.rl.seqs.MoveTo(archive)
}

// loop runs connections until the loop is stopped or its slots move.
// first says whether this loop belongs to the bridge's first plan: a loop
// started by a rebuild reports a possible gap when it is confirmed.
func (l *shardLoop) loop(first bool) {
	defer close(l.done)
	br := l.set.br
	back := backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}
	for {
		// No channels yet: the first SSubscribe, of the first slot,
		// makes the connection, to the node go-redis sees serving it.
		ps := l.set.cc.SSubscribe(l.ctx)
		br.mu.Lock()
		if br.closed || l.ctx.Err() != nil {
			br.mu.Unlock()
			_ = ps.Close()
			return
		}
		l.ps = ps
		br.mu.Unlock()

		connected, confirmed, err := l.rl.run(ps, first)
		_ = ps.Close()
		moved := errors.Is(err, errSlotMoved) || isMoved(err)
		br.mu.Lock()
		l.ps = nil
		l.ready = false
		if errors.Is(err, ErrSubscribe) && !moved && !transientReply(err) {
			l.err = err
		}
		l.set.wakeLocked()
		br.mu.Unlock()
		if l.ctx.Err() != nil {
			return
		}
		if confirmed {
			first = false
			back.reset()
		}
		switch {
		case moved:
			br.rep.report(chain(ErrDisconnected, "node "+l.group.addr, err))
			l.moved.Store(true)
			select {
			case l.set.regroup <- struct{}{}:
			default:
			}
			// Wait for the manager to stop this loop: until then, keep
			// the slots' sequences here.
			<-l.ctx.Done()
			return
		case errors.Is(err, ErrSubscribe) && !transientReply(err):
			br.reportLast(err) // it names the node
		case !connected:
			br.reportLast(&connectError{addr: l.group.addr, err: err})
		default:
			br.reportLast(chain(ErrDisconnected, "node "+l.group.addr, err))
		}
		if !sleep(l.ctx, back.next()) {
			return
		}
	}
}

// subscribe sends one SSUBSCRIBE per slot of the loop's group and returns
// the confirmations to wait for.
func (l *shardLoop) subscribe(ctx context.Context, ps *redis.PubSub) (map[string]bool, error) {
	pending := map[string]bool{}
	for _, chans := range l.group.slots {
		for _, ch := range chans {
			pending["ssubscribe "+ch] = true
		}
		if err := ps.SSubscribe(ctx, chans...); err != nil {
			return nil, err
		}
	}
	return pending, nil
}

// setReady records that every subscription of the current connection is
// confirmed.
func (l *shardLoop) setReady() {
	br := l.set.br
	br.mu.Lock()
	defer br.mu.Unlock()
	if br.closed {
		return
	}
	l.ready, l.err = true, nil
	l.set.wakeLocked()
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
// SSUBSCRIBE, sorted: those of its exact import routes when it runs on a
// *redis.ClusterClient (see ShardChannel), none otherwise.
func (br *Bridge) ShardChannels() []string {
	if !br.shards.sharded() {
		return nil
	}
	var chans []string
	for ch := range br.shards.channels {
		chans = append(chans, ch)
	}
	slices.Sort(chans)
	return chans
}
