// Package bus is an in-process publish/subscribe event bus with glob
// patterns, in the model Redis pub/sub made familiar: publishers send events
// to topics, subscribers listen on topics or on patterns, and neither knows
// the other. Package bridge mirrors chosen topics to and from Redis so that
// several processes share them.
//
// # Quick start
//
//	b := bus.New(nil)
//	defer b.Close(ctx)
//
//	sub, err := b.Subscribe("orders.*", func(ctx context.Context, e bus.Event) {
//		fmt.Println(e.Topic, e.Payload)
//	})
//	...
//	err = b.Publish(ctx, "orders.created", &Order{ID: 42})
//	sub.Unsubscribe()
//
// SubscribeTyped gives a handler its payload as a concrete type, with no
// type assertion of its own.
//
// # Topics
//
// A topic is one or more non-empty segments joined by the separator ('.'
// unless Options.Separator says otherwise): "orders", "orders.created",
// "tenant.42.orders.created". It is valid UTF-8 of at most MaxTopicLen
// bytes, without control characters or the glob metacharacters
// * ? [ ] { } \. ValidateTopic states the rules; Publish returns a
// *SyntaxError wrapping ErrInvalidTopic for a topic that breaks them.
//
// # Patterns
//
// A pattern obeys the segment rules of topics and may use the glob syntax of
// github.com/gobwas/glob, compiled with the separator and Globstar set. A
// plain topic is a pattern that matches itself.
//
//	pattern            matches                          does not match
//	orders.created     orders.created                   orders.created.eu
//	orders.*           orders.created, orders.paid      orders, orders.created.eu
//	orders.**          orders.created, orders.a.b       orders
//	**.failed          failed, orders.failed, a.b.failed   failed.x
//	orders.**.eu       orders.eu, orders.x.eu, orders.x.y.eu
//	**                 every topic
//	orders.c*          orders.created, orders.c         orders.created.x
//	orders.cr?ated     orders.created                   orders.crated
//	user.[0-9]         user.7                           user.a, user.10
//	user.[!0-9]        user.a                           user.7
//	{orders,users}.*   orders.x, users.x                items.x
//	{a.b,c}.d          a.b.d, c.d                       a.d
//	a**z               az, a.b.z                        a.b.y
//
// `*` and `?` never match the separator. `**` does; as a whole segment
// followed by a separator it also matches zero segments. `\` escapes the
// next character. A bad pattern gets a *SyntaxError wrapping
// ErrInvalidPattern with the byte offset of the problem.
//
// # Delivery guarantees
//
// Publish delivers synchronously: each matching handler runs on the
// publisher's goroutine, and Publish returns when all have returned.
//
//   - Every matching subscription gets the event once, however many ways its
//     pattern matches, in the order the subscriptions were made; queue
//     groups (one member each) come after the other subscriptions.
//   - Per subscription, the events of one publishing goroutine arrive in
//     publish order.
//   - Handlers may publish, subscribe and unsubscribe, themselves included,
//     and may close the bus: no lock of the bus is held while a handler runs.
//   - After Unsubscribe returns, no Publish that starts afterwards calls the
//     handler. Unsubscribe is idempotent.
//   - A panicking handler is recovered and reported to Options.OnError as a
//     *DeliveryError with the topic, the pattern, the panic value and the
//     stack; the other subscribers still get the event, and Publish returns
//     normally. So does a HandlerFunc that returns an error.
//   - After Close, Publish and Subscribe fail with ErrClosed.
//
// The payload is shared by all subscribers: handlers must treat it as
// read-only.
//
// # Asynchronous subscriptions
//
// SubscribeWith with SubscribeOptions.Queue > 0 gives a subscription its own
// goroutine and a bounded FIFO queue, allocated up front, so that a slow
// handler never holds publishers up. What a full queue does is the
// subscription's Overflow policy:
//
//   - Block (the default, which never loses an event silently): Publish
//     waits for room until its ctx ends, then returns ctx's error. A handler
//     publishing into its own full queue gets ErrWouldDeadlock instead of
//     hanging.
//   - DropNewest, DropOldest: Publish never waits; every drop is counted
//     (Subscription.Stats, Bus.Stats) and reported to Options.OnError with
//     the pattern and the file:line of the Subscribe call, at most once per
//     Options.DropReportInterval.
//
// A queue that stays full for Options.SlowAfter is reported as a slow
// subscriber. The worker is woken only when its queue goes from empty to
// non-empty and handles events in batches: no timers, no polling. Per
// subscription, the events of one publisher are handled in publish order; a
// panicking handler is recovered, reported, and the worker goes on.
//
// SubscribeChan delivers to a channel that the bus closes after Unsubscribe
// or Close. Unsubscribe returns at once: an asynchronous subscription still
// handles what it had queued, and Done (or UnsubscribeWait) tells when its
// goroutine has finished. Close(ctx) stops new publishes, lets the queues
// drain until ctx ends, counts and returns what could not be delivered, and
// joins the goroutines.
//
// # When handling fails
//
// A handler that can fail is a HandlerFunc, which returns an error:
// SubscribeFunc, SubscribeFuncWith, SubscribeTypedFunc. Its error, like a
// panic, is counted (Stats.Failed) and reported to Options.OnError as a
// *DeliveryError that wraps ErrHandlerFailed and the error, with the topic,
// the pattern, where the subscription was made and the attempt. Publish
// does not return it: the other subscriptions got the event, and a
// publisher retrying on error would give it to them again. A publisher
// that needs to know, such as a bridge acknowledging a Redis entry, uses
// WithFailureFunc.
//
// Middleware (func(next HandlerFunc) HandlerFunc) wraps the handlers of the
// whole bus (Options.Middleware) or of one subscription
// (SubscribeOptions.Middleware), for logging, metrics, tracing, timeouts.
// Without any, Publish costs what it did.
//
// An asynchronous subscription with a RetryPolicy tries a failed event
// again after a delay that grows exponentially, with jitter and a cap;
// meanwhile its later events wait, so that order is kept, and its queue's
// overflow policy protects publishers. After the last attempt the event is
// published to a dead-letter topic ("deadletter.<topic>" unless the policy
// names one), an ordinary topic that can be subscribed to and bridged,
// with Meta.Headers saying what failed (HeaderDeadLetterTopic and the
// others). Close stops retries and counts the events it abandoned. Every
// event offered to a subscription ends in exactly one of Delivered,
// DeadLettered, Abandoned and Dropped.
//
// # Queue groups and once-only subscriptions
//
// Subscriptions that share SubscribeOptions.Group split the events that
// match them, as NATS queue groups do: each event goes to exactly one
// member, round robin, skipping members whose queue is full. Members may
// join and leave at any time without an event being lost or duplicated.
// SubscribeOptions.Once ends a subscription after exactly one event, however
// many goroutines publish at once.
//
// # Request/reply
//
// Request publishes an event whose Meta.ReplyTo names a reply topic of the
// bus's inbox and waits for the first reply, which a responder (any
// subscription: synchronous, asynchronous, a queue group's member) sends
// with Reply. A topic no subscription matches fails at once with
// ErrNoResponders; a request nobody answers waits until its context ends
// and returns its error. Replies after the first and replies to a request
// that has returned are counted (Stats.LateReplies) and dropped. Across
// instances, package bridge carries requests and replies (its
// Options.Replies): the reply goes back to the requesting instance only.
//
// # Performance
//
// Plain-topic subscriptions live in a map split into stripes, patterns in a
// tree whose edges are literal segments, `*` and `**` (a pattern with
// metacharacters inside a segment is compiled with gobwas/glob and hung on
// the node of its literal prefix, so it is only tried for topics under that
// prefix). In front of both, a fixed-size match cache maps recently
// published topics to immutable lists of subscribers, stamped with
// generation numbers that subscription changes bump. A publish of a cached
// topic hashes it, loads one pointer, compares, and calls the handlers: it
// takes no lock, allocates nothing for a pointer payload, and costs the same
// with ten subscriptions or a million. Publishes to different topics share
// no written memory, so parallel publishers scale.
package bus
