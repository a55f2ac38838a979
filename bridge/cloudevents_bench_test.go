package bridge_test

import (
	"context"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// BenchmarkFormats bridges events through a real redis-server with each
// Format, one at a time (each waits for the previous to arrive: the cost
// per bridged event, in the whole process) and in a burst (b.N published,
// then waited for): a struct payload with a traceparent header, and a
// small []byte; unsigned, and "+signed" with a SigningKey on both sides.
func BenchmarkFormats(b *testing.B) {
	srv := redistest.Start(b, nil)
	meta := &bus.Meta{Headers: map[string]string{"traceparent": traceparent}}
	for _, p := range []struct {
		name    string
		payload any
		meta    *bus.Meta
	}{
		{"json+header", Order{ID: 42, Items: []string{"tea", "coffee"}}, meta},
		{"bytes", []byte("a small payload"), nil},
	} {
		for _, f := range []bridge.Format{bridge.Envelope, bridge.CloudEvents} {
			for _, key := range []string{"", "s3cret"} {
				for _, burst := range []bool{false, true} {
					name := p.name + "/" + f.String()
					if key != "" {
						name += "+signed"
					}
					if burst {
						name += "/burst"
					} else {
						name += "/one-by-one"
					}
					b.Run(name, func(b *testing.B) {
						benchFormat(b, srv, f, []byte(key), bus.Event{Topic: "fmt.x", Payload: p.payload, Meta: p.meta}, burst)
					})
				}
			}
		}
	}
}

func benchFormat(b *testing.B, srv *redistest.Server, f bridge.Format, key []byte, e bus.Event, burst bool) {
	send, recv := bus.New(nil), bus.New(nil)
	defer send.Close(context.Background())
	defer recv.Close(context.Background())
	got := make(chan struct{}, 1<<16)
	if _, err := recv.Subscribe("fmt.x", func(context.Context, bus.Event) { got <- struct{}{} }); err != nil {
		b.Fatal(err)
	}
	for bu, d := range map[*bus.Bus]bridge.Direction{send: bridge.Export, recv: bridge.Import} {
		br, err := bridge.New(bu, srv.Client(b), &bridge.Options{
			Routes:          []bridge.Route{{Pattern: "fmt.*", Direction: d, Format: f}},
			OnError:         func(err error) { b.Error(err) },
			SigningKey:      key,
			OutboxMaxEvents: 1 << 22, ImportQueueSize: 1 << 22, ImportTopicQueueSize: 1 << 22,
		})
		if err != nil {
			b.Fatal(err)
		}
		defer br.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := br.Ready(ctx); err != nil {
			b.Fatal(err)
		}
		cancel()
	}
	ctx := context.Background()
	deadline := time.After(time.Minute)
	wait := func() {
		select {
		case <-got:
		case <-deadline:
			b.Fatal("the events did not all arrive within a minute")
		}
	}
	for range 100 { // grow every buffer and pool first
		if err := send.PublishEvent(ctx, e); err != nil {
			b.Fatal(err)
		}
		wait()
	}
	b.ReportAllocs()
	b.ResetTimer()
	if burst {
		for range b.N {
			if err := send.PublishEvent(ctx, e); err != nil {
				b.Fatal(err)
			}
		}
		for range b.N {
			wait()
		}
		return
	}
	for range b.N {
		if err := send.PublishEvent(ctx, e); err != nil {
			b.Fatal(err)
		}
		wait()
	}
}
