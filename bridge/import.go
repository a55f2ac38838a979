package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/busline/bus/bridge/internal/seq"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/wire"
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

// subscribeLoop owns the pub/sub connection: it subscribes, reads until the
// connection fails, and makes a new one after a jittered backoff, until
// Close. A fresh *redis.PubSub is used for each connection, so that the
// bridge, not go-redis, decides when to reconnect and knows when the
// subscriptions of the new connection are confirmed.
func (br *Bridge) subscribeLoop() {
	defer close(br.subDone)
	rl := readLoop{br: br}
	back := backoff{min: br.cfg.ReconnectMin, max: br.cfg.ReconnectMax}
	first := true
	for {
		ps := br.rdb.Subscribe(br.subCtx)
		br.mu.Lock()
		if br.closed {
			br.mu.Unlock()
			_ = ps.Close()
			return
		}
		br.ps = ps
		br.mu.Unlock()

		connected, confirmed, err := rl.run(ps, first)
		_ = ps.Close()
		br.mu.Lock()
		br.ps = nil
		if !br.closed {
			var subErr error
			if errors.Is(err, ErrSubscribe) {
				subErr = err
			}
			br.setStateLocked(false, subErr)
		}
		br.mu.Unlock()
		if br.subCtx.Err() != nil {
			return
		}
		if confirmed {
			first = false
			back.reset()
		}
		switch {
		case errors.Is(err, ErrSubscribe):
			br.reportLast(err)
		case !connected:
			br.reportLast(&connectError{addr: redisAddr(br.rdb), err: err})
		default:
			br.reportLast(fmt.Errorf("%w: %w", ErrDisconnected, err))
		}
		if !sleep(br.subCtx, back.next()) {
			return
		}
	}
}

// readLoop holds the state of the read loop that survives reconnects.
type readLoop struct {
	br   *Bridge
	seqs seq.Tracker // last event seen of each sequence
	ping uint64      // number of the last PING sent
	// shard is the sharded subscription this loop reads (SSUBSCRIBE, on a
	// cluster: see cluster.go), or nil for the classic connection.
	shard *shardLoop
}

// run subscribes on ps and reads from it until it fails, answering for the
// liveness of the connection: a PING goes out every PingInterval, and its
// answer must arrive within PingTimeout (any message arriving counts as a
// sign of life and extends that). go-redis's own health check does not
// wait for the answer, so a half-open connection would look healthy.
// connected reports whether the connection was made and the
// subscriptions sent (go-redis dials when the first is sent); confirmed
// whether every subscription was confirmed.
func (rl *readLoop) run(ps *redis.PubSub, first bool) (connected, confirmed bool, err error) {
	br := rl.br
	ctx := br.subCtx
	var pending map[string]bool
	if rl.shard != nil {
		pending, err = rl.shard.subscribe(ctx, ps)
	} else {
		pending, err = rl.subscribe(ctx, ps)
	}
	if err != nil {
		return false, false, err
	}
	connected = true

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
		msg, err := ps.ReceiveTimeout(ctx, wait)
		// Reading the clock costs as much as handling a message on some
		// virtual machines: while messages stream in, read it every
		// clockEvery messages, which is still far finer than the probe
		// needs.
		if _, ok := msg.(*redis.Message); !ok || streak == clockEvery {
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
		case isRedisError(err):
			// The only commands on this connection are SUBSCRIBE,
			// PSUBSCRIBE and PING: an error reply is a refusal.
			if rl.shard != nil {
				return connected, confirmed, fmt.Errorf("%w: node %s: %w", ErrSubscribe, rl.shard.group.addr, err)
			}
			return connected, confirmed, fmt.Errorf("%w: %w", ErrSubscribe, err)
		default:
			return connected, confirmed, err
		}
		switch m := msg.(type) {
		case *redis.Message:
			rl.handle(m)
		case *redis.Subscription:
			switch m.Kind {
			case "sunsubscribe":
				// The bridge never unsubscribes: Redis dropped the
				// channels of a slot this node no longer serves.
				return connected, confirmed, fmt.Errorf("%w: %q", errSlotMoved, m.Channel)
			case "subscribe", "psubscribe", "ssubscribe":
				delete(pending, m.Kind+" "+m.Channel)
				if len(pending) == 0 && !confirmed {
					confirmed = true
					if rl.shard != nil {
						rl.shard.setReady()
					} else {
						br.mu.Lock()
						if !br.closed {
							br.setStateLocked(true, nil)
						}
						br.mu.Unlock()
					}
					if !first {
						br.c.reconnects.Add(1)
						br.rep.report(ErrPossibleGap)
					}
				}
			}
		case *redis.Pong:
			if m.Payload == waiting {
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
			if err := ps.Ping(ctx, waiting); err != nil {
				return connected, confirmed, err
			}
			deadline = now.Add(timeout)
		}
	}
}

// subscribe sends the classic subscriptions, SUBSCRIBE for the exact
// channels and PSUBSCRIBE for the globs, and returns the confirmations to
// wait for, keyed by kind and name.
func (rl *readLoop) subscribe(ctx context.Context, ps *redis.PubSub) (map[string]bool, error) {
	br := rl.br
	pending := map[string]bool{}
	var channels []string
	for ch := range br.exact {
		channels = append(channels, ch)
		pending["subscribe "+ch] = true
	}
	if len(channels) > 0 {
		if err := ps.Subscribe(ctx, channels...); err != nil {
			return nil, err
		}
	}
	if len(br.globs) > 0 {
		globs := make([]string, len(br.globs))
		for i, g := range br.globs {
			globs[i] = g.glob
			pending["psubscribe "+g.glob] = true
		}
		if err := ps.PSubscribe(ctx, globs...); err != nil {
			return nil, err
		}
	}
	return pending, nil
}

// clockEvery is how many messages in a row the read loop handles between
// two readings of the clock.
const clockEvery = 64

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handle takes one message from Redis to the import queue. It runs on the
// read loop and must stay quick: decoding the payload into a Go value is
// left to the workers. It checks the envelope here, in arrival order, for
// echoes, gaps and duplicates.
func (rl *readLoop) handle(m *redis.Message) {
	br := rl.br
	c := &br.c
	c.received.Add(1)
	if rl.shard != nil {
		// Sharded: one subscription per channel, of an exact route.
		sc, ok := br.shards.channels[m.Channel]
		if !ok {
			c.filtered.Add(1)
			return
		}
		rl.accept(m, sc.topic, sc.route)
		return
	}
	topic, ok := strings.CutPrefix(m.Channel, br.cfg.Prefix)
	if !ok {
		c.filtered.Add(1)
		return
	}

	// Redis sends one copy of a message per matching subscription. The
	// copy of the exact subscription is the one imported when there is
	// one, otherwise that of the first glob, in sorted order, whose bus
	// patterns match the topic: Redis sent that copy, since a glob
	// matches at least what its patterns match.
	if m.Pattern == "" {
		if !br.exact[m.Channel] {
			c.filtered.Add(1)
			return
		}
	} else {
		if br.exact[m.Channel] {
			c.duplicateCopies.Add(1)
			return
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
			return
		case m.Pattern:
		default:
			c.duplicateCopies.Add(1)
			return
		}
	}
	r := br.importRoute(topic)
	if r == nil {
		c.filtered.Add(1)
		return
	}
	rl.accept(m, topic, r)
}

// accept checks the message of topic, imported by route r, and queues it.
func (rl *readLoop) accept(m *redis.Message, topic string, r *route) {
	br := rl.br
	c := &br.c
	if len(m.Payload) > br.cfg.MaxMessageBytes {
		c.decodeErrors.Add(1)
		br.rep.drop(ErrTooLarge, 1, fmt.Errorf("%w: %d bytes on %q", ErrTooLarge, len(m.Payload), m.Channel))
		return
	}
	data := []byte(m.Payload)

	if !r.Raw && wire.IsEnvelope(data) {
		// A batch counts as one message received until it is decoded,
		// then as one per event, each of which is accounted for below.
		// The events of a batch get their own copies of their payloads:
		// the codec owns what it decodes and may keep it, and one kept
		// payload must not keep the whole batch in memory.
		batch := wire.IsBatch(data)
		_, err := wire.DecodeMessage(m.Channel, data, br.key, br.cfg.MaxMessageBytes, func(i int, env wire.Envelope) {
			if i > 0 {
				c.received.Add(1)
			}
			rl.acceptEnvelope(&env, m.Channel, topic, r, batch)
		})
		if err != nil {
			// The error starts with its sentinel's message; signature
			// errors name the channel already.
			if errors.Is(err, ErrSignature) {
				c.signatureRejected.Add(1)
				br.rep.drop(ErrSignature, 1, err)
			} else {
				c.decodeErrors.Add(1)
				br.rep.drop(ErrMalformed, 1, fmt.Errorf("%w, on %q", err, m.Channel))
			}
		}
		return
	}

	// No envelope: a raw route, or a foreign publisher on an enveloped
	// one. With a signing key, an enveloped route accepts signed
	// envelopes only, or anyone could bypass the signature.
	if !r.Raw && br.key != nil {
		c.signatureRejected.Add(1)
		br.rep.drop(ErrSignature, 1, fmt.Errorf("%w: unsigned message without envelope on %q", ErrSignature, m.Channel))
		return
	}
	if br.echo != nil && br.echo.Consume(m.Channel, data, time.Now()) {
		c.echoes.Add(1)
		return
	}
	rl.enqueue(importItem{topic: topic, route: r, payload: data, meta: rawMeta})
}

// acceptEnvelope checks one event of an enveloped message received on
// channel, of topic, imported by route r, and queues it, with a copy of its
// payload if copyPayload is set.
func (rl *readLoop) acceptEnvelope(env *wire.Envelope, channel, topic string, r *route, copyPayload bool) {
	br := rl.br
	c := &br.c
	if env.Source == br.id {
		c.echoes.Add(1)
		return
	}
	if !rl.sequence(env.Source, channel, env.Seq, env.Time) {
		c.dups.Add(1)
		return
	}
	meta := &bus.Meta{
		Source:      env.Source,
		Seq:         env.Seq,
		ContentType: env.ContentType,
		Headers:     env.Headers,
	}
	if env.Time != 0 {
		meta.Time = time.Unix(0, env.Time)
	}
	if meta.Source == "" {
		meta.Source = RawSource // keep it Remote whatever the sender did
	}
	payload := env.Payload
	if copyPayload {
		payload = bytes.Clone(payload)
	}
	rl.enqueue(importItem{topic: topic, route: r, payload: payload, meta: meta})
}

// sequence checks seq, the sequence number of source's event on channel
// sent at time t, and reports whether the event is new (see
// seq.Tracker.Check). A gap is counted and reported.
func (rl *readLoop) sequence(source, channel string, seq uint64, t int64) bool {
	isNew, missing := rl.seqs.Check(source, channel, seq, t)
	if missing != 0 {
		br := rl.br
		gap := &GapError{Source: source, Channel: channel, Expected: missing, Got: seq}
		br.c.gaps.Add(1)
		br.c.gapEvents.Add(gap.Missing())
		br.rep.report(gap)
	}
	return isNew
}

// importItem is one imported event waiting to be published locally.
type importItem struct {
	topic   string
	route   *route
	payload []byte
	meta    *bus.Meta
}

func (rl *readLoop) enqueue(it importItem) {
	if !rl.br.inq.Push(it.topic, it) {
		rl.br.importDropped(1)
	}
}

func (br *Bridge) importDropped(n int) {
	br.c.importDropped.Add(uint64(n))
	br.rep.drop(ErrImportFull, uint64(n), nil)
}

// deliver publishes one imported event on the local bus. It runs on an
// import worker.
func (br *Bridge) deliver(it *importItem) {
	payload, err := it.route.codec.Decode(it.payload, it.meta.ContentType)
	if err != nil {
		br.c.decodeErrors.Add(1)
		br.rep.drop(ErrDecode, 1, chain(ErrDecode, fmt.Sprintf("topic %q from %q", it.topic, it.meta.Source), err))
		return
	}
	err = br.bus.PublishEvent(br.deliverCtx, bus.Event{Topic: it.topic, Payload: payload, Meta: it.meta})
	if errors.Is(err, bus.ErrInvalidTopic) {
		// A foreign publisher used a channel whose topic the bus
		// rejects. (Checked here rather than on the read loop, since
		// PublishEvent checks anyway.)
		br.c.decodeErrors.Add(1)
		br.rep.drop(ErrMalformed, 1, chain(ErrMalformed, "", err))
		return
	}
	if err != nil {
		br.c.importDropped.Add(1)
		br.rep.drop(ErrImportFull, 1, busError(fmt.Sprintf("bridge: publish %q on the bus", it.topic), err))
		return
	}
	br.c.imported.Add(1)
}

// isRedisError reports whether err is an error reply from Redis. Its
// target lives here rather than in the read loop, where errors.As would
// make it escape and cost an allocation per message.
func isRedisError(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}
