package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/busline/bus"
	"github.com/busline/bus/bridge"
)

// pub publishes one event to topic, or one per line with -lines: the
// payload is args[1], or stdin when it is omitted. It goes through a bus and
// a bridge with one export route, so an enveloped event is exactly what a
// service's bridge would send, with a source ID and a sequence number.
func pub(ctx context.Context, cfg *config, args []string) error {
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
	switch cfg.typ {
	case "auto", "text", "json", "bytes":
	default:
		return usagef("pub: bad -type %q: want auto, text, json or bytes", cfg.typ)
	}
	var payload []byte
	if len(args) == 2 {
		payload = []byte(args[1])
	} else {
		var err error
		if payload, err = io.ReadAll(cfg.stdin); err != nil {
			return fmt.Errorf("pub: reading stdin: %w", err)
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
		return nil // -lines and no line
	}

	rdb, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer rdb.Close()
	b := bus.New(nil)
	defer b.Close(context.Background())
	var (
		mu       sync.Mutex // protects firstErr
		firstErr error      // the first thing the bridge reported
	)
	br, err := bridge.New(b, rdb, &bridge.Options{
		Prefix: cfg.prefix,
		Routes: []bridge.Route{{Pattern: topic, Direction: bridge.Export, Raw: cfg.raw, Codec: wireCodec{}}},
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
	if sent := br.Stats().Exported; sent != uint64(len(msgs)) {
		mu.Lock()
		cause := firstErr
		mu.Unlock()
		if cause == nil {
			cause = closeErr
		}
		return fmt.Errorf("pub: Redis took %d of %d events: %v", sent, len(msgs), cause)
	}
	return nil
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

// newMessage returns data with the content type -type asks for; auto means
// json for a JSON object or array, text for printable UTF-8 (see
// printable), bytes otherwise. A raw message has none: raw routes send bytes
// only.
func newMessage(data []byte, cfg *config) (message, error) {
	m := message{data: data}
	if cfg.raw {
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
