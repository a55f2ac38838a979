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
func sub(ctx context.Context, cfg *config, patterns []string) error {
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
	rdb, err := connect(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil // Ctrl-C while connecting
		}
		return err
	}
	defer rdb.Close()

	b := bus.New(&bus.Options{OnError: func(err error) { fmt.Fprintln(cfg.stderr, "buscat:", oneLine(err)) }})
	defer b.Close(context.Background())
	var mu sync.Mutex // serializes the lines on stdout
	if _, err := b.Subscribe("**", func(_ context.Context, e bus.Event) {
		out, err := formatEvent(e)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			fmt.Fprintln(cfg.stderr, "buscat:", oneLine(err))
			return
		}
		cfg.stdout.Write(out)
	}); err != nil {
		return err
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
			fmt.Fprintln(cfg.stderr, "buscat:", oneLine(err))
		},
	})
	if err != nil {
		return fmt.Errorf("sub: %w", err)
	}
	closeBridge := func() error {
		closeCtx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		return br.Close(closeCtx)
	}
	readyCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	err = br.Ready(readyCtx)
	cancel()
	switch {
	case err != nil && ctx.Err() != nil:
		closeBridge()
		return nil // Ctrl-C before the subscriptions were confirmed
	case err != nil:
		closeBridge()
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
	fmt.Fprintf(cfg.stderr, "buscat: subscribed: %s\n", strings.Join(subs, "; "))

	<-ctx.Done()
	if err := closeBridge(); err != nil && !errors.Is(err, bridge.ErrClosed) {
		return fmt.Errorf("sub: %w", err)
	}
	return nil
}
