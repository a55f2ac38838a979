package bus

import (
	"context"
	"time"
)

// Event is what a handler receives: the topic it was published on, the
// payload, and optional metadata.
//
// The payload and the metadata are shared by every subscriber of the event:
// a handler may read them and retain them, but must not modify them. Publish
// a pointer when the payload is large: an Event is passed by value, and a
// pointer payload costs no allocation.
type Event struct {
	// Topic is the topic the event was published on, never a pattern.
	Topic string
	// Payload is what the publisher passed, unchanged; it may be nil.
	Payload any
	// Meta is nil for events published with Publish. Bridges and
	// PublishEvent callers set it to carry origin and headers.
	Meta *Meta
}

// Meta is optional metadata that travels with an event. All fields are
// optional; the zero Meta means nothing.
type Meta struct {
	// Source identifies the instance that first published the event. It is
	// empty for events published in this process; a bridge sets it to the
	// ID of the remote instance an imported event came from.
	Source string
	// Seq is the sequence number the source gave the event, when it has
	// one (bridges number the events of each source from 1).
	Seq uint64
	// Time is when the source published the event; zero when unknown.
	Time time.Time
	// ContentType describes the encoding of a payload that arrived as
	// bytes, such as "application/json".
	ContentType string
	// Headers carry anything else, such as trace context
	// ("traceparent"). The map must not be modified after publishing.
	Headers map[string]string
	// ReplyTo is the topic on which the publisher waits for a reply: it is
	// set on the events of Request (and on requests a bridge imports from
	// another instance), and empty otherwise. Answer with [Bus.Reply].
	ReplyTo string
}

// Remote reports whether the event came from another instance through a
// bridge, that is whether it carries a non-empty Meta.Source.
func (e Event) Remote() bool { return e.Meta != nil && e.Meta.Source != "" }

// Handler handles the events of one subscription. A synchronous handler
// runs on the goroutine of the publisher, which waits for it; ctx is the
// context passed to Publish.
//
// Handlers of different subscriptions may run concurrently, and so may the
// same handler when several goroutines publish at once: a handler that
// touches shared state must synchronize. A handler may publish, subscribe and
// unsubscribe (itself included): the bus holds no lock while it runs. A
// panic in a handler is recovered and reported to Options.OnError. A
// handler that can fail is a HandlerFunc.
type Handler func(ctx context.Context, e Event)
