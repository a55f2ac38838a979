package bridge

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/busline/bus/bridge/internal/plural"
	"github.com/busline/bus/bridge/internal/wire"
)

// Sentinel errors. Callers branch on them with errors.Is; the errors the
// bridge returns or reports to Options.OnError wrap them with details.
var (
	// ErrMalformed is wrapped by the errors reported for messages that
	// start with the envelope magic but are not a valid envelope:
	// truncated, an unknown version or flag, a field over its limit,
	// non-canonical encoding or trailing bytes. The message is dropped.
	ErrMalformed = wire.ErrMalformed

	// ErrSignature is wrapped by the errors reported when
	// Options.SigningKey is set and an envelope or a CloudEvent is
	// unsigned, or its MAC does not match: forged, altered, signed with
	// another key, or copied from another channel. The message is
	// dropped. A bridge without a SigningKey accepts signed envelopes and
	// CloudEvents without checking them (it has
	// nothing to check them with), so that signing can be rolled out
	// senders first.
	ErrSignature = wire.ErrSignature

	// ErrTooLarge is wrapped by the errors reported for messages, sent or
	// received, larger than Options.MaxMessageBytes: the whole message,
	// envelope and batch included. A receiver drops a bigger message
	// (Stats.DecodeErrors); a sender refuses an export whose message
	// would be bigger, so that no receiver with the same options drops it
	// (Stats.EncodeErrors; the report wraps ErrEncode too). The sender
	// counts an envelope's sequence number at its longest, so it may
	// refuse a message up to 9 bytes shorter than the limit.
	ErrTooLarge = wire.ErrTooLarge

	// ErrReplay is wrapped by the reports of enveloped events dropped as
	// replays (Stats.Replayed): a message of an earlier run of its source
	// (its epoch is not the source's current one, and it is not later
	// than the source's latest event), or, on a pub/sub route, one sent
	// longer ago than Options.ReplayWindow, or that much later than now.
	ErrReplay = errors.New("bridge: replayed envelope")

	// ErrDuplicate is wrapped by the reports of enveloped events received
	// twice (Stats.Duplicates): a retried pipeline, or a replay. The copy
	// is dropped.
	ErrDuplicate = errors.New("bridge: duplicate event")

	// ErrClosed is returned by the methods of a Bridge that has been
	// closed.
	ErrClosed = errors.New("bridge: closed")

	// ErrInvalidOptions is wrapped by the errors New returns for options it
	// cannot use, such as a route with a bad pattern, and by those of
	// AddRoute for such a route.
	ErrInvalidOptions = errors.New("bridge: invalid options")

	// ErrNoRoute is wrapped by the errors RouteReady and RemoveRoute
	// return for a RouteID that is not a live route of the bridge: never
	// returned by AddRoute, or removed already.
	ErrNoRoute = errors.New("bridge: no such route")

	// ErrSubscribe is wrapped by the error Ready returns, and reported,
	// when Redis refuses a SUBSCRIBE, PSUBSCRIBE or SSUBSCRIBE, typically
	// with NOPERM because the ACL user may not use the channel or the
	// literal pattern. The error names the command and its first channels
	// or globs: "bridge: subscribe refused: PSUBSCRIBE "app:orders.*":
	// NOPERM ...". Durable routes wrap it too, for a refused XREAD,
	// XGROUP CREATE or checkpoint.
	ErrSubscribe = errors.New("bridge: subscribe refused")

	// ErrPublish is reported when Redis refuses an exported PUBLISH, such
	// as NOPERM for a channel outside the ACL user's channel rules. The
	// event is dropped and counted in Stats.ExportRejected.
	ErrPublish = errors.New("bridge: publish refused")

	// ErrDisconnected is reported when the pub/sub connection is lost:
	// a read error or a liveness probe whose answer did not come back in
	// time. The bridge reconnects by itself.
	//
	// While the attempts to reconnect keep failing, OnError is not told
	// of each: it gets the first failure since the connection last
	// worked, each failure whose cause differs from the one reported
	// before, and otherwise at most one summary per Options.ReconnectMax,
	// such as "bridge: still cannot connect to redis at 127.0.0.1:6380
	// after 12 attempts in 31s: dial tcp ...", which wraps the last
	// failure. Ready's error carries the last failure, reported or not.
	ErrDisconnected = errors.New("bridge: pub/sub connection lost")

	// ErrConnect is reported when the bridge cannot make its pub/sub
	// connection: Redis refused the connection or the login (a wrong
	// address, port, password or TLS setting), or did not answer. The
	// report names the address and the cause, such as "bridge: cannot
	// connect to redis at 127.0.0.1:6380: dial tcp 127.0.0.1:6380:
	// connect: connection refused". The bridge keeps trying with backoff,
	// and reports the repeated failures in summaries (see
	// ErrDisconnected); Ready's error carries the last one. Since there is no
	// connection either way, a report wrapping ErrConnect also matches
	// ErrDisconnected.
	ErrConnect = errors.New("bridge: cannot connect to redis")

	// ErrPossibleGap is reported after the bridge has resubscribed on a
	// new connection: events published on Redis while it was not
	// subscribed were not received. Enveloped events that went missing
	// are also reported precisely, as ErrGap, when the next event of the
	// same source arrives on the same channel.
	ErrPossibleGap = errors.New("bridge: possible gap after reconnect")

	// ErrGap is wrapped by the *GapError reported when the sequence
	// numbers of a source's events on a channel skip. Like drops, gaps
	// are reported at most once a second with their details; the gaps in
	// between are summed up in a *DropError whose Count is the number of
	// events they miss.
	ErrGap = errors.New("bridge: sequence gap")

	// ErrRedisDown is reported when exporting fails because Redis cannot
	// be reached; the events stay in the outbox and are retried.
	ErrRedisDown = errors.New("bridge: redis unreachable, exports held in outbox")

	// ErrOutboxFull is reported, with a count, for events dropped because
	// the outbox was full (see Options.OutboxPolicy).
	ErrOutboxFull = errors.New("bridge: outbox full, events dropped")

	// ErrExpired is reported, with a count, for exports dropped because
	// they waited in the outbox longer than Options.OutboxMaxAge.
	ErrExpired = errors.New("bridge: outbox events expired")

	// ErrImportFull is reported, with a count, for imported events dropped
	// because the import queue was full: local subscribers were too slow.
	ErrImportFull = errors.New("bridge: import queue full, events dropped")

	// ErrEncode is wrapped by the reports of payloads a Codec could not
	// encode; the event is not exported.
	ErrEncode = errors.New("bridge: encode")

	// ErrDecode is wrapped by the reports of imported payloads a Codec
	// could not decode; the event is not delivered.
	ErrDecode = errors.New("bridge: decode")

	// ErrPatternWidened is informational: New reports it to
	// Options.OnError, once per route, for an import route whose bus
	// pattern Redis cannot express, such as "{orders,users}.*", which the
	// bridge subscribes to as the wider Redis glob "*.*" (see
	// RedisPattern). Events are still delivered exactly as the pattern
	// says, since the bridge filters what arrives (Stats.Filtered), but
	// Redis sends the instance all the glob's traffic, and ACLRules
	// grants the glob. Narrow the pattern, or split it into routes Redis
	// can express, if that traffic matters; otherwise ignore the report.
	ErrPatternWidened = errors.New("bridge: pattern widened for Redis")

	// ErrNotSent is wrapped by the error Close returns when its context
	// expired before the outbox was flushed, and by that of RemoveRoute
	// when its context expired before the route's exports were sent.
	ErrNotSent = errors.New("bridge: exports not sent before close")
)

// GapError reports that events of one source on one channel went missing
// between that source and this bridge: the source's sequence numbers
// skipped from Expected to Got. It wraps ErrGap.
type GapError struct {
	// Source is the instance ID of the publishing bridge.
	Source string
	// Channel is the Redis channel the events were published on.
	Channel string
	// Expected is the sequence number that should have come next.
	Expected uint64
	// Got is the sequence number that came instead.
	Got uint64
}

// Error describes the gap in one line.
func (e *GapError) Error() string {
	return fmt.Sprintf("bridge: sequence gap from %q on %q: %s missing (expected %d, got %d)",
		e.Source, e.Channel, plural.Of(e.Missing(), "event"), e.Expected, e.Got)
}

// Unwrap returns ErrGap.
func (e *GapError) Unwrap() error { return ErrGap }

// Missing returns how many events went missing.
func (e *GapError) Missing() uint64 { return e.Got - e.Expected }

// DropError reports that Count events were dropped for the reason Err.
// Drops are reported in batches so that a burst of drops does not flood
// Options.OnError: for each reason, at most one report a second, the
// drops in between summed up in one DropError. So are the messages the
// bridge rejects (malformed, too large, badly signed, replayed, duplicate,
// on a bad topic) and the gaps (whose Count is the events missing): a
// flood of forged messages costs OnError a few calls a second.
type DropError struct {
	// Err is the reason: ErrOutboxFull, ErrExpired, ErrImportFull, or
	// another sentinel of this package.
	Err error
	// Count is how many events were dropped since the previous report of
	// the same reason.
	Count uint64
}

// Error describes the drops in one line: the reason, how many of what
// went where, and the counter of Stats that counts them, such as "bridge:
// outbox full: 3 events dropped (see Stats.OutboxOverflow)". For the
// reasons whose first drop is reported with its details (a Codec's error,
// a malformed envelope, a refused PUBLISH), a DropError counts the drops
// held back since that report: "bridge: encode: 1 more event not exported
// (see Stats.EncodeErrors)".
func (e *DropError) Error() string {
	d, ok := dropKinds[e.Err]
	if !ok {
		return fmt.Sprintf("%v: %s dropped", e.Err, plural.Of(e.Count, "event"))
	}
	what := plural.Of(e.Count, d.noun)
	if d.more {
		// "1 more event": the count follows a report with details.
		n, noun, _ := strings.Cut(what, " ")
		what = n + " more " + noun
	}
	return fmt.Sprintf("%s: %s %s (see Stats.%s)", d.reason, what, d.fate, d.stat)
}

// dropKind says how a DropError of one reason reads.
type dropKind struct {
	reason string // the sentinel's message, or a shorter one
	noun   string // what was dropped: event, message (not yet an event), entry
	fate   string // what became of them
	stat   string // the field of Stats that counts them
	more   bool   // the first drop is reported with its details
}

var dropKinds = map[error]dropKind{
	ErrOutboxFull: {"bridge: outbox full", "event", "dropped", "OutboxOverflow", false},
	ErrExpired:    {"bridge: outbox events expired", "event", "not exported, older than Options.OutboxMaxAge", "OutboxExpired", false},
	ErrImportFull: {"bridge: import queue full", "event", "not delivered", "ImportDropped", false},
	ErrEncode:     {"bridge: encode", "event", "not exported", "EncodeErrors", true},
	ErrPublish:    {"bridge: publish refused", "event", "not exported", "ExportRejected", true},
	ErrDecode:     {"bridge: decode", "event", "not delivered", "DecodeErrors", true},
	ErrMalformed:  {"bridge: malformed envelope", "message", "dropped", "DecodeErrors", true},
	ErrTooLarge:   {"bridge: message too large", "message", "dropped", "DecodeErrors", true},
	ErrSignature:  {"bridge: bad signature", "message", "dropped", "SignatureRejected", true},
	ErrReplay:     {"bridge: replayed envelope", "event", "dropped", "Replayed", true},
	ErrDuplicate:  {"bridge: duplicate event", "event", "dropped", "Duplicates", true},
	ErrGap:        {"bridge: sequence gap", "event", "missing", "GapEvents", true},
	ErrTrimmed:    {"bridge: pending stream entries trimmed", "entry", "lost", "StreamTrimmed", false},
}

// Unwrap returns the reason.
func (e *DropError) Unwrap() error { return e.Err }

// connectError is the report of a pub/sub connection that could not be
// made. It wraps ErrConnect, ErrDisconnected and the cause.
type connectError struct {
	addr string // "" when the client does not say
	err  error
}

func (e *connectError) Error() string {
	if e.addr == "" {
		return fmt.Sprintf("%v: %v", ErrConnect, e.err)
	}
	return fmt.Sprintf("%v at %s: %v", ErrConnect, e.addr, e.err)
}

func (e *connectError) Unwrap() []error { return []error{ErrConnect, ErrDisconnected, e.err} }

// repeatedError is the report of a connection failure that keeps
// happening: a loop reports its first failure and each change of cause,
// then, while the same cause repeats, at most one repeatedError per
// Options.ReconnectMax (see failures). It says how many attempts failed
// since the last success and over how long, and wraps the last failure.
type repeatedError struct {
	err      error // the last failure
	attempts int   // failed attempts since the last success
	span     time.Duration
}

func (e *repeatedError) Error() string {
	after := plural.Of(uint64(e.attempts), "attempt") + " in " + roundSpan(e.span)
	if ce, ok := e.err.(*connectError); ok {
		at := ""
		if ce.addr != "" {
			at = " at " + ce.addr
		}
		return fmt.Sprintf("%v%s after %s: %v", "bridge: still cannot connect to redis", at, after, ce.err)
	}
	return "bridge: still failing after " + after + ": " + bare(e.err)
}

func (e *repeatedError) Unwrap() error { return e.err }

// roundSpan says d to the second, or to the millisecond under a second.
func roundSpan(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// notReadyError is the error of a Ready whose context ended first: it
// wraps the context's error and the last error the bridge reported about
// its connections, if any, so that the caller sees why.
type notReadyError struct {
	ctxErr, last error
}

func (e *notReadyError) Error() string {
	if e.last == nil {
		return "bridge: not ready: " + e.ctxErr.Error()
	}
	// One prefix per message: the last error has its own.
	return "bridge: not ready: " + e.ctxErr.Error() + "; last error: " + strings.TrimPrefix(e.last.Error(), "bridge: ")
}

func (e *notReadyError) Unwrap() []error {
	if e.last == nil {
		return []error{e.ctxErr}
	}
	return []error{e.ctxErr, e.last}
}

// wrapped is an error with a message of its own that wraps others: it
// lets a report wrap a sentinel of this package and an error of the bus
// or of this package with one package prefix in its message.
type wrapped struct {
	msg  string
	errs []error
}

func (e *wrapped) Error() string   { return e.msg }
func (e *wrapped) Unwrap() []error { return e.errs }

// chain returns an error wrapping sentinel and cause whose message is
// sentinel's, then detail (if any), then cause's without its package
// prefix: "bridge: encode: topic "x": malformed envelope: ...", not
// "bridge: encode: topic "x": bridge: malformed envelope: ...".
func chain(sentinel error, detail string, cause error) error {
	msg := sentinel.Error()
	if detail != "" {
		msg += ": " + detail
	}
	return &wrapped{msg: msg + ": " + bare(cause), errs: []error{sentinel, cause}}
}

// busError returns an error wrapping cause, an error of the bus, whose
// message is msg (with this package's prefix) then cause's without the
// bus's prefixes.
func busError(msg string, cause error) error {
	return &wrapped{msg: msg + ": " + bare(cause), errs: []error{cause}}
}

// bare returns err's message without the prefixes of this package and of
// the bus, at its start and after each ": ", where wrapping put them.
func bare(err error) string {
	s := err.Error()
	for _, p := range []string{"bridge: ", "bus: "} {
		for strings.HasPrefix(s, p) {
			s = s[len(p):]
		}
		s = strings.ReplaceAll(s, ": "+p, ": ")
	}
	return s
}
