// Package bridge mirrors chosen topics of a local [bus.Bus] to and from
// Redis, so that several instances of a service share events. It uses only
// the bus's exported API and a go-redis v9 [redis.UniversalClient]: a
// *redis.Client (a single server, or Sentinel's failover client) or a
// *redis.ClusterClient.
//
// In a function returning (err error), as in examples/minimal, the
// complete program:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}) // RESP3 by default in go-redis v9
//	defer func() { err = errors.Join(err, rdb.Close()) }()          // the bridge never closes it
//	// Close sends what the outbox holds: give it time of its own.
//	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
//	defer cancelClose()
//	b := bus.New(nil)
//	defer func() { err = errors.Join(err, b.Close(closeCtx)) }()
//	br, err := bridge.New(b, rdb, &bridge.Options{
//		Prefix: "app:",
//		Routes: []bridge.Route{
//			{Pattern: "orders.**", Codec: bridge.JSON[*Order]()},        // both ways
//			{Pattern: "notifications", Raw: true, Codec: bridge.Text()}, // text, with any Redis client
//		},
//	})
//	if err != nil {
//		return err // a bad route, a closed bus
//	}
//	defer func() { err = errors.Join(err, br.Close(closeCtx)) }() // before b.Close
//
//	readyCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
//	defer cancel()
//	if err := br.Ready(readyCtx); err != nil {
//		return err // "bridge: not ready: ...; last error: cannot connect to redis at ..."
//	}
//	// Local subscribers now, the other instances soon.
//	if err := b.Publish(ctx, "orders.created", &Order{ID: 1}); err != nil {
//		return err
//	}
//
// # The model
//
// A [Route] names a bus topic or pattern, a [Direction] (Export: local to
// Redis, Import: Redis to local, or Both), a [Delivery] and a [Codec]. The
// Redis channel of a topic is Options.Prefix + topic. Exporting subscribes
// on the local bus; importing subscribes on Redis: an exact topic with
// SUBSCRIBE (SSUBSCRIBE on a cluster: see [Bridge.ShardChannels]), a
// pattern with PSUBSCRIBE on a glob that matches at least the same
// channels ([RedisPattern], [ErrPatternWidened]). A topic matched by
// several routes is exported by the first export route that matches, and
// imported by the first import route that matches.
//
// Each Delivery is a transport through Redis: PubSub (the default) is the
// fastest and keeps nothing; Stream keeps every event in a Redis stream
// that each importing instance reads from where it stopped; Group hands
// each event of a stream to one member of a consumer group. See
// [Delivery] for the durable routes.
//
// On an enveloped route (the default) a message carries the event in a
// compact binary envelope: the source instance ID, the epoch of the
// source's run (drawn at random when its bridge starts), a sequence number
// per source and channel, the export time, the content type, the headers
// of the event's bus.Meta, the payload, and an HMAC with
// Options.SigningKey. The whole message, envelope included, is at most
// Options.MaxMessageBytes on both sides: a sender refuses what its
// receivers would drop ([ErrTooLarge]). Bridges from before epochs reject
// every envelope of a bridge with them as malformed (an unknown flag,
// Stats.DecodeErrors), while bridges with epochs read both: upgrade the
// receivers first.
// Exports of one channel waiting together travel as one batch message
// (Options.CoalesceBytes). A message without an envelope comes from a
// foreign publisher and is delivered as raw bytes. A Raw route sends the
// encoded payload exactly, with no envelope, so that any Redis client can
// publish and subscribe (`redis-cli PUBLISH app:notifications hi`); its
// events carry no source or sequence, and have Meta.Source [RawSource].
// Codecs ([DefaultCodec], [JSON], [Text], [Bytes]) decide the payload's Go
// type both ways, so a subscriber cannot tell a remote event from a local
// one except through Event.Remote and Event.Meta.
//
// # Guarantees
//
//   - No loops: a local subscriber gets a local event once, from the bus,
//     never through Redis; an imported event is Remote and never exported
//     again; a bridge drops its own echo (by source ID, or for raw messages
//     by remembering what it sent for Options.EchoWindow).
//   - No duplicates: overlapping subscriptions deliver one Redis message
//     once; an enveloped event seen twice (a retried pipeline, a replay) is
//     dropped by its sequence number (Stats.Duplicates), a message of an
//     earlier run of its source by its epoch (Stats.Replayed). The
//     sequence bookkeeping of each side is bounded in bytes and forgets
//     the channels least recently used, one at a time; an event on a
//     channel forgotten is taken as new, so a duplicate may get through
//     then, but a genuine event is never taken for a duplicate.
//   - Order: the events of one topic from one source are delivered in the
//     order they were published (on a Group route, an entry taken over
//     from a dead member comes later); nothing is promised across topics.
//   - Publishers never wait for Redis: exports go to a bounded outbox
//     (Options.OutboxMaxEvents, OutboxMaxBytes, OutboxMaxAge, OutboxPolicy)
//     that a flusher sends in pipelines; while Redis is unreachable the
//     outbox holds them and the flusher retries with backoff.
//   - The read loops never wait for local subscribers: imported events go
//     to bounded per-topic queues (Options.ImportQueueSize,
//     ImportTopicQueueSize, ImportQueueBytes) that import
//     workers publish, in order per topic, so that Redis never disconnects
//     a slow instance and a slow topic holds up no other.
//   - Nothing is lost silently. Every export ends up Exported,
//     ExportRejected, EncodeErrors or OutboxDropped; every message received
//     ends up Imported or in exactly one drop counter (see [Stats]). Drops,
//     rejected messages and gaps are reported to Options.OnError at most
//     once a second per reason, with details, the rest summed up in a
//     *[DropError] (Stats.ReportsHeld counts them): a flood of forged
//     messages costs a few calls a second. Pub/sub
//     keeps nothing for absent subscribers: after a reconnect the bridge
//     reports [ErrPossibleGap], and the enveloped events it missed as a
//     *[GapError] once the source's next event arrives.
//   - Connections are watched: a PING every Options.PingInterval must be
//     answered within PingTimeout, or the bridge reconnects and
//     resubscribes by itself ([ErrDisconnected], [ErrConnect]). go-redis
//     retries a command by itself first (MaxRetries, DialerRetries: about
//     two seconds with its defaults) before the bridge sees an outage.
//   - Durable routes deliver at least once: an event is kept once Redis
//     has answered its XADD, and a reader records an entry as handled
//     (checkpoint or XACK) only after publishing it locally and only if
//     no synchronous subscriber failed; an entry whose handling keeps
//     failing is retried (Route.Retry, Route.MaxDeliveries) and then
//     moved to a dead-letter stream ([DeadKey]), never dropped unrecorded.
//     See "When handling fails" in [Delivery].
//
// Ready waits until every subscription is confirmed and every durable
// reader knows where it starts; a bridge that only exports waits for Redis
// to answer a PING. Close stops exporting, closes the
// connections, sends what the outboxes hold and delivers what was
// imported, until its context ends (saying how many exports were not
// sent), and joins every goroutine it started. It never closes the Redis
// client.
//
// # Request/reply
//
// With Options.Replies, bus.Request works across instances. A request
// exported by a route carries in the envelope header [ReplyHeader]
// ("replyto") the Redis channel of its reply: Prefix + "_INBOX." +
// InstanceID + "." + a part unique to the request. The importing bridge
// sets Meta.ReplyTo from it, so that a local responder answers with
// bus.Reply; the reply is exported on that channel, and the requesting
// bridge, subscribed to its own reply channels (PSUBSCRIBE Prefix +
// "_INBOX." + InstanceID + ".*"), imports it and hands it to the waiting
// request. Every instance taking part sets Options.Replies, on top of the
// routes that carry the requests (Export on the requesting side, Import on
// the responding side, or Both). A responder in another language reads the
// header and PUBLISHes its reply on that channel: an envelope, or raw bytes
// (on a bridge without SigningKey), which the request receives as a
// []byte with Meta.Source RawSource. Requests on a Raw route carry no
// header, and cannot be answered.
//
// Across instances the requester cannot know whether anyone will answer:
// the bridge's export subscription counts as a responder, so Request does
// not fail with bus.ErrNoResponders, and a request that no instance
// answers (none imports the topic, none has a responder, the responder
// died) waits until its context ends. Requests over a Group route reach
// one member of the group. Each reply is the one message of its channel:
// it is sent unnumbered, so that it leaves no sequence state behind. The
// ACL user of a requesting bridge needs the glob of its reply channels
// ([ACLRules] adds it; it needs the InstanceID).
//
// Security: the bridge works over TLS and with an ACL user limited to the
// prefix ([ACLRules], [ClusterACLRules]); with Options.SigningKey,
// enveloped routes accept only envelopes signed with the same key
// ([ErrSignature]). Raw routes are never signed.
//
// # Signing and replays
//
// Anyone who can PUBLISH (or XADD) on the bridge's channels can send it
// any bytes; with an ACL user per application, that is whoever holds the
// application's credentials, or the network path when TLS is off. The
// bridge rejects what it cannot use cheaply and without keeping state for
// it: a channel whose topic the bus would refuse is dropped before
// anything is remembered of it, sources and content types must be
// printable ASCII, and every kind of rejection is counted and reported at
// a bounded rate.
//
// A SigningKey proves that an envelope was made by a holder of the key
// for the channel it arrives on, every byte of it (a batch included). It
// does not hide anything: the payload, the headers and the source are in
// clear (use TLS for confidentiality), and every instance holding the key
// can impersonate every other. A recorded signed message stays validly
// signed; the bridge rejects its replay when:
//
//   - it saw the event already (same source, channel and sequence number:
//     Stats.Duplicates), as long as its bounded bookkeeping remembers the
//     channel;
//   - it is of an earlier run of its source, which has restarted since (a
//     new epoch with a later time): Stats.Replayed, [ErrReplay];
//   - on a pub/sub route, it was sent longer ago than
//     Options.ReplayWindow, or that far ahead (Stats.Replayed): on by
//     default with a SigningKey, which needs the instances' clocks to
//     agree to well within it.
//
// What is left: within the window, a message can be replayed once to a
// receiver that has not seen its event, such as one started since, or
// one that forgot the channel; durable routes have no window (their
// entries are read long after they were written), so a fresh reader of a
// stream accepts a replayed entry of a source it has not seen, and Group
// routes check neither sequence nor epoch. A message can also be
// suppressed or delayed by whoever controls Redis; the receiver reports
// the gap once the source's next event arrives.
//
// How the bridge is built (its transports, who owns which goroutine and
// lock, the path of an export and of an import) is in DESIGN.md beside
// this file; its benchmarks are in the bench module (bench/RESULTS.md) and
// in this package's Benchmark functions.
package bridge
