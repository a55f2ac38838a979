// Command bridge shows two instances of a service sharing events through
// Redis with package bridge.
//
// Without -name it runs a self-contained demo: two buses, each with its own
// Redis client and bridge, exchange a few events and it exits.
//
//	go run ./examples/bridge -redis redis://127.0.0.1:6379
//
// With -name it is one participant of a chat: run it in two terminals, type
// lines in one and see them in the other.
//
//	go run ./examples/bridge -name alice
//	go run ./examples/bridge -name bob
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/redis/go-redis/v9"
)

// Message is what instances exchange; both sides use the same Go type.
type Message struct {
	From string `json:"from"`
	Text string `json:"text"`
}

func main() {
	url := flag.String("redis", "redis://127.0.0.1:6379", "Redis URL (rediss:// for TLS)")
	name := flag.String("name", "", "chat as this name; empty runs the demo")
	flag.Parse()
	opts, err := redis.ParseURL(*url)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *name == "" {
		demo(ctx, opts)
		return
	}
	chat(ctx, opts, *name)
}

// instance is a bus bridged to Redis.
type instance struct {
	bus    *bus.Bus
	bridge *bridge.Bridge
	rdb    *redis.Client
}

func start(ctx context.Context, opts *redis.Options, id string) *instance {
	rdb := redis.NewClient(opts)
	b := bus.New(nil)
	br, err := bridge.New(b, rdb, &bridge.Options{
		Prefix:     "example:",
		InstanceID: id,
		Routes:     []bridge.Route{{Pattern: "chat.**", Codec: bridge.JSON[*Message]()}},
	})
	if err != nil {
		log.Fatal(err)
	}
	readyCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := br.Ready(readyCtx); err != nil {
		log.Fatalf("%s: %v (is Redis running at %s?)", id, err, opts.Addr)
	}
	return &instance{bus: b, bridge: br, rdb: rdb}
}

func (in *instance) close(ctx context.Context) {
	if err := in.bridge.Close(ctx); err != nil {
		log.Print(err)
	}
	_ = in.bus.Close(ctx)
	_ = in.rdb.Close()
}

func demo(ctx context.Context, opts *redis.Options) {
	a, b := start(ctx, opts, "instance-a"), start(ctx, opts, "instance-b")
	defer a.close(ctx)
	defer b.close(ctx)

	got := make(chan string, 10)
	for _, in := range []*instance{a, b} {
		bus.SubscribeTyped(in.bus, "chat.**", func(_ context.Context, e bus.Event, m *Message) {
			where := "local"
			if e.Remote() {
				where = "from " + e.Meta.Source
			}
			got <- fmt.Sprintf("%s got %q by %s (%s)", in.bridge.InstanceID(), m.Text, m.From, where)
		})
	}
	a.bus.Publish(ctx, "chat.room", &Message{From: "a", Text: "hello from a"})
	b.bus.Publish(ctx, "chat.room", &Message{From: "b", Text: "hello from b"})
	// Each message reaches both instances once: four lines.
	for range 4 {
		select {
		case line := <-got:
			fmt.Println(line)
		case <-time.After(5 * time.Second):
			log.Fatal("timed out")
		}
	}
}

func chat(ctx context.Context, opts *redis.Options, name string) {
	in := start(ctx, opts, name)
	defer in.close(context.Background())
	bus.SubscribeTyped(in.bus, "chat.**", func(_ context.Context, e bus.Event, m *Message) {
		if e.Remote() {
			fmt.Printf("%s: %s\n", m.From, m.Text)
		}
	})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	fmt.Printf("chatting as %s; type lines, Ctrl-D or Ctrl-C to quit\n", name)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				return
			}
			in.bus.Publish(ctx, "chat.room", &Message{From: name, Text: line})
		case <-ctx.Done():
			return
		}
	}
}
