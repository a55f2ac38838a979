package busotel

import (
	"context"
	"fmt"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
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

// observe registers the stats with the meter, under the attributes extra,
// read from read once per collection.
func observe[S any](m metric.Meter, stats []stat[S], read func() S, extra []attribute.KeyValue) (metric.Registration, error) {
	insts := make([]metric.Int64Observable, len(stats))
	observables := make([]metric.Observable, len(stats))
	for i, s := range stats {
		var err error
		if s.gauge {
			insts[i], err = m.Int64ObservableUpDownCounter(s.name, metric.WithUnit(s.unit), metric.WithDescription(s.desc))
		} else {
			insts[i], err = m.Int64ObservableCounter(s.name, metric.WithUnit(s.unit), metric.WithDescription(s.desc))
		}
		if err != nil {
			return nil, fmt.Errorf("busotel: %w", err)
		}
		observables[i] = insts[i]
	}
	// The attribute sets of each value, made once: a stat's values come
	// in the same order at every reading.
	base := attrs(extra...)
	sets := make([][]metric.ObserveOption, len(stats))
	var zero S
	for i, s := range stats {
		for _, v := range s.values(&zero) {
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

// ObserveBus registers instruments over b.Stats(), read once per
// collection of the meter, with the attributes attrs (such as a name for b,
// when one process has several buses) besides messaging.system:
//
//	busline.bus.published, .delivered, .dropped, .failed, .panics, .retried,
//	.dead_lettered, .abandoned (counters); busline.bus.subscriptions,
//	busline.bus.queue.depth (gauges)
//
// Published and the synchronous part of Delivered count only with
// bus.Options.Stats. Unregister the registration when b is closed; a
// closed bus keeps its last counts.
func (t *Telemetry) ObserveBus(b *bus.Bus, attrs ...attribute.KeyValue) (metric.Registration, error) {
	return observe(t.meter, busStats, b.Stats, attrs)
}

var (
	opPublish = semconv.MessagingOperationName("publish")
	opXADD    = semconv.MessagingOperationName("xadd")
	opSub     = semconv.MessagingOperationName("subscribe")
	opXREAD   = semconv.MessagingOperationName("xread")
)

func reason(r string) []attribute.KeyValue { return []attribute.KeyValue{attribute.String("busline.reason", r)} }

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
// Unregister the registration when br is closed.
func (t *Telemetry) ObserveBridge(br *bridge.Bridge, attrs ...attribute.KeyValue) (metric.Registration, error) {
	return observe(t.meter, bridgeStats, br.Stats, attrs)
}
