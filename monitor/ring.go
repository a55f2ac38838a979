package monitor

import (
	"context"
	"log/slog"
	"sync"
)

// ring keeps the last errors passed through OnError, and counts them all.
type ring struct {
	mu   sync.Mutex // protects the fields below
	buf  []Error    // a circular buffer of len(buf) slots
	next int        // where the next error goes
	full bool       // every slot holds one
	n    ErrorCounts
}

func newRing(n int) *ring { return &ring{buf: make([]Error, n)} }

func (r *ring) add(e Error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = e
	r.next = (r.next + 1) % len(r.buf)
	if r.next == 0 {
		r.full = true
	}
	r.n.Total++
	switch e.Level {
	case "ERROR":
		r.n.Error++
	case "WARN":
		r.n.Warn++
	case "INFO":
		r.n.Info++
	}
}

// recent returns the errors kept, newest first.
func (r *ring) recent() []Error {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]Error, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)])
	}
	return out
}

func (r *ring) counts() ErrorCounts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// newRingLogger returns a logger whose records go into r: the monitor
// classifies errors by logging them with bridge.LogTo, which knows every
// kind of the bridge's and of the bus's.
func newRingLogger(r *ring) *slog.Logger { return slog.New(ringHandler{r}) }

// ringHandler is the slog.Handler of newRingLogger.
type ringHandler struct{ r *ring }

func (ringHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h ringHandler) Handle(_ context.Context, rec slog.Record) error {
	e := Error{Time: rec.Time, Level: rec.Level.String(), Kind: rec.Message}
	rec.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "error":
			e.Error = a.Value.String()
		case "stack":
		default:
			if e.Attrs == nil {
				e.Attrs = map[string]any{}
			}
			e.Attrs[a.Key] = a.Value.Any()
		}
		return true
	})
	h.r.add(e)
	return nil
}

// WithAttrs and WithGroup are not used: bridge.LogTo logs each record's
// attributes itself.
func (h ringHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h ringHandler) WithGroup(string) slog.Handler      { return h }
