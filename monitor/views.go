package monitor

import (
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
)

// StatsDoc is the document of the stats endpoint.
type StatsDoc struct {
	Now     time.Time
	Started time.Time // when the monitor was created
	// Bus is nil until SetBus.
	Bus     *bus.Stats
	Bridges []BridgeStats
	// Errors counts the errors passed through OnError since New, by
	// level ("ERROR", "WARN", "INFO") and in total.
	Errors ErrorCounts
}

// BridgeStats are the counters of one bridge.
type BridgeStats struct {
	Instance string // its InstanceID
	Stats    bridge.Stats
}

// ErrorCounts count the errors the monitor saw.
type ErrorCounts struct {
	Total, Error, Warn, Info uint64
}

// SubscriptionsDoc is the document of the subscriptions endpoint.
type SubscriptionsDoc struct {
	Now           time.Time
	Subscriptions []Subscription
	// Total is the number of active subscriptions; Truncated is set when
	// there were more than Options.MaxSubscriptions, the first of which
	// are listed.
	Total     int
	Truncated bool
}

// Subscription describes one subscription of the bus.
type Subscription struct {
	Name, Pattern, Where, Group string
	// Kind is "sync", "async" or "chan" (SubscribeChan).
	Kind string
	// Policy is the overflow policy of an asynchronous subscription,
	// such as "DropOldest"; "" for a synchronous one.
	Policy string
	bus.SubscriptionStats
}

// RoutesDoc is the document of the routes endpoint.
type RoutesDoc struct {
	Now    time.Time
	Routes []Route
}

// Route is the RouteStats of one route of one bridge, with Direction and
// Delivery as strings.
type Route struct {
	Bridge string // the bridge's InstanceID
	bridge.RouteStats
	Direction, Delivery string
}

// ConnectionsDoc is the document of the connections endpoint.
type ConnectionsDoc struct {
	Now         time.Time
	Connections []Connection
}

// Connection is the ConnState of one connection of one bridge, with Kind
// and LastError as strings.
type Connection struct {
	Bridge string // the bridge's InstanceID
	bridge.ConnState
	Kind, LastError string
}

// ErrorsDoc is the document of the errors endpoint.
type ErrorsDoc struct {
	Now    time.Time
	Counts ErrorCounts
	// Errors are the recent errors, newest first.
	Errors []Error
}

// Error is one error passed through OnError, as bus.LogTo and
// bridge.LogTo would log it.
type Error struct {
	Time  time.Time
	Level string // "ERROR", "WARN", "INFO"
	Kind  string // the record's message, such as "bridge: sequence gap"
	Error string // the error's message
	// Attrs are the record's other attributes (topic, pattern, count,
	// node, ...); a panic's stack is left out.
	Attrs map[string]any `json:",omitempty"`
}

// AllDoc is the document of the all endpoint: every other one.
type AllDoc struct {
	Stats         StatsDoc
	Subscriptions SubscriptionsDoc
	Routes        RoutesDoc
	Connections   ConnectionsDoc
	Errors        ErrorsDoc
}

// Stats returns the document of the stats endpoint. Like every document
// method, it takes a fresh snapshot, allocates, and is safe for concurrent
// use.
func (m *Monitor) Stats() StatsDoc {
	b, brs := m.snapshot()
	d := StatsDoc{Now: time.Now(), Started: m.started, Errors: m.ring.counts()}
	if b != nil {
		st := b.Stats()
		d.Bus = &st
	}
	for _, br := range brs {
		d.Bridges = append(d.Bridges, BridgeStats{Instance: br.InstanceID(), Stats: br.Stats()})
	}
	return d
}

// Subscriptions returns the document of the subscriptions endpoint.
func (m *Monitor) Subscriptions() SubscriptionsDoc {
	b, _ := m.snapshot()
	d := SubscriptionsDoc{Now: time.Now(), Subscriptions: []Subscription{}}
	if b == nil {
		return d
	}
	subs := b.Subscriptions()
	d.Total = len(subs)
	if len(subs) > m.maxSubs {
		subs, d.Truncated = subs[:m.maxSubs], true
	}
	for _, s := range subs {
		v := Subscription{Name: s.Name(), Pattern: s.Pattern(), Where: s.Where(), Group: s.Group(), Kind: "sync",
			SubscriptionStats: s.Stats()}
		switch {
		case s.Chan():
			v.Kind, v.Policy = "chan", s.Overflow().String()
		case s.Async():
			v.Kind, v.Policy = "async", s.Overflow().String()
		}
		d.Subscriptions = append(d.Subscriptions, v)
	}
	return d
}

// Routes returns the document of the routes endpoint.
func (m *Monitor) Routes() RoutesDoc {
	_, brs := m.snapshot()
	d := RoutesDoc{Now: time.Now(), Routes: []Route{}}
	for _, br := range brs {
		for _, r := range br.Routes() {
			d.Routes = append(d.Routes, Route{Bridge: br.InstanceID(), RouteStats: r,
				Direction: r.Direction.String(), Delivery: r.Delivery.String()})
		}
	}
	return d
}

// Connections returns the document of the connections endpoint.
func (m *Monitor) Connections() ConnectionsDoc {
	_, brs := m.snapshot()
	d := ConnectionsDoc{Now: time.Now(), Connections: []Connection{}}
	for _, br := range brs {
		for _, c := range br.Connections() {
			v := Connection{Bridge: br.InstanceID(), ConnState: c, Kind: c.Kind.String()}
			if c.LastError != nil {
				v.LastError = c.LastError.Error()
			}
			d.Connections = append(d.Connections, v)
		}
	}
	return d
}

// Errors returns the document of the errors endpoint.
func (m *Monitor) Errors() ErrorsDoc {
	return ErrorsDoc{Now: time.Now(), Counts: m.ring.counts(), Errors: m.ring.recent()}
}

// All returns the document of the all endpoint.
func (m *Monitor) All() AllDoc {
	return AllDoc{Stats: m.Stats(), Subscriptions: m.Subscriptions(), Routes: m.Routes(),
		Connections: m.Connections(), Errors: m.Errors()}
}
