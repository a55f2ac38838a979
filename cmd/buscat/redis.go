package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// connectTimeout bounds the first PING and the confirmation of
// subscriptions; closeTimeout bounds the flush of what pub publishes. They
// matter only when Redis is broken: otherwise both take milliseconds.
const (
	connectTimeout = 5 * time.Second
	closeTimeout   = 10 * time.Second
)

// connect returns a client for cfg.url that has answered a PING. A URL
// redis.ParseURL rejects is a usage error.
func connect(ctx context.Context, cfg *config) (*redis.Client, error) {
	opts, err := redis.ParseURL(cfg.url)
	if err != nil {
		return nil, usagef("bad -url %q: %v", cfg.url, err)
	}
	rdb := redis.NewClient(opts)
	pingCtx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	// go-redis gives up a command when its context's deadline passes, not
	// when the context is canceled: the PING runs on its own goroutine so
	// that Ctrl-C does not wait for connectTimeout. After Ctrl-C the
	// goroutine is left to end with the process, which exits at once.
	pong := make(chan error, 1)
	go func() { pong <- rdb.Ping(pingCtx).Err() }()
	select {
	case err := <-pong:
		if err != nil {
			err = fmt.Errorf("cannot reach Redis at %s: %w", opts.Addr, err)
			closeWith(&err, "the Redis client", rdb.Close)
			return nil, err
		}
		return rdb, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("connecting to Redis at %s: %w", opts.Addr, ctx.Err())
	}
}
