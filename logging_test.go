package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// jsonLog is a slog JSON handler writing to a buffer, and the records it
// holds, decoded.
type jsonLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (j *jsonLog) Write(p []byte) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.buf.Write(p)
}

func (j *jsonLog) records(t *testing.T) []map[string]any {
	t.Helper()
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(j.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad JSON record %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func newJSONLog(level slog.Level) (*jsonLog, *slog.Logger) {
	j := &jsonLog{}
	return j, slog.New(slog.NewJSONHandler(j, &slog.HandlerOptions{Level: level}))
}

func TestLogToKinds(t *testing.T) {
	cause := errors.New("db down")
	tests := []struct {
		name  string
		err   error
		level string
		msg   string
		attrs map[string]any
	}{
		{"panic", &DeliveryError{Topic: "a.b", Pattern: "a.*", Err: ErrHandlerPanic, Value: "boom", Stack: []byte("goroutine 1"), Where: "x.go:3"},
			"ERROR", "bus: handler panicked", map[string]any{"topic": "a.b", "pattern": "a.*", "panic": "boom", "stack": "goroutine 1", "where": "x.go:3"}},
		{"handler failed", &DeliveryError{Topic: "a.b", Pattern: "a.*", Err: ErrHandlerFailed, Cause: cause, Where: "x.go:3", Attempt: 1},
			"ERROR", "bus: handler failed", map[string]any{"cause": "db down", "attempt": 1.0, "where": "x.go:3"}},
		{"retrying", &DeliveryError{Topic: "a.b", Pattern: "a.*", Err: ErrHandlerFailed, Cause: cause, Attempt: 2, Detail: retryingDetail + "200ms"},
			"WARN", "bus: handler failed", map[string]any{"attempt": 2.0, "detail": "retrying in 200ms"}},
		{"dead letter", &DeliveryError{Topic: "a.b", Pattern: "a.*", Err: ErrHandlerFailed, Cause: cause, Attempt: 3, Detail: `dead-lettered to "deadletter.a.b" after 3 attempts`},
			"ERROR", "bus: handler failed", map[string]any{"attempt": 3.0, "detail": `dead-lettered to "deadletter.a.b" after 3 attempts`}},
		{"abandoned", &DeliveryError{Topic: "a.b", Pattern: "a.*", Err: ErrRetryAbandoned, Attempt: 1, Detail: "the bus closed after 1 attempt"},
			"ERROR", "bus: retries abandoned", map[string]any{"detail": "the bus closed after 1 attempt"}},
		{"dropped", &DeliveryError{Topic: "a.b", Pattern: "a.*", Err: ErrDropped, Count: 7, Where: "y.go:9", Detail: "policy DropNewest, queue capacity 1"},
			"ERROR", "bus: events dropped", map[string]any{"count": 7.0, "where": "y.go:9"}},
		{"slow", &DeliveryError{Topic: "a.b", Pattern: "a.*", Err: ErrSlowSubscriber, Where: "y.go:9", Detail: "queue of 1 full for 1s"},
			"WARN", "bus: slow subscriber", map[string]any{"where": "y.go:9", "detail": "queue of 1 full for 1s"}},
		{"payload type", &DeliveryError{Topic: "a.b", Pattern: "a.*", Err: ErrPayloadType, Detail: "want int, got string"},
			"ERROR", "bus: payload type mismatch", map[string]any{"detail": "want int, got string"}},
		{"wrapped sentinel", fmt.Errorf("closing: %w", errorf(ErrRetryAbandoned, "close")),
			"ERROR", "bus: retries abandoned", nil},
		{"unknown", errors.New("something else"), "ERROR", "bus: error", map[string]any{"error": "something else"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j, l := newJSONLog(slog.LevelDebug)
			LogTo(l)(tc.err)
			recs := j.records(t)
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1", len(recs))
			}
			r := recs[0]
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

// TestLogToBus runs a real bus with LogTo and checks the records of a
// panic, drops, a slow subscriber and a retried event dead-lettered, and
// that a level above them records nothing.
func TestLogToBus(t *testing.T) {
	j, l := newJSONLog(slog.LevelDebug)
	b := New(&Options{OnError: LogTo(l), SlowAfter: 10 * time.Millisecond, DropReportInterval: time.Hour})
	if _, err := b.Subscribe("panic", func(context.Context, Event) { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer func() {
		close(release) // before Close, which waits for the slow handler
		_ = b.Close(ctx)
	}()
	started := make(chan struct{}, 8)
	if _, err := b.SubscribeWith("slow", func(context.Context, Event) { started <- struct{}{}; <-release }, &SubscribeOptions{Queue: 1, Overflow: DropNewest}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SubscribeFuncWith("fail", func(context.Context, Event) error { return errors.New("nope") },
		&SubscribeOptions{Queue: 4, Retry: &RetryPolicy{Attempts: 2, Initial: time.Millisecond}}); err != nil {
		t.Fatal(err)
	}
	_ = b.Publish(ctx, "panic", 1)
	_ = b.Publish(ctx, "slow", 1)
	<-started // the handler holds the worker: the queue's one place is free
	for range 3 {
		_ = b.Publish(ctx, "slow", 1) // one queued, two dropped (the first reported at once)
	}
	time.Sleep(30 * time.Millisecond)
	_ = b.Publish(ctx, "slow", 1) // still full after SlowAfter
	_ = b.Publish(ctx, "fail", 1)
	want := map[string]string{
		"bus: handler panicked": "ERROR",
		"bus: events dropped":   "ERROR",
		"bus: slow subscriber":  "WARN",
		"bus: handler failed":   "", // a WARN (retrying) then an ERROR (dead letter)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		seen := map[string][]string{}
		for _, r := range j.records(t) {
			msg, _ := r["msg"].(string)
			seen[msg] = append(seen[msg], r["level"].(string))
		}
		ok := len(seen["bus: handler failed"]) >= 2
		for msg, level := range want {
			if len(seen[msg]) == 0 || level != "" && seen[msg][0] != level {
				ok = false
			}
		}
		if ok {
			if got := seen["bus: handler failed"]; got[0] != "WARN" || got[1] != "ERROR" {
				t.Errorf("handler failed records at %v, want WARN (retrying) then ERROR (dead letter)", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records %v, want %v", seen, want)
		}
		time.Sleep(5 * time.Millisecond)
	}

	j2, quiet := newJSONLog(slog.LevelError + 1)
	LogTo(quiet)(&DeliveryError{Err: ErrDropped, Count: 1})
	if n := len(j2.records(t)); n != 0 {
		t.Errorf("%d records above the logger's level, want none", n)
	}
}
