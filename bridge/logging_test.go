package bridge_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/busline/bus/bridge"
	"github.com/busline/bus/redistest"
)

// syncBuffer is a bytes.Buffer safe for the bridge's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogToOutage runs a bridge logging with LogTo through an outage of
// Redis: the lost connection and the failed reconnects are warnings that
// name the node, and the possible gap after the reconnect is one too.
func TestLogToOutage(t *testing.T) {
	srv := redistest.Start(t, nil)
	var buf syncBuffer
	o := testOptions(nil, bridge.Route{Pattern: "chat.*"})
	o.OnError = bridge.LogTo(slog.New(slog.NewJSONHandler(&buf, nil)))
	newInstance(t, srv.Client(t), o)
	srv.Kill()
	records := func() map[string]map[string]any {
		out := map[string]map[string]any{}
		for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			var r map[string]any
			if json.Unmarshal([]byte(line), &r) == nil {
				out[r["msg"].(string)] = r
			}
		}
		return out
	}
	eventually(t, func() bool { return records()["bridge: cannot connect to redis"] != nil }, "a connect failure logged")
	srv.Restart()
	eventually(t, func() bool { return records()["bridge: possible gap after reconnect"] != nil }, "the reconnect logged")
	recs := records()
	if r := recs["bridge: cannot connect to redis"]; r["level"] != "WARN" || r["node"] != srv.Addr() {
		t.Errorf("connect failure: %v, want WARN with node %s", r, srv.Addr())
	}
	if r := recs["bridge: possible gap after reconnect"]; r["level"] != "WARN" {
		t.Errorf("possible gap: %v, want WARN", r)
	}
}

// LogTo logs each error the bridge reports as one structured record; the
// time is left out here.
func ExampleLogTo() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	onError := bridge.LogTo(logger) // for bridge.Options.OnError
	onError(&bridge.GapError{Source: "instance-b", Channel: "app:orders.created", Expected: 41, Got: 44})
	onError(&bridge.DropError{Err: bridge.ErrOutboxFull, Count: 120})
	// Output:
	// level=ERROR msg="bridge: sequence gap" error="bridge: sequence gap from \"instance-b\" on \"app:orders.created\": 3 events missing (expected 41, got 44)" source=instance-b channel=app:orders.created missing=3 expected=41 got=44
	// level=ERROR msg="bridge: outbox full" error="bridge: outbox full: 120 events dropped (see Stats.OutboxOverflow)" count=120 stat=OutboxOverflow
}
