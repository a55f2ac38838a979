package bridge

import (
	"context"

	bus "github.com/busline/bus"
)

// Hooks are functions the bridge calls on the path of each event it
// exports or imports, so that tracing and metrics can follow events through
// Redis without the bridge depending on them: extra/busotel sets them to
// carry W3C trace context in the envelope's headers. The zero Hooks calls
// nothing, and then costs the paths of an event one nil check each.
//
// The hooks are called concurrently, from publishers' goroutines (Export)
// and from the bridge's import workers and stream readers (Import); they
// must not block for long, and must not call the Bridge's Close. A panic in
// a hook is not recovered: it happens on a publisher's goroutine, where the
// bus reports it as a panicking handler, or on a goroutine of the bridge,
// where it crashes the program like any other.
type Hooks struct {
	// Export, when not nil, is called for each event an export route is
	// about to queue, on the publisher's goroutine and with the
	// publisher's ctx, after the route's filters (not for Remote events,
	// nor for those an earlier route exports) and before the payload is
	// encoded. It returns the headers to export the event with, or nil
	// to keep its own (e.Meta.Headers): it must not modify those, which
	// the publisher and the other subscribers share, but may return a
	// new map holding them and more. The event's own Meta is left as it
	// is; the bridge exports a copy with the headers returned. Raw routes
	// (info.Raw) send no headers: what Export returns for them is
	// dropped, so trace context does not cross them.
	Export func(ctx context.Context, e bus.Event, info HookInfo) map[string]string

	// Import, when not nil, is called for each event the bridge imports,
	// once its payload is decoded and just before it is published on the
	// local bus, on the goroutine that publishes it (an import worker, or
	// the reader of a durable route), with the ctx the bridge publishes
	// with. It returns the ctx to publish with instead, derived from the
	// one it was given (the bridge cancels that one when Close gives up),
	// and done, which the bridge calls on the same goroutine with the
	// error of the local publish once it returns, that is after the
	// synchronous handlers ran; done may be nil. e.Meta carries the
	// headers the event came with (nil for raw routes' events).
	Import func(ctx context.Context, e bus.Event, info HookInfo) (_ context.Context, done func(error))
}

// HookInfo says where an event passed to a hook goes to or comes from.
type HookInfo struct {
	// Pattern is the Pattern of the event's route.
	Pattern string
	// Delivery is the route's Delivery.
	Delivery Delivery
	// Raw is the route's Raw: its events carry no headers.
	Raw bool
	// Destination is the Redis channel of a pub/sub route (with its
	// partition tag on a cluster), or the stream key of a durable one.
	Destination string
	// Group is the consumer group of a Group route; empty otherwise.
	Group string
	// Entry is the ID of the stream entry an event was imported from, on
	// a durable route; empty otherwise.
	Entry string
}

// hookInfo returns the HookInfo of route r for topic, whose stream key is
// key on a durable route (looked up when empty).
func (br *Bridge) hookInfo(r *route, topic, key string) HookInfo {
	info := HookInfo{Pattern: r.Pattern, Delivery: r.Delivery, Raw: r.Raw, Destination: key}
	if r.durable() {
		if key == "" {
			info.Destination = br.streamKey(r)
		}
		if r.Delivery == Group {
			info.Group = r.Group
			if info.Group == "" {
				info.Group = defaultGroup
			}
		}
		return info
	}
	info.Destination = r.channel(br.cfg.Prefix, topic)
	return info
}

// hookExport calls the Export hook for e, about to be exported by route
// r, and returns e with the headers it returned.
func (br *Bridge) hookExport(ctx context.Context, r *route, e bus.Event) bus.Event {
	h := br.cfg.Hooks.Export(ctx, e, br.hookInfo(r, e.Topic, ""))
	if h == nil {
		return e
	}
	var m bus.Meta
	if e.Meta != nil {
		m = *e.Meta
	}
	m.Headers = h
	e.Meta = &m
	return e
}

// hookImport calls the Import hook for e, imported by the route of it
// (from entry of stream key on a durable route), and returns the ctx to
// publish e with and the function to call after.
func (br *Bridge) hookImport(ctx context.Context, it *importItem, e bus.Event, entry, key string) (context.Context, func(error)) {
	info := br.hookInfo(it.route, it.topic, key)
	info.Entry = entry
	hctx, done := br.cfg.Hooks.Import(ctx, e, info)
	if hctx == nil {
		hctx = ctx
	}
	return hctx, done
}
