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
// The topic is the Redis channel "notifications" (-prefix + "notifications";
// the prefix is empty by default, as in package bridge), on a raw route with
// the codec bridge.Text: a message on Redis is exactly the text of a
// notification, with no envelope, so any Redis client takes part, in both
// directions:
//
//	redis-cli SUBSCRIBE notifications          # prints the publisher's messages
//	redis-cli PUBLISH notifications "hi"       # the listener prints it
//	python3 -c 'import redis; redis.Redis().publish("notifications", "hi")'
//
// The listener gets every notification as a string, whoever sent it.
// With -envelope the route is enveloped instead, as bridge routes are by
// default: every message carries Busline's binary envelope (the sender's
// instance ID, a sequence number that reveals lost messages, the time),
// which other Busline instances decode and plain Redis clients see as
// bytes; what plain clients publish still reaches the listener.
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
	"strings"
	"syscall"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/internal/redisurl"
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
		fmt.Fprintln(os.Stderr, "notifications:", oneLine(err))
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "notifications:", oneLine(err))
		os.Exit(1)
	}
}

// config is what the flags of the Redis mode say.
type config struct {
	prefix   string // Redis channel prefix
	envelope bool   // enveloped route instead of raw
}

// channel returns the Redis channel of the topic.
func (c config) channel() string { return c.prefix + topic }

// run is the program: it parses args, writes what happens to stdout and
// the usage text and diagnostics to stderr, and returns when done or when
// ctx ends (the listener's way of stopping).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notifications", flag.ContinueOnError)
	fs.SetOutput(stderr)
	redisURL := fs.String("redis", "", "Redis `URL` (redis://host:port); empty runs everything in this process")
	role := fs.String("role", "", "with -redis: `listener` (prints notifications until Ctrl-C) or publisher (sends two and exits)")
	var cfg config
	fs.StringVar(&cfg.prefix, "prefix", "", "with -redis: Redis channel `prefix`: the topic's channel is prefix+\"notifications\"")
	fs.BoolVar(&cfg.envelope, "envelope", false, "with -redis: send Busline envelopes, not plain text (plain Redis clients then see bytes)")
	fs.Usage = func() {
		warn(fs.Output(), "usage: notifications [-redis URL -role listener|publisher [-prefix P] [-envelope]]\n\n")
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
		var misplaced error
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "redis" && misplaced == nil {
				misplaced = fmt.Errorf("%w: -%s needs -redis", errUsage, f.Name)
			}
		})
		if misplaced != nil {
			return misplaced
		}
		return inProcess(ctx, stdout, stderr)
	}
	if *role != "listener" && *role != "publisher" {
		return fmt.Errorf("%w: -role must be listener or publisher, not %q", errUsage, *role)
	}
	// redisurl.Parse is redis.ParseURL with errors that never hold the
	// password (go-redis's quote the URL), refusing skip_verify=true.
	opts, err := redisurl.Parse(*redisURL)
	if err != nil {
		return fmt.Errorf("%w: -redis: %v", errUsage, err)
	}
	// ParseURL leaves Options.Protocol at 0, which go-redis v9 takes as
	// RESP3; the bridge works with either protocol and needs nothing set.
	rdb := redis.NewClient(opts)
	err = redisMode(ctx, rdb, opts.Addr, *role, cfg, stdout, stderr)
	if cerr := rdb.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("closing the Redis client: %w", cerr))
	}
	return err
}

// redisMode runs the listener or the publisher with the client rdb, which
// the caller closes.
func redisMode(ctx context.Context, rdb *redis.Client, addr, role string, cfg config, stdout, stderr io.Writer) error {
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	err := rdb.Ping(pingCtx).Err()
	cancel()
	if err != nil {
		return fmt.Errorf("cannot reach Redis at %s: %w", addr, err)
	}
	if role == "listener" {
		return listen(ctx, rdb, cfg, stdout, stderr)
	}
	return publish(ctx, rdb, cfg, stdout, stderr)
}

// listener subscribes to the topic and prints every notification. It is
// the same code in both modes: a subscriber cannot tell a local event from
// one the bridge imported, whose payload bridge.Text makes a string too.
// A notification that cannot be printed ends the listener: fail gets the
// error.
func listener(b *bus.Bus, stdout io.Writer, fail func(error)) error {
	_, err := bus.SubscribeTyped(b, topic, func(_ context.Context, e bus.Event, msg string) {
		if _, err := fmt.Fprintf(stdout, "listener received on %s: %s\n", e.Topic, msg); err != nil {
			fail(fmt.Errorf("writing to stdout: %w", err))
		}
	})
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", topic, err)
	}
	return nil
}

// publisher sends the messages on the topic.
func publisher(ctx context.Context, b *bus.Bus, stdout io.Writer) error {
	for _, msg := range messages {
		if _, err := fmt.Fprintf(stdout, "publisher sends: %s\n", msg); err != nil {
			return fmt.Errorf("writing to stdout: %w", err)
		}
		if err := b.Publish(ctx, topic, msg); err != nil {
			return fmt.Errorf("publishing to %s: %w", topic, err)
		}
	}
	return nil
}

// newBus returns a bus that reports delivery problems, such as a payload
// that is not a string, on stderr.
func newBus(stderr io.Writer) *bus.Bus {
	return bus.New(&bus.Options{OnError: func(err error) { warn(stderr, "notifications: %v\n", err) }})
}

// closeBus closes b and adds the error, if any, to *err: for a defer.
func closeBus(err *error, b *bus.Bus) {
	if cerr := b.Close(context.Background()); cerr != nil {
		*err = errors.Join(*err, fmt.Errorf("closing the bus: %w", cerr))
	}
}

// inProcess runs the listener and the publisher on one bus.
func inProcess(ctx context.Context, stdout, stderr io.Writer) (err error) {
	b := newBus(stderr)
	defer closeBus(&err, b)
	// The handler runs in Publish: a failed print is the publisher's error.
	var printErr error
	if err := listener(b, stdout, func(err error) { printErr = err }); err != nil {
		return err
	}
	if err := publisher(ctx, b, stdout); err != nil {
		return err
	}
	return printErr
}

// newBridge mirrors the topic to the Redis channel prefix+topic, both ways:
// on a raw route, where a message on Redis is exactly a notification's text
// (redis-cli and redis-py interoperate), or with -envelope on an enveloped
// one. bridge.Text makes every imported message a string, as local ones are;
// raw routes default to bridge.Bytes, which exports []byte only.
func newBridge(b *bus.Bus, rdb *redis.Client, cfg config, stderr io.Writer) (*bridge.Bridge, error) {
	br, err := bridge.New(b, rdb, &bridge.Options{
		Prefix: cfg.prefix,
		Routes: []bridge.Route{{Pattern: topic, Direction: bridge.Both, Raw: !cfg.envelope, Codec: bridge.Text()}},
		// Lost connections, gaps and the like: the bridge recovers by
		// itself, the user should still hear of them.
		OnError: func(err error) { warn(stderr, "notifications: %v\n", err) },
	})
	if err != nil {
		return nil, fmt.Errorf("starting the bridge: %w", err)
	}
	return br, nil
}

// closeBridge closes br, flushing what it has not sent yet for up to
// closeTimeout, and adds the error, if any, to *err: for a defer.
func closeBridge(err *error, br *bridge.Bridge) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if cerr := br.Close(ctx); cerr != nil {
		*err = errors.Join(*err, fmt.Errorf("closing the bridge: %w", cerr))
	}
}

// listen runs the listener behind a bridge until ctx ends, or until it
// cannot print.
func listen(ctx context.Context, rdb *redis.Client, cfg config, stdout, stderr io.Writer) (err error) {
	listenCtx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	b := newBus(stderr)
	defer closeBus(&err, b) // after the bridge's Close: deferred first
	if err := listener(b, stdout, fail); err != nil {
		return err
	}
	br, err := newBridge(b, rdb, cfg, stderr)
	if err != nil {
		return err
	}
	defer closeBridge(&err, br)
	readyCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = br.Ready(readyCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("subscribing to Redis channel %s: %w", cfg.channel(), err)
	}
	how := ""
	if cfg.envelope {
		how = ", enveloped"
	}
	if _, err := fmt.Fprintf(stdout, "listener ready on Redis channel %s%s (Ctrl-C to stop)\n", cfg.channel(), how); err != nil {
		return fmt.Errorf("writing to stdout: %w", err)
	}
	<-listenCtx.Done()
	if ctx.Err() != nil {
		return nil // SIGINT or SIGTERM: the normal way to stop
	}
	return context.Cause(listenCtx)
}

// publish runs the publisher behind a bridge and waits until Redis has
// taken every message.
func publish(ctx context.Context, rdb *redis.Client, cfg config, stdout, stderr io.Writer) (err error) {
	b := newBus(stderr)
	defer closeBus(&err, b)
	br, err := newBridge(b, rdb, cfg, stderr)
	if err != nil {
		return err
	}
	pubErr := publisher(ctx, b, stdout)
	// Close flushes the bridge's outbox: the messages are on Redis when
	// it returns nil.
	var closeErr error
	closeBridge(&closeErr, br)
	if err := errors.Join(pubErr, closeErr); err != nil {
		return err
	}
	if n := br.Stats().Exported; n != uint64(len(messages)) {
		return fmt.Errorf("only %d of %s reached Redis", n, plural(len(messages), "message"))
	}
	if _, err := fmt.Fprintf(stdout, "publisher sent %s to Redis channel %s\n", plural(len(messages), "message"), cfg.channel()); err != nil {
		return fmt.Errorf("writing to stdout: %w", err)
	}
	return nil
}

// plural returns "1 message", "2 messages".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// warn writes a diagnostic to stderr. Its write error is dropped on
// purpose: stderr is where errors would be reported, so there is nowhere
// left to report that one.
func warn(stderr io.Writer, format string, args ...any) {
	_, _ = fmt.Fprintf(stderr, format, args...)
}

// oneLine keeps an error message on one line, whatever the error joins.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// quietLogger discards go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
