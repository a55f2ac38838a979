package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/busline/bus/bridge"
)

// States of an instance's link to Redis, as Status.State says them.
const (
	StateAlone     = "alone"     // no Redis: the rooms are this instance's only
	StateConnected = "connected" // the rooms are shared through Redis
	StateDown      = "down"      // Redis cannot be reached: the bridge reconnects
	StateResuming  = "resuming"  // Redis is back, messages posted here meanwhile are still being sent
)

// Status is what the pages are told about the instance's link to Redis:
// sent as the SSE event "status" when a stream opens and whenever it
// changes, and answered by GET /status.
type Status struct {
	State string `json:"state"` // one of the State constants
	Text  string `json:"text"`  // for the people using the page
	// Detail is the bridge's last error, for whoever runs the instance.
	Detail string    `json:"detail,omitempty"`
	Since  time.Time `json:"since"` // when the state began
}

// Notice says that the pages may have missed messages: sent as the SSE
// event "gap" to the streams following Room, or to every stream when Room
// is empty.
type Notice struct {
	Room string    `json:"room,omitempty"`
	Text string    `json:"text"`
	Time time.Time `json:"time"`
}

// link turns what a bridge reports to Options.OnError into the Status and
// the Notices of a Server:
//
//   - bridge.ErrDisconnected or ErrSubscribe (the pub/sub connection is lost
//     or refused, and the bridge's reports of failing to make it again:
//     the first, each change of cause, one summary per ReconnectMax):
//     StateDown;
//   - bridge.ErrPossibleGap (subscribed again on a new connection): back to
//     StateConnected, and a Notice for every room, since Redis pub/sub keeps
//     nothing for absent subscribers;
//   - bridge.ErrRedisDown (exports held in the outbox): StateDown, then,
//     once the pub/sub connection is back, StateResuming until
//     Stats.OutboxDepth is 0 again (see watch): the bridge says when Redis
//     goes away for exports, not when it comes back;
//   - a *bridge.GapError: a Notice for the room of its channel;
//   - drops (*bridge.DropError and the errors wrapping the same reasons): a
//     Notice for every room.
//
// Its methods are safe for concurrent use.
type link struct {
	s      *Server
	prefix string // the bridge's Options.Prefix: room R is channel prefix+"chat."+R

	mu           sync.Mutex // protects the fields below
	up           bool       // connected was called: reports count from then on
	subDown      bool       // the pub/sub connection is lost: nothing arrives
	exportDown   bool       // exports wait in the outbox for Redis
	exportGen    uint64     // counts the reports of ErrRedisDown
	resubscribed bool       // subDown ended during the current outage
	downSince    time.Time  // start of the current outage; zero when none
	cause        error      // the last error of the current outage
	last         Status     // the status last set
}

// newLink returns the link of s to a bridge whose Options.Prefix is
// prefix. It changes nothing on s until connected is called.
func newLink(s *Server, prefix string) *link {
	return &link{s: s, prefix: prefix}
}

// connected is called once Ready has returned nil: the rooms are shared.
// Before it, reports change nothing: run itself says why it cannot start.
func (l *link) connected() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.up = true
	l.setLocked()
}

// report takes an error the bridge reported.
func (l *link) report(err error) {
	now := time.Now().UTC()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.up {
		return
	}
	var gap *bridge.GapError
	switch {
	case errors.Is(err, bridge.ErrDisconnected), errors.Is(err, bridge.ErrSubscribe):
		l.beginOutageLocked(now, err)
		l.subDown = true
	case errors.Is(err, bridge.ErrPossibleGap):
		text := "this instance reconnected to Redis, and messages posted on the other instances while it was disconnected did not reach it."
		if !l.downSince.IsZero() {
			text = fmt.Sprintf("this instance was cut off from Redis for %s, and messages posted on the other instances meanwhile did not reach it.", duration(now.Sub(l.downSince)))
		}
		l.s.Notify(Notice{Text: "You may have missed messages: " + text, Time: now})
		l.subDown = false
		l.resubscribed = true
		l.endOutageLocked()
	case errors.Is(err, bridge.ErrRedisDown):
		l.beginOutageLocked(now, err)
		l.exportDown = true
		l.exportGen++
	case errors.As(err, &gap):
		room, ok := strings.CutPrefix(gap.Channel, l.prefix+topicPrefix)
		if !ok || checkRoom(room) != nil {
			room = "" // not a room's channel: tell every room
		}
		l.s.Notify(Notice{Room: room, Time: now, Text: fmt.Sprintf("You may have missed messages: %s from another instance went missing on the way.", plural(gap.Missing(), "message"))})
	default:
		if text := dropText(err); text != "" {
			l.s.Notify(Notice{Text: text, Time: now})
		}
		return
	}
	l.setLocked()
}

// watch ends StateResuming: while exports are held, it looks at stats
// every interval and takes an empty outbox as the sign that Redis takes
// exports again. It returns when ctx ends.
func (l *link) watch(ctx context.Context, interval time.Duration, stats func() bridge.Stats) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		l.mu.Lock()
		down, gen := l.exportDown, l.exportGen
		l.mu.Unlock()
		if !down {
			continue
		}
		// Stats is read without l.mu: the bridge may hold its own locks
		// while it reports to report.
		empty := stats().OutboxDepth == 0
		l.mu.Lock()
		if empty && l.exportDown && l.exportGen == gen {
			l.exportDown = false
			l.endOutageLocked()
			l.setLocked()
		}
		l.mu.Unlock()
	}
}

// beginOutageLocked records err as the cause of the current outage, which
// begins now if there is none.
func (l *link) beginOutageLocked(now time.Time, err error) {
	if l.downSince.IsZero() {
		l.downSince = now
	}
	l.cause = err
}

// endOutageLocked ends the outage if nothing is down any more.
func (l *link) endOutageLocked() {
	if !l.subDown && !l.exportDown {
		l.downSince, l.cause, l.resubscribed = time.Time{}, nil, false
	}
}

// setLocked sets the status the fields say on the server, unless it is
// the one last set.
func (l *link) setLocked() {
	st := Status{State: StateConnected, Text: "The rooms are shared with the other instances through Redis."}
	switch {
	case l.subDown:
		st = Status{State: StateDown, Since: l.downSince,
			Text: "Reconnecting… Messages from the other instances are not arriving; messages posted here are held and sent when Redis is back."}
	case l.exportDown && l.resubscribed:
		st = Status{State: StateResuming,
			Text: "The messages posted here while Redis was unreachable are being sent."}
	case l.exportDown:
		st = Status{State: StateDown, Since: l.downSince,
			Text: "Redis does not take this instance's messages: those posted here are held and sent when it takes them again."}
	}
	if l.cause != nil && st.State == StateDown {
		st.Detail = l.cause.Error()
	}
	if st.State == l.last.State && st.Text == l.last.Text && st.Detail == l.last.Detail {
		return
	}
	switch {
	case !st.Since.IsZero():
	case st.State == l.last.State:
		st.Since = l.last.Since
	default:
		st.Since = time.Now().UTC()
	}
	l.last = st
	l.s.SetStatus(st)
}

// dropText returns the notice for a report of dropped events, or "" for
// another error.
func dropText(err error) string {
	n := uint64(1) // the reports of one drop carry their details instead of a count
	var drop *bridge.DropError
	if errors.As(err, &drop) {
		n = drop.Count
	}
	for _, r := range []struct {
		reason error
		why    string
	}{
		{bridge.ErrImportFull, "this instance could not keep up"},
		{bridge.ErrDecode, "they were not chat messages"},
		{bridge.ErrMalformed, "they were garbled"},
		{bridge.ErrTooLarge, "they were too large"},
		{bridge.ErrSignature, "their signatures were wrong"},
	} {
		if errors.Is(err, r.reason) {
			return fmt.Sprintf("You may have missed messages: %s dropped: %s.", plural(n, "message from the other instances was", "messages from the other instances were"), r.why)
		}
	}
	for _, r := range []struct {
		reason error
		why    string
	}{
		{bridge.ErrOutboxFull, "too many were waiting for Redis"},
		{bridge.ErrExpired, "Redis was unreachable for too long"},
		{bridge.ErrPublish, "Redis refused them"},
		{bridge.ErrEncode, "they could not be encoded"},
	} {
		if errors.Is(err, r.reason) {
			return fmt.Sprintf("The other instances missed messages: %s not sent: %s.", plural(n, "message posted here was", "messages posted here were"), r.why)
		}
	}
	return ""
}

// plural says n things: plural(1, "message") is "1 message", plural(2,
// "message") "2 messages"; with two forms, the second is the plural.
func plural(n uint64, forms ...string) string {
	one, many := forms[0], forms[0]+"s"
	if len(forms) > 1 {
		many = forms[1]
	}
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// duration says d to the second, or "less than a second".
func duration(d time.Duration) string {
	if d < time.Second {
		return "less than a second"
	}
	return d.Round(time.Second).String()
}
