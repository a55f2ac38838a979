package main

// buscat dead: the dead-letter streams of durable routes.
//
//	buscat [flags] dead list NAME          print the dead letters of the route whose stream is NAME
//	buscat [flags] dead tail NAME          print its dead letters as they come, until Ctrl-C
//	buscat [flags] dead replay NAME [ID...] add them (or those IDs) again to the stream they came from
//
// NAME is the route's stream name, Route.Stream or its Pattern: the
// dead-letter stream is the key PREFIX + "dead:" + NAME
// (bridge.DeadKey). list and tail print one JSON object per dead letter:
//
//	{"id":"1700000000000-0","topic":"emails.send","error":"smtp: 554","deliveries":5,"attempts":3,"consumer":"mailer-1","group":"mailers","stream":"app:stream:emails.send","entry":"1699999999000-0","time":"2026-11-25T13:40:00.123456789Z","encoding":"text","payload":"hi"}
//
// The payload is the entry's data field, printed as sub prints a payload
// without a content type: an enveloped event (the default of routes) is
// binary, so base64. replay adds each dead letter's own fields (topic,
// data, source: not those of bridge.DeadFieldPrefix) to its stream
// (its "stream" above) as a new entry and deletes it from the dead-letter
// stream, both in one MULTI/EXEC, and prints "ID -> STREAM NEWID". A
// Group route then handles it as a new entry; the importers of a Stream
// route drop an enveloped replay as a duplicate of an event they saw in
// their current run.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/busline/bus/bridge"
	"github.com/redis/go-redis/v9"
)

// deadLine is one dead letter as list and tail print it.
type deadLine struct {
	ID         string            `json:"id"`
	Topic      string            `json:"topic"`
	Error      string            `json:"error"`
	Deliveries int64             `json:"deliveries"`
	Attempts   int64             `json:"attempts"`
	Consumer   string            `json:"consumer"`
	Group      string            `json:"group,omitempty"`
	Stream     string            `json:"stream"`
	Entry      string            `json:"entry"`
	Time       string            `json:"time"`
	Source     string            `json:"source,omitempty"`
	Fields     map[string]string `json:"fields,omitempty"` // a foreign writer's other fields
	Encoding   string            `json:"encoding"`
	Payload    json.RawMessage   `json:"payload"`
}

// tailBlock is how long one XREAD of tail waits: Ctrl-C is seen between
// two reads.
const tailBlock = 500 * time.Millisecond

// dead runs the dead subcommands.
func dead(ctx context.Context, cfg *config, args []string) (err error) {
	const want = "want buscat dead list|tail|replay NAME"
	if len(args) < 2 {
		return usagef("dead: %s", want)
	}
	op, name, ids := args[0], args[1], args[2:]
	switch {
	case op != "list" && op != "tail" && op != "replay":
		return usagef("dead: unknown subcommand %q: %s", op, want)
	case name == "":
		return usagef("dead: empty stream name")
	case len(ids) > 0 && op != "replay":
		return usagef("dead %s: too many arguments: %s", op, want)
	}
	warnPrefixed(cfg, "stream name", name)
	rdb, err := connect(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer closeWith(&err, "the Redis client", rdb.Close)
	key := bridge.DeadKey(cfg.prefix, name)
	switch op {
	case "list":
		msgs, err := rdb.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			return fmt.Errorf("dead list: XRANGE %q: %w", key, err)
		}
		return printDead(cfg, msgs)
	case "tail":
		return tailDead(ctx, cfg, rdb, key)
	}
	return replayDead(ctx, cfg, rdb, key, ids)
}

// printDead prints msgs as JSON lines.
func printDead(cfg *config, msgs []redis.XMessage) error {
	for _, m := range msgs {
		out, err := json.Marshal(deadLineOf(m))
		if err != nil {
			return fmt.Errorf("dead letter %s: %w", m.ID, err)
		}
		if _, err := cfg.stdout.Write(append(out, '\n')); err != nil {
			return fmt.Errorf("writing to stdout: %w", err)
		}
	}
	return nil
}

// deadLineOf returns the line of the dead letter m.
func deadLineOf(m redis.XMessage) deadLine {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	num := func(k string) int64 { n, _ := strconv.ParseInt(str(k), 10, 64); return n }
	l := deadLine{
		ID: m.ID, Topic: str("topic"), Error: str(bridge.FieldDeadError),
		Deliveries: num(bridge.FieldDeadDeliveries), Attempts: num(bridge.FieldDeadAttempts),
		Consumer: str(bridge.FieldDeadConsumer), Group: str(bridge.FieldDeadGroup),
		Stream: str(bridge.FieldDeadStream), Entry: str(bridge.FieldDeadID), Time: str(bridge.FieldDeadTime),
		Source: str("source"),
	}
	for k, v := range m.Values {
		if k == "topic" || k == "data" || k == "source" || strings.HasPrefix(k, bridge.DeadFieldPrefix) {
			continue
		}
		if l.Fields == nil {
			l.Fields = map[string]string{}
		}
		l.Fields[k] = fmt.Sprint(v)
	}
	l.Encoding, l.Payload = encodePayload([]byte(str("data")), "")
	return l
}

// tailDead prints the dead letters added to key from now on, until ctx
// ends.
func tailDead(ctx context.Context, cfg *config, rdb *redis.Client, key string) error {
	pos := "0-0"
	last, err := rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
	if err != nil {
		return fmt.Errorf("dead tail: XREVRANGE %q: %w", key, err)
	}
	if len(last) > 0 {
		pos = last[0].ID
	}
	warn(cfg, "buscat: tailing %s\n", key)
	for ctx.Err() == nil {
		res, err := rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, pos}, Block: tailBlock, Count: 100}).Result()
		switch {
		case errors.Is(err, redis.Nil):
			continue
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("dead tail: XREAD %q: %w", key, err)
		}
		for _, s := range res {
			if err := printDead(cfg, s.Messages); err != nil {
				return err
			}
			if n := len(s.Messages); n > 0 {
				pos = s.Messages[n-1].ID
			}
		}
	}
	return nil // Ctrl-C or SIGTERM: the normal way to stop
}

// replayDead adds the dead letters of key (those of ids, or all) to the
// streams they came from, and deletes them from key.
func replayDead(ctx context.Context, cfg *config, rdb *redis.Client, key string, ids []string) error {
	var msgs []redis.XMessage
	if len(ids) == 0 {
		var err error
		if msgs, err = rdb.XRange(ctx, key, "-", "+").Result(); err != nil {
			return fmt.Errorf("dead replay: XRANGE %q: %w", key, err)
		}
	}
	for _, id := range ids {
		m, err := rdb.XRange(ctx, key, id, id).Result()
		if err != nil {
			return fmt.Errorf("dead replay: XRANGE %q %s: %w", key, id, err)
		}
		if len(m) == 0 {
			return fmt.Errorf("dead replay: no dead letter %s in %q", id, key)
		}
		msgs = append(msgs, m[0])
	}
	for _, m := range msgs {
		target, _ := m.Values[bridge.FieldDeadStream].(string)
		if target == "" {
			return fmt.Errorf("dead replay: dead letter %s of %q has no %q field", m.ID, key, bridge.FieldDeadStream)
		}
		var add *redis.StringCmd
		if _, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			add = p.XAdd(ctx, &redis.XAddArgs{Stream: target, Values: replayFields(m)})
			p.XDel(ctx, key, m.ID)
			return nil
		}); err != nil {
			return fmt.Errorf("dead replay: %s to %q: %w", m.ID, target, err)
		}
		if _, err := fmt.Fprintf(cfg.stdout, "%s -> %s %s\n", m.ID, target, add.Val()); err != nil {
			return fmt.Errorf("writing to stdout: %w", err)
		}
	}
	return nil
}

// replayFields returns the fields of the entry that became the dead
// letter m: topic, data and source first, as the bridge writes them.
func replayFields(m redis.XMessage) []any {
	var keys []string
	for k := range m.Values {
		if !strings.HasPrefix(k, bridge.DeadFieldPrefix) {
			keys = append(keys, k)
		}
	}
	rank := func(k string) int {
		if i := slices.Index([]string{"topic", "data", "source"}, k); i >= 0 {
			return i
		}
		return 3
	}
	slices.SortFunc(keys, func(a, b string) int {
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra - rb
		}
		return strings.Compare(a, b)
	})
	vals := make([]any, 0, 2*len(keys))
	for _, k := range keys {
		vals = append(vals, k, m.Values[k])
	}
	return vals
}
