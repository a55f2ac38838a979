package busotel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// stat is one observable instrument over a Stats struct S: a counter of
// what S counts since New, or a gauge (an observable up-down counter) of a
// depth. Each reading may give several values, told apart by attributes.
type stat[S any] struct {
	name, unit, desc string
	gauge            bool
	values           func(*S) []value
}

type value struct {
	n     uint64
	attrs []attribute.KeyValue
}

// one is the only value of a stat without attributes.
func one(n uint64) []value { return []value{{n: n}} }

// instrument describes an observable instrument: a counter, or a gauge
// (an observable up-down counter).
type instrument struct {
	name, unit, desc string
	gauge            bool
}

// newInstruments makes the instruments of specs, returning them both as
// what the callback observes and as what it registers for.
func newInstruments(m metric.Meter, specs []instrument) ([]metric.Int64Observable, []metric.Observable, error) {
	insts := make([]metric.Int64Observable, len(specs))
	observables := make([]metric.Observable, len(specs))
	for i, s := range specs {
		var err error
		if s.gauge {
			insts[i], err = m.Int64ObservableUpDownCounter(s.name, metric.WithUnit(s.unit), metric.WithDescription(s.desc))
		} else {
			insts[i], err = m.Int64ObservableCounter(s.name, metric.WithUnit(s.unit), metric.WithDescription(s.desc))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("busotel: %w", err)
		}
		observables[i] = insts[i]
	}
	return insts, observables, nil
}

// observe registers the stats with the meter, under the attributes extra,
// read from read once per collection.
func observe[S any](m metric.Meter, stats []stat[S], read func() S, extra []attribute.KeyValue) (metric.Registration, error) {
	specs := make([]instrument, len(stats))
	for i, s := range stats {
		specs[i] = instrument{s.name, s.unit, s.desc, s.gauge}
	}
	insts, observables, err := newInstruments(m, specs)
	if err != nil {
		return nil, err
	}
	// The attribute sets of each value, made once from a first reading:
	// a stat's values come in the same order at every reading.
	base := attrs(extra...)
	sets := make([][]metric.ObserveOption, len(stats))
	sample := read()
	for i, s := range stats {
		for _, v := range s.values(&sample) {
			sets[i] = append(sets[i], metric.WithAttributeSet(attribute.NewSet(append(append([]attribute.KeyValue(nil), base...), v.attrs...)...)))
		}
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := read()
		for i, s := range stats {
			for j, v := range s.values(&st) {
				o.ObserveInt64(insts[i], int64(v.n), sets[i][j]) //nolint:gosec // counts fit in int64 for centuries
			}
		}
		return nil
	}, observables...)
	if err != nil {
		return nil, fmt.Errorf("busotel: %w", err)
	}
	return reg, nil
}

// busStats are the instruments of ObserveBus.
var busStats = []stat[bus.Stats]{
	{name: "busline.bus.published", unit: "{event}", desc: "Events published (with bus.Options.Stats only).",
		values: func(s *bus.Stats) []value { return one(s.Published) }},
	{name: "busline.bus.delivered", unit: "{event}", desc: "Events whose handling ended in a handler (synchronous ones with bus.Options.Stats only).",
		values: func(s *bus.Stats) []value { return one(s.Delivered) }},
	{name: "busline.bus.dropped", unit: "{event}", desc: "Events a subscription did not get: full queue, Close out of time, unsubscribed channel.",
		values: func(s *bus.Stats) []value { return one(s.Dropped) }},
	{name: "busline.bus.failed", unit: "{call}", desc: "Handler calls that returned an error or panicked (each retry attempt counts).",
		values: func(s *bus.Stats) []value { return one(s.Failed) }},
	{name: "busline.bus.panics", unit: "{call}", desc: "Recovered handler panics (also in busline.bus.failed).",
		values: func(s *bus.Stats) []value { return one(s.Panics) }},
	{name: "busline.bus.retried", unit: "{call}", desc: "Attempts after the first of subscriptions with a RetryPolicy.",
		values: func(s *bus.Stats) []value { return one(s.Retried) }},
	{name: "busline.bus.dead_lettered", unit: "{event}", desc: "Events published to their dead-letter topic after their last failed attempt.",
		values: func(s *bus.Stats) []value { return one(s.DeadLettered) }},
	{name: "busline.bus.abandoned", unit: "{event}", desc: "Failed events whose remaining attempts Close cut short.",
		values: func(s *bus.Stats) []value { return one(s.Abandoned) }},
	{name: "busline.bus.subscriptions", unit: "{subscription}", desc: "Active subscriptions.", gauge: true,
		values: func(s *bus.Stats) []value { return one(uint64(s.Subscriptions)) }}, //nolint:gosec // never negative
	{name: "busline.bus.queue.depth", unit: "{event}", desc: "Events waiting in asynchronous subscriptions' queues.", gauge: true,
		values: func(s *bus.Stats) []value { return one(uint64(s.Queued)) }}, //nolint:gosec // never negative
}

// subscriptionStats are the instruments of ObserveBus per subscription
// name: the sums of the named subscriptions' SubscriptionStats by name.
var subscriptionStats = []struct {
	name, unit, desc string
	gauge            bool
	get              func(*bus.SubscriptionStats) int
}{
	{"busline.subscription.delivered", "{event}", "Events whose handling ended in the subscriptions' handlers.", false,
		func(s *bus.SubscriptionStats) int { return int(s.Delivered) }}, //nolint:gosec // counts fit
	{"busline.subscription.dropped", "{event}", "Events the subscriptions did not get (full queue, Close).", false,
		func(s *bus.SubscriptionStats) int { return int(s.Dropped) }}, //nolint:gosec // counts fit
	{"busline.subscription.failed", "{call}", "Handler calls of the subscriptions that failed.", false,
		func(s *bus.SubscriptionStats) int { return int(s.Failed) }}, //nolint:gosec // counts fit
	{"busline.subscription.dead_lettered", "{event}", "Events of the subscriptions dead-lettered.", false,
		func(s *bus.SubscriptionStats) int { return int(s.DeadLettered) }}, //nolint:gosec // counts fit
	{"busline.subscription.queue.depth", "{event}", "Events waiting in the subscriptions' queues.", true,
		func(s *bus.SubscriptionStats) int { return s.Queued }},
	{"busline.subscription.queue.high_water", "{event}", "The largest the subscriptions' queues have been (summed by name).", true,
		func(s *bus.SubscriptionStats) int { return s.HighWater }},
}

// observeSubscriptions registers the instruments of subscriptionStats over
// the named subscriptions of b, summed by name: their number is the
// number of names, which the code that subscribes fixes.
func observeSubscriptions(m metric.Meter, b *bus.Bus, extra []attribute.KeyValue) (metric.Registration, error) {
	specs := make([]instrument, len(subscriptionStats))
	for i, s := range subscriptionStats {
		specs[i] = instrument{s.name, s.unit, s.desc, s.gauge}
	}
	insts, observables, err := newInstruments(m, specs)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex // protects sets: callbacks may run concurrently
	sets := map[string]metric.ObserveOption{}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		sums := map[string][]int{}
		var order []string
		for _, sub := range b.Subscriptions() {
			name := sub.Name()
			if name == "" {
				continue
			}
			sum := sums[name]
			if sum == nil {
				sum = make([]int, len(subscriptionStats))
				sums[name] = sum
				order = append(order, name)
			}
			st := sub.Stats()
			for i, s := range subscriptionStats {
				sum[i] += s.get(&st)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, name := range order {
			set, ok := sets[name]
			if !ok {
				set = metric.WithAttributeSet(attribute.NewSet(attrs(append(slices.Clone(extra), semconv.MessagingDestinationSubscriptionName(name))...)...))
				sets[name] = set
			}
			for i := range subscriptionStats {
				o.ObserveInt64(insts[i], int64(sums[name][i]), set)
			}
		}
		return nil
	}, observables...)
	if err != nil {
		return nil, fmt.Errorf("busotel: %w", err)
	}
	return reg, nil
}

// ObserveBus registers instruments over b.Stats(), read once per
// collection of the meter, with the attributes attrs (such as a name for b,
// when one process has several buses) besides messaging.system:
//
//	busline.bus.published, .delivered, .dropped, .failed, .panics, .retried,
//	.dead_lettered, .abandoned (counters); busline.bus.subscriptions,
//	busline.bus.queue.depth (gauges)
//
// and, per subscription name (SubscribeOptions.Name, in
// messaging.destination.subscription.name; unnamed subscriptions are only
// in the bus's totals, and subscriptions sharing a name are summed):
//
//	busline.subscription.delivered, .dropped, .failed, .dead_lettered
//	(counters); busline.subscription.queue.depth, .queue.high_water (gauges)
//
// A subscription's counts leave the sums when it ends, so a name's
// counters can go down: Prometheus's rate() takes that for a reset.
// Published and the synchronous part of Delivered count only with
// bus.Options.Stats. Unregister the registration when b is closed; a
// closed bus keeps its last counts.
func (t *Telemetry) ObserveBus(b *bus.Bus, attrs ...attribute.KeyValue) (metric.Registration, error) {
	totals, err := observe(t.meter, busStats, b.Stats, attrs)
	if err != nil {
		return nil, err
	}
	subs, err := observeSubscriptions(t.meter, b, attrs)
	if err != nil {
		_ = totals.Unregister()
		return nil, err
	}
	return registrations{rs: []metric.Registration{totals, subs}}, nil
}

// registrations unregisters several registrations as one.
type registrations struct {
	embedded.Registration
	rs []metric.Registration
}

func (rs registrations) Unregister() error {
	var errs []error
	for _, r := range rs.rs {
		errs = append(errs, r.Unregister())
	}
	return errors.Join(errs...)
}

var (
	opPublish = semconv.MessagingOperationName("publish")
	opXADD    = semconv.MessagingOperationName("xadd")
	opSub     = semconv.MessagingOperationName("subscribe")
	opXREAD   = semconv.MessagingOperationName("xread")
)

func reason(r string) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("busline.reason", r)}
}

// bridgeStats are the instruments of ObserveBridge.
var bridgeStats = []stat[bridge.Stats]{
	{name: "messaging.client.sent.messages", unit: "{message}",
		desc: "Events the bridge sent to Redis (PUBLISH or XADD answered), by operation: publish (pub/sub routes), xadd (durable routes).",
		values: func(s *bridge.Stats) []value {
			return []value{{s.Exported - s.StreamExported, []attribute.KeyValue{opPublish}}, {s.StreamExported, []attribute.KeyValue{opXADD}}}
		}},
	{name: "messaging.client.consumed.messages", unit: "{message}",
		desc: "Events the bridge imported and published on the local bus, by operation: subscribe (pub/sub routes), xread (durable routes).",
		values: func(s *bridge.Stats) []value {
			return []value{{s.Imported - s.StreamImported, []attribute.KeyValue{opSub}}, {s.StreamImported, []attribute.KeyValue{opXREAD}}}
		}},
	{name: "busline.bridge.export.messages", unit: "{message}", desc: "Redis messages behind the events sent (fewer when batched).",
		values: func(s *bridge.Stats) []value { return one(s.ExportMessages) }},
	{name: "busline.bridge.export.rejected", unit: "{event}", desc: "Exports Redis refused (such as NOPERM).",
		values: func(s *bridge.Stats) []value { return one(s.ExportRejected) }},
	{name: "busline.bridge.encode.errors", unit: "{event}", desc: "Payloads a route's codec could not encode, or too big.",
		values: func(s *bridge.Stats) []value { return one(s.EncodeErrors) }},
	{name: "busline.bridge.outbox.dropped", unit: "{event}", desc: "Exports dropped before they were sent, by reason: overflow, expired, unsent (Close).",
		values: func(s *bridge.Stats) []value {
			return []value{{s.OutboxOverflow, reason("overflow")}, {s.OutboxExpired, reason("expired")}, {s.OutboxUnsent, reason("unsent")}}
		}},
	{name: "busline.bridge.outbox.depth", unit: "{event}", desc: "Exports waiting to be sent.", gauge: true,
		values: func(s *bridge.Stats) []value { return one(uint64(s.OutboxDepth)) }}, //nolint:gosec // never negative
	{name: "busline.bridge.outbox.size", unit: "By", desc: "Payload bytes waiting to be sent.", gauge: true,
		values: func(s *bridge.Stats) []value { return one(uint64(s.OutboxBytes)) }}, //nolint:gosec // never negative
	{name: "busline.bridge.received", unit: "{message}", desc: "Messages read from Redis, a batch as one per event once decoded.",
		values: func(s *bridge.Stats) []value { return one(s.Received) }},
	{name: "busline.bridge.import.skipped", unit: "{message}",
		desc: "Messages received and not imported, as they should not be, by reason: filtered, duplicate_copy, echo, duplicate.",
		values: func(s *bridge.Stats) []value {
			return []value{{s.Filtered, reason("filtered")}, {s.DuplicateCopies, reason("duplicate_copy")},
				{s.EchoesDropped, reason("echo")}, {s.Duplicates, reason("duplicate")}}
		}},
	{name: "busline.bridge.import.dropped", unit: "{message}",
		desc: "Messages received and lost, by reason: decode_error, signature_rejected, queue_full.",
		values: func(s *bridge.Stats) []value {
			return []value{{s.DecodeErrors, reason("decode_error")}, {s.SignatureRejected, reason("signature_rejected")},
				{s.ImportDropped, reason("queue_full")}}
		}},
	{name: "busline.bridge.import.depth", unit: "{event}", desc: "Imported events waiting for delivery.", gauge: true,
		values: func(s *bridge.Stats) []value { return one(uint64(s.ImportDepth)) }}, //nolint:gosec // never negative
	{name: "busline.bridge.gaps", unit: "{gap}", desc: "Sequence gaps detected: events of a source that never arrived.",
		values: func(s *bridge.Stats) []value { return one(s.Gaps) }},
	{name: "busline.bridge.gap.events", unit: "{event}", desc: "Events missing in the gaps detected.",
		values: func(s *bridge.Stats) []value { return one(s.GapEvents) }},
	{name: "busline.bridge.reconnects", unit: "{connection}", desc: "Pub/sub connections made after the first.",
		values: func(s *bridge.Stats) []value { return one(s.Reconnects) }},
	{name: "busline.bridge.export.outages", unit: "{outage}", desc: "Times exporting found Redis unreachable.",
		values: func(s *bridge.Stats) []value { return one(s.ExportOutages) }},
	{name: "busline.bridge.shard.rebuilds", unit: "{rebuild}", desc: "Times sharded subscriptions were regrouped (slot migration, failover).",
		values: func(s *bridge.Stats) []value { return one(s.ShardRebuilds) }},
	{name: "busline.bridge.stream.acked", unit: "{entry}", desc: "Entries of Group routes acknowledged after they were handled.",
		values: func(s *bridge.Stats) []value { return one(s.StreamAcked) }},
	{name: "busline.bridge.stream.claimed", unit: "{entry}", desc: "Entries of Group routes taken over from other consumers.",
		values: func(s *bridge.Stats) []value { return one(s.StreamClaimed) }},
	{name: "busline.bridge.stream.resumes", unit: "{resume}", desc: "Times a durable import route went on from a saved position.",
		values: func(s *bridge.Stats) []value { return one(s.StreamResumes) }},
	{name: "busline.bridge.stream.trimmed", unit: "{entry}", desc: "Entries of Group routes trimmed before they were handled.",
		values: func(s *bridge.Stats) []value { return one(s.StreamTrimmed) }},
}

// routeAttrs are the attributes of a route's values: its pattern, index
// and delivery.
func routeAttrs(r *bridge.RouteStats, kv ...attribute.KeyValue) []attribute.KeyValue {
	return append([]attribute.KeyValue{attribute.String("busline.route", r.Pattern), attribute.Int("busline.route.index", r.Index),
		attribute.String("busline.delivery", r.Delivery.String())}, kv...)
}

// perRoute returns one value per route, get's.
func perRoute(rs *[]bridge.RouteStats, get func(*bridge.RouteStats) uint64, kv ...attribute.KeyValue) []value {
	out := make([]value, len(*rs))
	for i := range *rs {
		r := &(*rs)[i]
		out[i] = value{get(r), routeAttrs(r, kv...)}
	}
	return out
}

// routeStats are the instruments of ObserveBridge per route.
var routeStats = []stat[[]bridge.RouteStats]{
	{name: "busline.bridge.route.queued", unit: "{event}", desc: "Exports the route handed to its outbox.",
		values: func(rs *[]bridge.RouteStats) []value {
			return perRoute(rs, func(r *bridge.RouteStats) uint64 { return r.Queued })
		}},
	{name: "busline.bridge.route.exported", unit: "{event}", desc: "The route's events Redis accepted.",
		values: func(rs *[]bridge.RouteStats) []value {
			return perRoute(rs, func(r *bridge.RouteStats) uint64 { return r.Exported })
		}},
	{name: "busline.bridge.route.imported", unit: "{event}", desc: "The route's events published on the local bus.",
		values: func(rs *[]bridge.RouteStats) []value {
			return perRoute(rs, func(r *bridge.RouteStats) uint64 { return r.Imported })
		}},
	{name: "busline.bridge.route.errors", unit: "{event}",
		desc: "The route's events lost, by reason: export_rejected, encode_error, decode_error, signature_rejected, import_dropped.",
		values: func(rs *[]bridge.RouteStats) []value {
			var out []value
			for _, p := range []struct {
				reason string
				get    func(*bridge.RouteStats) uint64
			}{
				{"export_rejected", func(r *bridge.RouteStats) uint64 { return r.ExportRejected }},
				{"encode_error", func(r *bridge.RouteStats) uint64 { return r.EncodeErrors }},
				{"decode_error", func(r *bridge.RouteStats) uint64 { return r.DecodeErrors }},
				{"signature_rejected", func(r *bridge.RouteStats) uint64 { return r.SignatureRejected }},
				{"import_dropped", func(r *bridge.RouteStats) uint64 { return r.ImportDropped }},
			} {
				out = append(out, perRoute(rs, p.get, reason(p.reason)...)...)
			}
			return out
		}},
	{name: "busline.bridge.route.duplicates", unit: "{event}", desc: "The route's events received twice.",
		values: func(rs *[]bridge.RouteStats) []value {
			return perRoute(rs, func(r *bridge.RouteStats) uint64 { return r.Duplicates })
		}},
	{name: "busline.bridge.route.gaps", unit: "{gap}", desc: "Sequence gaps on the route's channels and streams.",
		values: func(rs *[]bridge.RouteStats) []value {
			return perRoute(rs, func(r *bridge.RouteStats) uint64 { return r.Gaps })
		}},
	{name: "busline.bridge.route.gap.events", unit: "{event}", desc: "Events missing in the route's gaps.",
		values: func(rs *[]bridge.RouteStats) []value {
			return perRoute(rs, func(r *bridge.RouteStats) uint64 { return r.GapEvents })
		}},
	{name: "busline.bridge.route.outbox.depth", unit: "{event}", desc: "What waits in a durable export route's own outbox (0 for pub/sub routes).", gauge: true,
		values: func(rs *[]bridge.RouteStats) []value {
			return perRoute(rs, func(r *bridge.RouteStats) uint64 { return uint64(r.OutboxDepth) }) //nolint:gosec // never negative
		}},
}

// ObserveBridge registers instruments over br.Stats(), read once per
// collection of the meter, with the attributes attrs besides
// messaging.system (such as a name for br, when one process has several
// bridges):
//
//	messaging.client.sent.messages (operation publish or xadd),
//	messaging.client.consumed.messages (operation subscribe or xread),
//	busline.bridge.export.messages, .export.rejected, .encode.errors,
//	.outbox.dropped (reason), .received, .import.skipped (reason),
//	.import.dropped (reason), .gaps, .gap.events, .reconnects,
//	.export.outages, .shard.rebuilds, .stream.acked, .stream.claimed,
//	.stream.resumes, .stream.trimmed (counters);
//	busline.bridge.outbox.depth, .outbox.size, .import.depth (gauges)
//
// and per route (br.Routes(), with busline.route = the route's pattern,
// busline.route.index = its position in Options.Routes, and
// busline.delivery):
//
//	busline.bridge.route.queued, .exported, .imported, .errors (reason),
//	.duplicates, .gaps, .gap.events (counters); .outbox.depth (gauge)
//
// Unregister the registration when br is closed.
func (t *Telemetry) ObserveBridge(br *bridge.Bridge, attrs ...attribute.KeyValue) (metric.Registration, error) {
	totals, err := observe(t.meter, bridgeStats, br.Stats, attrs)
	if err != nil {
		return nil, err
	}
	routes, err := observe(t.meter, routeStats, br.Routes, attrs)
	if err != nil {
		_ = totals.Unregister()
		return nil, err
	}
	return registrations{rs: []metric.Registration{totals, routes}}, nil
}
