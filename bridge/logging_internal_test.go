package bridge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	bus "github.com/busline/bus"
)

func TestLogToKinds(t *testing.T) {
	refused := errors.New("dial tcp 127.0.0.1:6380: connect: connection refused")
	tests := []struct {
		name  string
		err   error
		level string
		msg   string
		attrs map[string]any
	}{
		{"gap", &GapError{Source: "a", Channel: "app:x", Expected: 3, Got: 7}, "ERROR", "bridge: sequence gap",
			map[string]any{"source": "a", "channel": "app:x", "missing": 4.0, "expected": 3.0, "got": 7.0}},
		{"outbox full", &DropError{Err: ErrOutboxFull, Count: 12}, "ERROR", "bridge: outbox full", map[string]any{"count": 12.0, "stat": "OutboxOverflow"}},
		{"expired", &DropError{Err: ErrExpired, Count: 2}, "ERROR", "bridge: outbox events expired", map[string]any{"count": 2.0, "stat": "OutboxExpired"}},
		{"import full", &DropError{Err: ErrImportFull, Count: 1}, "ERROR", "bridge: import queue full", map[string]any{"count": 1.0, "stat": "ImportDropped"}},
		{"signature count", &DropError{Err: ErrSignature, Count: 5}, "ERROR", "bridge: bad signature", map[string]any{"count": 5.0, "stat": "SignatureRejected"}},
		{"signature detail", fmt.Errorf("%w: unsigned message without envelope on %q", ErrSignature, "app:x"), "ERROR", "bridge: bad signature", nil},
		{"too large", fmt.Errorf("%w: 2000000 bytes on %q", ErrTooLarge, "app:x"), "ERROR", "bridge: message too large", nil},
		{"malformed", fmt.Errorf("%w, on %q", ErrMalformed, "app:x"), "ERROR", "bridge: malformed envelope", nil},
		{"decode", chain(ErrDecode, `topic "x" from "a"`, errors.New("bad json")), "ERROR", "bridge: decode", nil},
		{"encode", chain(ErrEncode, `topic "x"`, errors.New("unsupported type")), "ERROR", "bridge: encode", nil},
		{"publish refused", fmt.Errorf("%w: %q: %w", ErrPublish, "app:x", errors.New("NOPERM")), "ERROR", "bridge: publish refused", nil},
		{"trimmed", &DropError{Err: ErrTrimmed, Count: 3}, "ERROR", "bridge: pending stream entries trimmed", map[string]any{"stat": "StreamTrimmed"}},
		{"subscribe refused node", fmt.Errorf("%w: node %s: %w", ErrSubscribe, "10.0.0.1:7000", errors.New("NOPERM")), "ERROR", "bridge: subscribe refused",
			map[string]any{"node": "10.0.0.1:7000"}},
		{"connect", &connectError{addr: "127.0.0.1:6380", err: refused}, "WARN", "bridge: cannot connect to redis", map[string]any{"node": "127.0.0.1:6380"}},
		{"still cannot connect", &repeatedError{err: &connectError{addr: "127.0.0.1:6380", err: refused}, attempts: 12, span: 31 * time.Second},
			"WARN", "bridge: cannot connect to redis", map[string]any{"node": "127.0.0.1:6380", "attempts": 12.0}},
		{"shard lost", chain(ErrDisconnected, "node 10.0.0.2:7001", errors.New("EOF")), "WARN", "bridge: pub/sub connection lost", map[string]any{"node": "10.0.0.2:7001"}},
		{"lost", fmt.Errorf("%w: %w", ErrDisconnected, errPongTimeout), "WARN", "bridge: pub/sub connection lost", nil},
		{"redis down", fmt.Errorf("%w: %w", ErrRedisDown, refused), "WARN", "bridge: redis unreachable, exports held in outbox", nil},
		{"possible gap", ErrPossibleGap, "WARN", "bridge: possible gap after reconnect", nil},
		{"stream read", fmt.Errorf("%w: XREAD %q: %w", ErrStreamRead, "app:stream:x", refused), "WARN", ErrStreamRead.Error(), nil},
		{"checkpoint", fmt.Errorf("%w: save: %w", ErrCheckpoint, refused), "WARN", ErrCheckpoint.Error(), nil},
		{"ack", fmt.Errorf("%w: %w", ErrAck, refused), "WARN", ErrAck.Error(), nil},
		{"widened", fmt.Errorf("%w: route 0", ErrPatternWidened), "INFO", "bridge: pattern widened for Redis", nil},
		{"not sent", fmt.Errorf("%w: 3 exports dropped: %w", ErrNotSent, errors.New("context deadline exceeded")), "ERROR", ErrNotSent.Error(), nil},
		{"bus delivery error", &bus.DeliveryError{Topic: "a", Pattern: "a", Err: bus.ErrSlowSubscriber}, "WARN", "bus: slow subscriber", map[string]any{"topic": "a"}},
		{"bus error wrapped", busError(`bridge: publish "a" on the bus`, fmt.Errorf("bus: publish: %w", bus.ErrClosed)), "ERROR", "bridge: error", nil},
		{"unknown", errors.New("other"), "ERROR", "bridge: error", map[string]any{"error": "other"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			LogTo(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))(tc.err)
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if len(lines) != 1 {
				t.Fatalf("%d records, want 1: %q", len(lines), buf.String())
			}
			var r map[string]any
			if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
				t.Fatal(err)
			}
			if r["level"] != tc.level || r["msg"] != tc.msg || r["error"] != tc.err.Error() {
				t.Errorf("level %v msg %q error %q, want %s %q %q", r["level"], r["msg"], r["error"], tc.level, tc.msg, tc.err.Error())
			}
			for k, v := range tc.attrs {
				if r[k] != v {
					t.Errorf("%s = %#v, want %#v", k, r[k], v)
				}
			}
		})
	}
}
