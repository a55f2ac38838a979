package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
)

// sub prints the events of the bridged topics matching patterns until ctx
// ends.
//
// It does not decode envelopes itself: a bus and a bridge with one import
// route per pattern do, exactly as in the services that use the topics, and
// one local subscriber prints what the bridge imports, with the source,
// sequence number and time the bridge puts in bus.Meta.
func sub(ctx context.Context, cfg *config, patterns []string) (err error) {
	if len(patterns) == 0 {
		return usagef("sub: no pattern: want buscat sub PATTERN...")
	}
	routes := make([]bridge.Route, len(patterns))
	for i, p := range patterns {
		if _, err := bus.CompilePattern(p, bus.DefaultSeparator); err != nil {
			return usagef("sub: %v", err)
		}
		routes[i] = bridge.Route{Pattern: p, Direction: bridge.Import, Raw: cfg.raw, Codec: wireCodec{}}
	}
	for _, p := range patterns {
		warnPrefixed(cfg, "pattern", p)
	}
	rdb, err := connect(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while connecting
		}
		return err
	}
	defer closeWith(&err, "the Redis client", rdb.Close)

	// A line that cannot be printed (stdout gone, a full disk) ends sub
	// with that error: fail records it and stops the wait below.
	subCtx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	b := bus.New(&bus.Options{OnError: func(err error) { warn(cfg, "buscat: %s\n", oneLine(err)) }})
	defer closeWith(&err, "the bus", func() error { return b.Close(context.Background()) })
	var mu sync.Mutex // serializes the lines on stdout
	if _, err := b.Subscribe("**", func(_ context.Context, e bus.Event) {
		out, err := formatEvent(e)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			warn(cfg, "buscat: %s\n", oneLine(err))
			return
		}
		if _, err := cfg.stdout.Write(out); err != nil {
			fail(fmt.Errorf("sub: writing to stdout: %w", err))
		}
	}); err != nil {
		return fmt.Errorf("sub: %w", err)
	}

	var ready atomic.Bool
	br, err := bridge.New(b, rdb, &bridge.Options{
		Prefix: cfg.prefix,
		Routes: routes,
		// One worker prints the events of every topic in the order they
		// arrive, as redis-cli would.
		ImportWorkers: 1,
		// Lost connections, gaps, drops: buscat keeps going, the user
		// should know. A refused subscription before Ready is what Ready
		// returns: said once, by run.
		OnError: func(err error) {
			if !ready.Load() && errors.Is(err, bridge.ErrSubscribe) {
				return
			}
			warn(cfg, "buscat: %s\n", oneLine(err))
		},
	})
	if err != nil {
		return fmt.Errorf("sub: %w", err)
	}
	// The bridge closes before the bus (deferred later, runs first).
	defer closeWith(&err, "the bridge", func() error {
		closeCtx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		return br.Close(closeCtx)
	})
	readyCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = br.Ready(readyCtx)
	cancel()
	switch {
	case err != nil && ctx.Err() != nil:
		return nil // Ctrl-C before the subscriptions were confirmed
	case err != nil:
		return fmt.Errorf("sub: %w", err)
	}
	ready.Store(true)
	channels, globs := br.RedisSubscriptions()
	var subs []string
	if len(channels) > 0 {
		subs = append(subs, "SUBSCRIBE "+strings.Join(channels, " "))
	}
	if len(globs) > 0 {
		subs = append(subs, "PSUBSCRIBE "+strings.Join(globs, " "))
	}
	warn(cfg, "buscat: subscribed: %s\n", strings.Join(subs, "; "))

	<-subCtx.Done()
	if ctx.Err() != nil {
		return nil // Ctrl-C or SIGTERM: the normal way to stop
	}
	return context.Cause(subCtx)
}
