package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/busline/bus"
)

// Request/reply: a responder answers through the request's event with
// Reply; Request returns the first reply, ErrNoResponders when nobody
// listens, and its context's error when nobody answers in time.
func ExampleBus_Request() {
	ctx := context.Background()
	b := bus.New(nil)
	defer func() { _ = b.Close(ctx) }()

	// A responder: any subscription, here a typed one. A queue group of
	// responders would spread the requests over its members.
	_, err := bus.SubscribeTyped(b, "prices.get", func(ctx context.Context, e bus.Event, item string) {
		if err := b.Reply(ctx, e, fmt.Sprintf("%s costs 3", item)); err != nil {
			log.Print(err) // the bus is closed
		}
	})
	if err != nil {
		log.Fatal(err)
	}

	ctx1, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	reply, err := bus.RequestTyped[string](ctx1, b, "prices.get", "apple")
	fmt.Println(reply, err)

	_, err = b.Request(ctx1, "stock.get", "apple")
	fmt.Println(errors.Is(err, bus.ErrNoResponders), err)

	// A subscriber that does not answer: the request times out.
	if _, err := b.Subscribe("audit.**", func(context.Context, bus.Event) {}); err != nil {
		log.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel2()
	_, err = b.Request(ctx2, "audit.get", "apple")
	fmt.Println(errors.Is(err, context.DeadlineExceeded), err)
	// Output:
	// apple costs 3 <nil>
	// true bus: request "stock.get": no responders
	// true bus: request "audit.get": no reply: context deadline exceeded
}
