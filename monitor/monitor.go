// Package monitor serves a live view of a bus and its bridges over HTTP,
// in the spirit of NATS's monitoring endpoints (/varz, /subsz, /connz):
// JSON for scripts and scrapers, and one HTML page, with no build step and
// no external assets, that shows the numbers live.
//
//	m := monitor.New(nil)
//	b := bus.New(&bus.Options{OnError: m.OnError(bus.LogTo(logger))})
//	br, _ := bridge.New(b, rdb, &bridge.Options{OnError: m.OnError(bridge.LogTo(logger)), ...})
//	m.SetBus(b)
//	m.AddBridge(br)
//	mux.Handle("/debug/busline/", m)
//
// The endpoints, relative to where the Monitor is mounted (it serves any
// path ending in one of these names, so it needs no http.StripPrefix):
//
//	/              the HTML page (the mount point, with its trailing slash)
//	stats          bus.Stats, bridge.Stats of each bridge, error counts by level
//	subscriptions  every subscription: name, pattern, where subscribed, kind, policy, queue depth, high water, drops
//	routes         bridge.RouteStats of every route of every bridge
//	connections    bridge.ConnState of every connection of every bridge
//	errors         the recent errors, newest first, with their level and attributes
//	all            all of the above in one document (what the page polls)
//
// The JSON field names are those of the Go types (bus.Stats,
// bridge.RouteStats, ...), with enumerations as strings.
//
// The monitor shows what a bus holds: topic names, patterns, file paths,
// error messages. Mount it on an internal address or behind
// authentication, never on a public listener. It runs no goroutine: every
// request takes a snapshot (the page computes rates from successive
// ones), so an idle monitor costs nothing.
package monitor

import (
	"embed"
	"encoding/json"
	"io/fs"
	"log"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
)

// Options configures a Monitor. A nil *Options and the zero value of each
// field mean the defaults documented on the field.
type Options struct {
	// Errors is how many recent errors the monitor keeps. Zero means 100.
	Errors int
	// MaxSubscriptions caps the subscriptions listed, so that a bus with
	// very many does not make a huge page (the document then says
	// Truncated). Zero means 1000.
	MaxSubscriptions int
}

// Monitor gathers what it shows from a bus, its bridges and the errors
// passed through OnError, and serves it (ServeHTTP). Create one with New.
// All methods are safe for concurrent use.
type Monitor struct {
	started time.Time
	maxSubs int
	ring    *ring
	record  func(error) // bridge.LogTo on the ring's handler

	mu      sync.Mutex // protects bus and bridges
	bus     *bus.Bus
	bridges []*bridge.Bridge
}

// New returns a Monitor configured by opts (nil means the defaults). It
// watches nothing yet: give it a bus with SetBus and bridges with
// AddBridge, and route errors through OnError.
func New(opts *Options) *Monitor {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Errors <= 0 {
		o.Errors = 100
	}
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = 1000
	}
	m := &Monitor{started: time.Now(), maxSubs: o.MaxSubscriptions, ring: newRing(o.Errors)}
	m.record = bridge.LogTo(newRingLogger(m.ring))
	return m
}

// SetBus sets the bus the monitor shows; nil shows none.
func (m *Monitor) SetBus(b *bus.Bus) {
	m.mu.Lock()
	m.bus = b
	m.mu.Unlock()
}

// AddBridge adds a bridge to those the monitor shows. A closed bridge
// still shows its final counts.
func (m *Monitor) AddBridge(br *bridge.Bridge) {
	m.mu.Lock()
	m.bridges = append(m.bridges, br)
	m.mu.Unlock()
}

// OnError returns a function for bus.Options.OnError or
// bridge.Options.OnError that keeps each error among the recent ones the
// monitor shows, classified as bus.LogTo and bridge.LogTo classify them
// (level, kind, attributes), then passes it to next. A nil next means the
// log package, as the bus's and the bridge's defaults do, so that wrapping
// never makes errors silent. It may be called before SetBus, and is safe
// for concurrent use; keeping an error costs a lock and the record's
// allocations.
func (m *Monitor) OnError(next func(error)) func(error) {
	if next == nil {
		next = func(err error) { log.Print(err) }
	}
	return func(err error) {
		if err != nil {
			m.record(err)
		}
		next(err)
	}
}

//go:embed static
var static embed.FS

// ServeHTTP serves the page, its script and style, and the JSON
// endpoints listed in the package documentation, for GET and HEAD. A path
// ending in "/" is the page; any other is matched by its last element.
// Responses are not cached, and the page's Content-Security-Policy allows
// its own script and style only.
func (m *Monitor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	name := path.Base(r.URL.Path)
	if strings.HasSuffix(r.URL.Path, "/") {
		name = "index.html"
	}
	var doc any
	switch name {
	case "index.html", "monitor.js", "monitor.css":
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		data, err := fs.ReadFile(static, "static/"+name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		switch path.Ext(name) {
		case ".html":
			h.Set("Content-Type", "text/html; charset=utf-8")
		case ".js":
			h.Set("Content-Type", "text/javascript; charset=utf-8")
		case ".css":
			h.Set("Content-Type", "text/css; charset=utf-8")
		}
		_, _ = w.Write(data)
		return
	case "stats":
		doc = m.Stats()
	case "subscriptions":
		doc = m.Subscriptions()
	case "routes":
		doc = m.Routes()
	case "connections":
		doc = m.Connections()
	case "errors":
		doc = m.Errors()
	case "all":
		doc = m.All()
	default:
		http.NotFound(w, r)
		return
	}
	h.Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(doc) // the client went away
}

// snapshot returns the bus and the bridges.
func (m *Monitor) snapshot() (*bus.Bus, []*bridge.Bridge) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bus, append([]*bridge.Bridge(nil), m.bridges...)
}
