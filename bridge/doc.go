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
// Routes change at run time: [Bridge.AddRoute] adds one (after every
// existing route, in that order of precedence) and returns its [RouteID],
// [Bridge.RouteReady] waits until Redis confirmed its subscription, and
// [Bridge.RemoveRoute] unsubscribes it (unless another route needs the
// same channel or glob), sends or counts what it queued, and returns its
// final counters. Every kind of route can be added and removed, while
// events flow; a reconnect subscribes to the routes of that moment.
//
// Each Delivery is a transport through Redis: PubSub (the default) is the
// fastest and keeps nothing; Stream keeps every event in a Redis stream
// that each importing instance reads from where it stopped; Group hands
// each event of a stream to one member of a consumer group. See
// [Delivery] for the durable routes.
//
// On an enveloped route (the default) a message carries the event in a
// compact binary envelope: the source instance ID, the epoch of the
// source's run, a sequence number per source and channel, the export time,
// the content type, the headers of the event's bus.Meta, the payload, and
// an HMAC with Options.SigningKey; whole, at most Options.MaxMessageBytes
// (see [ErrTooLarge]; bridges from before epochs cannot read it: upgrade
// receivers first).
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
//     dropped by its sequence number (Stats.Duplicates), one of an earlier
//     run of its source by its epoch (Stats.Replayed); the bookkeeping is
//     bounded in bytes, so a duplicate on a channel long forgotten may get
//     through, but a genuine event is never taken for a duplicate.
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
//     rejections and gaps are reported to Options.OnError at most once a
//     second per reason, the rest summed up in a *[DropError]. Pub/sub
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
//     (checkpoint or XACK) only after publishing it locally, and only if
//     no synchronous subscriber failed: see "When handling fails" in
//     [Delivery] for retries and dead letters.
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
// With Options.Replies, bus.Request works across instances: a request
// carries its reply channel in the envelope header [ReplyHeader], and the
// reply comes back to the requesting instance only (see Options.Replies).
// A request that no instance answers waits until its context ends.
//
// Security: the bridge works over TLS and with an ACL user limited to the
// prefix ([ACLRules], [ClusterACLRules]); with Options.SigningKey,
// enveloped routes accept only envelopes signed with the same key
// ([ErrSignature]). Raw routes are never signed.
//
// # Signing and replays
//
// Anyone who can PUBLISH (or XADD) on the bridge's channels can send it any
// bytes. The bridge rejects what it cannot use cheaply, keeping no state
// for it, and reports every kind of rejection at a bounded rate. A
// SigningKey proves that an envelope, or a CloudEvent (see Format), was
// made by a holder of the key for the channel it arrives on; it hides
// nothing (use TLS). Replays of signed
// messages are rejected by sequence number, by the source's epoch once it
// restarted ([ErrReplay]) and, on pub/sub routes, by Options.ReplayWindow;
// what is left (a replay within the window to a receiver that has not seen
// the event; durable routes, which have no window) is in SECURITY.md at
// the root of the repository.
//
// How the bridge is built (its transports, who owns which goroutine and
// lock, the path of an export and of an import) is in DESIGN.md beside
// this file; its benchmarks are in the bench module (bench/RESULTS.md) and
// in this package's Benchmark functions.
package bridge
