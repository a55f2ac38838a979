package bridge_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	bus "github.com/busline/bus"
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
			send, recv := bus.New(nil), bus.New(nil)
			t.Cleanup(func() {
				_ = send.Close(context.Background())
				_ = recv.Close(context.Background())
			})
			var mu sync.Mutex
			got := map[string][]string{}
			arrived := make(chan struct{}, 1024)
			if _, err := recv.Subscribe("reuse.*", func(_ context.Context, e bus.Event) {
				mu.Lock()
				got[e.Topic] = append(got[e.Topic], string(e.Payload.([]byte)))
				mu.Unlock()
				arrived <- struct{}{}
			}); err != nil {
				t.Fatal(err)
			}
			for b, d := range map[*bus.Bus]bridge.Direction{send: bridge.Export, recv: bridge.Import} {
				br, err := bridge.New(b, srv.Client(t), &bridge.Options{
					Routes:        []bridge.Route{{Pattern: "reuse.*", Direction: d}},
					CoalesceBytes: coalesce,
					OnError:       func(err error) { t.Error(err) },
				})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = br.Close(context.Background()) })
				ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
				if err := br.Ready(ctx); err != nil {
					t.Fatal(err)
				}
				cancel()
			}

			ctx := context.Background()
			topics := []string{"reuse.a", "reuse.b", "reuse.c"}
			want := map[string][]string{}
			n := 0
			publish := func(i int, size int) {
				topic := topics[i%len(topics)]
				p := fmt.Sprintf("%s-%d-%0*d", topic, n, size, 0)
				n++
				want[topic] = append(want[topic], p)
				if err := send.Publish(ctx, topic, []byte(p)); err != nil {
					t.Fatal(err)
				}
			}
			wait := func() {
				deadline := time.After(waitTimeout)
				for {
					mu.Lock()
					done := 0
					for _, ps := range got {
						done += len(ps)
					}
					mu.Unlock()
					if done == n {
						return
					}
					select {
					case <-arrived:
					case <-deadline:
						t.Fatalf("%d of %d events arrived", done, n)
					}
				}
			}
			for round := range 30 {
				// One event alone, waited for: a lone command.
				publish(round, 10)
				wait()
				// A large one alone: a pipeline of one.
				publish(round+1, 5<<10)
				wait()
				// A burst: pipelines of several, of various lengths.
				for i := range round * 3 {
					publish(round+i, i%40)
				}
				wait()
			}
			mu.Lock()
			defer mu.Unlock()
			for _, topic := range topics {
				g, w := got[topic], want[topic]
				for i := range max(len(g), len(w)) {
					if i >= len(g) || i >= len(w) || g[i] != w[i] {
						t.Errorf("%s: %d events, want %d; the first difference is event %d: %.60q", topic, len(g), len(w), i, g[min(i, len(g)-1)])
						break
					}
				}
			}
		})
	}
}
