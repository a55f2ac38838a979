package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Request/reply.
//
// A request is an event whose Meta.ReplyTo is a topic of the requesting
// bus's inbox, "_INBOX.<id>.<n>": id is random per bus, n numbers the
// bus's requests. The requests waiting for a reply sit in a map keyed by n,
// split in shards so that concurrent requests rarely share a lock; each
// waits on a channel of one slot, taken from a pool.
//
// A reply made in this process (Reply) is handed to its request directly:
// it is never published. A reply from another instance arrives through a
// bridge, which publishes it on the requester's inbox topic (with the
// bridge's instance ID in front: "_INBOX.<instance>.<id>.<n>"); the bus's
// one inbox subscription, "_INBOX.**.<id>.*", made by the first Request,
// hands it over. Whoever takes a request out of the map owns its channel:
// a reply takes it (under the shard's lock) and fills the slot, or a
// request giving up takes it and no reply can fill it any more. A reply
// that finds nothing to take counts as late.
//
// One subscription per request was rejected: subscribing and unsubscribing
// write the index under a lock and bump a generation, which turns stale the
// cached match sets of every topic sharing the stripe (or of every topic,
// for a pattern), so that a stream of requests would slow down ordinary
// publishes.

// inboxRoot is the first segment of every reply topic.
const inboxRoot = "_INBOX"

// replyShards is the number of shards of the map of waiting requests.
const replyShards = 16

// requests is the request/reply state of a bus. Its zero value is ready:
// init runs at the first use.
type requests struct {
	once   sync.Once
	prefix string // inboxRoot + sep + id + sep: the start of this bus's reply topics
	next   atomic.Uint64
	late   atomic.Uint64 // replies that found no request waiting (Stats.LateReplies)

	subMu sync.Mutex    // protects sub
	sub   *Subscription // the inbox subscription, made by the first Request

	pool   sync.Pool // of chan Event, one slot each
	shards [replyShards]replyShard
}

// replyShard is one part of the map of waiting requests.
type replyShard struct {
	mu sync.Mutex // protects m
	m  map[uint64]chan Event
	_  [64 - 16]byte // one cache line per shard
}

// init gives the bus its inbox, once.
func (r *requests) init(sep byte) {
	r.once.Do(func() {
		var id [8]byte
		_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
		r.prefix = inboxRoot + string(sep) + hex.EncodeToString(id[:]) + string(sep)
		r.pool.New = func() any { return make(chan Event, 1) }
	})
}

// listen makes the inbox subscription if it is not made yet. It fails
// once the bus is closed.
//
//go:noinline
func (r *requests) listen(b *Bus) error {
	r.subMu.Lock()
	defer r.subMu.Unlock()
	if r.sub != nil {
		return nil
	}
	sep := string(b.sep)
	id := strings.TrimSuffix(strings.TrimPrefix(r.prefix, inboxRoot+sep), sep)
	pattern := inboxRoot + sep + "**" + sep + id + sep + "*"
	sub, err := b.subscribe(pattern, func(_ context.Context, e Event) { r.deliver(b.sep, e) }, nil, nil, 2)
	if err != nil {
		return err
	}
	r.sub = sub
	return nil
}

// wait enters request n in the map and returns the channel its reply
// will arrive on.
func (r *requests) wait(n uint64) chan Event {
	ch := r.pool.Get().(chan Event)
	sh := &r.shards[n%replyShards]
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = make(map[uint64]chan Event)
	}
	sh.m[n] = ch
	sh.mu.Unlock()
	return ch
}

// done takes request n out of the map, when it gives up. If a reply has
// taken it out already, the reply is in ch, or about to be: done returns
// it, with ok set. ch goes back to the pool either way.
func (r *requests) done(n uint64, ch chan Event) (e Event, ok bool) {
	sh := &r.shards[n%replyShards]
	sh.mu.Lock()
	_, waiting := sh.m[n]
	delete(sh.m, n)
	sh.mu.Unlock()
	if !waiting {
		e, ok = <-ch, true // a reply took it: it fills the slot under the lock
	}
	r.pool.Put(ch)
	return e, ok
}

// deliver hands e, a reply on one of this bus's inbox topics, to its
// request, or counts it as late.
func (r *requests) deliver(sep byte, e Event) {
	seg := e.Topic[strings.LastIndexByte(e.Topic, sep)+1:]
	n, err := strconv.ParseUint(seg, 10, 64)
	if err != nil {
		r.late.Add(1) // not a topic Request made: nobody waits for it
		return
	}
	sh := &r.shards[n%replyShards]
	sh.mu.Lock()
	ch, ok := sh.m[n]
	if ok {
		delete(sh.m, n)
		ch <- e // the one slot is free: only the request reads it, after taking it back
	}
	sh.mu.Unlock()
	if !ok {
		r.late.Add(1)
	}
}

// pending returns the number of requests waiting for a reply, for tests.
func (r *requests) pending() int {
	n := 0
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Request publishes payload to topic as a request and waits for the first
// reply, which it returns. The event the subscribers receive carries a
// reply topic in Meta.ReplyTo; a responder answers with [Bus.Reply].
//
// Request returns at once an error wrapping ErrNoResponders when no
// subscription matches topic (as counted by NumSub: plain and pattern
// subscriptions, synchronous or not, a queue group counting as one):
// nobody could answer. A bridge exporting topic is such a
// subscription: across instances, a request that no instance answers waits
// for its context instead.
//
// Otherwise Request publishes the event as PublishEvent does, then waits
// until a reply comes, ctx ends or the bus is closed, and returns then an
// error wrapping ctx's error (errors.Is(err, context.DeadlineExceeded)
// after a timeout) or ErrClosed. A ctx without a deadline waits as long as
// it takes: give it one. A Publish error (a Block queue whose ctx ended,
// say) is returned at once, unless a reply came already, which wins.
// Every reply after the first, and a reply that comes after Request has
// returned, is dropped and counted in Stats.LateReplies: it reaches no
// other request.
//
// Responders may be synchronous handlers (Request then returns as soon
// as Publish does), asynchronous ones, or the members of a queue group,
// one of which gets the request. A responder that returns an error,
// panics, unsubscribes or never replies leaves Request waiting until ctx
// ends: to tell the requester about a failure, reply with a payload that
// says so.
//
// Request is safe for concurrent use, also from a handler, which it
// blocks until the reply. It costs two allocations (the reply topic and
// the Meta) besides the payload's, and the first Request of a bus
// subscribes the bus's inbox pattern ("_INBOX.**.<id>.*"), which Patterns
// and Stats.Subscriptions then show.
func (b *Bus) Request(ctx context.Context, topic string, payload any) (Event, error) {
	b.mustBeNew()
	r := &b.req
	r.init(b.sep)
	if n, err := b.NumSub(topic); err != nil {
		return Event{}, err
	} else if n == 0 {
		return Event{}, errorf(ErrNoResponders, "request %q", topic)
	}
	if err := r.listen(b); err != nil {
		return Event{}, err
	}
	n := r.next.Add(1)
	var buf [64]byte
	replyTo := string(strconv.AppendUint(append(buf[:0], r.prefix...), n, 10))
	ch := r.wait(n)
	err := b.PublishEvent(ctx, Event{Topic: topic, Payload: payload, Meta: &Meta{ReplyTo: replyTo}})
	if err == nil {
		select {
		case e := <-ch:
			r.pool.Put(ch)
			return e, nil
		case <-ctx.Done():
			err = errorf(ctx.Err(), "request %q: no reply", topic)
		case <-b.life.Done():
			err = errClosed(fmt.Sprintf("request %q", topic))
		}
	}
	if e, ok := r.done(n, ch); ok {
		return e, nil
	}
	return Event{}, err
}

// Reply answers req, a request, with payload: the event that the request's
// Request returns has payload as its Payload and req.Meta.ReplyTo as its
// Topic. The reply shares payload as events do: nobody may modify it
// afterwards.
//
// A request made on this bus gets the reply directly, without a publish
// and without an allocation. Reply returns nil even when the request has
// already returned or been answered: the reply is then counted in
// Stats.LateReplies and dropped. A request that came from another instance
// (imported by a bridge with replies enabled) carries a reply topic of
// that instance's inbox: Reply publishes the reply on it, with ctx, for the
// bridge to send back, and returns what Publish returns.
//
// Reply returns an error wrapping ErrNotRequest when req has no
// Meta.ReplyTo, and ErrClosed once the bus is closed. It is safe for
// concurrent use, from any handler; a responder may reply more than once,
// but only the first reply counts.
func (b *Bus) Reply(ctx context.Context, req Event, payload any) error {
	b.mustBeNew()
	if req.Meta == nil || req.Meta.ReplyTo == "" {
		return errorf(ErrNotRequest, "reply to %q", req.Topic)
	}
	to := req.Meta.ReplyTo
	r := &b.req
	r.init(b.sep)
	if !strings.HasPrefix(to, r.prefix) {
		return b.PublishEvent(ctx, Event{Topic: to, Payload: payload})
	}
	if b.closed.Load() {
		return errClosed(fmt.Sprintf("reply to %q", req.Topic))
	}
	r.deliver(b.sep, Event{Topic: to, Payload: payload})
	return nil
}

// RequestTyped is Request for a reply whose payload is a T, which it
// returns. A reply with a payload of another type (for a non-interface T,
// a nil payload too) gets an error wrapping ErrPayloadType that names both
// types; the reply is lost then. Across instances, the payload is what
// the bridge's codec decoded: use a codec that yields a T.
func RequestTyped[T any](ctx context.Context, b *Bus, topic string, payload any) (T, error) {
	var zero T
	e, err := b.Request(ctx, topic, payload)
	if err != nil {
		return zero, err
	}
	v, ok := e.Payload.(T)
	if !ok {
		return zero, errorf(ErrPayloadType, "request %q: reply: want %v, got %T", topic, reflect.TypeFor[T](), e.Payload)
	}
	return v, nil
}
