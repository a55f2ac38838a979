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
// channels -prefix + "chat.*" ("app:chat.lobby"), as JSON in envelopes. So
// `buscat sub 'chat.*'` shows the conversation, and `buscat pub chat.lobby
// '{"from":"cli","text":"hi"}'` posts to it.
//
// See README.md in this directory for the HTTP API and the browser test.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
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
	prefix := fs.String("prefix", "app:", "Redis channel `prefix`: room R is channel prefix+\"chat.\"+R")
	name := fs.String("name", "", "`name` of this instance in the messages posted on it (default: the address)")
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

	b := bus.New(&bus.Options{OnError: func(err error) { fmt.Fprintln(stderr, "chat:", err) }})
	defer b.Close(context.Background())

	if ropts != nil {
		rdb := redis.NewClient(ropts)
		defer rdb.Close()
		pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
		err := rdb.Ping(pingCtx).Err()
		cancel()
		if err != nil {
			return fmt.Errorf("cannot reach Redis at %s: %w", ropts.Addr, err)
		}
		br, err := bridge.New(b, rdb, &bridge.Options{
			Prefix: *prefix,
			// Every room, both ways, as JSON: subscribers on every
			// instance get a *Message.
			Routes:  []bridge.Route{{Pattern: topicPrefix + "*", Codec: bridge.JSON[*Message]()}},
			OnError: func(err error) { fmt.Fprintln(stderr, "chat:", err) },
		})
		if err != nil {
			return err
		}
		defer func() {
			closeCtx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
			defer cancel()
			if err := br.Close(closeCtx); err != nil {
				fmt.Fprintln(stderr, "chat:", err)
			}
		}()
		readyCtx, cancel := context.WithTimeout(ctx, connectTimeout)
		err = br.Ready(readyCtx)
		cancel()
		if err != nil {
			return fmt.Errorf("subscribing on Redis: %w", err)
		}
	}

	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	url := "http://" + l.Addr().String()
	if *name == "" {
		*name = l.Addr().String()
	}
	srv := NewServer(b, *name)
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(l) }()
	shared := "alone, no Redis"
	if ropts != nil {
		shared = fmt.Sprintf("rooms shared through Redis %s, channels %schat.*", ropts.Addr, *prefix)
	}
	fmt.Fprintf(stdout, "chat instance %q on %s/?rooms=lobby (%s)\n", *name, url, shared)
	if listening != nil {
		listening(l.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-served:
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
	<-served
	return nil
}

// quietLogger discards go-redis's internal log lines.
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}
