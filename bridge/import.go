package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/resp"
	"github.com/redis/go-redis/v9"
)

// RawSource is the Meta.Source of events imported from messages without an
// envelope, such as those of raw routes. Like every imported event they are
// Remote, so they are never exported again.
const RawSource = "redis"

// rawMeta is the metadata shared by every event imported without an
// envelope; handlers must not modify it.
var rawMeta = &bus.Meta{Source: RawSource}

// errPongTimeout is the cause of ErrDisconnected when a PING's answer did
// not come back in time.
var errPongTimeout = errors.New("no answer to PING in time")

// readLoop holds the state of a read loop that survives reconnects: that
// of the classic connection (pubsubTransport) or of a node's sharded one
// (shardLoop).
type readLoop struct {
	br   *Bridge
	ctx  context.Context // ends the loop
	sub  subscriber
	in   ingest // the ingest path, with the sequences seen
	ping uint64 // number of the last PING sent
	// names are the channels of the messages received in place.
	names channelNames
}

// subscriber is what a read loop reads for: the classic subscriptions or
// those of one node on a cluster. Its methods run on the read loop.
type subscriber interface {
	// subscribe sends the subscriptions on c and returns the commands
	// sent, in order.
	subscribe(ctx context.Context, c subConn) (sent []subCommand, err error)
	// confirmed records that every subscription sent first on the
	// connection is confirmed.
	confirmed()
	// subscribed records Redis's confirmation of a subscription (on) or
	// of its end: kind is that of the confirmation ("psubscribe",
	// "sunsubscribe").
	subscribed(kind, name string, on bool)
	// unsubscribed reports whether the end of the sharded subscription
	// to channel, which Redis confirmed, means that its slot moved to
	// another node, rather than that the bridge unsubscribed.
	unsubscribed(channel string) (moved bool)
	// refused wraps an error reply, a refused subscription (err names
	// the command), in ErrSubscribe.
	refused(err error) error
	// later returns the commands sent on the connection after its first
	// ones, whose replies the read loop takes.
	later() *laterCommands
	// refusedLater records that Redis refused c, a command sent after the
	// connection's first ones; err is the refusal, wrapped by refused and
	// naming c. It reports whether the connection stays up for the
	// other subscriptions; if not, the read loop ends it with err.
	refusedLater(c subCommand, err error) (kept bool)
	// route returns the topic of a message on channel, sent for the
	// subscription to pattern (none if empty), and the route that
	// imports it, or false when it is not imported (counted as filtered
	// or a duplicate copy). The topic is a part of channel.
	route(channel string, pattern []byte) (topic string, r *route, ok bool)
}

// failures keeps a connection loop's reports short while it keeps
// failing: every reconnect attempt fails the same way while Redis is down
// or refuses the login, and one report per attempt (several a second at
// first) would bury everything else. The loop reports its first failure
// since the last success, then a failure whose cause differs from the
// last reported one, and otherwise at most one summary (a repeatedError)
// per interval, Options.ReconnectMax. Ready still carries the last
// failure, reported or not (Bridge.reportAttempt). A loop owns one; it is
// not safe for concurrent use.
type failures struct {
	every    time.Duration
	n        int       // failed attempts since the last success
	since    time.Time // when the first of them failed
	cause    string    // the cause last reported (causeKey)
	reported time.Time // when
}

// failed records a failed attempt, err, and returns what to report: err,
// a summary of the attempts, or nil.
func (f *failures) failed(err error, now time.Time) error {
	if f.n == 0 {
		f.since = now
	}
	f.n++
	cause := causeKey(err)
	switch {
	case f.n == 1 || cause != f.cause:
		f.cause, f.reported = cause, now
		return err
	case now.Sub(f.reported) < f.every:
		return nil
	default:
		f.reported = now
		return &repeatedError{err: err, attempts: f.n, span: now.Sub(f.since)}
	}
}

// succeeded ends the run of failures: the next one is reported.
func (f *failures) succeeded() { f.n, f.cause = 0, "" }

// causeKey returns what identifies the cause of a failure of a connection
// loop, for failures to tell a new cause from the same one again: the
// kind (connect, refused or lost) and the message, without the local and
// remote addresses of a network error (the local port changes with every
// connection).
func causeKey(err error) string {
	kind := "lost: "
	switch {
	case errors.Is(err, ErrSubscribe):
		kind = "refused: "
	case errors.Is(err, ErrConnect):
		kind = "connect: "
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return fmt.Sprintf("%s%s %s: %v", kind, op.Op, op.Net, op.Err)
	}
	return kind + err.Error()
}

// run subscribes on cn and reads from it until it fails, answering for the
// liveness of the connection: a PING goes out every PingInterval, and its
// answer must arrive within PingTimeout (any message arriving counts as a
// sign of life and extends that). go-redis's own health check does not
// wait for the answer, so a half-open connection would look healthy.
// connected reports whether the connection was made and the
// subscriptions sent (go-redis dials when the first is sent); confirmed
// whether every subscription was confirmed.
func (rl *readLoop) run(cn subConn, first bool) (connected, confirmed bool, err error) {
	br := rl.br
	ctx := rl.ctx
	sent, err := rl.sub.subscribe(ctx, cn)
	if err != nil {
		return false, false, err
	}
	connected = true
	pending := map[string]bool{} // the confirmations to wait for, by kind and name
	for _, c := range sent {
		for _, a := range c.args {
			pending[c.kind()+" "+a] = true
		}
	}
	if len(pending) == 0 {
		// Nothing to subscribe to (every route removed): the
		// connection is ready for the routes added later.
		confirmed = true
		rl.sub.confirmed()
	}

	interval, timeout := br.cfg.PingInterval, br.cfg.PingTimeout
	now := time.Now()
	nextPing := now.Add(interval)
	var waiting string // payload of the PING whose answer is due
	var deadline time.Time
	streak := 0 // messages in a row since now was read
	for {
		until := nextPing
		if waiting != "" {
			until = deadline
		}
		wait := max(until.Sub(now), time.Millisecond)
		m, err := cn.receive(ctx, until, wait)
		// Reading the clock costs as much as handling a message on some
		// virtual machines: while messages stream in, read it every
		// clockEvery messages, which is still far finer than the probe
		// needs.
		if err != nil || !m.isMessage() || streak == clockEvery {
			now, streak = time.Now(), 0
		} else {
			streak++
		}
		switch {
		case err == nil:
			if waiting != "" {
				deadline = now.Add(timeout)
			}
		case isTimeout(err):
			m = &noReply
		case isRedisError(err):
			// The only commands on this connection are subscription
			// commands and PING: an error reply is a refusal. Once the
			// first commands are confirmed, it answers the oldest later
			// one, if any, which the subscriber may take (a route added
			// at run time that the ACL refuses) without the others'.
			if len(pending) == 0 {
				if c, ok := rl.sub.later().refused(); ok {
					rerr := rl.sub.refused(fmt.Errorf("%s: %w", c.describe(), err))
					if rl.sub.refusedLater(c, rerr) {
						continue
					}
					return connected, confirmed, rerr
				}
			}
			return connected, confirmed, rl.sub.refused(fmt.Errorf("%s: %w", refusedCommand(sent, pending), err))
		default:
			return connected, confirmed, err
		}
		switch m.kind {
		case "message", "pmessage", "smessage":
			rl.handle(m, now)
		case "sunsubscribe":
			name := m.nameString()
			rl.sub.subscribed(m.kind, name, false)
			if rl.sub.unsubscribed(name) {
				// Not the bridge's: Redis dropped the channels of a
				// slot this node no longer serves.
				return connected, confirmed, fmt.Errorf("%w: %q", errSlotMoved, name)
			}
		case "unsubscribe", "punsubscribe":
			rl.sub.subscribed(m.kind, m.nameString(), false)
			rl.sub.later().confirmed()
		case "subscribe", "psubscribe", "ssubscribe":
			name := m.nameString()
			rl.sub.subscribed(m.kind, name, true)
			if key := m.kind + " " + name; pending[key] {
				delete(pending, key)
			} else {
				rl.sub.later().confirmed()
			}
			if len(pending) == 0 && !confirmed {
				confirmed = true
				rl.sub.confirmed()
				if !first {
					br.c.reconnects.Add(1)
					br.rep.report(ErrPossibleGap)
				}
			}
		case "pong":
			if string(m.payload) == waiting {
				waiting = ""
				nextPing = now.Add(interval)
			}
		}
		if waiting != "" && now.After(deadline) {
			return connected, confirmed, errPongTimeout
		}
		if waiting == "" && !now.Before(nextPing) {
			rl.ping++
			waiting = "busline-bridge-" + strconv.FormatUint(rl.ping, 10)
			if err := cn.ping(ctx, waiting); err != nil {
				return connected, confirmed, err
			}
			deadline = now.Add(timeout)
		}
	}
}

// subCommand is a subscription command a read loop sent: SUBSCRIBE,
// PSUBSCRIBE or SSUBSCRIBE, and its channels or globs.
type subCommand struct {
	name string
	args []string
}

// kind is the kind of the confirmations of c: "subscribe" for SUBSCRIBE.
func (c subCommand) kind() string { return strings.ToLower(c.name) }

// laterCommands are the subscription commands a connection sent after
// its first ones (routes added or removed at run time, refused ones asked
// for again) whose replies have not all come, oldest first. Redis answers
// in order and refuses a command whole, so an error reply is the oldest
// one's: the read loop can say which command it refuses, and the
// transport can keep the connection for the other subscriptions. A
// transport records a command before sending it; the read loop takes the
// replies. A zero laterCommands is empty; all methods are safe for
// concurrent use.
type laterCommands struct {
	mu   sync.Mutex // protects cmds
	cmds []laterCommand
}

// laterCommand is a command sent after the connection's first ones and
// how many of its replies are still due (one per channel or glob).
type laterCommand struct {
	cmd  subCommand
	left int
}

// add records c, about to be sent.
func (q *laterCommands) add(c subCommand) {
	q.mu.Lock()
	q.cmds = append(q.cmds, laterCommand{cmd: c, left: len(c.args)})
	q.mu.Unlock()
}

// confirmed takes a confirmation, one of the replies due to the oldest
// command, if there is one.
func (q *laterCommands) confirmed() {
	q.mu.Lock()
	if len(q.cmds) > 0 {
		if q.cmds[0].left--; q.cmds[0].left <= 0 {
			q.cmds = q.cmds[1:]
		}
	}
	q.mu.Unlock()
}

// refused takes the oldest command, which an error reply refused whole,
// and reports whether there was one.
func (q *laterCommands) refused() (subCommand, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.cmds) == 0 {
		return subCommand{}, false
	}
	c := q.cmds[0].cmd
	q.cmds = q.cmds[1:]
	return c, true
}

// reset forgets the commands of a connection that ended.
func (q *laterCommands) reset() {
	q.mu.Lock()
	q.cmds = nil
	q.mu.Unlock()
}

// countDown takes one from the count of key in m, deleting it at zero.
func countDown(m map[string]int, key string) {
	if n := m[key]; n > 1 {
		m[key] = n - 1
	} else {
		delete(m, key)
	}
}

// maxNamed is how many channels or globs a refusal names before "and N
// more".
const maxNamed = 3

// refusedCommand says which command an error reply refused: the first
// one sent, in order, with a subscription still pending (Redis answers in
// order, and refuses a command whole), or PING when every subscription
// was confirmed. It names at most maxNamed of its channels or globs:
// `SUBSCRIBE "app:a", "app:b", "app:c" and 2 more`.
func refusedCommand(sent []subCommand, pending map[string]bool) string {
	for _, c := range sent {
		if !slices.ContainsFunc(c.args, func(a string) bool { return pending[c.kind()+" "+a] }) {
			continue
		}
		return c.describe()
	}
	return "PING"
}

// describe names c and at most maxNamed of its channels or globs:
// `PSUBSCRIBE "app:b.*"`.
func (c subCommand) describe() string {
	var b strings.Builder
	b.WriteString(c.name)
	for i, a := range c.args[:min(len(c.args), maxNamed)] {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %q", a)
	}
	if n := len(c.args) - maxNamed; n > 0 {
		fmt.Fprintf(&b, " and %d more", n)
	}
	return b.String()
}

// noReply is what the read loop handles when no reply came in time.
var noReply push

// clockEvery is how many messages in a row the read loop handles between
// two readings of the clock.
const clockEvery = 64

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handle takes one message from Redis, received about now, to the import
// queue. It runs on the read loop and must stay quick: decoding the
// payload into a Go value is left to the workers. It checks the envelope
// here, in arrival order, for echoes, replays, gaps and duplicates.
func (rl *readLoop) handle(m *push, now time.Time) {
	br := rl.br
	c := &br.c
	c.received.Add(1)
	channel := m.name
	if channel == "" {
		channel = rl.names.name(m.channel, br.cfg.Prefix)
	}
	topic, r, ok := rl.sub.route(channel, m.pattern)
	if !ok {
		return
	}
	rl.in.accept(&inbound{channel: channel, topic: topic, route: r, data: m.payload, own: m.own, now: now.UnixNano()})
	if held := rl.in.held; len(held) > 0 {
		br.enqueue(r, topic, held)
		clear(held) // let the payloads be collected
		rl.in.held = held[:0]
	}
}

// importItem is one imported event waiting to be published locally.
type importItem struct {
	topic   string
	route   *route
	payload []byte
	meta    *bus.Meta
}

// size is what it weighs in the import queue's byte cap
// (Options.ImportQueueBytes): its payload and topic, with its headers if
// it has any.
func (it importItem) size() int {
	n := len(it.payload) + len(it.topic)
	for k, v := range it.meta.Headers {
		n += len(k) + len(v)
	}
	return n
}

// enqueue queues the events of one message, imported on topic by route
// r, for the import workers, which publish them (deliver), counting
// those that do not fit as dropped. The pub/sub read loops call it.
func (br *Bridge) enqueue(r *route, topic string, items []importItem) {
	if n := len(items) - br.inq.PushRun(topic, items); n > 0 {
		br.importDropped(n)
		r.c.importDropped.Add(uint64(n))
	}
}

func (br *Bridge) importDropped(n int) {
	br.c.importDropped.Add(uint64(n))
	br.rep.drop(ErrImportFull, uint64(n), nil)
}

// deliverItem publishes one imported event on the local bus. It runs on an
// import worker.
func (br *Bridge) deliverItem(it *importItem) {
	if _, err := br.publishLocal(it, "", ""); err != nil {
		br.c.importDropped.Add(1)
		it.route.c.importDropped.Add(1)
		br.rep.drop(ErrImportFull, 1, busError(fmt.Sprintf("bridge: publish %q on the bus", it.topic), err))
	}
}

// isRedisError reports whether err is an error reply from Redis. Its
// target lives here rather than in the read loop, where errors.As would
// make it escape and cost an allocation per message.
func isRedisError(err error) bool {
	var rerr redis.Error
	var own resp.Error
	return errors.As(err, &rerr) || errors.As(err, &own)
}
