package bridge

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/wire"
)

// Direction says which way a Route mirrors events. The zero Direction is
// Both.
type Direction uint8

const (
	// Both mirrors local events to Redis and Redis messages to the local
	// bus.
	Both Direction = iota
	// Export mirrors local events to Redis only.
	Export
	// Import mirrors Redis messages to the local bus only.
	Import
)

// String returns "both", "export" or "import".
func (d Direction) String() string {
	switch d {
	case Both:
		return "both"
	case Export:
		return "export"
	case Import:
		return "import"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

func (d Direction) exports() bool { return d == Both || d == Export }
func (d Direction) imports() bool { return d == Both || d == Import }

// Route mirrors the topics matching one bus pattern. The Redis channel of
// a topic is Options.Prefix followed by the topic.
type Route struct {
	// Pattern is a bus topic or pattern, with the syntax and meaning of
	// (*bus.Bus).Subscribe. An exact topic is imported with SUBSCRIBE, a
	// pattern with PSUBSCRIBE on a Redis glob that matches at least the
	// same channels (see RedisPattern), whose messages the bridge then
	// filters with the bus's own matcher.
	Pattern string

	// Direction is Both (the zero value), Export or Import.
	Direction Direction

	// Raw makes the route carry payload bytes exactly, without an
	// envelope, so that plain Redis clients can publish and subscribe:
	// see the package documentation. False means enveloped.
	//
	// Raw messages carry no content type, so the Codec alone decides the
	// type of imported payloads, and it must be the type local publishers
	// use: a subscriber must not be able to tell a remote event from a
	// local one by its payload. Use Text() for string payloads (what
	// redis-cli and most Redis clients send) and Bytes() for []byte; nil
	// means Bytes(). Both export only payloads of their type: an event
	// with another payload still reaches local subscribers, but is not
	// exported, is counted in Stats.EncodeErrors and is reported to
	// Options.OnError wrapping ErrEncode and bus.ErrPayloadType. New
	// refuses DefaultCodec on a raw route.
	Raw bool

	// Codec turns payloads into bytes and back. Nil means DefaultCodec on
	// an enveloped route and Bytes() on a Raw route.
	Codec Codec

	// Format is how an enveloped route carries events: the binary
	// envelope (Envelope, the zero value and the fast path) or
	// CloudEvents 1.0 in JSON, which other languages read (CloudEvents).
	// See "CloudEvents" in the package documentation. New refuses
	// CloudEvents on a Raw route.
	Format Format

	// Delivery is how the route carries events through Redis: PubSub
	// (the zero value), or durably in a Redis stream, read by every
	// instance (Stream) or by one member of a consumer group (Group).
	// See "Durable routes" in the package documentation.
	Delivery Delivery

	// Stream names the Redis stream of a durable route: its key is
	// Options.Prefix + "stream:" + Stream. Empty means Pattern, so that
	// an exporter and an importer meet when they use the same route
	// pattern. Ignored by PubSub routes.
	Stream string

	// MaxLen caps the stream of a durable export route, approximately
	// (XADD MAXLEN ~ MaxLen): older entries are trimmed. Zero means
	// 100000; negative means no trimming. Ignored by PubSub routes.
	MaxLen int64

	// Group is the consumer group of a Group route. Empty means
	// "busline". Ignored by other routes.
	Group string

	// Retry, on a durable import route, makes the reader publish an
	// entry again on the local bus when its handling failed: a
	// synchronous subscriber's HandlerFunc returned an error, or a
	// synchronous handler panicked (see bus.WithFailureFunc). Attempts,
	// Initial, Max, Multiplier and Jitter mean what they mean for a
	// subscription, defaults included; the reader waits between attempts
	// on its own goroutine, so the route's later entries wait too, and
	// Close cuts the wait short (the entry is then left unacknowledged,
	// or behind the checkpoint, counted in Stats.StreamAbandoned).
	// DeadLetter must be empty: the dead letter of a durable route is its
	// dead-letter stream (see DeadKey). Nil means one attempt per
	// delivery. New copies the policy. Ignored by PubSub routes and
	// export routes. See "When handling fails" in the documentation of
	// Delivery.
	Retry *bus.RetryPolicy

	// MaxDeliveries, on a Group import route, is how many times an entry
	// whose handling keeps failing is delivered to the group (the
	// delivery count of XPENDING: the first read, a restarted member's
	// re-read, every claim after ClaimIdle, by any member) before the
	// member that failed it last moves it to the dead-letter stream and
	// acknowledges it. Each delivery makes the attempts of Retry. Zero
	// means 5; it must not be negative. Ignored by other routes: a
	// Stream route dead-letters an entry after the last attempt of its
	// one delivery.
	MaxDeliveries int

	// reply marks the route Options.Replies adds to export replies
	// (replies.go): its exports are not numbered.
	reply bool
}

// OutboxPolicy says what the outbox does with an export that does not fit
// (Options.OutboxPolicy). It is not bus.Overflow: the bus's queues block
// by default, the outbox never blocks a publisher, and its zero value is
// OutboxDropOldest.
type OutboxPolicy uint8

const (
	// OutboxDropOldest (the zero value) evicts the oldest queued exports
	// until the new one fits: after an outage the freshest events are
	// sent. Receivers of enveloped routes see the evicted events as a gap.
	OutboxDropOldest OutboxPolicy = iota
	// OutboxDropNewest keeps what is queued and drops the new export.
	OutboxDropNewest
)

// Options configures a Bridge. A nil *Options and the zero value of each
// field mean the defaults documented on the field. New copies the struct.
type Options struct {
	// Prefix is put before each topic to make its Redis channel, such as
	// "app:" so that topic "orders.created" is channel
	// "app:orders.created". Empty means no prefix. Use a prefix per
	// application and give the application's ACL user "&<prefix>*".
	Prefix string

	// Routes are the topics to mirror, from New on; they get the RouteIDs
	// 0, 1, 2... in order, and Bridge.AddRoute and RemoveRoute change
	// them later. A topic matched by several routes is exported once, by
	// the first export route that matches it, and an imported channel is
	// handled by the first import route that matches its topic (routes
	// added later come after these). No routes means a bridge that does
	// nothing until AddRoute.
	Routes []Route

	// Partitions, for a bridge on a *redis.ClusterClient, puts a
	// partition tag in the sharded channel of each exact-topic route:
	// Prefix + "{p}." + topic, where p is Partition(topic, Partitions),
	// so that any number of topics spread over at most Partitions hash
	// slots, evenly, and need few SSUBSCRIBE commands (see ShardChannel).
	// Every instance sharing the topics must use the same value. Zero
	// means no tag: the channel is Prefix + topic, in the slot of its
	// own name. It is ignored on other clients and with ClassicPubSub.
	Partitions int

	// ClassicPubSub makes a bridge on a *redis.ClusterClient use PUBLISH
	// and SUBSCRIBE for exact topics too, as on a single server, instead
	// of sharded pub/sub: every message then travels to every node of
	// the cluster. Use it while instances that import a topic through a
	// pattern route share it with instances that export it through an
	// exact route, or the reverse (see the package documentation).
	ClassicPubSub bool

	// InstanceID identifies this bridge in the envelopes it sends, so
	// that it can drop its own echo and receivers can tell sources apart.
	// It must be unique among the instances sharing the Redis channels,
	// at most 255 bytes of printable ASCII (space to '~'): New refuses
	// others with an error wrapping ErrInvalidOptions. Empty means 16
	// random hex digits.
	InstanceID string

	// SigningKey, when set, makes the bridge sign every envelope it sends
	// with HMAC-SHA256 and reject, on enveloped routes, every message
	// that is not an envelope signed with the same key: unsigned, forged
	// and altered messages are dropped and counted in
	// Stats.SignatureRejected. CloudEvents routes sign each event in its
	// buslinesig attribute, which other languages can check (see
	// "Signed CloudEvents" in the documentation of Format), and accept
	// envelopes and CloudEvents signed with the key. Raw routes are never
	// signed. Nil means nothing is signed nor checked. The slice is
	// copied.
	//
	// A signature proves that a holder of the key sent the message on
	// its channel; it does not hide it (use TLS), and a recorded message
	// stays validly signed. Replays are caught by sequence number (an
	// event seen already), by epoch (a message of an earlier run of its
	// source) and, on pub/sub routes, by ReplayWindow (an old recording,
	// even into a receiver that never saw its source); see "Signing and
	// replays" in the package documentation for what is left.
	SigningKey []byte

	// ReplayWindow is how far the time an enveloped pub/sub message was
	// sent at (signed with it, when SigningKey is set), or the time of a
	// signed CloudEvent, may be from this instance's clock, either way:
	// older or later messages are dropped as replays (ErrReplay,
	// Stats.Replayed); unsigned CloudEvents are not checked. The clocks
	// of the instances must agree to well within it, and it must exceed
	// how long an export may wait in the sender's outbox (OutboxMaxAge).
	// Zero means, with a SigningKey, the larger of OutboxMaxAge and 5
	// minutes, plus one minute (6 minutes with the defaults, and when
	// OutboxMaxAge is negative), and without one no check; negative means
	// no check. Durable routes are never checked: their entries may be
	// read long after they were written.
	ReplayWindow time.Duration

	// OnError receives what goes wrong while the bridge works in the
	// background: connections not made or lost, gaps, drops (batched, as
	// *DropError), refused commands, undecodable messages, payloads a
	// codec refused; and, once at start-up, informational reports such as
	// ErrPatternWidened. It is called from New, from the bridge's
	// goroutines and from publishers' goroutines, possibly concurrently,
	// and must not block for long. Nil means the errors are written with
	// the log package. In production, LogTo(logger) logs them as
	// structured records at a level that says how bad each is.
	OnError func(error)

	// OutboxMaxEvents caps the number of exports waiting to be sent.
	// Zero means 100000.
	OutboxMaxEvents int

	// OutboxMaxBytes caps the total payload bytes waiting to be sent.
	// Zero means 64 MiB.
	OutboxMaxBytes int

	// OutboxMaxAge is how long an export may wait before it is dropped
	// as stale. Zero means 5 minutes; negative means no limit.
	OutboxMaxAge time.Duration

	// OutboxPolicy is what happens to an export that does not fit in the
	// outbox. The zero value is OutboxDropOldest. Dropped exports are
	// counted in Stats.OutboxOverflow and reported as ErrOutboxFull.
	OutboxPolicy OutboxPolicy

	// BatchSize is the largest number of commands sent in one pipeline
	// (one round trip): PUBLISH commands of pub/sub routes, XADD commands
	// of durable routes; and of stream entries read at once (COUNT). The
	// pub/sub flusher takes up to BatchSize exports from the outbox at
	// once, or 32 times as many when exports coalesce (see CoalesceBytes),
	// which then make at most as many messages as they have channels.
	// Zero means 512.
	BatchSize int

	// MaxMessageBytes is the largest message the bridge sends or
	// accepts; bigger ones are dropped and reported. Zero means 1 MiB.
	MaxMessageBytes int

	// CoalesceBytes is the largest message into which the flusher
	// coalesces exports of enveloped pub/sub routes to one channel that
	// are waiting together (up to 32 times BatchSize taken from the
	// outbox at once, grouped by channel, each channel's exports in
	// order): under load one PUBLISH then carries many events (a batch,
	// see the wire format in internal/wire), which is what lets the bridge
	// keep up with a burst, since Redis and go-redis cost far more per
	// message than per byte. Each event keeps its own sequence number,
	// time, content type, headers and payload, and receivers deliver
	// them one by one as if they had come alone, each with its own copy
	// of its payload. An export that waits alone, as when traffic is
	// light, goes out as a plain envelope: coalescing never delays an
	// export. Raw routes and durable routes are never coalesced.
	//
	// Zero means 64 KiB; MaxMessageBytes caps it. Keep it within the
	// MaxMessageBytes of the receiving instances too: they drop (and
	// count) bigger messages whole. Negative means one message per
	// event, sent in the order of the outbox: set it on every instance
	// while some receivers run a bridge older than batches (they reject
	// them as malformed, flag 0x04), then remove it.
	CoalesceBytes int

	// ImportWorkers is the number of goroutines that deliver imported
	// events to the local bus. Events of one topic are delivered by one
	// worker at a time, in order, so a subscriber that is slow on one
	// topic holds up at most one worker: imports of other topics keep
	// flowing while fewer than ImportWorkers topics are slow at once.
	// Zero means 4.
	ImportWorkers int

	// ImportQueueSize caps the imported events waiting for delivery, in
	// total. Zero means 65536.
	ImportQueueSize int

	// ImportTopicQueueSize caps the imported events of one topic waiting
	// for delivery, so that one slow topic cannot fill the whole queue.
	// Zero means 8192.
	ImportTopicQueueSize int

	// ImportQueueBytes caps the bytes (payloads and topics) of the
	// imported events waiting for delivery, in total, so that a queue
	// full of large messages cannot exhaust memory: each may be up to
	// MaxMessageBytes. What does not fit is dropped and counted in
	// Stats.ImportDropped. Zero means 64 MiB.
	ImportQueueBytes int

	// PingInterval is how often the pub/sub connection is probed with a
	// PING whose answer must come back within PingTimeout, or the
	// connection is dropped and made again. Zero means 5 seconds.
	PingInterval time.Duration

	// PingTimeout is how long the answer to a PING may take. Zero means
	// 3 seconds.
	PingTimeout time.Duration

	// ReconnectMin and ReconnectMax bound the jittered exponential
	// backoff between attempts to reach Redis again, for the pub/sub
	// connection and for exports. Zero means 50 milliseconds and 5
	// seconds.
	ReconnectMin, ReconnectMax time.Duration

	// ResumeDelay is how long the exporter waits, once Redis answers
	// again after an outage, before it sends what the outbox holds. Redis
	// pub/sub stores nothing: an event published before the other
	// instances have resubscribed is lost to them, so this gives them the
	// time to come back. Zero means ReconnectMax plus one second;
	// negative means no wait.
	ResumeDelay time.Duration

	// EchoWindow is how long the bridge remembers a raw message it sent
	// on a channel it also imports, to drop its own echo. Zero means 30
	// seconds.
	EchoWindow time.Duration

	// EchoMemory caps the number of raw messages remembered for echo
	// suppression. Zero means 65536.
	EchoMemory int

	// Checkpointer keeps the position of each Stream import route, so
	// that a restarted instance resumes where it stopped. Nil means a
	// Redis hash at Prefix + "checkpoint:" + InstanceID, which needs an
	// InstanceID that stays the same across restarts.
	Checkpointer Checkpointer

	// Consumer is this instance's consumer name in the groups of Group
	// routes. It must be unique in each group and stay the same across
	// restarts, so that a restarted instance takes back the entries it
	// had not acknowledged. Empty means InstanceID.
	Consumer string

	// ClaimIdle is how long an entry of a Group route may stay
	// delivered but unacknowledged before another member takes it over
	// (XAUTOCLAIM): a member that died, or that takes longer than this to
	// handle a batch. Zero means 30 seconds.
	ClaimIdle time.Duration

	// Hooks are called on the path of each exported and imported event,
	// for tracing and metrics (see Hooks; extra/busotel sets them). The
	// zero Hooks calls nothing.
	Hooks Hooks

	// StreamBlock is how long one read of a durable import route waits
	// for new entries (XREAD BLOCK). Close may wait this long for a read
	// to return. Zero means 1 second.
	StreamBlock time.Duration

	// Replies makes the bridge carry request/reply (bus.Request,
	// bus.Reply) between instances: the requests it exports carry their
	// reply channel in the envelope header ReplyHeader; the requests it
	// imports get it back as Meta.ReplyTo, so that local responders can
	// answer; it exports the replies of local responders to the
	// requesting instance's channel; and it subscribes to its own reply
	// channels, Prefix + "_INBOX." + InstanceID + ".*" (PSUBSCRIBE), to
	// import the replies to this bus's requests. Every instance taking
	// part, requesting or responding, sets it, on top of the routes that
	// carry the requests (Export on the requesting side, Import on the
	// responding side, or Both).
	//
	// The reply channel is Prefix + "_INBOX." + InstanceID + "." + a part
	// unique to the request; each reply is the one message of its channel
	// and is sent unnumbered, leaving no sequence state behind. A
	// responder in another language reads the header and PUBLISHes its
	// reply on that channel: an envelope, or raw bytes (on a bridge
	// without SigningKey), which the request receives as a []byte with
	// Meta.Source RawSource. Requests on a Raw route carry no header and
	// cannot be answered. Across instances the requester cannot know
	// whether anyone will answer: the bridge's export subscription counts
	// as a responder, so Request does not fail with bus.ErrNoResponders,
	// and a request that no instance answers waits until its context
	// ends. Requests over a Group route reach one member of the group.
	// The ACL user of a requesting bridge needs the glob of its reply
	// channels (ACLRules adds it; it needs the InstanceID).
	//
	// False means requests leave without a reply
	// channel, and imported ones arrive without one (Reply returns an
	// error wrapping bus.ErrNotRequest). InstanceID must then be a valid
	// topic segment, as the default is.
	Replies bool
}

// config is Options with the defaults applied.
type config struct {
	Options
	// idGenerated is set when InstanceID was not given and is random.
	idGenerated bool
}

func newConfig(opts *Options) (config, error) {
	var c config
	if opts != nil {
		c.Options = *opts
	}
	o := &c.Options
	o.Routes = append([]Route(nil), o.Routes...)
	if o.SigningKey != nil {
		o.SigningKey = append([]byte(nil), o.SigningKey...)
	}
	if o.InstanceID == "" {
		c.idGenerated = true
		var id [8]byte
		_, _ = rand.Read(id[:]) // crypto/rand.Read never fails
		o.InstanceID = hex.EncodeToString(id[:])
	}
	if len(o.InstanceID) > 255 {
		return c, fmt.Errorf("%w: InstanceID longer than 255 bytes", ErrInvalidOptions)
	}
	if !wire.Printable(o.InstanceID) {
		return c, fmt.Errorf("%w: InstanceID %.40q is not printable ASCII", ErrInvalidOptions, o.InstanceID)
	}
	if o.OnError == nil {
		o.OnError = func(err error) { log.Print(err) }
	}
	setDefault(&o.OutboxMaxEvents, 100000)
	setDefault(&o.OutboxMaxBytes, 64<<20)
	setDefault(&o.OutboxMaxAge, 5*time.Minute)
	setDefault(&o.BatchSize, 512)
	setDefault(&o.MaxMessageBytes, 1<<20)
	setDefault(&o.CoalesceBytes, 64<<10)
	setDefault(&o.ImportWorkers, 4)
	setDefault(&o.ImportQueueSize, 65536)
	setDefault(&o.ImportTopicQueueSize, 8192)
	setDefault(&o.ImportQueueBytes, 64<<20)
	setDefault(&o.PingInterval, 5*time.Second)
	setDefault(&o.PingTimeout, 3*time.Second)
	setDefault(&o.ReconnectMin, 50*time.Millisecond)
	setDefault(&o.ReconnectMax, 5*time.Second)
	setDefault(&o.ResumeDelay, o.ReconnectMax+time.Second)
	setDefault(&o.EchoWindow, 30*time.Second)
	setDefault(&o.EchoMemory, 65536)
	setDefault(&o.ClaimIdle, 30*time.Second)
	setDefault(&o.StreamBlock, time.Second)
	if o.ReplayWindow == 0 && o.SigningKey != nil {
		o.ReplayWindow = max(o.OutboxMaxAge, 5*time.Minute) + time.Minute
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = o.ReconnectMin
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"OutboxMaxEvents", o.OutboxMaxEvents}, {"OutboxMaxBytes", o.OutboxMaxBytes},
		{"BatchSize", o.BatchSize}, {"MaxMessageBytes", o.MaxMessageBytes},
		{"ImportWorkers", o.ImportWorkers}, {"ImportQueueSize", o.ImportQueueSize},
		{"ImportTopicQueueSize", o.ImportTopicQueueSize}, {"ImportQueueBytes", o.ImportQueueBytes},
		{"EchoMemory", o.EchoMemory},
	} {
		if n.v < 0 {
			return c, fmt.Errorf("%w: negative %s", ErrInvalidOptions, n.name)
		}
	}
	if o.OutboxPolicy > OutboxDropNewest {
		return c, fmt.Errorf("%w: unknown OutboxPolicy %d", ErrInvalidOptions, o.OutboxPolicy)
	}
	if err := checkPartitions(o); err != nil {
		return c, err
	}
	return c, nil
}

func setDefault[T int | time.Duration](p *T, def T) {
	if *p == 0 {
		*p = def
	}
}
