// Package busprometheus exports the counters of a Busline bus and bridge
// to Prometheus: a prometheus.Collector for each, reading bus.Stats and
// bridge.Stats (with the per-subscription and per-route counts) at every
// scrape.
//
//	reg := prometheus.NewRegistry()
//	reg.MustRegister(busprometheus.NewBusCollector(b, nil), busprometheus.NewBridgeCollector(br, nil))
//	http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
//
// It is a module of its own, so that the bus and the bridge never depend on
// the Prometheus client. Counters end in _total and gauges say what they
// count (_events, _bytes, _subscriptions). Labels are bounded: a
// subscription's name (SubscribeOptions.Name; unnamed subscriptions are only
// in the bus's totals, unless Options.PatternLabels is set), a route's
// pattern, a reason, a connection's kind, route and node. No metric is
// labelled by topic: the bus does not count per topic, and a topic label
// would make one series per topic ever published.
//
// For OpenTelemetry metrics and traces, see extra/busotel instead.
package busprometheus

import (
	"strconv"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a collector. A nil *Options and the zero value of
// each field mean the defaults documented on the field.
type Options struct {
	// Namespace is the first part of every metric name. Empty means
	// "busline".
	Namespace string

	// ConstLabels are added to every metric, such as {"bus": "orders"}
	// when a process has several buses or bridges.
	ConstLabels prometheus.Labels

	// PatternLabels, for a bus collector, also labels the subscriptions
	// without a name, by their pattern ("pattern:<pattern>" in the
	// subscription label). Set it only where patterns are few and fixed
	// in the code: a pattern made from data makes a series per value.
	PatternLabels bool
}

func (o *Options) namespace() string {
	if o == nil || o.Namespace == "" {
		return "busline"
	}
	return o.Namespace
}

func (o *Options) constLabels() prometheus.Labels {
	if o == nil {
		return nil
	}
	return o.ConstLabels
}

// metricDef is one metric of a collector: its description, and the values
// it reads from a snapshot S, each with its labels' values.
type metricDef[S any] struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	values func(*S) []sample
}

type sample struct {
	v      float64
	labels []string
}

func one(v uint64) []sample { return []sample{{v: float64(v)}} }

// newDef makes a metricDef named namespace_subsystem_name.
func newDef[S any](o *Options, subsystem, name, help string, typ prometheus.ValueType, labels []string, values func(*S) []sample) metricDef[S] {
	return metricDef[S]{
		desc:   prometheus.NewDesc(prometheus.BuildFQName(o.namespace(), subsystem, name), help, labels, o.constLabels()),
		typ:    typ,
		values: values,
	}
}

// collector is a prometheus.Collector over snapshots S made by read.
type collector[S any] struct {
	read func() S
	defs []metricDef[S]
}

// Describe sends the descriptions of every metric.
func (c *collector[S]) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.defs {
		ch <- d.desc
	}
}

// Collect reads a snapshot and sends every metric's values.
func (c *collector[S]) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	for _, d := range c.defs {
		for _, v := range d.values(&s) {
			ch <- prometheus.MustNewConstMetric(d.desc, d.typ, v.v, v.labels...)
		}
	}
}

const (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue
)

// busSnapshot is what a bus collector reads at a scrape.
type busSnapshot struct {
	bus.Stats
	// subs are the named subscriptions' stats, summed by label, in the
	// order the labels first appear.
	subs   []bus.SubscriptionStats
	labels []string
}

// NewBusCollector returns a collector of b's counters, read at each scrape
// (b.Stats and, per subscription, b.Subscriptions), configured by opts (nil
// means the defaults):
//
//	busline_bus_published_total, _delivered_total, _dropped_total,
//	_failed_total, _panics_total, _retried_total, _dead_lettered_total,
//	_abandoned_total; busline_bus_subscriptions, busline_bus_queued_events
//
// and, labelled by subscription (its SubscribeOptions.Name; subscriptions
// sharing a name are summed):
//
//	busline_subscription_delivered_total, _dropped_total, _failed_total,
//	_dead_lettered_total; busline_subscription_queued_events,
//	_queue_high_water_events, _queue_capacity_events
//
// A subscription's counts leave its label's sums when it ends, which
// Prometheus's rate() takes for a counter reset. Published, and Delivered
// for synchronous subscriptions, count only with bus.Options.Stats. The
// collector is safe for concurrent use; a scrape allocates, Publish pays
// nothing for it.
func NewBusCollector(b *bus.Bus, opts *Options) prometheus.Collector {
	patterns := opts != nil && opts.PatternLabels
	read := func() busSnapshot {
		s := busSnapshot{Stats: b.Stats()}
		index := map[string]int{}
		for _, sub := range b.Subscriptions() {
			label := sub.Name()
			if label == "" {
				if !patterns {
					continue
				}
				label = "pattern:" + sub.Pattern()
			}
			st := sub.Stats()
			i, ok := index[label]
			if !ok {
				i = len(s.subs)
				index[label] = i
				s.subs = append(s.subs, bus.SubscriptionStats{})
				s.labels = append(s.labels, label)
			}
			sum := &s.subs[i]
			sum.Delivered += st.Delivered
			sum.Dropped += st.Dropped
			sum.Failed += st.Failed
			sum.DeadLettered += st.DeadLettered
			sum.Queued += st.Queued
			sum.HighWater += st.HighWater
			sum.Capacity += st.Capacity
		}
		return s
	}
	perSub := func(get func(*bus.SubscriptionStats) float64) func(*busSnapshot) []sample {
		return func(s *busSnapshot) []sample {
			out := make([]sample, len(s.subs))
			for i := range s.subs {
				out[i] = sample{get(&s.subs[i]), []string{s.labels[i]}}
			}
			return out
		}
	}
	sub := []string{"subscription"}
	type S = busSnapshot
	return &collector[S]{read: read, defs: []metricDef[S]{
		newDef(opts, "bus", "published_total", "Events published (counted with bus.Options.Stats only).", counter, nil,
			func(s *S) []sample { return one(s.Published) }),
		newDef(opts, "bus", "delivered_total", "Events whose handling ended in a handler (synchronous ones with bus.Options.Stats only).", counter, nil,
			func(s *S) []sample { return one(s.Delivered) }),
		newDef(opts, "bus", "dropped_total", "Events a subscription did not get: full queue, Close out of time, unsubscribed channel.", counter, nil,
			func(s *S) []sample { return one(s.Dropped) }),
		newDef(opts, "bus", "failed_total", "Handler calls that returned an error or panicked.", counter, nil,
			func(s *S) []sample { return one(s.Failed) }),
		newDef(opts, "bus", "panics_total", "Recovered handler panics.", counter, nil,
			func(s *S) []sample { return one(s.Panics) }),
		newDef(opts, "bus", "retried_total", "Attempts after the first of subscriptions with a retry policy.", counter, nil,
			func(s *S) []sample { return one(s.Retried) }),
		newDef(opts, "bus", "dead_lettered_total", "Events published to their dead-letter topic.", counter, nil,
			func(s *S) []sample { return one(s.DeadLettered) }),
		newDef(opts, "bus", "abandoned_total", "Failed events whose remaining attempts Close cut short.", counter, nil,
			func(s *S) []sample { return one(s.Abandoned) }),
		newDef(opts, "bus", "subscriptions", "Active subscriptions.", gauge, nil,
			func(s *S) []sample { return []sample{{v: float64(s.Subscriptions)}} }),
		newDef(opts, "bus", "queued_events", "Events waiting in asynchronous subscriptions' queues.", gauge, nil,
			func(s *S) []sample { return []sample{{v: float64(s.Queued)}} }),
		newDef(opts, "subscription", "delivered_total", "Events whose handling ended in the subscription's handler.", counter, sub,
			perSub(func(s *bus.SubscriptionStats) float64 { return float64(s.Delivered) })),
		newDef(opts, "subscription", "dropped_total", "Events the subscription did not get.", counter, sub,
			perSub(func(s *bus.SubscriptionStats) float64 { return float64(s.Dropped) })),
		newDef(opts, "subscription", "failed_total", "Handler calls of the subscription that failed.", counter, sub,
			perSub(func(s *bus.SubscriptionStats) float64 { return float64(s.Failed) })),
		newDef(opts, "subscription", "dead_lettered_total", "Events of the subscription dead-lettered.", counter, sub,
			perSub(func(s *bus.SubscriptionStats) float64 { return float64(s.DeadLettered) })),
		newDef(opts, "subscription", "queued_events", "Events waiting in the subscription's queue.", gauge, sub,
			perSub(func(s *bus.SubscriptionStats) float64 { return float64(s.Queued) })),
		newDef(opts, "subscription", "queue_high_water_events", "The largest the subscription's queue has been.", gauge, sub,
			perSub(func(s *bus.SubscriptionStats) float64 { return float64(s.HighWater) })),
		newDef(opts, "subscription", "queue_capacity_events", "The capacity of the subscription's queue (0 when synchronous).", gauge, sub,
			perSub(func(s *bus.SubscriptionStats) float64 { return float64(s.Capacity) })),
	}}
}

// bridgeSnapshot is what a bridge collector reads at a scrape.
type bridgeSnapshot struct {
	bridge.Stats
	routes []bridge.RouteStats
	// routeLabels are the routes' labels: the pattern, with "#index"
	// after it when two routes share one.
	routeLabels []string
	conns       []bridge.ConnState
}

// NewBridgeCollector returns a collector of br's counters, read at each
// scrape (br.Stats, br.Routes, br.Connections), configured by opts (nil
// means the defaults; PatternLabels does not apply):
//
//	busline_bridge_exported_total, _export_messages_total,
//	_export_rejected_total, _encode_errors_total,
//	_outbox_dropped_total{reason}, _received_total,
//	_import_skipped_total{reason}, _import_dropped_total{reason},
//	_gaps_total, _gap_events_total, _reconnects_total,
//	_export_outages_total, _shard_rebuilds_total, _stream_acked_total,
//	_stream_claimed_total, _stream_resumes_total, _stream_trimmed_total;
//	busline_bridge_outbox_events, _outbox_bytes, _import_queued_events
//
// labelled by route (its pattern) and delivery:
//
//	busline_bridge_route_queued_total, _exported_total, _imported_total,
//	_errors_total{reason}, _duplicates_total, _gaps_total,
//	_gap_events_total; busline_bridge_route_outbox_events
//
// and labelled by connection kind, route and node:
//
//	busline_bridge_connection_up (1 when it works; summed when several
//	share the labels), busline_bridge_connection_failures_total
//
// The collector is safe for concurrent use; a scrape allocates, the
// bridge's paths pay nothing for it.
func NewBridgeCollector(br *bridge.Bridge, opts *Options) prometheus.Collector {
	read := func() bridgeSnapshot {
		s := bridgeSnapshot{Stats: br.Stats(), routes: br.Routes()}
		seen := map[string]int{}
		for _, r := range s.routes {
			seen[r.Pattern]++
		}
		for _, r := range s.routes {
			l := r.Pattern
			if seen[l] > 1 {
				l += "#" + strconv.Itoa(r.Index)
			}
			s.routeLabels = append(s.routeLabels, l)
		}
		s.conns = br.Connections()
		return s
	}
	type S = bridgeSnapshot
	// part is one reason of a counter labelled by reason.
	type part struct {
		reason string
		get    func(*bridge.Stats) uint64
	}
	reasons := func(parts ...part) func(*S) []sample {
		return func(s *S) []sample {
			out := make([]sample, len(parts))
			for i, p := range parts {
				out[i] = sample{float64(p.get(&s.Stats)), []string{p.reason}}
			}
			return out
		}
	}
	perRoute := func(get func(*bridge.RouteStats) float64) func(*S) []sample {
		return func(s *S) []sample {
			out := make([]sample, len(s.routes))
			for i := range s.routes {
				r := &s.routes[i]
				out[i] = sample{get(r), []string{s.routeLabels[i], r.Delivery.String()}}
			}
			return out
		}
	}
	routeErrors := func(s *S) []sample {
		var out []sample
		for i := range s.routes {
			r := &s.routes[i]
			for _, p := range []struct {
				reason string
				n      uint64
			}{
				{"export_rejected", r.ExportRejected}, {"encode_error", r.EncodeErrors}, {"decode_error", r.DecodeErrors},
				{"signature_rejected", r.SignatureRejected}, {"import_dropped", r.ImportDropped},
			} {
				out = append(out, sample{float64(p.n), []string{s.routeLabels[i], r.Delivery.String(), p.reason}})
			}
		}
		return out
	}
	// conns sums the connections sharing labels (a label set must appear
	// once in a scrape).
	conns := func(get func(*bridge.ConnState) float64) func(*S) []sample {
		return func(s *S) []sample {
			var out []sample
			index := map[[3]string]int{}
			for i := range s.conns {
				c := &s.conns[i]
				k := [3]string{c.Kind.String(), c.Route, c.Node}
				j, ok := index[k]
				if !ok {
					j = len(out)
					index[k] = j
					out = append(out, sample{labels: k[:]})
				}
				out[j].v += get(c)
			}
			return out
		}
	}
	stat := func(get func(*bridge.Stats) uint64) func(*S) []sample {
		return func(s *S) []sample { return one(get(&s.Stats)) }
	}
	reason := []string{"reason"}
	route := []string{"route", "delivery"}
	conn := []string{"kind", "route", "node"}
	const b = "bridge"
	return &collector[S]{read: read, defs: []metricDef[S]{
		newDef(opts, b, "exported_total", "Events sent to Redis (PUBLISH or XADD answered).", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.Exported })),
		newDef(opts, b, "export_messages_total", "Redis messages behind the events sent (fewer when batched).", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.ExportMessages })),
		newDef(opts, b, "export_rejected_total", "Exports Redis refused (such as NOPERM).", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.ExportRejected })),
		newDef(opts, b, "encode_errors_total", "Payloads a route's codec could not encode, or too big.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.EncodeErrors })),
		newDef(opts, b, "outbox_dropped_total", "Exports dropped before they were sent, by reason.", counter, reason,
			reasons(part{"overflow", func(s *bridge.Stats) uint64 { return s.OutboxOverflow }},
				part{"expired", func(s *bridge.Stats) uint64 { return s.OutboxExpired }},
				part{"unsent", func(s *bridge.Stats) uint64 { return s.OutboxUnsent }})),
		newDef(opts, b, "outbox_events", "Exports waiting to be sent.", gauge, nil,
			func(s *S) []sample { return []sample{{v: float64(s.OutboxDepth)}} }),
		newDef(opts, b, "outbox_bytes", "Payload bytes waiting to be sent.", gauge, nil,
			func(s *S) []sample { return []sample{{v: float64(s.OutboxBytes)}} }),
		newDef(opts, b, "received_total", "Messages read from Redis, a batch as one per event once decoded.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.Received })),
		newDef(opts, b, "import_skipped_total", "Messages received and rightly not imported, by reason.", counter, reason,
			reasons(part{"filtered", func(s *bridge.Stats) uint64 { return s.Filtered }},
				part{"duplicate_copy", func(s *bridge.Stats) uint64 { return s.DuplicateCopies }},
				part{"echo", func(s *bridge.Stats) uint64 { return s.EchoesDropped }},
				part{"duplicate", func(s *bridge.Stats) uint64 { return s.Duplicates }})),
		newDef(opts, b, "import_dropped_total", "Messages received and lost, by reason.", counter, reason,
			reasons(part{"decode_error", func(s *bridge.Stats) uint64 { return s.DecodeErrors }},
				part{"signature_rejected", func(s *bridge.Stats) uint64 { return s.SignatureRejected }},
				part{"queue_full", func(s *bridge.Stats) uint64 { return s.ImportDropped }})),
		newDef(opts, b, "import_queued_events", "Imported events waiting for delivery.", gauge, nil,
			func(s *S) []sample { return []sample{{v: float64(s.ImportDepth)}} }),
		newDef(opts, b, "gaps_total", "Sequence gaps detected: events of a source that never arrived.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.Gaps })),
		newDef(opts, b, "gap_events_total", "Events missing in the gaps detected.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.GapEvents })),
		newDef(opts, b, "reconnects_total", "Pub/sub connections made after the first.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.Reconnects })),
		newDef(opts, b, "export_outages_total", "Times exporting found Redis unreachable.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.ExportOutages })),
		newDef(opts, b, "shard_rebuilds_total", "Times sharded subscriptions were regrouped.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.ShardRebuilds })),
		newDef(opts, b, "stream_acked_total", "Entries of Group routes acknowledged.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.StreamAcked })),
		newDef(opts, b, "stream_claimed_total", "Entries of Group routes taken over from other consumers.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.StreamClaimed })),
		newDef(opts, b, "stream_resumes_total", "Times a durable import route went on from a saved position.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.StreamResumes })),
		newDef(opts, b, "stream_trimmed_total", "Entries of Group routes trimmed before they were handled.", counter, nil,
			stat(func(s *bridge.Stats) uint64 { return s.StreamTrimmed })),
		newDef(opts, b, "route_queued_total", "Exports the route handed to its outbox.", counter, route,
			perRoute(func(r *bridge.RouteStats) float64 { return float64(r.Queued) })),
		newDef(opts, b, "route_exported_total", "The route's events Redis accepted.", counter, route,
			perRoute(func(r *bridge.RouteStats) float64 { return float64(r.Exported) })),
		newDef(opts, b, "route_imported_total", "The route's events published on the local bus.", counter, route,
			perRoute(func(r *bridge.RouteStats) float64 { return float64(r.Imported) })),
		newDef(opts, b, "route_errors_total", "The route's events lost, by reason.", counter, append(route, "reason"), routeErrors),
		newDef(opts, b, "route_duplicates_total", "The route's events received twice.", counter, route,
			perRoute(func(r *bridge.RouteStats) float64 { return float64(r.Duplicates) })),
		newDef(opts, b, "route_gaps_total", "Sequence gaps on the route's channels and streams.", counter, route,
			perRoute(func(r *bridge.RouteStats) float64 { return float64(r.Gaps) })),
		newDef(opts, b, "route_gap_events_total", "Events missing in the route's gaps.", counter, route,
			perRoute(func(r *bridge.RouteStats) float64 { return float64(r.GapEvents) })),
		newDef(opts, b, "route_outbox_events", "What waits in a durable export route's own outbox (0 for pub/sub routes).", gauge, route,
			perRoute(func(r *bridge.RouteStats) float64 { return float64(r.OutboxDepth) })),
		newDef(opts, b, "connection_up", "1 when the connection works (summed over connections sharing the labels).", gauge, conn,
			conns(func(c *bridge.ConnState) float64 {
				if c.Connected {
					return 1
				}
				return 0
			})),
		newDef(opts, b, "connection_failures_total", "Times the connection went from working to failing.", counter, conn,
			conns(func(c *bridge.ConnState) float64 { return float64(c.Failures) })),
	}}
}

var _ prometheus.Collector = (*collector[busSnapshot])(nil)
