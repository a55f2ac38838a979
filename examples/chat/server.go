package main

import (
	"cmp"
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"mime"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/busline/bus"
)

// page is the chat page: one HTML file with its script and style inline,
// no build step.
//
//go:embed static/index.html
var page []byte

// Limits on what clients send.
const (
	maxBody     = 8 << 10 // bytes of a POST body
	maxRooms    = 16      // rooms one stream follows
	streamQueue = 256     // messages waiting for a slow stream before it is cut
)

// Options configures a Server. A nil *Options means all zero values.
type Options struct {
	// AllowedHosts are the host names (or IP addresses) that requests
	// may give in their Host header, port aside; others get 421. Without
	// the check, a web page of an attacker's domain that later resolves to
	// this server's address (DNS rebinding) could read the rooms and post
	// in them. Nil means DefaultHosts.
	AllowedHosts []string

	// MaxStreams caps the streams open at once, MaxStreamsPerClient
	// those of one client IP address: each holds a goroutine, a queue and
	// buffers (about 50 KB). Beyond them a stream is refused with 503 and
	// 429, with a Retry-After. Behind a reverse proxy every client has the
	// proxy's address: raise MaxStreamsPerClient, or cap there. Zero means
	// 1000 and 10.
	MaxStreams, MaxStreamsPerClient int
}

// DefaultHosts are the names of this machine for itself: the hosts a
// Server accepts when Options.AllowedHosts is nil.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// Server serves the chat: the page, the message stream of the rooms a
// client follows (Server-Sent Events), and the posting of messages. Rooms
// are topics of the bus it is given; whether other instances share them is
// up to a bridge on that bus, whose state the streams report (SetStatus,
// Notify). Create it with NewServer; all methods are safe for concurrent
// use.
type Server struct {
	bus     *bus.Bus
	name    string
	hosts   map[string]bool // Options.AllowedHosts, lower case
	handler http.Handler    // the routes, behind cross-origin protection
	seq     atomic.Uint64   // numbers the messages posted here
	// rooms subscribes the instance on Redis to the rooms its streams
	// follow; nil without Redis. Set by shareRooms before serving.
	rooms *rooms

	maxStreams, maxPerClient int

	mu        sync.Mutex // protects status, followers and clients
	status    Status
	followers map[*follower]struct{}
	clients   map[string]int // open streams by client IP; their sum: streams
	streams   int

	done      chan struct{} // closed by Close: streams end
	closeOnce sync.Once
}

var _ http.Handler = (*Server)(nil)

// NewServer returns a Server for the rooms of b, calling itself name in the
// messages posted on it, configured by opts (nil means the defaults). Its
// status is StateAlone until SetStatus says otherwise.
func NewServer(b *bus.Bus, name string, opts *Options) *Server {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.AllowedHosts == nil {
		o.AllowedHosts = DefaultHosts
	}
	s := &Server{
		bus:          b,
		name:         name,
		hosts:        map[string]bool{},
		maxStreams:   cmp.Or(o.MaxStreams, 1000),
		maxPerClient: cmp.Or(o.MaxStreamsPerClient, 10),
		status:       Status{State: StateAlone, Text: "This instance is alone: no Redis, no other instances.", Since: time.Now().UTC()},
		followers:    map[*follower]struct{}{},
		clients:      map[string]int{},
		done:         make(chan struct{}),
	}
	for _, h := range o.AllowedHosts {
		s.hosts[strings.ToLower(h)] = true
	}
	mux := http.NewServeMux()
	// Browsers send cross-origin POSTs of forms and of text/plain without
	// asking first: CrossOriginProtection refuses them (403) by their
	// Sec-Fetch-Site and Origin headers, and post requires JSON too.
	s.handler = http.NewCrossOriginProtection().Handler(mux)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// An error means the client went away: nothing left to do.
		_, _ = w.Write(page)
	})
	mux.HandleFunc("GET /events", s.stream)
	mux.HandleFunc("POST /rooms/{room}/messages", s.post)
	mux.HandleFunc("GET /instance", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"name": s.name})
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	return s
}

// shareRooms makes the streams join rs, so that the instance subscribes
// on Redis to the rooms they follow (see rooms). It must be called before
// the Server serves, at most once.
func (s *Server) shareRooms(rs *rooms) { s.rooms = rs }

// ServeHTTP serves the routes of the chat:
//
//	GET  /                          the page
//	GET  /instance                  {"name": "..."}
//	GET  /status                    the Status, as JSON
//	GET  /events?room=a&room=b      the messages of the rooms, as SSE
//	POST /rooms/{room}/messages     {"from": "...", "text": "..."} posts a message
//
// A request whose Host is not allowed (Options.AllowedHosts) gets 421.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.guard(s.handler).ServeHTTP(w, r)
}

// guard returns h behind the Host check of ServeHTTP, for handlers mounted
// beside the Server, such as the monitoring page.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			httpError(w, http.StatusMisdirectedRequest, "this chat does not answer for the host %q: see -allowed-hosts", r.Host)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostAllowed reports whether host, a Host header ("name", "name:port",
// "[::1]:port"), names an allowed host.
func (s *Server) hostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	return s.hosts[strings.ToLower(host)]
}

// Close ends every message stream, so that http.Server.Shutdown does not
// wait for them. Later streams end at once. Close is idempotent.
func (s *Server) Close() {
	s.closeOnce.Do(func() { close(s.done) })
}

// Status returns the instance's current status.
func (s *Server) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// SetStatus changes the instance's status and sends it, as an event
// "status", to every open stream. It does not block: a stream too slow to
// take it is cut off, as for messages, and gets the status anew when its
// client reconnects.
func (s *Server) SetStatus(st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = st
	for f := range s.followers {
		f.offer(sse{name: "status", data: st})
	}
}

// Notify sends n, as an event "gap", to the open streams following n.Room,
// or to every open stream when n.Room is empty. It does not block.
func (s *Server) Notify(n Notice) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for f := range s.followers {
		if n.Room == "" || f.rooms[n.Room] {
			f.offer(sse{name: "gap", data: n})
		}
	}
}

// post publishes a message to a room. It answers 202 with the message once
// the local bus has delivered it: local streams have it, and the bridge has
// queued it for the other instances.
func (s *Server) post(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if err := checkRoom(room); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	// A browser sends a cross-origin POST of text/plain without asking
	// the server first (no CORS preflight); one of application/json it
	// asks first, and this server answers no such preflight.
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		httpError(w, http.StatusUnsupportedMediaType, "want Content-Type: application/json")
		return
	}
	var in struct {
		From string `json:"from"`
		Text string `json:"text"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		httpError(w, http.StatusBadRequest, "bad body: want {\"from\": \"...\", \"text\": \"...\"}: %v", err)
		return
	}
	m := &Message{
		Room: room,
		From: strings.TrimSpace(in.From),
		Text: strings.TrimSpace(in.Text),
		Time: time.Now().UTC(),
		Via:  s.name,
	}
	if m.From == "" {
		m.From = "anonymous"
	}
	// The checks of messages from other instances, so that what this
	// instance sends passes them there.
	if err := m.check(); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	m.ID = fmt.Sprintf("%s-%d", s.name, s.seq.Add(1))
	if err := s.bus.Publish(r.Context(), topicPrefix+room, m); err != nil {
		httpError(w, http.StatusServiceUnavailable, "publish: %v", err)
		return
	}
	writeJSON(w, http.StatusAccepted, m)
}

// sse is one Server-Sent Event waiting to be written to a stream.
type sse struct {
	id   string // the event's id: field, or "" for none
	name string
	data any // sent as JSON
}

// follower is the queue of one open stream. Handlers, SetStatus and Notify
// run on other goroutines (a POST's, a bridge's): they only queue, never
// write to the network.
type follower struct {
	rooms    map[string]bool
	queue    chan sse
	slow     chan struct{} // closed when the queue overflowed
	slowOnce sync.Once
}

// offer queues e, or marks the follower too slow when its queue is full.
func (f *follower) offer(e sse) {
	select {
	case f.queue <- e:
	default:
		f.slowOnce.Do(func() { close(f.slow) })
	}
}

// stream sends the messages of the rooms named in the query (room=a&room=b)
// as Server-Sent Events, from the moment it has subscribed, until the
// client goes away or the server closes.
//
// With Redis (shareRooms), a room no other stream of the instance follows
// is subscribed to first, and the stream refused with 503 and a
// Retry-After if Redis does not confirm it within joinTimeout.
//
// Events: "ready" once subscribed (data: {"rooms": [...], "instance": ...}),
// then "status" with the current Status, then "message" for each message
// (data: a Message as JSON, id: its ID), "status" when the status changes,
// and "gap" (data: a Notice) when messages may have been missed. Comments
// (": ping") keep idle connections open through proxies. A client too slow
// to take streamQueue events is sent "error" and cut off; EventSource
// reconnects by itself.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	rooms := r.URL.Query()["room"]
	switch {
	case len(rooms) == 0:
		httpError(w, http.StatusBadRequest, "no room: want /events?room=NAME[&room=NAME...]")
		return
	case len(rooms) > maxRooms:
		httpError(w, http.StatusBadRequest, "%d rooms, at most %d", len(rooms), maxRooms)
		return
	}
	for _, room := range rooms {
		if err := checkRoom(room); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}

	client, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		client = r.RemoteAddr
	}
	if status, err := s.reserveStream(client); err != nil {
		w.Header().Set("Retry-After", "10")
		// Close the connection too: kept alive, a refused client's would
		// hold its buffers (about 20 KB) until the idle timeout.
		w.Header().Set("Connection", "close")
		httpError(w, status, "%v", err)
		return
	}
	defer s.releaseStream(client)

	f := &follower{rooms: map[string]bool{}, queue: make(chan sse, streamQueue), slow: make(chan struct{})}
	handler := func(_ context.Context, e bus.Event) {
		if m := fromEvent(e); m != nil {
			f.offer(sse{id: m.ID, name: "message", data: m})
		}
	}
	for _, room := range rooms {
		if f.rooms[room] {
			continue
		}
		f.rooms[room] = true
		sub, err := s.bus.Subscribe(topicPrefix+room, handler)
		if err != nil {
			httpError(w, http.StatusServiceUnavailable, "subscribe: %v", err)
			return
		}
		defer sub.Unsubscribe()
	}
	// Subscribed on the local bus first, then on Redis: nothing that
	// Redis sends once it has confirmed is missed.
	if s.rooms != nil {
		leave, err := s.rooms.joinAll(r.Context(), slices.Sorted(maps.Keys(f.rooms)))
		if err != nil {
			w.Header().Set("Retry-After", joinRetryAfter)
			w.Header().Set("Connection", "close")
			httpError(w, http.StatusServiceUnavailable, "%v: try again later", err)
			return
		}
		defer leave()
	}
	// The status sent first and the changes queued after it are taken
	// under one lock: none is missed, none comes out of order.
	s.mu.Lock()
	status := s.status
	s.followers[f] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.followers, f)
		s.mu.Unlock()
	}()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// A write or flush error means the client went away: the stream ends.
	if _, err := fmt.Fprint(w, "retry: 1000\n"); err != nil {
		return
	}
	if writeSSE(w, sse{name: "ready", data: map[string]any{"rooms": rooms, "instance": s.name}}) != nil ||
		writeSSE(w, sse{name: "status", data: status}) != nil || rc.Flush() != nil {
		return
	}

	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		var err error
		select {
		case e := <-f.queue:
			err = writeSSE(w, e)
			// Send what else is queued in the same flush.
			for n := len(f.queue); n > 0 && err == nil; n-- {
				err = writeSSE(w, <-f.queue)
			}
		case <-ping.C:
			_, err = fmt.Fprint(w, ": ping\n\n")
		case <-f.slow:
			if writeSSE(w, sse{name: "error", data: "too slow: messages were lost, reconnect"}) == nil {
				// The stream ends either way: a failed flush changes nothing.
				_ = rc.Flush()
			}
			return
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
		if err != nil || rc.Flush() != nil {
			return
		}
	}
}

// reserveStream counts a stream of client, or returns the status and the
// error to refuse it with: 503 when MaxStreams are open, 429 when
// MaxStreamsPerClient of client are.
func (s *Server) reserveStream(client string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.streams >= s.maxStreams:
		return http.StatusServiceUnavailable, fmt.Errorf("%d streams open, the most this instance serves: try again later", s.streams)
	case s.clients[client] >= s.maxPerClient:
		return http.StatusTooManyRequests, fmt.Errorf("%d streams open from your address, the most it may have: close some", s.clients[client])
	}
	s.streams++
	s.clients[client]++
	return 0, nil
}

// releaseStream uncounts a stream of client.
func (s *Server) releaseStream(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams--
	if s.clients[client]--; s.clients[client] == 0 {
		delete(s.clients, client)
	}
}

// writeSSE writes one event. Its data is JSON, which has no raw newlines:
// it fits on one "data:" line.
func writeSSE(w io.Writer, e sse) error {
	data, err := json.Marshal(e.data)
	if err != nil {
		return err
	}
	// An id with a line break (from a foreign message) would end the
	// field early and let the rest pass for other fields: leave it out.
	if e.id != "" && !strings.ContainsAny(e.id, "\r\n") {
		if _, err := fmt.Fprintf(w, "id: %s\n", e.id); err != nil {
			return err
		}
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", e.name, data)
	return err
}

// httpError answers with status and a JSON error message.
func httpError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// writeJSON answers with status and v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		status, data = http.StatusInternalServerError, []byte(`{"error":"encoding the answer"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// An error means the client went away: nothing left to do.
	_, _ = w.Write(append(data, '\n'))
}
