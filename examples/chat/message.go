package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
)

// Limits on the fields of a message, whoever sends it.
const (
	maxText = 2000 // bytes of a message's text
	maxFrom = 40   // bytes of a sender's name
	maxName = 64   // bytes of an instance's name (Via)
	maxID   = 96   // bytes of a message ID: an instance's name, "-", a counter
)

// roomName is what a room may be called: one topic segment, so that
// "chat."+room is a plain topic.
var roomName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// topicPrefix makes a room's topic: room "lobby" is topic "chat.lobby".
const topicPrefix = "chat."

// Message is a chat message: the payload of the events of the room topics,
// published on the local bus as a *Message and carried between instances
// as JSON by the bridge (see messageCodec).
type Message struct {
	ID   string    `json:"id"`   // unique: the posting instance and its counter
	Room string    `json:"room"` // without "chat."
	From string    `json:"from"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
	Via  string    `json:"via"` // the instance it was posted on
}

// checkRoom returns an error saying what is wrong with a room name, or nil.
func checkRoom(room string) error {
	if !roomName.MatchString(room) {
		return fmt.Errorf("bad room name %q: want 1 to 32 of a-z 0-9 _ -, starting with a letter or digit", room)
	}
	return nil
}

// errBadMessage is wrapped by the errors of check.
var errBadMessage = errors.New("not a chat message")

// check returns an error wrapping errBadMessage when a field of m is not
// what this program would send: a text that is empty, too long or holds
// control characters other than newlines and tabs, and names and IDs
// that are too long or hold anything but printable characters. Every
// field ends up in a page or in an SSE "id:" line: a line break there
// would end the line early and let the rest pass for fields of its own
// (a forged "event: ready", a "retry:" of days). Empty fields other than
// the text are allowed: fromEvent fills them.
func (m *Message) check() error {
	if m.Text == "" {
		return fmt.Errorf("%w: empty text", errBadMessage)
	}
	if m.Room != "" && checkRoom(m.Room) != nil {
		return fmt.Errorf("%w: bad room name", errBadMessage)
	}
	for _, f := range []struct {
		what, value, also string
		max               int
	}{
		{"text", m.Text, "\n\t", maxText},
		{"name", m.From, "", maxFrom},
		{"instance name", m.Via, "", maxName},
		{"ID", m.ID, "", maxID},
	} {
		switch {
		case len(f.value) > f.max:
			return fmt.Errorf("%w: %s over %d bytes", errBadMessage, f.what, f.max)
		case !printable(f.value, f.also):
			return fmt.Errorf("%w: %s with control characters or not UTF-8", errBadMessage, f.what)
		}
	}
	return nil
}

// printable reports whether s is valid UTF-8 made of printable characters
// (letters, marks, numbers, punctuation, symbols, the ASCII space) and of
// those in also.
func printable(s, also string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) && !strings.ContainsRune(also, r) {
			return false // RuneError: invalid UTF-8, or a U+FFFD sent as such
		}
	}
	return true
}

// messageCodec is the bridge's codec for the rooms: JSON, as
// bridge.JSON[*Message], and a message that comes from Redis, where
// anyone who may publish on the channel can write anything, is checked
// (Message.check) before any stream sees it. A refused message is dropped
// by the bridge, counted and reported wrapping bridge.ErrDecode: the pages
// get a note that messages "were not chat messages".
type messageCodec struct{ bridge.Codec }

var _ bridge.Codec = messageCodec{}

func newMessageCodec() messageCodec { return messageCodec{bridge.JSON[*Message]()} }

// Decode decodes data and checks the message.
func (c messageCodec) Decode(data []byte, contentType string) (any, error) {
	p, err := c.Codec.Decode(data, contentType)
	if err != nil {
		return nil, err
	}
	m, _ := p.(*Message)
	if m == nil {
		return nil, fmt.Errorf("%w: null", errBadMessage)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	return m, nil
}

// fromEvent returns the message of a room event. A message published by
// another program, such as `buscat pub -envelope chat.lobby '{"from":"cli","text":"hi"}'`,
// may lack fields this program sets: they are filled in from the event, on a
// copy, since payloads are shared by every subscriber; its room is always
// the event's. It returns nil for a payload that is not a *Message, and
// for a message whose filled-in fields fail Message.check (a source ID
// with control characters, say).
func fromEvent(e bus.Event) *Message {
	m, ok := e.Payload.(*Message)
	if !ok || m == nil {
		return nil
	}
	room := strings.TrimPrefix(e.Topic, topicPrefix)
	if m.Room == room && m.ID != "" && m.Via != "" && !m.Time.IsZero() {
		return m
	}
	c := *m
	c.Room = room
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
	if c.check() != nil {
		return nil
	}
	return &c
}
