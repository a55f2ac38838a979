// Command notifications is the classic real-time notification service:
// a listener subscribed to the topic "notifications" and a publisher sending
// it two messages.
//
// With no flags it runs in one process, with no Redis, and prints what the
// listener received:
//
//	go run ./examples/notifications
//
// With -redis, the listener and the publisher are two processes that share
// the topic through a bridge and a Redis server:
//
//	go run ./examples/notifications -redis redis://127.0.0.1:6379 -role listener
//	go run ./examples/notifications -redis redis://127.0.0.1:6379 -role publisher
//
// The topic is mirrored on a raw route (payload bytes, no envelope) to the
// Redis channel -prefix + "notifications" ("app:notifications" by default),
// so any Redis client can take part:
//
//	redis-cli PUBLISH app:notifications "hi"
//
// The listener runs until it gets SIGINT (Ctrl-C) or SIGTERM; the publisher
// exits once Redis has taken its two messages. The exit status is 0 on
// success, 1 when something fails at run time (Redis unreachable, say), and
// 2 for bad flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/redis/go-redis/v9"
)

// topic is the bus topic the listener and the publisher share.
const topic = "notifications"

// messages are what the publisher sends, in order.
var messages = []string{"New message from user123", "Important update!"}

// errUsage is wrapped by the errors of bad flags; main exits with status 2
// for them.
var errUsage = errors.New("usage")

// Time limits of the Redis mode. They bound waits on a broken Redis; on a
// working one everything takes milliseconds.
const (
	connectTimeout = 5 * time.Second  // first PING, and SUBSCRIBE confirmation
	closeTimeout   = 10 * time.Second // flushing the publisher's messages
)

func main() {
	// go-redis logs every failed dial on its own; the errors that matter
	// reach the user through run's error.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "notifications:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "notifications:", err)
		os.Exit(1)
	}
}

// run is the program: it parses args, writes what happens to stdout and
// the usage text to stderr, and returns when done or when ctx ends (the
// listener's way of stopping).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notifications", flag.ContinueOnError)
	fs.SetOutput(stderr)
	redisURL := fs.String("redis", "", "Redis `URL` (redis://host:port); empty runs everything in this process")
	role := fs.String("role", "", "with -redis: `listener` (prints notifications until Ctrl-C) or publisher (sends two and exits)")
	prefix := fs.String("prefix", "app:", "Redis channel `prefix`: the topic's channel is prefix+\"notifications\"")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: notifications [-redis URL -role listener|publisher [-prefix P]]\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *redisURL == "" {
		if *role != "" {
			return fmt.Errorf("%w: -role needs -redis", errUsage)
		}
		return inProcess(ctx, stdout)
	}
	if *role != "listener" && *role != "publisher" {
		return fmt.Errorf("%w: -role must be listener or publisher, not %q", errUsage, *role)
	}
	opts, err := redis.ParseURL(*redisURL)
	if err != nil {
		return fmt.Errorf("%w: bad -redis URL: %v", errUsage, err)
	}
	rdb := redis.NewClient(opts)
	defer rdb.Close()
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = rdb.Ping(pingCtx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("cannot reach Redis at %s: %w", opts.Addr, err)
	}
	if *role == "listener" {
		return listen(ctx, rdb, *prefix, stdout, stderr)
	}
	return publish(ctx, rdb, *prefix, stdout, stderr)
}

// listener subscribes to the topic and prints every notification. It is
// the same code in both modes: a subscriber cannot tell a local event from
// one the bridge imported.
func listener(b *bus.Bus, stdout io.Writer) error {
	_, err := b.Subscribe(topic, func(ctx context.Context, e bus.Event) {
		// A local publisher's payload is a string; an imported raw
		// message's is []byte. %s prints both.
		fmt.Fprintf(stdout, "listener received on %s: %s\n", e.Topic, e.Payload)
	})
	return err
}

// publisher sends the messages on the topic.
func publisher(ctx context.Context, b *bus.Bus, stdout io.Writer) error {
	for _, msg := range messages {
		fmt.Fprintf(stdout, "publisher sends: %s\n", msg)
		if err := b.Publish(ctx, topic, msg); err != nil {
			return err
		}
	}
	return nil
}

// inProcess runs the listener and the publisher on one bus.
func inProcess(ctx context.Context, stdout io.Writer) error {
	b := bus.New(nil)
	defer b.Close(ctx)
	if err := listener(b, stdout); err != nil {
		return err
	}
	return publisher(ctx, b, stdout)
}

// newBridge mirrors the topic to the Redis channel prefix+topic, both ways,
// on a raw route: the message on Redis is exactly the payload's bytes, so
// redis-cli PUBLISH and SUBSCRIBE interoperate.
func newBridge(b *bus.Bus, rdb *redis.Client, prefix string, stderr io.Writer) (*bridge.Bridge, error) {
	return bridge.New(b, rdb, &bridge.Options{
		Prefix: prefix,
		Routes: []bridge.Route{{Pattern: topic, Direction: bridge.Both, Raw: true}},
		// Lost connections, gaps and the like: the bridge recovers by
		// itself, the user should still hear of them.
		OnError: func(err error) { fmt.Fprintln(stderr, "notifications:", err) },
	})
}

// listen runs the listener behind a bridge until ctx ends.
func listen(ctx context.Context, rdb *redis.Client, prefix string, stdout, stderr io.Writer) error {
	b := bus.New(nil)
	defer b.Close(context.Background())
	if err := listener(b, stdout); err != nil {
		return err
	}
	br, err := newBridge(b, rdb, prefix, stderr)
	if err != nil {
		return err
	}
	readyCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = br.Ready(readyCtx)
	cancel()
	if err != nil {
		br.Close(context.Background())
		return fmt.Errorf("subscribing to Redis channel %s%s: %w", prefix, topic, err)
	}
	fmt.Fprintf(stdout, "listener ready on Redis channel %s%s (Ctrl-C to stop)\n", prefix, topic)
	<-ctx.Done()
	closeCtx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	return br.Close(closeCtx)
}

// publish runs the publisher behind a bridge and waits until Redis has
// taken every message.
func publish(ctx context.Context, rdb *redis.Client, prefix string, stdout, stderr io.Writer) error {
	b := bus.New(nil)
	defer b.Close(context.Background())
	br, err := newBridge(b, rdb, prefix, stderr)
	if err != nil {
		return err
	}
	pubErr := publisher(ctx, b, stdout)
	// Close flushes the bridge's outbox: the messages are on Redis when
	// it returns nil.
	closeCtx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	closeErr := br.Close(closeCtx)
	if err := errors.Join(pubErr, closeErr); err != nil {
		return err
	}
	if n := br.Stats().Exported; n != uint64(len(messages)) {
		return fmt.Errorf("Redis took %d of %d messages", n, len(messages))
	}
	fmt.Fprintf(stdout, "publisher sent %d messages to Redis channel %s%s\n", len(messages), prefix, topic)
	return nil
}

// quietLogger discards go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
