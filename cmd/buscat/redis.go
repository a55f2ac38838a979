package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/busline/bus/internal/redisurl"
	"github.com/redis/go-redis/v9"
)

// connectTimeout bounds the first PING and the confirmation of
// subscriptions; closeTimeout bounds the flush of what pub publishes. They
// matter only when Redis is broken: otherwise both take milliseconds.
const (
	connectTimeout = 5 * time.Second
	closeTimeout   = 10 * time.Second
)

// connect returns a client for cfg.url and the TLS flags that has
// answered a PING. A bad URL or TLS flag is a usage error.
func connect(ctx context.Context, cfg *config) (*redis.Client, error) {
	opts, err := clientOptions(cfg)
	if err != nil {
		return nil, err
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

// clientOptions returns the options of cfg.url with the TLS flags
// applied; the errors are usage errors and never hold the password. It
// warns on stderr when the server's certificate is not verified.
func clientOptions(cfg *config) (*redis.Options, error) {
	parse := redisurl.Parse // refuses skip_verify=true
	if cfg.insecure {
		parse = redisurl.ParseInsecure
	}
	opts, err := parse(cfg.url)
	if err != nil {
		return nil, usagef("-url: %v (-insecure accepts skip_verify=true)", err)
	}
	if opts.TLSConfig == nil {
		if cfg.cacert != "" || cfg.cert != "" || cfg.key != "" || cfg.insecure {
			return nil, usagef("-cacert, -cert, -key and -insecure need a rediss:// URL")
		}
		return opts, nil
	}
	if cfg.insecure {
		opts.TLSConfig.InsecureSkipVerify = true
		warn(cfg, "buscat: warning: -insecure: the server's TLS certificate is not verified: anyone on the network path can pose as the server and read what is sent, password included\n")
	}
	if cfg.cacert != "" {
		pem, err := os.ReadFile(cfg.cacert)
		if err != nil {
			return nil, usagef("-cacert: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usagef("-cacert %s: no PEM certificate in it", cfg.cacert)
		}
		opts.TLSConfig.RootCAs = pool
	}
	switch {
	case cfg.cert != "" && cfg.key != "":
		cert, err := tls.LoadX509KeyPair(cfg.cert, cfg.key)
		if err != nil {
			return nil, usagef("-cert, -key: %v", err)
		}
		opts.TLSConfig.Certificates = []tls.Certificate{cert}
	case cfg.cert != "" || cfg.key != "":
		return nil, usagef("-cert and -key go together: give both")
	}
	return opts, nil
}
