package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
	"github.com/redis/go-redis/v9"
)

// pub publishes one event to topic, or one per line with -lines: the
// payload is args[1], or stdin when it is omitted. It goes through a bus and
// a bridge with one export route: raw by default, so that the message is
// the payload's bytes exactly, as redis-cli PUBLISH sends them; enveloped
// with -envelope, so that the event is exactly what a service's bridge
// would send, with a source ID and a sequence number. Once Redis has taken
// every event, it prints each event's number of receivers, as redis-cli
// PUBLISH does.
func pub(ctx context.Context, cfg *config, args []string) (err error) {
	switch {
	case len(args) == 0:
		return usagef("pub: no topic: want buscat pub TOPIC [PAYLOAD]")
	case len(args) > 2:
		return usagef("pub: %d arguments: want buscat pub TOPIC [PAYLOAD] (quote a payload with spaces)", len(args))
	}
	topic := args[0]
	if err := bus.ValidateTopic(topic, bus.DefaultSeparator); err != nil {
		return usagef("pub: %v", err)
	}
	switch {
	case cfg.envelope && cfg.raw:
		return usagef("pub: -raw and -envelope contradict each other: raw, the default, sends the payload's bytes alone; -envelope wraps them in a Busline envelope")
	case cfg.typeSet && !cfg.envelope:
		// Raw messages carry no content type: an ignored -type would be
		// a silent surprise, and so would an implied -envelope, which
		// plain Redis clients see as binary bytes.
		return usagef("pub: -type %s needs -envelope: the content type travels in the envelope, and raw messages (the default) have none", cfg.typ)
	}
	switch cfg.typ {
	case "auto", "text", "json", "bytes":
	default:
		return usagef("pub: bad -type %q: want auto, text, json or bytes", cfg.typ)
	}
	warnPrefixed(cfg, "topic", topic)
	var payload []byte
	if len(args) == 2 {
		payload = []byte(args[1])
	} else {
		var err error
		if payload, err = io.ReadAll(cfg.stdin); err != nil {
			return fmt.Errorf("pub: reading stdin: %w", err)
		}
		// More often a forgotten payload or an empty file than an intent;
		// an intended empty event has an empty argument.
		if len(payload) == 0 {
			return fmt.Errorf("pub: stdin is empty: nothing to publish (an empty event needs an empty PAYLOAD argument: buscat pub %s '')", topic)
		}
	}
	var msgs []message
	for _, data := range split(payload, cfg.lines) {
		m, err := newMessage(data, cfg)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	if len(msgs) == 0 {
		return errors.New("pub: -lines: the payload has no line: nothing to publish")
	}

	rdb, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeWith(&err, "the Redis client", rdb.Close)
	var replies receivers
	rdb.AddHook(&replies)
	b := bus.New(nil)
	defer closeWith(&err, "the bus", func() error { return b.Close(context.Background()) })
	var (
		mu       sync.Mutex // protects firstErr
		firstErr error      // the first thing the bridge reported
	)
	br, err := bridge.New(b, rdb, &bridge.Options{
		Prefix: cfg.prefix,
		Routes: []bridge.Route{{Pattern: topic, Direction: bridge.Export, Raw: !cfg.envelope, Codec: wireCodec{}}},
		OnError: func(err error) {
			mu.Lock()
			if firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		},
		// Redis answered a PING a moment ago: a failure now is not worth
		// waiting for.
		ReconnectMax: connectTimeout,
		ResumeDelay:  -1,
		// One PUBLISH per event, never a batch of them, so that each
		// event has its own reply: its number of receivers.
		CoalesceBytes: -1,
	})
	if err != nil {
		return fmt.Errorf("pub: %w", err)
	}
	var pubErr error
	for _, m := range msgs {
		if pubErr = b.Publish(ctx, topic, m); pubErr != nil {
			break
		}
	}
	// Close sends what the bridge's outbox holds: the events are on Redis
	// when it returns nil.
	closeCtx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	closeErr := br.Close(closeCtx)
	if pubErr != nil {
		return fmt.Errorf("pub: %w", pubErr)
	}
	stats := br.Stats()
	if stats.Exported != uint64(len(msgs)) {
		mu.Lock()
		cause := firstErr
		mu.Unlock()
		if cause == nil {
			cause = closeErr
		}
		return fmt.Errorf("pub: Redis took %d of %s: %v", stats.Exported, plural(len(msgs), "event"), cause)
	}
	if closeErr != nil {
		return fmt.Errorf("pub: %w", closeErr)
	}
	counts := replies.counts()
	if len(counts) != len(msgs) || stats.ExportMessages != uint64(len(msgs)) {
		// Not seen in practice: the bridge sent the events in other than
		// one PUBLISH each, so the replies do not say who got which.
		warn(cfg, "buscat: pub: Redis took %s in %s: receiver counts unknown\n",
			plural(len(msgs), "event"), plural(len(counts), "PUBLISH command"))
		return nil
	}
	for _, n := range counts {
		if _, err := fmt.Fprintf(cfg.stdout, "(integer) %d\n", n); err != nil {
			return fmt.Errorf("pub: writing to stdout: %w", err)
		}
	}
	return nil
}

// receivers is a go-redis hook that records the replies of the PUBLISH
// commands sent through a client: each is the number of clients that
// received the message. The bridge does not report them; the hook on pub's
// own client sees them as they come back, in the order of the commands,
// which for one channel is the order of the events. Its methods are safe
// for concurrent use.
type receivers struct {
	mu    sync.Mutex // protects reply
	reply []int64
}

var _ redis.Hook = (*receivers)(nil)

func (r *receivers) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *receivers) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		r.record(cmd)
		return err
	}
}

func (r *receivers) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			r.record(cmd)
		}
		return err
	}
}

// record keeps the reply of cmd if it is an answered PUBLISH.
func (r *receivers) record(cmd redis.Cmder) {
	c, ok := cmd.(*redis.IntCmd)
	if !ok || c.Name() != "publish" || c.Err() != nil {
		return
	}
	r.mu.Lock()
	r.reply = append(r.reply, c.Val())
	r.mu.Unlock()
}

// counts returns the replies recorded so far.
func (r *receivers) counts() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reply)
}

// split returns payload as one message, or with lines as its lines without
// their "\n" or "\r\n". A last line without "\n" counts; an empty payload
// is no line.
func split(payload []byte, lines bool) [][]byte {
	if !lines {
		return [][]byte{payload}
	}
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(payload))
	sc.Buffer(nil, len(payload)+1)
	for sc.Scan() {
		out = append(out, bytes.Clone(sc.Bytes()))
	}
	return out
}

// newMessage returns data with the content type -type asks for when it is
// to be enveloped; auto means json for a JSON object or array, text for
// printable UTF-8 (see printable), bytes otherwise. A raw message, the
// default, has none: raw routes send bytes only.
func newMessage(data []byte, cfg *config) (message, error) {
	m := message{data: data}
	if !cfg.envelope {
		return m, nil
	}
	typ := cfg.typ
	if typ == "auto" {
		switch t := bytes.TrimSpace(data); {
		case len(t) > 0 && (t[0] == '{' || t[0] == '[') && json.Valid(t):
			typ = "json"
		case printable(data):
			typ = "text"
		default:
			typ = "bytes"
		}
	}
	switch typ {
	case "json":
		if !json.Valid(data) {
			return m, usagef("pub: -type json: the payload is not valid JSON")
		}
		m.contentType = bridge.ContentTypeJSON
	case "text":
		m.contentType = bridge.ContentTypeText
	default:
		m.contentType = bridge.ContentTypeBytes
	}
	return m, nil
}
