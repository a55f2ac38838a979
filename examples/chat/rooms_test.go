package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/monitor"
	"github.com/busline/bus/redistest"
	"github.com/redis/go-redis/v9"
)

// numsub returns PUBSUB NUMSUB of the channels of rooms (default prefix):
// how many connections subscribe to each, patterns aside.
func numsub(t *testing.T, rdb *redis.Client, rooms ...string) map[string]int64 {
	t.Helper()
	channels := make([]string, len(rooms))
	for i, r := range rooms {
		channels[i] = topicPrefix + r
	}
	n, err := rdb.PubSubNumSub(context.Background(), channels...).Result()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for ch, c := range n {
		got[strings.TrimPrefix(ch, topicPrefix)] = c
	}
	return got
}

// waitNumsub waits until PUBSUB NUMSUB of room's channel is want.
func waitNumsub(t *testing.T, rdb *redis.Client, room string, want int64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got := numsub(t, rdb, room)[room]
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("NUMSUB %s%s is %d after %v, want %d", topicPrefix, room, got, waitTimeout, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// subscriptions returns, from CLIENT LIST, how many connections are named
// name and the channels (sub) and patterns (psub) they subscribe to, in
// all.
func subscriptions(t *testing.T, rdb *redis.Client, name string) (conns, sub, psub int) {
	t.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(list) {
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			k, v, _ := strings.Cut(f, "=")
			fields[k] = v
		}
		if fields["name"] != name {
			continue
		}
		conns++
		s, err1 := strconv.Atoi(fields["sub"])
		p, err2 := strconv.Atoi(fields["psub"])
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("CLIENT LIST line %q: %v", line, err)
		}
		sub += s
		psub += p
	}
	return conns, sub, psub
}

// monitorDoc GETs the monitoring document named doc of the instance at
// base into v.
func monitorDoc(t *testing.T, c *http.Client, base, doc string, v any) {
	t.Helper()
	resp, err := c.Get(base + defaultMonitorPath + doc)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", doc, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", doc, err)
	}
}

// received returns Stats().Received of the bridge of the instance at base.
func received(t *testing.T, c *http.Client, base string) uint64 {
	t.Helper()
	var d monitor.StatsDoc
	monitorDoc(t, c, base, "stats", &d)
	if len(d.Bridges) != 1 {
		t.Fatalf("%d bridges, want 1", len(d.Bridges))
	}
	return d.Bridges[0].Stats.Received
}

// routePatterns returns the patterns of the bridge's routes, sorted.
func routePatterns(routes []bridge.RouteStats) []string {
	var p []string
	for _, r := range routes {
		p = append(p, r.Pattern)
	}
	slices.Sort(p)
	return p
}

// TestRoomsOnDemand runs instances A and B on one redis-server, A with a
// stream of room x only, B of room y only: Redis sends x's traffic to A
// alone (PUBSUB NUMSUB, CLIENT LIST), B's bridge receives none of it, and
// once A's stream leaves, nobody subscribes to x.
func TestRoomsOnDemand(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	a := startInstance(t, "-redis", srv.URL()+"?client_name=chat-A", "-name", "A")
	b := startInstance(t, "-redis", srv.URL()+"?client_name=chat-B", "-name", "B")
	c := client(t)
	onA := openStream(t, c, a, "x")
	onB := openStream(t, c, b, "y")

	if got := numsub(t, rdb, "x", "y", "z"); got["x"] != 1 || got["y"] != 1 || got["z"] != 0 {
		t.Errorf("NUMSUB: %v, want x and y 1, z 0", got)
	}
	// One channel each, and no pattern: B cannot have x's traffic.
	for _, name := range []string{"chat-A", "chat-B"} {
		if conns, sub, psub := subscriptions(t, rdb, name); conns == 0 || sub != 1 || psub != 0 {
			t.Errorf("CLIENT LIST: %d connections named %s subscribe to %d channels and %d patterns, want 1 and 0", conns, name, sub, psub)
		}
	}

	before := received(t, c, b)
	const n = 20
	for i := range n {
		post(t, c, a, "x", "alice", fmt.Sprintf("x %d", i))
	}
	for i := range n {
		if m := onA.message(t); m.Text != fmt.Sprintf("x %d", i) {
			t.Fatalf("A's stream: %+v, want x %d", m, i)
		}
	}
	// A message in y after them, through Redis: once B has it, B would
	// have had x's messages if Redis sent them (it sends one connection's
	// messages in order).
	post(t, c, a, "y", "alice", "fence")
	if m := onB.message(t); m.Text != "fence" || m.Via != "A" {
		t.Fatalf("B's stream: %+v, want the fence from A", m)
	}
	if got := received(t, c, b) - before; got != 1 {
		t.Errorf("B's bridge received %d messages from Redis, want 1 (the fence): it has room x's traffic", got)
	}

	onA.close()
	waitNumsub(t, rdb, "x", 0)
	var routes monitor.RoutesDoc
	monitorDoc(t, c, a, "routes", &routes)
	if len(routes.Routes) != 1 || routes.Routes[0].Pattern != "chat.*" || routes.Routes[0].Direction != bridge.Export.String() {
		t.Errorf("A's routes once its stream left: %+v, want the export of chat.* only", routes.Routes)
	}
	if got := numsub(t, rdb, "y")["y"]; got != 1 {
		t.Errorf("NUMSUB y: %d, want 1 (B's stream)", got)
	}
}

// newTestRooms returns the rooms of a bridge on srv, with the routes of
// the chat, and the bus of the bridge, both closed at the end of the
// test; the errors the rooms report fail the test.
func newTestRooms(t *testing.T, srv *redistest.Server) (*rooms, *bridge.Bridge, *bus.Bus) {
	t.Helper()
	b := bus.New(nil)
	codec := newMessageCodec()
	br, err := bridge.New(b, srv.Client(t), &bridge.Options{Routes: []bridge.Route{exportRoute(codec)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if err := br.Close(ctx); err != nil {
			t.Error(err)
		}
		if err := b.Close(ctx); err != nil {
			t.Error(err)
		}
	})
	rs := newRooms(br, codec, func(err error) { t.Errorf("rooms reported: %v", err) })
	return rs, br, b
}

// TestRoomsJoinLeave joins and leaves rooms on a bridge: the first join
// subscribes, on Redis, before it returns; the last leave unsubscribes;
// a room joined again is subscribed again; leaving a room not joined is
// reported and changes nothing.
func TestRoomsJoinLeave(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	rs, br, b := newTestRooms(t, srv)
	ctx := context.Background()
	got := make(chan string, 10)
	sub, err := b.Subscribe("chat.x", func(_ context.Context, e bus.Event) {
		if m := fromEvent(e); m != nil {
			got <- m.Text
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	// A message from Redis reaches the local bus: published by redis-cli,
	// as buscat or a foreign program would.
	receives := func(text string) {
		t.Helper()
		if _, err := srv.CLI("PUBLISH", "chat.x", `{"from":"cli","text":"`+text+`"}`); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			if m != text {
				t.Fatalf("received %q, want %q", m, text)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("%q did not arrive", text)
		}
	}

	for i := range 2 {
		if err := rs.join(ctx, "x"); err != nil {
			t.Fatalf("join %d: %v", i, err)
		}
	}
	// Confirmed before join returned: no wait.
	if n := numsub(t, rdb, "x")["x"]; n != 1 {
		t.Errorf("NUMSUB x after join: %d, want 1", n)
	}
	if refs, n := rs.counts(); refs["x"] != 2 || n != 1 {
		t.Errorf("counts: %v %d, want x: 2 in 1 room", refs, n)
	}
	if p := routePatterns(br.Routes()); fmt.Sprint(p) != "[chat.* chat.x]" {
		t.Errorf("routes %v, want chat.* and chat.x", p)
	}
	receives("one")

	rs.leave("x")
	if n := numsub(t, rdb, "x")["x"]; n != 1 {
		t.Errorf("NUMSUB x with one stream left: %d, want 1", n)
	}
	receives("two")
	rs.leave("x")
	waitNumsub(t, rdb, "x", 0)
	if refs, n := rs.counts(); len(refs) != 0 || n != 0 {
		t.Errorf("counts after the last leave: %v %d", refs, n)
	}
	if p := routePatterns(br.Routes()); fmt.Sprint(p) != "[chat.*]" {
		t.Errorf("routes after the last leave %v, want chat.* only", p)
	}

	if err := rs.join(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if n := numsub(t, rdb, "x")["x"]; n != 1 {
		t.Errorf("NUMSUB x joined again: %d, want 1", n)
	}
	receives("three")
	rs.leave("x")
	waitNumsub(t, rdb, "x", 0)

	// Left and joined again at once, over and over: each join returns
	// once the new SUBSCRIBE is confirmed, not on the confirmation of the
	// one the leave is undoing.
	for i := range 50 {
		if err := rs.join(ctx, "x"); err != nil {
			t.Fatal(err)
		}
		receives(fmt.Sprintf("again %d", i))
		rs.leave("x")
	}
	waitNumsub(t, rdb, "x", 0)

	var reported []error
	rs.onError = func(err error) { reported = append(reported, err) }
	rs.leave("never")
	if len(reported) != 1 || !strings.Contains(reported[0].Error(), `leaving room "never", which was not joined`) {
		t.Errorf("leaving a room not joined reported %v", reported)
	}
	if refs, n := rs.counts(); len(refs) != 0 || n != 0 {
		t.Errorf("counts: %v %d", refs, n)
	}
}

// TestRoomsConcurrent joins and leaves rooms from many goroutines at
// once, the same rooms and different ones, racing joins with the removals
// of the last leaves. Each joins as a stream does, subscribed on the bus
// first: once joined, every room's route is in the bridge and a message
// published on Redis in one of them reaches it. At the end no room is
// counted, the bridge has its export route only and Redis has no
// subscriber.
func TestRoomsConcurrent(t *testing.T) {
	srv := redistest.Start(t, nil)
	rdb := srv.Client(t)
	rs, br, b := newTestRooms(t, srv)
	names := []string{"a", "b", "c", "d", "e"}
	const workers, rounds = 16, 100
	// round joins the rooms mine, checks them and leaves them.
	round := func(rnd *rand.Rand, probe string, mine []string) error {
		got := make(chan string, 64)
		for _, n := range mine {
			sub, err := b.Subscribe(topicPrefix+n, func(_ context.Context, e bus.Event) {
				if m := fromEvent(e); m != nil && m.Text == probe {
					got <- m.Text
				}
			})
			if err != nil {
				return err
			}
			defer sub.Unsubscribe()
		}
		leave, err := rs.joinAll(context.Background(), mine)
		if err != nil {
			return err
		}
		defer leave()
		routes := routePatterns(br.Routes())
		for _, n := range mine {
			if !slices.Contains(routes, topicPrefix+n) {
				return fmt.Errorf("joined %v, but the bridge's routes are %v", mine, routes)
			}
		}
		room := mine[rnd.IntN(len(mine))]
		if err := rdb.Publish(context.Background(), topicPrefix+room, `{"from":"t","text":"`+probe+`"}`).Err(); err != nil {
			return err
		}
		select {
		case <-got:
		case <-time.After(waitTimeout):
			return fmt.Errorf("joined %v: %s published in %s did not arrive", mine, probe, room)
		}
		if rnd.IntN(4) == 0 {
			time.Sleep(time.Duration(rnd.IntN(2000)) * time.Microsecond)
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range rounds {
				// One to three rooms, as a stream follows.
				var mine []string
				for range 1 + rnd.IntN(3) {
					if n := names[rnd.IntN(len(names))]; !slices.Contains(mine, n) {
						mine = append(mine, n)
					}
				}
				if err := round(rnd, fmt.Sprintf("w%d-%d", w, i), mine); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if refs, n := rs.counts(); len(refs) != 0 || n != 0 {
		t.Errorf("counts at the end: %v in %d rooms, want none", refs, n)
	}
	if p := routePatterns(br.Routes()); fmt.Sprint(p) != "[chat.*]" {
		t.Errorf("routes at the end %v, want chat.* only", p)
	}
	for _, n := range names {
		waitNumsub(t, rdb, n, 0)
	}
	st := br.Stats()
	t.Logf("%d workers × %d rounds; bridge: received %d, imported %d, filtered %d", workers, rounds, st.Received, st.Imported, st.Filtered)
}

// TestRoomsJoinFails kills the redis-server under an instance: a stream of
// a room the instance already follows opens, one of a new room is refused
// with 503 and a Retry-After once the join timeout has passed; when Redis
// is back, the new room opens.
func TestRoomsJoinFails(t *testing.T) {
	srv := redistest.Start(t, nil)
	base, _ := startLogging(t, true, "-redis", srv.URL(), "-name", "A") // the bridge logs the outage
	c := client(t)
	openStream(t, c, base, "x")
	srv.Kill()

	openStream(t, c, base, "x") // joined already: no wait for Redis

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*joinTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/events?room=new", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Error string }
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != joinRetryAfter || !resp.Close || err != nil ||
		!strings.Contains(body.Error, `not subscribed on Redis: room "new"`) {
		t.Errorf("a new room with Redis down: %s, Retry-After %q, close %v, %q (%v); want 503, Retry-After %s, closed",
			resp.Status, resp.Header.Get("Retry-After"), resp.Close, body.Error, err, joinRetryAfter)
	}
	// The join timeout, plus the removal of the route not confirmed.
	if took < joinTimeout-100*time.Millisecond || took > joinTimeout+2*time.Second {
		t.Errorf("refused after %v, want about %v", took, joinTimeout)
	}
	t.Logf("refused after %v: %s", took.Round(time.Millisecond), body.Error)

	srv.Restart()
	deadline := time.Now().Add(waitTimeout)
	for {
		status, closeIt := tryStream(t, c, base, "new")
		closeIt()
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("room new still refused %v after Redis came back: %d", waitTimeout, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
