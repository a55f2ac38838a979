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
//
// The topics chat.* are the Redis channels -prefix + "chat.*" (the prefix is
// empty by default, as in package bridge), as JSON in Busline envelopes.
// The exit status is 0 on success (also for a chat ended by Ctrl-C or
// Ctrl-D), 1 when something fails at run time (Redis unreachable, say), and
// 2 for bad flags.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/internal/redisurl"
	"github.com/redis/go-redis/v9"
)

// Message is what instances exchange; both sides use the same Go type.
type Message struct {
	From string `json:"from"`
	Text string `json:"text"`
}

// topic is the bus topic of the chat; the route mirrors every chat.**.
const topic = "chat.room"

// Time limits. They bound waits on a broken Redis; on a working one
// everything takes milliseconds.
const (
	readyTimeout = 5 * time.Second  // subscriptions confirmed by Redis
	closeTimeout = 10 * time.Second // flushing what is still to be sent
)

func main() {
	fs := flag.NewFlagSet("bridge", flag.ExitOnError) // exit status 2 for bad flags
	url := fs.String("redis", "redis://127.0.0.1:6379", "Redis `URL` (rediss:// for TLS)")
	name := fs.String("name", "", "chat as this `name`; empty runs the demo")
	prefix := fs.String("prefix", "", "Redis channel `prefix`: topic T is channel prefix+T")
	_ = fs.Parse(os.Args[1:]) // ExitOnError: Parse exits on error
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bridge: unexpected argument %q\n", fs.Arg(0))
		os.Exit(2)
	}
	// redisurl.Parse is redis.ParseURL with errors that never hold the
	// password (go-redis's quote the URL), refusing skip_verify=true.
	opts, err := redisurl.Parse(*url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bridge: -redis:", err)
		os.Exit(2)
	}
	// go-redis logs every failed dial on its own; the errors that matter
	// reach the user through OnError and the error returned.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if *name == "" {
		err = demo(ctx, opts, *prefix, os.Stdout)
	} else {
		err = chat(ctx, opts, *prefix, *name, os.Stdin, os.Stdout)
	}
	stop()
	if err != nil {
		// One line, whatever the error joins.
		fmt.Fprintln(os.Stderr, "bridge:", strings.ReplaceAll(err.Error(), "\n", "; "))
		os.Exit(1)
	}
}

// instance is a bus bridged to Redis.
type instance struct {
	bus    *bus.Bus
	bridge *bridge.Bridge
	rdb    *redis.Client
}

// start returns an instance whose subscriptions Redis has confirmed.
func start(ctx context.Context, opts *redis.Options, prefix, id string) (*instance, error) {
	// ParseURL leaves Options.Protocol at 0, which go-redis v9 takes as
	// RESP3; the bridge works with either protocol and needs nothing set.
	rdb := redis.NewClient(opts)
	in := &instance{bus: bus.New(nil), rdb: rdb}
	// A first PING says "Redis is not there" once, clearly; the bridge
	// would keep retrying and report each failed attempt to OnError.
	pingCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	err := rdb.Ping(pingCtx).Err()
	cancel()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s: cannot reach Redis at %s: %w", id, opts.Addr, err), in.close())
	}
	br, err := bridge.New(in.bus, rdb, &bridge.Options{
		Prefix:     prefix,
		InstanceID: id,
		Routes:     []bridge.Route{{Pattern: "chat.**", Codec: bridge.JSON[*Message]()}},
		// Lost connections, gaps and the like: the bridge recovers by
		// itself, the user should still hear of them.
		OnError: func(err error) { fmt.Fprintf(os.Stderr, "bridge: %s: %v\n", id, err) },
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", id, err), in.close())
	}
	in.bridge = br
	readyCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := br.Ready(readyCtx); err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", id, err), in.close())
	}
	return in, nil
}

// close closes the bridge (sending what it still holds), the bus and the
// Redis client, in that order, and returns what went wrong.
func (in *instance) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	var errs []error
	if in.bridge != nil {
		if err := in.bridge.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("closing the bridge: %w", err))
		}
	}
	if err := in.bus.Close(ctx); err != nil {
		errs = append(errs, fmt.Errorf("closing the bus: %w", err))
	}
	if err := in.rdb.Close(); err != nil {
		errs = append(errs, fmt.Errorf("closing the Redis client: %w", err))
	}
	return errors.Join(errs...)
}

// demo runs two instances that each publish one message and prints what
// each receives: every message reaches both, once.
func demo(ctx context.Context, opts *redis.Options, prefix string, stdout io.Writer) (err error) {
	a, err := start(ctx, opts, prefix, "instance-a")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, a.close()) }()
	b, err := start(ctx, opts, prefix, "instance-b")
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, b.close()) }()

	got := make(chan string, 4)
	for _, in := range []*instance{a, b} {
		if _, err := bus.SubscribeTyped(in.bus, "chat.**", func(_ context.Context, e bus.Event, m *Message) {
			where := "local"
			if e.Remote() {
				where = "from " + e.Meta.Source
			}
			got <- fmt.Sprintf("%s got %q by %s (%s)", in.bridge.InstanceID(), m.Text, m.From, where)
		}); err != nil {
			return fmt.Errorf("%s: subscribing: %w", in.bridge.InstanceID(), err)
		}
	}
	if err := a.bus.Publish(ctx, topic, &Message{From: "a", Text: "hello from a"}); err != nil {
		return fmt.Errorf("instance-a: publishing: %w", err)
	}
	if err := b.bus.Publish(ctx, topic, &Message{From: "b", Text: "hello from b"}); err != nil {
		return fmt.Errorf("instance-b: publishing: %w", err)
	}
	// Each message reaches both instances once: four lines.
	for i := range 4 {
		select {
		case line := <-got:
			if _, err := fmt.Fprintln(stdout, line); err != nil {
				return fmt.Errorf("writing to stdout: %w", err)
			}
		case <-time.After(readyTimeout):
			return fmt.Errorf("timed out after %d of 4 deliveries", i)
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// chat runs one participant: the lines of stdin go to the others, theirs
// are printed. It returns at the end of stdin or when ctx ends.
func chat(ctx context.Context, opts *redis.Options, prefix, name string, stdin io.Reader, stdout io.Writer) (err error) {
	in, err := start(ctx, opts, prefix, name)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, in.close()) }()
	// A message that cannot be printed ends the chat with that error.
	chatCtx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	if _, err := bus.SubscribeTyped(in.bus, "chat.**", func(_ context.Context, e bus.Event, m *Message) {
		if !e.Remote() {
			return // our own lines: already on the screen
		}
		if _, err := fmt.Fprintf(stdout, "%s: %s\n", m.From, m.Text); err != nil {
			fail(fmt.Errorf("writing to stdout: %w", err))
		}
	}); err != nil {
		return fmt.Errorf("subscribing: %w", err)
	}
	// The reader stays blocked in a read after Ctrl-C: it ends with the
	// process, which exits at once.
	lines := make(chan string)
	readErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-chatCtx.Done():
				return
			}
		}
		readErr <- sc.Err()
	}()
	if _, err := fmt.Fprintf(stdout, "chatting as %s; type lines, Ctrl-D or Ctrl-C to quit\n", name); err != nil {
		return fmt.Errorf("writing to stdout: %w", err)
	}
	for {
		select {
		case line := <-lines:
			if err := in.bus.Publish(ctx, topic, &Message{From: name, Text: line}); err != nil {
				return fmt.Errorf("publishing: %w", err)
			}
		case err := <-readErr:
			if err != nil {
				return fmt.Errorf("reading stdin: %w", err)
			}
			return nil // Ctrl-D
		case <-chatCtx.Done():
			if ctx.Err() != nil {
				return nil // Ctrl-C
			}
			return context.Cause(chatCtx)
		}
	}
}

// quietLogger discards go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
