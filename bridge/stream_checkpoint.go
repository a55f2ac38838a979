package bridge

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Checkpointer keeps, for each Stream import route, the ID of the last
// stream entry the bridge handled, so that a restarted instance resumes
// after it. The bridge calls Load once when a route starts, and Save after
// each batch of entries it has published on the local bus, and when it
// closes. A route's calls come from one goroutine; calls for different
// streams may be concurrent, so implementations must be safe for
// concurrent use.
//
// Delivery is at least once: if the process dies after publishing entries
// locally and before Save returns, the next run publishes them again.
// Handlers that must not see an event twice can key on the envelope's
// (Meta.Source, Event.Topic, Meta.Seq).
type Checkpointer interface {
	// Load returns the ID of the last entry handled on stream (its Redis
	// key), or "" when there is none: the route then starts with the
	// entries added after it started, and saves that position at once.
	// Returning "0" makes a new route read the stream from its start.
	// An error is reported (wrapping ErrCheckpoint) and Load retried.
	Load(ctx context.Context, stream string) (id string, err error)

	// Save records id as the last entry handled on stream. An error is
	// reported (wrapping ErrCheckpoint); the next Save carries a later
	// ID.
	Save(ctx context.Context, stream, id string) error
}

// RedisCheckpointer returns a Checkpointer that keeps the positions in the
// Redis hash key, one field per stream key (HGET and HSET). It is the
// default, with key Options.Prefix + "checkpoint:" + Options.InstanceID.
// It is safe for concurrent use; rdb must outlive it.
func RedisCheckpointer(rdb redis.UniversalClient, key string) Checkpointer {
	return redisCheckpointer{rdb: rdb, key: key}
}

type redisCheckpointer struct {
	rdb redis.UniversalClient
	key string
}

var _ Checkpointer = redisCheckpointer{}

func (c redisCheckpointer) Load(ctx context.Context, stream string) (string, error) {
	id, err := c.rdb.HGet(ctx, c.key, stream).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("HGET %s %s: %w", c.key, stream, err)
	}
	return id, nil
}

func (c redisCheckpointer) Save(ctx context.Context, stream, id string) error {
	if err := c.rdb.HSet(ctx, c.key, stream, id).Err(); err != nil {
		return fmt.Errorf("HSET %s %s: %w", c.key, stream, err)
	}
	return nil
}
