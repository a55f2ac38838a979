package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// until returns the events of the stream up to the gap notice whose text
// is marker, which is not returned.
func (s *stream) until(t *testing.T, marker string) []sseEvent {
	t.Helper()
	var got []sseEvent
	for {
		e := s.next(t)
		var n Notice
		if e.event == "gap" && json.Unmarshal([]byte(e.data), &n) == nil && n.Text == marker {
			return got
		}
		got = append(got, e)
	}
}

// waitFor returns the events of the stream up to the first one for which
// ok is true, which is returned last; it fails the test if none comes in
// time.
func (s *stream) waitFor(t *testing.T, what string, ok func(sseEvent) bool) []sseEvent {
	t.Helper()
	var got []sseEvent
	deadline := time.After(waitTimeout)
	for {
		select {
		case e, open := <-s.events:
			if !open {
				t.Fatalf("the stream ended before %s; events: %+v", what, got)
			}
			got = append(got, e)
			if ok(e) {
				return got
			}
		case <-deadline:
			t.Fatalf("waited %v for %s; events: %+v", waitTimeout, what, got)
		}
	}
}

// isStatus matches a status event of state.
func isStatus(state string) func(sseEvent) bool {
	return func(e sseEvent) bool {
		var st Status
		return e.event == "status" && json.Unmarshal([]byte(e.data), &st) == nil && st.State == state
	}
}

// isGap matches a gap notice whose text contains want.
func isGap(want string) func(sseEvent) bool {
	return func(e sseEvent) bool {
		var n Notice
		return e.event == "gap" && json.Unmarshal([]byte(e.data), &n) == nil && strings.Contains(n.Text, want)
	}
}

// isMessage matches the message whose text is text.
func isMessage(text string) func(sseEvent) bool {
	return func(e sseEvent) bool {
		var m Message
		return e.event == "message" && json.Unmarshal([]byte(e.data), &m) == nil && m.Text == text
	}
}

// TestRedisOutage kills the redis-server two instances share and starts
// it again on the same port: both streams are told that Redis is down,
// then that it is back, with a note that messages may have been missed;
// a message posted during the outage is held and reaches the other
// instance afterwards, and its instance says "resuming" until it is sent.
func TestRedisOutage(t *testing.T) {
	srv := redistest.Start(t, nil)
	a, logA := startLogging(t, true, "-redis", srv.URL(), "-name", "A")
	b, logB := startLogging(t, true, "-redis", srv.URL(), "-name", "B")
	c := client(t)
	onA := openStream(t, c, a, "lobby")
	onB := openStream(t, c, b, "lobby")

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("A's log:\n%s\nB's log:\n%s", logA, logB)
		}
	})
	srv.Kill()
	for _, s := range []*stream{onA, onB} {
		got := s.waitFor(t, "status down", isStatus(StateDown))
		var st Status
		if err := json.Unmarshal([]byte(got[len(got)-1].data), &st); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(st.Text, "Reconnecting… Messages from the other instances are not arriving") || !strings.Contains(st.Detail, "connection lost") {
			t.Errorf("down status %+v", st)
		}
	}
	// Posted during the outage: shown on A at once, held for B once A's
	// bridge has given up sending it (go-redis retries for a while first).
	post(t, c, a, "lobby", "alice", "sent while Redis was away")
	onA.waitFor(t, "the message posted on A", isMessage("sent while Redis was away"))
	onA.waitFor(t, "the export held on A", func(e sseEvent) bool {
		return isStatus(StateDown)(e) && strings.Contains(e.data, "exports held in outbox")
	})
	srv.Restart()

	gotB := onB.waitFor(t, "the gap notice on B", isGap("You may have missed messages: this instance was cut off from Redis for"))
	gotB = append(gotB, onB.waitFor(t, "status connected on B", isStatus(StateConnected))...)
	gotB = append(gotB, onB.waitFor(t, "the held message on B", isMessage("sent while Redis was away"))...)
	gotA := onA.waitFor(t, "the gap notice on A", isGap("You may have missed messages"))
	gotA = append(gotA, onA.waitFor(t, "status resuming on A", isStatus(StateResuming))...)
	gotA = append(gotA, onA.waitFor(t, "status connected on A", isStatus(StateConnected))...)
	t.Logf("B after the restart: %+v", gotB)
	t.Logf("A after the restart: %+v", gotA)
	for _, tc := range []struct {
		name string
		log  *lockedBuffer
	}{{"A", logA}, {"B", logB}} {
		if l := tc.log.String(); !strings.Contains(l, "connection lost") || !strings.Contains(l, "possible gap") {
			t.Errorf("%s's stderr does not tell the outage: %s", tc.name, l)
		}
	}
}

// TestPrefix checks which Redis channel a room is: "chat."+room by
// default, as a plain Redis client sees it, and -prefix in front of it.
func TestPrefix(t *testing.T) {
	srv := redistest.Start(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "chat.lobby"},
		{[]string{"-prefix", "app:"}, "app:chat.lobby"},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			ctx := context.Background()
			ps := srv.Client(t).PSubscribe(ctx, "*")
			defer func() {
				if err := ps.Close(); err != nil {
					t.Error(err)
				}
			}()
			if _, err := ps.ReceiveTimeout(ctx, waitTimeout); err != nil { // the confirmation
				t.Fatal(err)
			}
			base := startInstance(t, append([]string{"-redis", srv.URL()}, tc.args...)...)
			post(t, client(t), base, "lobby", "alice", "hi")
			msg, err := ps.ReceiveTimeout(ctx, waitTimeout)
			if err != nil {
				t.Fatal(err)
			}
			if m, ok := msg.(*redis.Message); !ok || m.Channel != tc.want {
				t.Errorf("received %#v, want a message on %q", msg, tc.want)
			}
		})
	}
}

// TestLinkReports feeds the link errors as a bridge reports them and
// checks what the streams following lobby and dev are sent.
func TestLinkReports(t *testing.T) {
	s := NewServer(bus.New(nil), "x", nil)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	c := client(t)
	lobby := openStream(t, c, hs.URL, "lobby")
	dev := openStream(t, c, hs.URL, "dev")
	lk := newLink(s, "app:")

	type want struct {
		event, text string // text: in the data
	}
	for i, tc := range []struct {
		name       string
		do         func()
		lobby, dev []want
	}{
		{"a report before Ready changes nothing", func() { lk.report(fmt.Errorf("%w: dial: refused", bridge.ErrDisconnected)) }, nil, nil},
		{"Ready", lk.connected,
			[]want{{"status", `"state":"connected"`}}, []want{{"status", `"state":"connected"`}}},
		{"connection lost", func() { lk.report(fmt.Errorf("%w: EOF", bridge.ErrDisconnected)) },
			[]want{{"status", `"state":"down","text":"Reconnecting…`}}, []want{{"status", `"detail":"bridge: pub/sub connection lost: EOF"`}}},
		{"the same again says nothing", func() { lk.report(fmt.Errorf("%w: EOF", bridge.ErrDisconnected)) }, nil, nil},
		{"another cause", func() { lk.report(fmt.Errorf("%w: dial: refused", bridge.ErrDisconnected)) },
			[]want{{"status", `"detail":"bridge: pub/sub connection lost: dial: refused"`}}, []want{{"status", `"state":"down"`}}},
		{"subscribed again", func() { lk.report(bridge.ErrPossibleGap) },
			[]want{{"gap", "You may have missed messages: this instance was cut off from Redis for "}, {"status", `"state":"connected"`}},
			[]want{{"gap", "You may have missed messages"}, {"status", `"state":"connected"`}}},
		{"a gap in dev", func() { lk.report(&bridge.GapError{Source: "s", Channel: "app:chat.dev", Expected: 3, Got: 5}) },
			nil, []want{{"gap", `"room":"dev","text":"You may have missed messages: 2 messages from another instance`}}},
		{"a gap of 1 elsewhere", func() { lk.report(&bridge.GapError{Source: "s", Channel: "other", Expected: 3, Got: 4}) },
			[]want{{"gap", "1 message from another instance"}}, []want{{"gap", "1 message from another instance"}}},
		{"import drops", func() { lk.report(&bridge.DropError{Err: bridge.ErrImportFull, Count: 3}) },
			[]want{{"gap", "3 messages from the other instances were dropped: this instance could not keep up."}},
			[]want{{"gap", "3 messages from the other instances were dropped"}}},
		{"one undecodable", func() { lk.report(fmt.Errorf("%w: topic \"chat.dev\": bad JSON", bridge.ErrDecode)) },
			[]want{{"gap", "1 message from the other instances was dropped: they were not chat messages."}},
			[]want{{"gap", "1 message from the other instances was dropped"}}},
		{"expired exports", func() { lk.report(&bridge.DropError{Err: bridge.ErrExpired, Count: 1}) },
			[]want{{"gap", "The other instances missed messages: 1 message posted here was not sent: Redis was unreachable for too long."}},
			[]want{{"gap", "1 message posted here was not sent"}}},
		{"exports held", func() { lk.report(fmt.Errorf("%w: dial: refused", bridge.ErrRedisDown)) },
			[]want{{"status", `"state":"down","text":"Redis does not take this instance's messages`}}, []want{{"status", `"state":"down"`}}},
		{"other errors say nothing", func() { lk.report(bridge.ErrNotSent) }, nil, nil},
	} {
		tc.do()
		marker := fmt.Sprintf("end of case %d", i)
		s.Notify(Notice{Text: marker})
		for _, st := range []struct {
			name string
			s    *stream
			want []want
		}{{"lobby", lobby, tc.lobby}, {"dev", dev, tc.dev}} {
			got := st.s.until(t, marker)
			ok := len(got) == len(st.want)
			for j := 0; ok && j < len(got); j++ {
				ok = got[j].event == st.want[j].event && strings.Contains(got[j].data, st.want[j].text)
			}
			if !ok {
				t.Errorf("%s: %s got %+v, want %+v", tc.name, st.name, got, st.want)
			}
		}
	}
	if st := s.Status(); st.State != StateDown || !strings.Contains(st.Detail, "exports held") {
		t.Errorf("Status() = %+v", st)
	}
}

// TestSSEID checks that a foreign message's ID with a line break is left
// out of the stream rather than breaking its framing.
func TestSSEID(t *testing.T) {
	var sb strings.Builder
	if err := writeSSE(&sb, sse{id: "a\nevent: status", name: "message", data: "x"}); err != nil {
		t.Fatal(err)
	}
	if got, want := sb.String(), "event: message\ndata: \"x\"\n\n"; got != want {
		t.Errorf("wrote %q, want %q", got, want)
	}
	if err := writeSSE(&sb, sse{name: "x", data: func() {}}); !errors.As(err, new(*json.UnsupportedTypeError)) {
		t.Errorf("unencodable data: %v", err)
	}
}
