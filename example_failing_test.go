package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/busline/bus"
)

// A handler that returns an error: Publish still returns nil (the other
// subscribers got the event), and the error goes to OnError as a
// *bus.DeliveryError wrapping bus.ErrHandlerFailed and the handler's error.
func ExampleBus_SubscribeFunc() {
	ctx := context.Background()
	errOutOfStock := errors.New("out of stock")
	b := bus.New(&bus.Options{OnError: func(err error) {
		var de *bus.DeliveryError
		if errors.As(err, &de) && errors.Is(err, bus.ErrHandlerFailed) {
			fmt.Printf("failed: topic %s, attempt %d, out of stock: %v\n", de.Topic, de.Attempt, errors.Is(err, errOutOfStock))
		}
	}})
	sub, err := b.SubscribeFunc("orders.created", func(ctx context.Context, e bus.Event) error {
		if e.Payload.(*Order).ID == 2 {
			return fmt.Errorf("reserve order %d: %w", e.Payload.(*Order).ID, errOutOfStock)
		}
		fmt.Println("reserved order", e.Payload.(*Order).ID)
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	for id := 1; id <= 2; id++ {
		if err := b.Publish(ctx, "orders.created", &Order{ID: id}); err != nil {
			log.Fatal(err) // not the handler's error: that went to OnError
		}
	}
	fmt.Println("failed events:", sub.Stats().Failed)
	if err := b.Close(ctx); err != nil {
		log.Print(err)
	}
	// Output:
	// reserved order 1
	// failed: topic orders.created, attempt 1, out of stock: true
	// failed events: 1
}

// Middleware wraps every handler of the bus (Options.Middleware) or of one
// subscription (SubscribeOptions.Middleware), net/http style: here one
// that logs the outcome and one that gives each call a deadline.
func ExampleMiddleware() {
	ctx := context.Background()
	logging := func(next bus.HandlerFunc) bus.HandlerFunc {
		return func(ctx context.Context, e bus.Event) error {
			err := next(ctx, e)
			fmt.Printf("%s: err=%v\n", e.Topic, err)
			return err
		}
	}
	timeout := func(d time.Duration) bus.Middleware {
		return func(next bus.HandlerFunc) bus.HandlerFunc {
			return func(ctx context.Context, e bus.Event) error {
				ctx, cancel := context.WithTimeout(ctx, d)
				defer cancel()
				return next(ctx, e)
			}
		}
	}
	b := bus.New(&bus.Options{Middleware: []bus.Middleware{logging}, OnError: func(error) {}})
	// A plain Handler gets the bus's middleware too.
	if _, err := b.Subscribe("greet", func(ctx context.Context, e bus.Event) { fmt.Println("hello,", e.Payload) }); err != nil {
		log.Fatal(err)
	}
	_, err := b.SubscribeFuncWith("slow", func(ctx context.Context, e bus.Event) error {
		select {
		case <-time.After(time.Second):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, &bus.SubscribeOptions{Middleware: []bus.Middleware{timeout(10 * time.Millisecond)}})
	if err != nil {
		log.Fatal(err)
	}
	for _, topic := range []string{"greet", "slow"} {
		if err := b.Publish(ctx, topic, "gopher"); err != nil {
			log.Fatal(err)
		}
	}
	if err := b.Close(ctx); err != nil {
		log.Print(err)
	}
	// Output:
	// hello, gopher
	// greet: err=<nil>
	// slow: err=context deadline exceeded
}

// An asynchronous subscription retries a failing event with backoff; after
// its last attempt the event goes to its dead-letter topic
// ("deadletter.<topic>" by default), with Meta saying what failed.
func ExampleRetryPolicy() {
	ctx := context.Background()
	b := bus.New(&bus.Options{OnError: func(error) {}}) // the failures are counted in Stats
	_, err := b.Subscribe("deadletter.**", func(ctx context.Context, e bus.Event) {
		h := e.Meta.Headers
		fmt.Printf("dead letter of %s after %s attempts: %s\n", h[bus.HeaderDeadLetterTopic], h[bus.HeaderDeadLetterAttempts], h[bus.HeaderDeadLetterError])
	})
	if err != nil {
		log.Fatal(err)
	}
	attempts := map[int]int{}
	sub, err := b.SubscribeFuncWith("emails.send", func(ctx context.Context, e bus.Event) error {
		id := e.Payload.(int)
		attempts[id]++ // one goroutine handles the subscription's events
		if id == 2 || attempts[id] < 3 {
			fmt.Printf("email %d: attempt %d failed\n", id, attempts[id])
			return errors.New("smtp: 421 try again later")
		}
		fmt.Printf("email %d: sent at attempt %d\n", id, attempts[id])
		return nil
	}, &bus.SubscribeOptions{Queue: 16, Retry: &bus.RetryPolicy{Attempts: 4, Initial: time.Millisecond, Max: 10 * time.Millisecond}})
	if err != nil {
		log.Fatal(err)
	}
	for id := 1; id <= 2; id++ {
		if err := b.Publish(ctx, "emails.send", id); err != nil {
			log.Fatal(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := sub.UnsubscribeWait(wctx); err != nil { // the queue is handled, retries included
		log.Fatal(err)
	}
	st := sub.Stats()
	fmt.Printf("delivered %d, failed attempts %d, retried %d, dead-lettered %d\n", st.Delivered, st.Failed, st.Retried, st.DeadLettered)
	if err := b.Close(ctx); err != nil {
		log.Print(err)
	}
	// Output:
	// email 1: attempt 1 failed
	// email 1: attempt 2 failed
	// email 1: sent at attempt 3
	// email 2: attempt 1 failed
	// email 2: attempt 2 failed
	// email 2: attempt 3 failed
	// email 2: attempt 4 failed
	// dead letter of emails.send after 4 attempts: smtp: 421 try again later
	// delivered 1, failed attempts 6, retried 5, dead-lettered 1
}
