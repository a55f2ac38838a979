package bridge

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	bus "github.com/busline/bus"
	"github.com/redis/go-redis/v9"
)

func TestOptionsValidation(t *testing.T) {
	b := bus.New(nil)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer rdb.Close()
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"bad pattern", Options{Routes: []Route{{Pattern: "a.[b"}}}},
		{"empty pattern", Options{Routes: []Route{{Pattern: ""}}}},
		{"bad direction", Options{Routes: []Route{{Pattern: "a", Direction: 7}}}},
		{"long instance ID", Options{InstanceID: strings.Repeat("x", 256)}},
		{"negative size", Options{OutboxMaxEvents: -1}},
		{"bad outbox policy", Options{OutboxPolicy: 9}},
	} {
		// New fails before it uses the client: nothing is dialled.
		if br, err := New(b, rdb, &c.opts); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("%s: New returned %v, want ErrInvalidOptions", c.name, err)
			if br != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = br.Close(ctx)
				cancel()
			}
		}
	}
	if _, err := New(b, nil, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("nil client: %v", err)
	}
	cfg, err := newConfig(nil)
	if err != nil || len(cfg.InstanceID) != 16 || cfg.OutboxMaxEvents != 100000 || cfg.OutboxPolicy != OutboxDropOldest {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
}
