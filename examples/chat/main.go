// Command chat is a small web chat whose rooms are bus topics: net/http,
// Server-Sent Events and one static HTML page, with no build step.
//
// One instance, no Redis:
//
//	go run ./examples/chat -addr 127.0.0.1:8080
//
// Two instances sharing their rooms through Redis: a browser on one sees
// the messages posted on the other, in order.
//
//	go run ./examples/chat -addr 127.0.0.1:8081 -redis redis://127.0.0.1:6379
//	go run ./examples/chat -addr 127.0.0.1:8082 -redis redis://127.0.0.1:6379
//
// Open http://127.0.0.1:8081/?rooms=lobby,dev&name=alice and
// http://127.0.0.1:8082/?rooms=lobby&name=bob. Room "lobby" is topic
// "chat.lobby" on each instance's bus; a bridge exports "chat.*" to the Redis
// channels -prefix + "chat.*" (with the default empty prefix, channel
// "chat.lobby"), as JSON in envelopes, and subscribes on Redis to the
// channel of a room only while a page on the instance follows it (rooms.go):
// an instance receives none of the traffic of the other rooms. So
// `buscat sub 'chat.*'` shows the conversation, and
// `buscat pub -envelope chat.lobby '{"from":"cli","text":"hi"}'` posts to it.
// The page shows whether Redis is reachable and says when messages may have
// been missed (a reconnect, a gap reported by the bridge).
//
// It is hardened as a program to copy: messages from Redis are checked
// field by field (anyone who may PUBLISH there can write anything), the
// streams are capped (-max-streams, -max-streams-per-client), slow clients
// cut off (-read-timeout), posts must be JSON and same-origin, the Host
// header must be allowed (-allowed-hosts, against DNS rebinding), and with
// a -signing-key (better: $CHAT_SIGNING_KEY) only instances that have it
// can post. The Redis URL's password is never printed.
//
// See README.md in this directory for the HTTP API and the browser test.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/busline/bus/internal/redisurl"
	"github.com/redis/go-redis/v9"
)

// errUsage is wrapped by the errors of bad flags: exit status 2.
var errUsage = errors.New("usage")

// Time limits: they matter only when something is broken.
const (
	connectTimeout  = 5 * time.Second
	shutdownTimeout = 5 * time.Second
	// watchInterval is how often the link looks at the bridge's outbox
	// while exports are held.
	watchInterval = 250 * time.Millisecond
	// idleTimeout closes kept-alive connections with no request.
	idleTimeout = time.Minute
)

func main() {
	redis.SetLogger(quietLogger{}) // errors that matter are reported by the bridge
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, nil)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "chat:", err)
		os.Exit(1)
	}
}

// run serves the chat until ctx ends. It writes a line to stdout when it
// listens, and calls listening (when not nil) with the address.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, listening func(addr string)) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "`address` to listen on (port 0: any free port)")
	redisURL := fs.String("redis", "", "Redis `URL` shared by the instances; empty: this instance alone")
	prefix := fs.String("prefix", "", "Redis channel `prefix`: room R is channel prefix+\"chat.\"+R")
	name := fs.String("name", "", "`name` of this instance in the messages posted on it (default: the address)")
	hosts := fs.String("allowed-hosts", "", "comma-separated `hosts` the pages may be opened as (default: localhost, 127.0.0.1, ::1 and the host of -addr)")
	var opts Options
	fs.IntVar(&opts.MaxStreams, "max-streams", 1000, "open message streams at most, in all")
	fs.IntVar(&opts.MaxStreamsPerClient, "max-streams-per-client", 10, "open message streams at most from one IP address")
	readTimeout := fs.Duration("read-timeout", 10*time.Second, "time a client has to send a request, body included")
	signingKey := fs.String("signing-key", os.Getenv("CHAT_SIGNING_KEY"), "with -redis: `key` (16 bytes or more) signing the messages between instances, and refusing the others; prefer $CHAT_SIGNING_KEY, which ps does not show")
	mon := addMonitorFlag(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	switch {
	case len(*name) > maxName || !printable(*name, ""):
		return fmt.Errorf("%w: -name: at most %d bytes, printable", errUsage, maxName)
	case opts.MaxStreams < 1 || opts.MaxStreamsPerClient < 1:
		return fmt.Errorf("%w: -max-streams and -max-streams-per-client must be 1 or more", errUsage)
	case *readTimeout <= 0:
		return fmt.Errorf("%w: -read-timeout must be positive", errUsage)
	case *signingKey != "" && len(*signingKey) < 16:
		return fmt.Errorf("%w: -signing-key: 16 bytes or more", errUsage)
	}
	var ropts *redis.Options
	if *redisURL != "" {
		var err error
		// redisurl.Parse is redis.ParseURL with errors that never hold
		// the password (go-redis's quote the URL), refusing skip_verify=true.
		if ropts, err = redisurl.Parse(*redisURL); err != nil {
			return fmt.Errorf("%w: -redis: %v", errUsage, err)
		}
	}
	logger := log.New(stderr, "chat: ", 0)

	b := bus.New(&bus.Options{OnError: mon.onError(func(err error) { logger.Print(err) })})
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if cerr := b.Close(closeCtx); cerr != nil {
			logger.Print(cerr)
		}
	}()

	// Listen first: the name of the instance defaults to its address.
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	served := false // once Serve has it, the listener is closed by Shutdown
	defer func() {
		if !served {
			if cerr := l.Close(); cerr != nil {
				logger.Print(cerr)
			}
		}
	}()
	url := "http://" + l.Addr().String()
	if *name == "" {
		*name = l.Addr().String()
	}
	opts.AllowedHosts = allowedHosts(*hosts, l.Addr())
	srv := NewServer(b, *name, &opts)

	if ropts != nil {
		rdb := redis.NewClient(ropts)
		defer func() {
			if cerr := rdb.Close(); cerr != nil {
				logger.Print(cerr)
			}
		}()
		pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
		err := rdb.Ping(pingCtx).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("cannot reach Redis at %s: %w", ropts.Addr, err)
		}
		// The bridge's reports go to stderr and, through the link, to
		// the pages: Redis lost and back, messages possibly missed.
		lk := newLink(srv, *prefix)
		codec := newMessageCodec()
		br, err := bridge.New(b, rdb, &bridge.Options{
			Prefix: *prefix,
			// What is posted here, in every room, goes to Redis as
			// JSON. The rooms are imported one by one, while some
			// stream here follows them (rooms): subscribers on every
			// instance get a *Message.
			Routes: []bridge.Route{exportRoute(codec)},
			// With a key, only instances that have it can post: the
			// bridge drops unsigned and forged messages (and reports
			// them, which the pages note). Without, anyone who may
			// PUBLISH on Redis can pass for any instance.
			SigningKey: signingKeyBytes(*signingKey),
			OnError: mon.onError(func(err error) {
				logger.Print(err)
				lk.report(err)
			}),
		})
		if err != nil {
			return err
		}
		mon.addBridge(br)
		srv.shareRooms(newRooms(br, codec, mon.onError(func(err error) { logger.Print(err) })))
		defer func() {
			closeCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			if cerr := br.Close(closeCtx); cerr != nil {
				logger.Print(cerr)
			}
		}()
		readyCtx, cancel := context.WithTimeout(ctx, connectTimeout)
		err = br.Ready(readyCtx)
		cancel()
		if err != nil {
			return fmt.Errorf("bridge to Redis: %w", err)
		}
		lk.connected()
		watchCtx, stopWatch := context.WithCancel(context.Background())
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			lk.watch(watchCtx, watchInterval, br.Stats)
		}()
		defer func() { stopWatch(); <-watched }()
	}

	shared := "alone, no Redis"
	if ropts != nil {
		shared = fmt.Sprintf("rooms shared through Redis %s, channels %q", ropts.Addr, *prefix+topicPrefix+"*")
	}
	if _, err := fmt.Fprintf(stdout, "chat instance %q on %s/?rooms=lobby (%s)\n", *name, url, shared); err != nil {
		return fmt.Errorf("writing to stdout: %w", err)
	}
	handler, err := mon.handler(srv, b, l.Addr())
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler: handler,
		// A client that sends its request slowly holds a connection and a
		// goroutine: cut it off. No WriteTimeout, which would end the
		// streams; ReadTimeout does not, as net/http lifts the read
		// deadline once a request's body is read.
		ReadHeaderTimeout: *readTimeout,
		ReadTimeout:       *readTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
	}
	done := make(chan error, 1)
	served = true
	go func() { done <- hs.Serve(l) }()
	if listening != nil {
		listening(l.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-done:
		return err
	}
	// Streams never go idle: end them first, then let Shutdown wait for
	// the rest.
	srv.Close()
	shutCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(shutCtx); err != nil {
		return err
	}
	// Serve returns ErrServerClosed as soon as Shutdown begins.
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// allowedHosts returns the hosts of the -allowed-hosts flag, or when it is
// empty the DefaultHosts and the host of the listening address (unless it
// is all interfaces: then clients' names for the machine must be listed).
func allowedHosts(flag string, listen net.Addr) []string {
	if flag != "" {
		return strings.Split(flag, ",")
	}
	hosts := DefaultHosts
	if tcp, ok := listen.(*net.TCPAddr); ok && !tcp.IP.IsUnspecified() {
		hosts = append(slices.Clip(hosts), tcp.IP.String())
	}
	return hosts
}

// signingKeyBytes returns key as bytes, nil when empty: the bridge takes
// an empty but non-nil key as a key.
func signingKeyBytes(key string) []byte {
	if key == "" {
		return nil
	}
	return []byte(key)
}

// quietLogger discards go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
