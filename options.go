package bus

import (
	"fmt"
	"time"
)

// Options configures a Bus. The zero value (and a nil *Options) means the
// defaults documented on each field.
type Options struct {
	// Separator separates the segments of topics and patterns. Zero means
	// DefaultSeparator ('.'). It must be an ASCII punctuation character
	// other than the glob metacharacters * ? [ ] { } \ and , ! -; New
	// panics otherwise.
	Separator rune

	// OnError receives what goes wrong during delivery, when no caller is
	// there to get an error: recovered handler panics, errors returned by
	// HandlerFuncs (every failed attempt, and the dead letter or the
	// abandonment that ends a retried event), drops and payload type
	// mismatches, as *DeliveryError. It is called on the goroutine where the
	// problem happened, possibly concurrently, and must not block for
	// long. Nil means the errors are written with the log package, so that
	// nothing is lost silently. In production, LogTo(logger) logs them as
	// structured records at a level that says how bad each is.
	OnError func(err error)

	// MatchCacheSize is the number of slots of the match cache, which maps
	// recently published topics to their subscribers so that a steady
	// stream of publishes costs one hash and no lock. Zero means 4096; the
	// size is rounded up to a power of two. A negative size disables the
	// cache: every publish then walks the index under read locks, and
	// publishes that match wildcard subscriptions allocate.
	MatchCacheSize int

	// Stats turns on the counters that cost something on the publish
	// path: Stats.Published, and Delivered for synchronous subscriptions.
	// They are striped, so parallel publishers still scale; a publish
	// pays a few nanoseconds for them. Drops, panics, queue depths and
	// asynchronous deliveries are always counted.
	Stats bool

	// SlowAfter is how long the queue of an asynchronous subscription may
	// stay full before it is reported to OnError as a slow subscriber
	// (ErrSlowSubscriber, with where it was subscribed), once per spell.
	// Zero means one second; negative turns the report off.
	SlowAfter time.Duration

	// DropReportInterval is the shortest time between two reports of
	// dropped events (ErrDropped) for one subscription; the drops in
	// between are counted and reported together. Zero means one second.
	DropReportInterval time.Duration

	// Middleware wraps the handler of every subscription made with a
	// handler (not SubscribeChan), outside the subscription's own
	// SubscribeOptions.Middleware; the first is the outermost. Nil means
	// none, and then a plain synchronous subscription costs Publish
	// nothing more than before; with some, every subscription goes
	// through the slower path of HandlerFunc. New panics on a nil entry.
	Middleware []Middleware
}

const defaultMatchCacheSize = 4096

// Overflow says what an asynchronous subscription does with an event that
// finds its queue full.
type Overflow uint8

const (
	// Block makes Publish wait for room in the queue, for as long as its
	// ctx allows; when ctx ends first, Publish returns an error wrapping
	// ctx.Err() and the event is counted as dropped for that subscription.
	// It is the default because it never loses an event silently. A
	// handler that publishes into its own full Block queue would wait for
	// itself forever: Publish detects that case within a millisecond and
	// returns an error wrapping ErrWouldDeadlock instead, counting the
	// event as dropped. A cycle of handlers that publish into each other's
	// full Block queues is not detected: it waits until the ctx of one of
	// the publishes ends, as goroutines sending on each other's full
	// channels would.
	Block Overflow = iota
	// DropNewest drops the event that does not fit, counts it and reports
	// it to Options.OnError (at most once per Options.DropReportInterval
	// per subscription, with the count). Publish never waits.
	DropNewest
	// DropOldest drops the oldest queued event to make room, counts it
	// and reports it as DropNewest does. Publish never waits.
	DropOldest
)

// String returns the name of the policy, such as "DropNewest".
func (o Overflow) String() string {
	switch o {
	case Block:
		return "Block"
	case DropNewest:
		return "DropNewest"
	case DropOldest:
		return "DropOldest"
	}
	return fmt.Sprintf("Overflow(%d)", uint8(o))
}

// SubscribeOptions configures a subscription made with SubscribeWith or
// SubscribeChan. The zero value (and nil) means a plain synchronous
// subscription, the same as Subscribe.
type SubscribeOptions struct {
	// Queue, when positive, makes the subscription asynchronous: events
	// go into a preallocated FIFO queue of this capacity, and a goroutine
	// of the subscription's own calls the handler, one event at a time, in
	// queue order. Publish then returns without waiting for the handler.
	// Zero means synchronous (SubscribeChan uses 64). Queue events may
	// wait beside the batch the goroutine has taken (up to 128, which it
	// handles in place, or copies out with DropOldest): the queue
	// allocates room for Queue plus min(Queue, 128) events, 56 bytes each
	// on 64-bit machines, once at Subscribe.
	Queue int

	// Overflow is what a full queue does with a new event. The zero
	// value is Block. A synchronous subscription has no queue: any other
	// policy without a Queue is rejected with ErrInvalidOption.
	Overflow Overflow

	// Group, when not empty, puts the subscription in a queue group:
	// subscriptions of one bus that share a group name split the events
	// that match them, each event going to exactly one member (round
	// robin; a member with a full queue is skipped in favour of one with
	// room). Members may mix synchronous and asynchronous subscriptions and
	// different patterns.
	Group string

	// Once makes the subscription end itself after its first event: under
	// concurrent publishers, exactly one event is delivered.
	Once bool

	// Track makes a synchronous subscription count its running handler
	// calls, so that Done and UnsubscribeWait wait for them to return.
	// It costs two atomic operations per delivery on a counter that
	// publishers of the subscription share, which is why it is not the
	// default. Asynchronous subscriptions always wait for their goroutine.
	Track bool

	// Middleware wraps this subscription's handler, inside the bus's
	// Options.Middleware; the first is the outermost. A nil entry, or a
	// middleware that returns a nil HandlerFunc, is rejected with
	// ErrInvalidOption. SubscribeChan rejects any.
	Middleware []Middleware

	// Name is a label for monitoring: (*Subscription).Name returns it, and
	// monitoring pages, logs and metrics show it, such as "mailer" or
	// "orders projection". Collectors may use it as a metric label, so
	// keep the names few and fixed — one per place in the code that
	// subscribes, never derived from a topic, an ID or a user's input —
	// or the number of series grows without bound. Empty means unnamed;
	// several subscriptions may share a name. It changes nothing in
	// delivery and costs nothing per event.
	Name string

	// Retry, when not nil, makes a failed event be tried again, with
	// backoff, and published to a dead-letter topic after its last
	// attempt: see RetryPolicy. Only an asynchronous subscription (Queue
	// > 0) with a handler can retry: a synchronous one, or SubscribeChan,
	// is rejected with ErrInvalidOption. SubscribeWith copies the policy.
	Retry *RetryPolicy
}

// RetryPolicy says how an asynchronous subscription retries an event whose
// handler failed (returned an error or panicked) and where the event goes
// after its last attempt. The zero RetryPolicy means the defaults of each
// field: three attempts, 100ms then 200ms apart, then the dead letter on
// DeadLetterPrefix + separator + topic.
//
// The worker of the subscription waits between attempts: the
// subscription's later events wait behind the failing one, so that its
// events are still handled in order, and its queue fills meanwhile, with
// the overflow policy applying to publishers as for a slow handler. Other
// subscriptions and publishers with room in the queue are never delayed.
//
// Retries stop when the event's ctx (the publisher's) ends, and then the
// event goes to the dead letter at once; publish with
// context.WithoutCancel for work that must outlive its publisher. Close
// stops them too: the event is then abandoned, counted in Stats.Abandoned
// and in Close's error. Unsubscribe does not: the events already queued
// are handled, retries included, before Done is closed.
type RetryPolicy struct {
	// Attempts is the number of handler calls an event gets, the first
	// included. Zero means 3; 1 means no retry: a failed event goes
	// straight to the dead letter.
	Attempts int

	// Initial is the delay before the second attempt. Zero means 100ms.
	Initial time.Duration

	// Max caps the delay between two attempts. Zero means 10 seconds;
	// it must not be below Initial.
	Max time.Duration

	// Multiplier multiplies the delay after each attempt: the delay
	// before attempt n+1 is min(Max, Initial × Multiplier^(n-1)). Zero
	// means 2; it must be at least 1 (1 is a constant delay).
	Multiplier float64

	// Jitter, between 0 and 1, makes each delay a random one between
	// (1-Jitter) and 1 times the computed delay, so that subscriptions
	// failing together do not retry in lockstep; 0.2 is a common choice.
	// Zero means no jitter.
	Jitter float64

	// DeadLetter is the topic where an event goes after its last failed
	// attempt: it is published there with its payload and with Meta
	// saying what failed (see HeaderDeadLetterTopic). It is an ordinary
	// topic, which may have subscribers and be bridged. Empty means
	// DeadLetterPrefix, the separator and the event's topic, such as
	// "deadletter.orders.created". An event that is itself a dead letter
	// is not dead-lettered again: its last failure is only reported.
	DeadLetter string
}

func (o *SubscribeOptions) validate() error {
	if o.Queue < 0 {
		return errorf(ErrInvalidOption, "subscribe: negative queue capacity %d", o.Queue)
	}
	if o.Queue > maxQueue {
		return errorf(ErrInvalidOption, "subscribe: queue capacity %d exceeds %d", o.Queue, maxQueue)
	}
	if o.Overflow > DropOldest {
		return errorf(ErrInvalidOption, "subscribe: unknown overflow policy %v", o.Overflow)
	}
	if o.Queue == 0 && o.Overflow != Block {
		// A synchronous subscription has no queue to overflow: accepting
		// the policy would promise drops that never happen.
		return errorf(ErrInvalidOption, "subscribe: overflow policy %v without a queue (SubscribeOptions.Queue is 0)", o.Overflow)
	}
	for i, m := range o.Middleware {
		if m == nil {
			return errorf(ErrInvalidOption, "subscribe: SubscribeOptions.Middleware[%d] is nil", i)
		}
	}
	if o.Retry != nil {
		if o.Queue == 0 {
			// A synchronous subscription would retry on the publisher's
			// goroutine, delaying every other subscriber and the
			// publisher itself.
			return errorf(ErrInvalidOption, "subscribe: retry policy without a queue (SubscribeOptions.Queue is 0)")
		}
		if err := o.Retry.validate(); err != nil {
			return err
		}
	}
	return nil
}

// maxQueue bounds the capacity of a queue, which is allocated up front.
const maxQueue = 1 << 24
