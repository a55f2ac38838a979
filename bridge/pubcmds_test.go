package bridge_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// TestFlusherReusesCommands sends flushes of one message and of many, to
// channels that change from one flush to the next, through a flusher that
// reuses its PUBLISH commands (a *redis.Client), and checks that every
// event arrives on its own topic with its own payload, in order: a
// command must never carry an earlier flush's channel or message. A
// message past the flusher's 4 KiB limit for a lone command goes in a
// pipeline, coalesced or not.
func TestFlusherReusesCommands(t *testing.T) {
	for _, coalesce := range []int{-1, 0} {
		t.Run(fmt.Sprintf("CoalesceBytes=%d", coalesce), func(t *testing.T) {
			srv := redistest.Start(t, nil)
			opts := func(d bridge.Direction) *bridge.Options {
				return &bridge.Options{Routes: []bridge.Route{{Pattern: "reuse.*", Direction: d}}, CoalesceBytes: coalesce}
			}
			recv := newInstance(t, srv.Client(t), opts(bridge.Import))
			send := newInstance(t, srv.Client(t), opts(bridge.Export))
			rec := record(t, recv.bus, "reuse.*")

			topics := []string{"reuse.a", "reuse.b", "reuse.c"}
			next := map[string]int{} // the number of each topic's next event
			n := 0
			// publish sends an event of size bytes or so on topic i (in
			// turn), numbered for waitOrdered and naming its topic.
			publish := func(i, size int) {
				topic := topics[i%len(topics)]
				p := fmt.Sprintf("%s %s-%d", topic, strings.Repeat("p", size), next[topic])
				next[topic]++
				n++
				if err := send.bus.Publish(t.Context(), topic, []byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			for round := range 30 {
				publish(round, 10) // alone, waited for: a lone command
				rec.waitOrdered(t, n)
				publish(round+1, 5<<10) // a large one alone: a pipeline of one
				rec.waitOrdered(t, n)
				for i := range round * 3 { // pipelines of various lengths
					publish(round+i, i%40)
				}
				rec.waitOrdered(t, n)
			}
			for i, e := range rec.snapshot() {
				if p := string(e.Payload.([]byte)); !strings.HasPrefix(p, e.Topic+" ") {
					t.Fatalf("event %d on %s carries %.40q", i, e.Topic, p)
				}
			}
			for _, in := range []*instance{send, recv} {
				if errs := in.errs.all(); len(errs) > 0 {
					t.Errorf("reported: %v", errs)
				}
			}
		})
	}
}
