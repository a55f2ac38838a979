package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

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
	maxText     = 2000    // bytes of a message's text
	maxFrom     = 40      // bytes of a sender's name
	maxRooms    = 16      // rooms one stream follows
	streamQueue = 256     // messages waiting for a slow stream before it is cut
)

// roomName is what a room may be called: one topic segment, so that
// "chat."+room is a plain topic.
var roomName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// topicPrefix makes a room's topic: room "lobby" is topic "chat.lobby".
const topicPrefix = "chat."

// Message is a chat message: the payload of the events of the room topics,
// published on the local bus as a *Message and carried between instances
// as JSON by the bridge (bridge.JSON[*Message]).
type Message struct {
	ID   string    `json:"id"`   // unique: the posting instance and its counter
	Room string    `json:"room"` // without "chat."
	From string    `json:"from"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
	Via  string    `json:"via"` // the instance it was posted on
}

// Server serves the chat: the page, the message stream of the rooms a
// client follows (Server-Sent Events), and the posting of messages. Rooms
// are topics of the bus it is given; whether other instances share them is
// up to a bridge on that bus, whose state the streams report (SetStatus,
// Notify). Create it with NewServer; all methods are safe for concurrent
// use.
type Server struct {
	bus  *bus.Bus
	name string
	mux  *http.ServeMux
	seq  atomic.Uint64 // numbers the messages posted here

	mu        sync.Mutex // protects status and followers
	status    Status
	followers map[*follower]struct{}

	done      chan struct{} // closed by Close: streams end
	closeOnce sync.Once
}

var _ http.Handler = (*Server)(nil)

// NewServer returns a Server for the rooms of b, calling itself name in the
// messages posted on it. Its status is StateAlone until SetStatus says
// otherwise.
func NewServer(b *bus.Bus, name string) *Server {
	s := &Server{
		bus:       b,
		name:      name,
		mux:       http.NewServeMux(),
		status:    Status{State: StateAlone, Text: "This instance is alone: no Redis, no other instances.", Since: time.Now().UTC()},
		followers: map[*follower]struct{}{},
		done:      make(chan struct{}),
	}
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		// An error means the client went away: nothing left to do.
		_, _ = w.Write(page)
	})
	s.mux.HandleFunc("GET /events", s.stream)
	s.mux.HandleFunc("POST /rooms/{room}/messages", s.post)
	s.mux.HandleFunc("GET /instance", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"name": s.name})
	})
	s.mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Status())
	})
	return s
}

// ServeHTTP serves the routes of the chat:
//
//	GET  /                          the page
//	GET  /instance                  {"name": "..."}
//	GET  /status                    the Status, as JSON
//	GET  /events?room=a&room=b      the messages of the rooms, as SSE
//	POST /rooms/{room}/messages     {"from": "...", "text": "..."} posts a message
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
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

// checkRoom returns an error saying what is wrong with a room name, or nil.
func checkRoom(room string) error {
	if !roomName.MatchString(room) {
		return fmt.Errorf("bad room name %q: want 1 to 32 of a-z 0-9 _ -, starting with a letter or digit", room)
	}
	return nil
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
	in.From, in.Text = strings.TrimSpace(in.From), strings.TrimSpace(in.Text)
	switch {
	case in.Text == "":
		httpError(w, http.StatusBadRequest, "empty text")
		return
	case len(in.Text) > maxText || len(in.From) > maxFrom:
		httpError(w, http.StatusBadRequest, "text over %d bytes or name over %d bytes", maxText, maxFrom)
		return
	case !utf8.ValidString(in.Text) || !utf8.ValidString(in.From):
		httpError(w, http.StatusBadRequest, "text and name must be UTF-8")
		return
	}
	if in.From == "" {
		in.From = "anonymous"
	}
	m := &Message{
		ID:   fmt.Sprintf("%s-%d", s.name, s.seq.Add(1)),
		Room: room,
		From: in.From,
		Text: in.Text,
		Time: time.Now().UTC(),
		Via:  s.name,
	}
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

// fromEvent returns the message of a room event. A message published by
// another program, such as `buscat pub -envelope chat.lobby '{"from":"cli","text":"hi"}'`,
// may lack fields this program sets: they are filled in from the event, on a
// copy, since payloads are shared by every subscriber. It returns nil for a
// payload that is not a *Message.
func fromEvent(e bus.Event) *Message {
	m, ok := e.Payload.(*Message)
	if !ok || m == nil {
		return nil
	}
	if m.Room != "" && m.ID != "" && m.Via != "" && !m.Time.IsZero() {
		return m
	}
	c := *m
	c.Room = strings.TrimPrefix(e.Topic, topicPrefix)
	if c.Via == "" && e.Meta != nil {
		c.Via = e.Meta.Source
	}
	if c.ID == "" && e.Meta != nil {
		c.ID = fmt.Sprintf("%s-%d", e.Meta.Source, e.Meta.Seq)
	}
	if c.Time.IsZero() && e.Meta != nil {
		c.Time = e.Meta.Time
	}
	if c.From == "" {
		c.From = "anonymous"
	}
	return &c
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
