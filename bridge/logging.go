package bridge

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	bus "github.com/busline/bus"
)

// LogTo returns a function for Options.OnError that logs every error the
// bridge reports as one structured record on l (slog.Default() if l is
// nil): the recommended production setting, in place of the default,
// which writes plain lines with the log package. Give the bus
// bus.LogTo(l) too.
//
// The message is the kind of problem, fixed, such as "bridge: sequence
// gap" or "bridge: outbox full", so that log queries and alerts can match
// it; the attributes say the rest: "error" (the whole message) always,
// and where the report carries them "source", "channel", "missing",
// "expected" and "got" (a *GapError), "count" and "stat" (a *DropError:
// how many, and the field of Stats that counts them), "node" (the Redis
// address of a connection that failed) and "attempts" (failed attempts
// summed up while Redis stays away). The level says how bad it is:
//
//   - Error, for events lost or refused: gaps, drops of every reason
//     (outbox full or expired, import queue full, encode, decode,
//     malformed, too large, bad signature, refused PUBLISH or XADD,
//     trimmed stream entries), refused subscriptions, exports Close
//     could not send;
//   - Warn, for a degraded bridge that retries by itself: Redis
//     unreachable (exports held in the outbox), a connection lost or not
//     made, a failed stream read, checkpoint or XACK, and a possible gap
//     after a reconnect (the connection is back; what was published
//     meanwhile on pub/sub is lost to this instance);
//   - Info, for what is worth knowing once: a pattern widened for Redis.
//
// Errors of the bus that the bridge passes on are logged as bus.LogTo
// logs them; any other error, at Error with the message "bridge: error".
// The bridge batches its reports of drops and of failing reconnects, so
// an outage costs a few records per second, not one per event.
//
// The returned function is safe for concurrent use, as OnError must be;
// it allocates for each record, and records nothing below l's level.
func LogTo(l *slog.Logger) func(error) {
	if l == nil {
		l = slog.Default()
	}
	busLog := bus.LogTo(l)
	return func(err error) {
		if err == nil {
			return
		}
		var de *bus.DeliveryError
		level, msg, ok := logKind(err)
		if !ok && errors.As(err, &de) {
			busLog(err)
			return
		}
		ctx := context.Background()
		if !l.Enabled(ctx, level) {
			return
		}
		l.LogAttrs(ctx, level, msg, logAttrs(err)...)
	}
}

// logLevels are the kinds LogTo knows, the first that err wraps deciding:
// ErrSubscribe and ErrConnect before ErrDisconnected, which they may wrap
// too.
var logLevels = []struct {
	err   error
	level slog.Level
}{
	{ErrGap, slog.LevelError},
	{ErrPatternWidened, slog.LevelInfo},
	{ErrPossibleGap, slog.LevelWarn},
	{ErrRedisDown, slog.LevelWarn},
	{ErrSubscribe, slog.LevelError},
	{ErrConnect, slog.LevelWarn},
	{ErrDisconnected, slog.LevelWarn},
	{ErrStreamRead, slog.LevelWarn},
	{ErrCheckpoint, slog.LevelWarn},
	{ErrAck, slog.LevelWarn},
	{ErrOutboxFull, slog.LevelError},
	{ErrExpired, slog.LevelError},
	{ErrImportFull, slog.LevelError},
	{ErrTrimmed, slog.LevelError},
	{ErrPublish, slog.LevelError},
	{ErrEncode, slog.LevelError},
	{ErrDecode, slog.LevelError},
	{ErrSignature, slog.LevelError},
	{ErrTooLarge, slog.LevelError},
	{ErrMalformed, slog.LevelError},
	{ErrNotSent, slog.LevelError},
	{ErrInvalidOptions, slog.LevelError},
	{ErrClosed, slog.LevelWarn},
}

// logKind returns the level and message of err, and false when err is of
// no kind of this package.
func logKind(err error) (slog.Level, string, bool) {
	var drop *DropError
	if errors.As(err, &drop) {
		if d, ok := dropKinds[drop.Err]; ok {
			return slog.LevelError, d.reason, true
		}
	}
	for _, k := range logLevels {
		if errors.Is(err, k.err) {
			msg := k.err.Error()
			if d, ok := dropKinds[k.err]; ok {
				msg = d.reason // shorter: "bridge: outbox full"
			}
			return k.level, msg, true
		}
	}
	return slog.LevelError, "bridge: error", false
}

// logAttrs returns the attributes of err's record.
func logAttrs(err error) []slog.Attr {
	attrs := []slog.Attr{slog.String("error", err.Error())}
	var gap *GapError
	if errors.As(err, &gap) {
		attrs = append(attrs, slog.String("source", gap.Source), slog.String("channel", gap.Channel),
			slog.Uint64("missing", gap.Missing()), slog.Uint64("expected", gap.Expected), slog.Uint64("got", gap.Got))
	}
	var drop *DropError
	if errors.As(err, &drop) {
		attrs = append(attrs, slog.Uint64("count", drop.Count))
		if d, ok := dropKinds[drop.Err]; ok {
			attrs = append(attrs, slog.String("stat", d.stat))
		}
	}
	var rep *repeatedError
	if errors.As(err, &rep) {
		attrs = append(attrs, slog.Int("attempts", rep.attempts))
	}
	if node := nodeOf(err); node != "" {
		attrs = append(attrs, slog.String("node", node))
	}
	return attrs
}

// nodeOf returns the Redis address a connection failure names: that of a
// connection that could not be made, or the node of a sharded connection
// lost or refused ("... node 10.0.0.1:7000: ..."); "" if none.
func nodeOf(err error) string {
	var ce *connectError
	if errors.As(err, &ce) {
		return ce.addr
	}
	if !errors.Is(err, ErrDisconnected) && !errors.Is(err, ErrSubscribe) {
		return ""
	}
	_, rest, ok := strings.Cut(err.Error(), ": node ")
	if !ok {
		return ""
	}
	node, _, _ := strings.Cut(rest, ": ")
	return node
}
