// Package bridge mirrors chosen topics of a local [bus.Bus] to and from
// Redis pub/sub channels, so that several instances of a service share
// events. It uses only the bus's exported API and a go-redis v9
// [redis.UniversalClient] (tested with a single-node *redis.Client and
// with a *redis.ClusterClient: see Redis Cluster below).
//
// # Quick start
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", Protocol: 3})
//	b := bus.New(nil)
//	br, err := bridge.New(b, rdb, &bridge.Options{
//		Prefix: "app:",
//		Routes: []bridge.Route{
//			{Pattern: "orders.**", Codec: bridge.JSON[*Order]()}, // both ways
//			{Pattern: "notifications", Raw: true, Codec: bridge.Text()}, // text, with any Redis client
//		},
//	})
//	if err != nil { ... }
//	defer br.Close(ctx)
//	if err := br.Ready(ctx); err != nil { ... } // subscriptions confirmed
//	b.Publish(ctx, "orders.created", &Order{ID: 1}) // local subscribers now, other instances soon
//
// # Routes
//
// A [Route] names a bus topic or pattern, a [Direction] (Export: local to
// Redis; Import: Redis to local; Both, the default), whether it is Raw, and
// a [Codec]. The Redis channel of a topic is Options.Prefix + topic.
//
// Exporting subscribes on the local bus; importing subscribes on Redis: an
// exact topic with SUBSCRIBE, a pattern with PSUBSCRIBE on a Redis glob
// that matches at least the same channels ([RedisPattern]), since Redis
// globs cannot say everything bus patterns say. The bus's own matcher then
// filters what arrives (Stats.Filtered). When the glob is wider than the
// pattern reads ("{orders,users}.*" becomes "*.*": Redis has no groups),
// New says so once per route through Options.OnError, wrapping
// [ErrPatternWidened]: delivery stays exact, but Redis sends the instance
// all the glob's traffic, and the ACL user needs the wider glob. A topic
// matched by several routes is exported once, by the first export route in
// Options.Routes that matches; an imported topic is handled by the first
// matching import route. Redis sends one copy of a message per matching subscription (the exact
// channel and each matching glob); the bridge imports exactly one.
//
// # Payloads and codecs
//
// [DefaultCodec] sends []byte and string payloads as they are and anything
// else as JSON, and decodes into []byte, or string for text. [JSON] decodes
// into a given Go type, the one local publishers use, so that a subscriber
// (bus.SubscribeTyped included) cannot tell a remote event from a local one
// except through Event.Remote and Event.Meta; [Text] and [Bytes] carry
// string and []byte payloads only, the same type both ways. Imported events carry
// bus.Meta: the sender's instance ID (Source), its sequence number, the time
// it was exported, the content type and the headers of the local event's
// Meta (room for trace context).
//
// # Raw and enveloped routes
//
// On an enveloped route (the default) every message is a compact binary
// envelope with a magic prefix no text publisher produces by accident
// (0xB5 0x1E), a version, the source instance ID, a per-source, per-channel
// sequence number, a timestamp, the content type, optional headers, the
// payload and optionally an HMAC: the format is specified in internal/wire (wire.go).
// Exports of one channel that wait in the outbox together are coalesced into
// one batch message (up to Options.CoalesceBytes, 64 KiB by default), each
// event keeping its own sequence number, time, content type, headers and
// payload: under load one PUBLISH carries hundreds of events, which is what
// lets the bridge keep up with a burst, since Redis and go-redis cost far
// more per message than per byte. An export waiting alone goes out as a
// plain envelope at once. Receivers deliver the events of a batch one by
// one, as if they had come alone; a plain Redis subscriber of an enveloped
// channel sees fewer, bigger messages. A message without the magic prefix on an enveloped route comes from a
// foreign publisher and is delivered as raw bytes (unless a SigningKey is
// set). Malformed or oversized messages are dropped, counted
// (Stats.DecodeErrors) and reported wrapping [ErrMalformed] or [ErrTooLarge].
//
// A Raw route sends the encoded payload bytes exactly, with no envelope, so
// that any Redis client can take part: on a route with Codec [Text],
// `redis-cli PUBLISH app:notifications hi` reaches local subscribers as the
// string "hi", and `redis-cli SUBSCRIBE app:notifications` prints what the
// bridge exports. Raw messages carry no source, sequence, content type or
// signature: events imported without an envelope have Meta.Source
// [RawSource], and the route's Codec alone decides their payload's type.
// So that a handler cannot tell a remote event from a local one by its
// payload, a raw route carries one payload type both ways: string with
// [Text], []byte with [Bytes] (the default of raw routes), or a Go value
// with [JSON]. An event of another type reaches local subscribers but is
// not exported: it is counted (Stats.EncodeErrors) and reported wrapping
// [ErrEncode] and bus.ErrPayloadType (more of them within a second are
// reported together, as a *[DropError] wrapping ErrEncode). New refuses
// DefaultCodec on a raw route.
//
// # No loops, no duplicates
//
//   - A local subscriber gets a local event once, synchronously, from the
//     bus: never through Redis.
//   - An imported event is Remote and is never exported again, so instances
//     that mirror the same topics both ways do not ping-pong.
//   - A bridge drops its own echo: enveloped messages by source ID; raw ones
//     by remembering (channel, hash of the bytes) of what it sent, for
//     Options.EchoWindow. A foreign raw message identical to one of ours that
//     arrives before our echo is taken for the echo; the counts stay right.
//   - Overlapping subscriptions deliver one Redis message once.
//   - An enveloped event seen twice (a pipeline retried after a broken
//     connection, or a replay) is dropped by its sequence number
//     (Stats.Duplicates).
//
// # Reliability
//
// Exports never wait for Redis: the local subscription of an export route
// encodes the payload on the publisher's goroutine and appends it to a
// bounded outbox (Options.OutboxMaxEvents, OutboxMaxBytes, OutboxMaxAge;
// the OutboxPolicy is OutboxDropOldest by default, or OutboxDropNewest). One flusher
// goroutine sends the outbox in pipelines of up to Options.BatchSize
// PUBLISH commands per round trip, in order per channel: it takes up to
// 32 times BatchSize exports at once, groups those of enveloped routes by
// channel so that they coalesce (raw exports keep their place), and sends
// one message per run of one channel. Receivers keep the order of each topic, not
// across topics, whatever the sender does. When Redis is unreachable it
// keeps the batch and the outbox, retries with jittered
// exponential backoff, and once Redis answers waits Options.ResumeDelay, so
// that other instances can resubscribe, before sending on in order. Note
// that go-redis retries by itself first (MaxRetries, DialerRetries: about
// two seconds with its defaults) before the bridge sees an outage. Events
// dropped from the outbox are counted and reported (batched, as a
// *[DropError]); receivers see the dropped enveloped events as a gap.
//
// Imports have their own read loop on a dedicated pub/sub connection: it
// reads with PubSub.ReceiveTimeout and hands events to a bounded import
// queue, never waiting for local subscribers, so that Redis's
// client-output-buffer-limit for pub/sub never disconnects a slow instance:
// what does not fit is dropped and counted (Stats.ImportDropped). Import
// workers (Options.ImportWorkers) publish the events on the local bus, one
// topic at a time per worker and in order per topic, so a subscriber that is
// slow on one topic holds up one worker and no other topic.
//
// The read loop sends a PING every Options.PingInterval and requires its
// answer within Options.PingTimeout; go-redis's own health check does not
// wait for the answer, so a half-open connection would look healthy for
// minutes. On a read error or a missing answer the bridge closes the
// connection, reconnects with jittered backoff, resubscribes, and reports
// [ErrDisconnected] and then [ErrPossibleGap] (Stats.Reconnects): Redis
// pub/sub keeps nothing for absent subscribers. Missing enveloped events are
// then reported exactly, as a *[GapError] (Stats.Gaps, GapEvents), when the
// next event of the same source arrives on the channel. A connection that
// cannot be made at all (a wrong address or port, a refused password or
// TLS handshake) is reported as [ErrConnect], "cannot connect to redis at
// ...", and retried the same way. Ready waits until every subscription of
// the current connection is confirmed: go-redis's Subscribe returns before
// Redis has acted on it; when its context ends first, its error carries
// the last connection error reported, besides the context's.
//
// Close stops exporting, closes the pub/sub connection, flushes the outbox
// until its context ends (saying how many exports it could not send),
// delivers the imports already queued, and joins every goroutine it
// started. It does not close the Redis client.
//
// Stats accounts for every event: each export ends up Exported,
// ExportRejected, EncodeErrors or OutboxDropped; each message received ends
// up Imported or in exactly one of the drop counters.
//
// # Durable routes
//
// Redis pub/sub forgets a message as soon as it has passed it on: an
// instance that is restarting, or reconnecting, never gets what was
// published meanwhile. A durable route keeps its events in a Redis stream
// instead. Choose per route, with Route.Delivery:
//
//   - PubSub (the default): the fastest, and nothing is kept. For events
//     whose loss an instance survives, because a later one supersedes
//     them: cache invalidation, presence, live views. Losses are reported
//     (ErrPossibleGap, *GapError).
//   - Stream: every instance importing the route gets every event, also
//     those exported while it was down or disconnected, as long as the
//     stream still holds them (Route.MaxLen). For state every instance
//     must see: replicated caches, projections, audit.
//   - Group: each event is handled by one member of a consumer group
//     (Route.Group), acknowledged once handled and taken over by another
//     member if its consumer dies. For work that must happen once per
//     group: sending an email, charging a card. Producers usually export
//     such a route (Direction Export) and workers import it (Import).
//
// The stream of a durable route is the Redis key
//
//	Options.Prefix + "stream:" + Route.Stream   (Route.Stream defaults to Route.Pattern)
//
// One stream per route, not per topic: a pattern route then reads one key
// with one XREAD, needs no registry to find the streams of new topics,
// keeps one consumer group and one pending list per route, and keeps the
// order of events across the route's topics. The price is that exporters
// and importers meet only on the same stream name: the same Pattern, or
// the same Route.Stream (an importer may use a narrower pattern with the
// exporter's Stream: what it does not match is skipped, Stats.Filtered).
// A bridge may have one durable import route per stream. Each entry
// (XADD app:stream:orders.* * topic orders.created data ...) has the fields
//
//	topic   the bus topic (may be left out on a route with an exact topic)
//	data    the envelope, or on a Raw route the payload bytes
//	source  on Raw routes, the InstanceID of the bridge that wrote it
//
// Envelopes are numbered and signed as on pub/sub routes, for the channel
// Prefix + topic. Other clients read and write the stream with the
// ordinary commands: an entry without the envelope's magic is delivered
// as raw bytes, as on pub/sub routes (unless a SigningKey is set):
//
//	redis-cli XADD 'app:stream:notes' '*' topic notes data hi
//	redis-cli XREAD COUNT 10 STREAMS 'app:stream:notes' 0
//
// Exports of durable routes take the path of pub/sub exports, with an
// outbox per route (the same limits and drop policy), sent as pipelined
// XADD ... MAXLEN ~ Route.MaxLen, in batches of Options.BatchSize, in
// order, and sent again as soon as Redis answers after an outage (no
// ResumeDelay: a stream keeps what it is given). An event is durable once
// Redis has answered its XADD (and as durable as Redis's appendfsync
// makes it); until then it is in the process's memory. When a pipeline is
// cut by a broken connection, Redis may have executed part of it: before
// sending again, the exporter looks for its own enveloped entries among
// the last ones of the stream and does not send those twice. A raw entry,
// or one buried by then under many entries of other writers, may be added
// twice (with the same envelope sequence number).
//
// A Stream route reads with XREAD BLOCK Options.StreamBlock COUNT
// BatchSize from the ID of the last entry it handled, publishes the
// entries on the local bus one after the other on its own goroutine, and
// then saves that ID with Options.Checkpointer: by default in the Redis
// hash Prefix + "checkpoint:" + InstanceID, one field per stream key (New
// then requires an InstanceID that survives restarts). A route without a
// checkpoint starts at the end of the stream and saves that position at
// once; a Checkpointer that returns "0" makes it read the whole stream.
// Delivery is at least once: a process that dies after publishing entries
// and before saving delivers them again when it restarts. Within a run,
// entries seen twice (a retried XADD) are dropped by sequence number
// (Stats.Duplicates) and missing ones (trimmed before they were read) are
// reported as a *GapError; handlers that must not see an event twice
// across restarts can key on (Meta.Source, Event.Topic, Meta.Seq).
//
// A Group route creates its group at the end of the stream if it does not
// exist (XGROUP CREATE ... $ MKSTREAM; create it beforehand with ID 0 to
// have older entries handled), and reads as consumer Options.Consumer
// (default InstanceID), a name that must stay the same across restarts:
// a restarted member first reads back the entries delivered to it and
// never acknowledged (XREADGROUP from ID 0), and does so again after any
// failed read, since a read whose answer was lost delivered entries
// nobody saw. It acknowledges a batch with one XACK once each of its
// entries has been published on the local bus, that is once every
// synchronous subscriber has returned: an asynchronous subscriber has only
// queued the event by then, and loses it if the process dies before it
// ran, so subscribe synchronously to a Group route's topics when that
// matters. Every ClaimIdle/2 the member takes over (XAUTOCLAIM) the
// entries that any consumer of the group has left unacknowledged for
// Options.ClaimIdle, and handles them (Stats.StreamClaimed):
// ClaimIdle must be longer than a member takes to handle a batch, or
// entries of a slow member are handled twice. Delivery is at least once
// here too: a member that dies between handling entries and acknowledging
// them has them handled again, by itself after a restart or by another
// member; and a retried XADD's copy of an event may go to another member,
// since members see a share of each source's events, out of order after
// a claim, and check no sequence numbers. Entries trimmed while pending
// are lost, counted (Stats.StreamTrimmed) and reported (ErrTrimmed).
// Redis keeps the consumers of a group until XGROUP DELCONSUMER; stable
// names keep their number down. On a Group route with Direction Both, an
// event is handled by the publisher's local subscribers and by one member
// of the group (dropped as an echo when that is the publisher itself).
//
// Subscribe the local handlers of durable import routes before New: a
// route starts publishing what the stream holds for it at once, and an
// event published on the bus before anyone subscribed is gone, yet
// recorded as handled.
//
// Durable routes share the echo rules (a bridge drops its own entries, by
// the envelope's source or the source field, and never exports an
// imported event), codecs, signatures, size limits and counters of pub/sub
// routes: their events count in Exported, Received, Imported and the drop
// counters, and in StreamExported, StreamImported, StreamAcked,
// StreamClaimed and StreamResumes. A failed read, checkpoint or
// acknowledgement is reported (ErrStreamRead, ErrCheckpoint, ErrAck) and
// retried with backoff from the last position: a route survives Redis
// restarting with its data (appendonly) without losing or skipping
// anything. Ready also waits until every durable import route knows where
// it starts. Close stops each route after the entry it is handling, saves
// its position or acknowledges what it handled with Close's context, and
// sends what the outboxes hold; it may wait StreamBlock for a read to
// return. Durable routes use single-key commands only, so they should
// work on a Redis Cluster too; that is not tested.
//
// An ACL user for durable routes needs the keys of the streams and of
// the checkpoints, and the commands: XADD and PING to export; XREAD,
// XREVRANGE, HGET and HSET for Stream routes with the default
// Checkpointer; XGROUP CREATE, XREADGROUP, XACK and XAUTOCLAIM for Group
// routes. For the prefix "app:":
//
//	ACL SETUSER app-bridge on >password resetkeys ~app:stream:* ~app:checkpoint:*
//	    -@all +xadd +ping +xread +xrevrange +hget +hset
//	    +xgroup|create +xreadgroup +xack +xautoclaim
//
// A refused XGROUP CREATE or checkpoint load makes Ready return an error
// wrapping ErrSubscribe (NOPERM); a refused XADD is counted in
// Stats.ExportRejected and reported wrapping ErrPublish.
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
//
// # Security
//
// The bridge works over TLS (a rediss:// URL and a tls.Config with client
// certificates in redis.Options) and with an ACL user limited to the
// prefix's channels. [ACLRules] returns the rules such a user needs:
//
//	ACL SETUSER app-bridge on >password resetchannels &app:* &app:orders.*
//	    resetkeys -@all +publish +subscribe +unsubscribe +psubscribe +punsubscribe +ping
//
// "&app:*" lets the user PUBLISH and SUBSCRIBE on every channel of the
// prefix. PSUBSCRIBE is different: Redis 7 compares a PSUBSCRIBE pattern
// literally with the channel rules, so "&app:*" allows PSUBSCRIBE "app:*"
// but not PSUBSCRIBE "app:orders.*": every glob the bridge subscribes to
// (see [RedisPattern] and [Bridge.RedisSubscriptions]) must appear verbatim.
// A refused subscription makes Ready return an error wrapping [ErrSubscribe]
// (NOPERM), and a refused export is counted in Stats.ExportRejected and
// reported wrapping [ErrPublish].
//
// With Options.SigningKey, envelopes are signed with HMAC-SHA256 over the
// channel and the message, and enveloped routes accept only envelopes signed
// with the same key: unsigned, forged, altered or re-routed messages, and
// messages without an envelope, are dropped, counted
// (Stats.SignatureRejected) and reported wrapping [ErrSignature]. A bridge
// without a key accepts signed envelopes unchecked, so that a key can be
// rolled out to senders first. Raw routes are never signed: protect them
// with ACLs.
//
// # Performance
//
// Measured on a shared 2-core virtual machine (AMD EPYC, Go 1.26, Redis
// 7.0), with sender, receiver and redis-server on the same machine and
// 64-byte payloads, five runs of
//
//	go test -run '^$' -bench 'Throughput|Latency' -benchtime 200000x ./bridge/
//
// gave, end to end from Publish on one bus to a subscriber on the other:
// 300,000 to 490,000 events/s (median 430,000) for the bridge, 12,000 to
// 24,000 for raw go-redis with one PUBLISH call per event (the bridge is
// 13 to 39 times faster, median 22), and 360,000 to 650,000 for PUBLISHes
// pipelined by hand in batches of 512 (the bridge reaches 0.72 to 1.04 of
// it, median 0.84: it does more per event, and during a burst its outbox
// and import queue hold events that the garbage collector must scan, where
// the hand-pipelined sender waits for each round trip). One event at a
// time takes about 42 µs at the median and 100 µs at the 99th percentile
// (raw go-redis: 38 µs and 85 µs). Take the numbers with a grain of salt:
// the machine is shared and runs vary by a factor of 1.5.
//
// On a Redis Cluster of three masters on the same machine, 16 topics and
// 64-byte payloads, three runs each of
//
//	go test -run '^$' -bench 'Cluster/Throughput' -benchtime 100000x ./bridge/
//	go test -run '^$' -bench 'Cluster/Latency' -benchtime 3000x ./bridge/
//
// (BenchmarkCluster: sharded routes with Partitions 16, the same exact
// routes with ClassicPubSub, and a pattern route, side by side) gave, in a
// burst: sharded 269,000 to 277,000 events/s, classic 109,000 to 115,000,
// pattern 101,000 to 108,000: a sharded message is handled by one node,
// a classic one by every node. One event at a time took 45 to 67 µs at the
// median and 0.26 to 0.58 ms at the 99th percentile when sharded, but
// 124 to 146 µs and 43 to 44 ms with classic or pattern routes, about 330
// events/s: classic messages forwarded between nodes were often held for
// about 40 ms. Raw go-redis PUBLISH through a cluster formed the same way
// showed the same stalls, so they come from the cluster's forwarding
// (perhaps delayed acknowledgements on its bus; not investigated), not
// from the bridge.
//
// Durable routes cost more per event: an XADD that Redis appends to the
// stream, a read, and a checkpoint save or an XACK per batch. Three runs
// of
//
//	go test -run '^$' -bench Routes -benchtime 100000x ./bridge/
//
// (BenchmarkRoutes: the three kinds of route side by side, an exact topic,
// 64-byte payloads, Redis without persistence) gave, in a burst: pub/sub
// 142,000 to 325,000 events/s (median 305,000), Stream 143,000 to 201,000
// (median 198,000), Group 108,000 to 170,000 (median 159,000); and one
// event at a time, at the median: pub/sub 41 to 45 µs, Stream 71 to 72 µs,
// Group 72 to 73 µs (the 99th percentiles ranged from 150 µs to 1.4 ms,
// the noise of the shared machine). A durable import route reads and
// publishes on one goroutine, one batch after the other; Redis's
// appendfsync, not measured here, adds its own cost to every XADD.
package bridge
