// Command minimal is the smallest complete program with a bridge: one
// instance of a service whose orders.* topics are shared with every other
// instance through Redis. Run it in two terminals at once; each prints its
// own orders and the other's, until Ctrl-C.
//
//	go run ./examples/minimal                     # Redis at redis://127.0.0.1:6379
//	REDIS_URL=rediss://user:pass@host:6380 go run ./examples/minimal
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/redis/go-redis/v9"
)

// Order is the payload; every instance uses the same Go type.
type Order struct {
	ID    int     `json:"id"`
	Total float64 `json:"total"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil {
		log.Fatal(err)
	}
}

// run works until ctx ends, then closes everything it opened.
func run(ctx context.Context) (err error) {
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379"
	}
	opt, err := redis.ParseURL(url) // redis://user:password@host:port/db; rediss:// for TLS
	if err != nil {
		// Its error quotes the URL, password included: print neither.
		return errors.New("REDIS_URL is not a valid Redis URL (not shown: it may hold a password)")
	}
	// go-redis v9 speaks RESP3 (Protocol: 3) by default: nothing to set.
	// The bridge never closes your client.
	rdb := redis.NewClient(opt)
	defer func() { err = errors.Join(err, rdb.Close()) }()

	// OnError gets what goes wrong after the call that caused it has
	// returned: panics in handlers, drops, lost connections, gaps.
	b := bus.New(&bus.Options{OnError: func(err error) { log.Print(err) }})
	// ctx has ended by the time Close runs: give it time of its own.
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancelClose()
	defer func() { err = errors.Join(err, b.Close(closeCtx)) }()

	br, err := bridge.New(b, rdb, &bridge.Options{
		Routes:  []bridge.Route{{Pattern: "orders.*", Codec: bridge.JSON[*Order]()}},
		OnError: func(err error) { log.Print(err) },
	})
	if err != nil {
		return err
	}
	// Close flushes what is still to be sent; it runs before b.Close.
	defer func() { err = errors.Join(err, br.Close(closeCtx)) }()

	// Ready waits until Redis has confirmed the subscriptions; with a
	// wrong address it fails with the reason ("cannot connect ...").
	readyCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := br.Ready(readyCtx); err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "ready: orders.* shared through", opt.Addr)

	_, err = bus.SubscribeTyped(b, "orders.*", func(ctx context.Context, e bus.Event, o *Order) {
		from := "this instance"
		if e.Remote() {
			from = "instance " + e.Meta.Source
		}
		fmt.Printf("%s: order %d, total %.2f, from %s\n", e.Topic, o.ID, o.Total, from)
	})
	if err != nil {
		return err
	}

	for id := 1; id <= 3; id++ {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second): // time to start the other instance
		}
		if err := b.Publish(ctx, "orders.created", &Order{ID: id, Total: 9.5 * float64(id)}); err != nil {
			return err
		}
	}
	<-ctx.Done() // Ctrl-C
	return nil
}
