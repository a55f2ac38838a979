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
// "chat.lobby" on each instance's bus; a bridge mirrors "chat.*" to the Redis
// channels -prefix + "chat.*" (with the default empty prefix, channel
// "chat.lobby"), as JSON in envelopes. So `buscat sub 'chat.*'` shows the
// conversation, and `buscat pub -envelope chat.lobby '{"from":"cli","text":"hi"}'`
// posts to it. The page shows whether Redis is reachable and says when
// messages may have been missed (a reconnect, a gap reported by the bridge).
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
	"syscall"
	"time"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
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
	var ropts *redis.Options
	if *redisURL != "" {
		var err error
		if ropts, err = redis.ParseURL(*redisURL); err != nil {
			return fmt.Errorf("%w: bad -redis URL: %v", errUsage, err)
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
	srv := NewServer(b, *name)

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
		br, err := bridge.New(b, rdb, &bridge.Options{
			Prefix: *prefix,
			// Every room, both ways, as JSON: subscribers on every
			// instance get a *Message.
			Routes: []bridge.Route{{Pattern: topicPrefix + "*", Codec: bridge.JSON[*Message]()}},
			OnError: mon.onError(func(err error) {
				logger.Print(err)
				lk.report(err)
			}),
		})
		if err != nil {
			return err
		}
		mon.addBridge(br)
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
			return fmt.Errorf("subscribing on Redis: %w", err)
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
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
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

// quietLogger discards go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
