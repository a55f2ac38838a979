package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/busline/bus"
)

type Order struct {
	ID    int
	Total float64
}

// The quick start: subscribe to a pattern, publish, unsubscribe.
func Example() {
	ctx := context.Background()
	b := bus.New(nil)
	defer func() {
		if err := b.Close(ctx); err != nil { // says how many queued events it could not deliver
			log.Print(err)
		}
	}()

	sub, err := b.Subscribe("orders.*", func(ctx context.Context, e bus.Event) {
		fmt.Printf("%s: %v\n", e.Topic, e.Payload)
	})
	if err != nil {
		log.Fatal(err) // a bad pattern, or a closed bus
	}
	for _, topic := range []string{"orders.created", "orders.paid", "users.created"} {
		if err := b.Publish(ctx, topic, "order 42"); err != nil {
			log.Fatal(err) // a bad topic, a closed bus, or ctx's error
		}
	}
	sub.Unsubscribe()
	if err := b.Publish(ctx, "orders.created", "ignored: unsubscribed"); err != nil {
		log.Fatal(err)
	}
	// Output:
	// orders.created: order 42
	// orders.paid: order 42
}

// Patterns follow gobwas/glob with the separator: * stays within a
// segment, ** crosses segments and matches zero of them before a separator.
func Example_patterns() {
	ctx := context.Background()
	b := bus.New(nil)
	for _, pattern := range []string{"orders.*", "orders.**", "**.failed", "orders.{created,paid}", "user.[0-9]"} {
		_, err := b.Subscribe(pattern, func(ctx context.Context, e bus.Event) {
			fmt.Printf("%-22s <- %s\n", pattern, e.Topic)
		})
		if err != nil {
			log.Fatal(err)
		}
	}
	for _, topic := range []string{"orders.created", "orders.eu.failed", "failed", "user.7", "user.10"} {
		if err := b.Publish(ctx, topic, nil); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// orders.*               <- orders.created
	// orders.**              <- orders.created
	// orders.{created,paid}  <- orders.created
	// orders.**              <- orders.eu.failed
	// **.failed              <- orders.eu.failed
	// **.failed              <- failed
	// user.[0-9]             <- user.7
}

// SubscribeTyped hands the payload over as its concrete type; a payload of
// another type goes to Options.OnError instead of the handler.
func ExampleSubscribeTyped() {
	ctx := context.Background()
	b := bus.New(&bus.Options{OnError: func(err error) { fmt.Println("error:", err) }})
	_, err := bus.SubscribeTyped(b, "orders.created", func(ctx context.Context, e bus.Event, o *Order) {
		fmt.Printf("order %d, total %.2f\n", o.ID, o.Total)
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, payload := range []any{&Order{ID: 42, Total: 9.5}, "not an order"} {
		if err := b.Publish(ctx, "orders.created", payload); err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// order 42, total 9.50
	// error: bus: payload type mismatch: topic "orders.created", pattern "orders.created": want *bus_test.Order, got string
}

// A panicking handler is recovered and reported; the other subscribers
// still get the event and Publish returns normally.
func ExampleOptions_onError() {
	ctx := context.Background()
	b := bus.New(&bus.Options{OnError: func(err error) {
		var de *bus.DeliveryError
		if errors.As(err, &de) && errors.Is(err, bus.ErrHandlerPanic) {
			fmt.Printf("recovered %q on %s (pattern %s)\n", de.Value, de.Topic, de.Pattern)
		}
	}})
	if _, err := b.Subscribe("jobs.*", func(ctx context.Context, e bus.Event) { panic("broken handler") }); err != nil {
		log.Fatal(err)
	}
	if _, err := b.Subscribe("jobs.run", func(ctx context.Context, e bus.Event) { fmt.Println("still delivered") }); err != nil {
		log.Fatal(err)
	}
	err := b.Publish(ctx, "jobs.run", nil)
	fmt.Println("Publish returned", err)
	// Output:
	// recovered "broken handler" on jobs.run (pattern jobs.*)
	// still delivered
	// Publish returned <nil>
}

// Bad topics and patterns are errors that say what and where.
func ExampleSyntaxError() {
	b := bus.New(nil)
	err := b.Publish(context.Background(), "orders..created", nil)
	fmt.Println(err, errors.Is(err, bus.ErrInvalidTopic))
	_, err = b.Subscribe("orders.{created", func(context.Context, bus.Event) {})
	fmt.Println(err, errors.Is(err, bus.ErrInvalidPattern))
	// Output:
	// bus: invalid topic "orders..created" at offset 7: empty segment true
	// bus: invalid pattern "orders.{created" at offset 15: unclosed `{` true
}

// NumSub, NumPat, Patterns and Topics answer what Redis's PUBSUB NUMSUB,
// NUMPAT and CHANNELS answer.
func ExampleBus_NumSub() {
	b := bus.New(nil)
	nop := func(context.Context, bus.Event) {}
	for _, pattern := range []string{"orders.created", "orders.*", "**"} {
		if _, err := b.Subscribe(pattern, nop); err != nil {
			log.Fatal(err)
		}
	}
	n, err := b.NumSub("orders.created")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n, b.NumPat(), b.Patterns(), b.Topics())
	// Output:
	// 3 2 [** orders.*] [orders.created]
}

// An asynchronous subscription runs its handler on a goroutine of its own,
// behind a bounded queue; UnsubscribeWait lets it finish what is queued.
func ExampleBus_SubscribeWith() {
	ctx := context.Background()
	b := bus.New(nil)
	defer func() {
		if err := b.Close(ctx); err != nil {
			log.Print(err)
		}
	}()

	sub, err := b.SubscribeWith("emails.send", func(ctx context.Context, e bus.Event) {
		fmt.Println("sending", e.Payload) // a slow call would not hold Publish up
	}, &bus.SubscribeOptions{Queue: 128, Overflow: bus.Block})
	if err != nil {
		log.Fatal(err)
	}

	for _, to := range []string{"ann@example.com", "bob@example.com"} {
		// With Block, a full queue makes Publish wait, until ctx ends.
		if err := b.Publish(ctx, "emails.send", to); err != nil {
			log.Fatal(err)
		}
	}
	// Wait for the queue to drain, but not forever.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := sub.UnsubscribeWait(wctx); err != nil {
		fmt.Println(err)
	}
	fmt.Println("delivered:", sub.Stats().Delivered)
	// Output:
	// sending ann@example.com
	// sending bob@example.com
	// delivered: 2
}

// SubscribeChan is for those who prefer ranging over a channel; the bus
// closes it after Unsubscribe or Close.
func ExampleBus_SubscribeChan() {
	ctx := context.Background()
	b := bus.New(nil)
	_, ch, err := b.SubscribeChan("ticks.*", nil)
	if err != nil {
		log.Fatal(err)
	}
	for i, topic := range []string{"ticks.a", "ticks.b"} {
		if err := b.Publish(ctx, topic, i+1); err != nil {
			log.Fatal(err)
		}
	}
	// Close drains the queue into the channel, then closes it; by its
	// deadline at the latest.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	closed := make(chan error, 1)
	go func() { closed <- b.Close(cctx) }()
	for e := range ch {
		fmt.Println(e.Topic, e.Payload)
	}
	if err := <-closed; err != nil {
		fmt.Println(err)
	}
	// Output:
	// ticks.a 1
	// ticks.b 2
}

// Members of a queue group split the events between them: each event goes
// to exactly one member.
func ExampleSubscribeOptions_group() {
	ctx := context.Background()
	b := bus.New(nil)
	counts := make([]int, 3)
	for i := range counts {
		_, err := b.SubscribeWith("jobs.*", func(ctx context.Context, e bus.Event) { counts[i]++ },
			&bus.SubscribeOptions{Group: "workers"})
		if err != nil {
			log.Fatal(err)
		}
	}
	for range 300 {
		if err := b.Publish(ctx, "jobs.resize", nil); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(counts, counts[0]+counts[1]+counts[2])
	// Output:
	// [100 100 100] 300
}

// Subscriptions lists what a bus delivers to, for a monitoring page or a
// metrics collector; SubscribeOptions.Name labels each one.
func ExampleBus_Subscriptions() {
	ctx := context.Background()
	b := bus.New(nil)
	defer b.Close(ctx)
	_, _ = b.SubscribeWith("orders.*", func(context.Context, bus.Event) {}, &bus.SubscribeOptions{Name: "projection", Queue: 16, Overflow: bus.DropOldest})
	_, _ = b.SubscribeWith("mail.send", func(context.Context, bus.Event) {}, &bus.SubscribeOptions{Name: "mailer"})
	for _, s := range b.Subscriptions() {
		st := s.Stats()
		fmt.Printf("%-10s %-9s async=%-5v policy=%v capacity=%d\n", s.Name(), s.Pattern(), s.Async(), s.Overflow(), st.Capacity)
	}
	// Output:
	// projection orders.*  async=true  policy=DropOldest capacity=16
	// mailer     mail.send async=false policy=Block capacity=0
}

// LogTo logs every error the bus reports as a structured record: the
// recommended production setting. (The time, and the "where" and
// "error" attributes, which hold a path on this machine, are left out
// here.)
func ExampleLogTo() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey || a.Key == "where" || a.Key == "error" {
				return slog.Attr{}
			}
			return a
		},
	}))
	ctx := context.Background()
	b := bus.New(&bus.Options{OnError: bus.LogTo(logger)})
	defer b.Close(ctx)
	_, _ = b.SubscribeFunc("orders.*", func(context.Context, bus.Event) error {
		return errors.New("payment service down")
	})
	_ = b.Publish(ctx, "orders.created", "order 42")
	// Output:
	// level=ERROR msg="bus: handler failed" topic=orders.created pattern=orders.* attempt=1 cause="payment service down"
}
