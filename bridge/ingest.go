package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
	"unsafe"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/plural"
	"github.com/busline/bus/bridge/internal/seq"
	"github.com/busline/bus/bridge/internal/wire"
)

// The ingest path. Every message a transport receives from Redis takes it:
// the transport finds the topic and the route (a subscriber's route, or
// the fields of a stream entry), then ingest.accept checks the topic, the
// size, the envelope and its signature, drops echoes, checks the time
// (pub/sub) and the epoch and sequence (replays, gaps and duplicates), and
// builds the bus.Meta, and hands each event to emit; then
// Bridge.publishLocal decodes the payload with the route's codec and
// publishes it on the local bus. Pub/sub transports emit into the import
// queue, so that publishLocal runs on the import workers; stream readers
// publish each entry themselves, before recording it as handled.
//
// Rejecting a message must cost less than accepting one, or a flood of
// forged ones is the cheapest attack there is: the topic is checked before
// any state is kept for its channel, the message is read where the Redis
// client put it (no copy until it is accepted), and the details of a
// rejection are formatted only if the reporter's rate limit lets them
// through (reporter.dropf).

// inbound is one message from Redis on its way to the local bus.
type inbound struct {
	channel string // what its envelopes are numbered and signed for
	topic   string
	route   *route
	// data is the message. It may be read-only (the bytes of the Redis
	// client's string): ingest copies what it keeps, unless own is set.
	data []byte
	// own says that data is the memory of this message alone, which the
	// transport never reuses nor reads again once accept returns, such as
	// the string go-redis allocated for it: the payload of a plain
	// envelope is then handed on as a slice of data rather than a copy,
	// keeping alive a few bytes of envelope with it (a batch's payloads
	// are still copied: one kept payload must not keep the batch).
	own bool
	// now is when the message arrived, in Unix nanoseconds, to check
	// its time against the replay window (pub/sub only).
	now int64
	// entry and key name a stream entry and its stream; entry is "" for a
	// pub/sub message.
	entry, key string
	// source is a stream entry's source field, which tells the echo of a
	// raw entry.
	source string
}

// where says where m came from, for errors.
func (m *inbound) where() string {
	if m.entry != "" {
		return fmt.Sprintf("in entry %s of %q", m.entry, m.key)
	}
	return fmt.Sprintf("on %q", m.channel)
}

// readOnly returns the bytes of s without copying them: what ingest reads
// a message through until it accepts it. Nothing may write through it,
// unless s is a string nothing else will read (see inbound.own): a codec
// owns the payloads it decodes.
func readOnly(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// ingest holds what the ingest path keeps per reader: the sequences and
// sources it saw, and the memory it carves events from. Each read loop or
// stream reader owns one; it is not safe for concurrent use, and must not
// be copied once used (the copies would hand out the same slab memory).
type ingest struct {
	br *Bridge
	// noSeq turns off the sequence and epoch checks: Group members see a
	// share of each source's events, out of order after a claim.
	noSeq bool
	// window is Options.ReplayWindow on pub/sub transports, 0 (no check)
	// on durable ones.
	window int64
	seqs   seq.Tracker
	// slab holds the memory of the events accepted next.
	slab slab
	// emit takes each event accepted, or, when nil, held does, for the
	// transport to queue once the message is read (see
	// readLoop.handle): a batch's events are queued together.
	emit func(importItem)
	held []importItem
}

// give hands on it, an accepted event: to emit, or to held.
func (in *ingest) give(it importItem) {
	if in.emit != nil {
		in.emit(it)
		return
	}
	in.held = append(in.held, it)
}

// newIngest returns the ingest path of a reader: a pub/sub one (with the
// replay window) if pubsub is set, else a durable one; noSeq for Group
// routes. emit nil holds the events accepted (ingest.held).
func (br *Bridge) newIngest(pubsub, noSeq bool, emit func(importItem)) ingest {
	in := ingest{br: br, noSeq: noSeq, emit: emit}
	in.seqs.Budget = seqBudget
	if pubsub && br.cfg.ReplayWindow > 0 {
		in.window = int64(br.cfg.ReplayWindow)
	}
	return in
}

// seqBudget is the memory budget of each reader's seq.Tracker and of each
// outbox's wire.Counter; a variable so that tests can run past it in a few
// seconds.
var seqBudget = wire.SeqBudget

// accept checks m and emits each event it carries that is to be
// delivered: those of a valid envelope (or batch) that is not our echo,
// a replay nor a duplicate, or the raw message. Everything else is
// counted and reported. A batch counts as one message received until it
// is decoded, then as one per event.
func (in *ingest) accept(m *inbound) {
	br := in.br
	c := &br.c
	r := m.route
	// First the topic: a foreign publisher's channel may be as long as
	// Redis allows, and nothing may be kept for it before it is known to
	// be a topic (which bounds its length: bus.MaxTopicLen).
	if err := bus.ValidateTopic(m.topic, br.sep); err != nil {
		c.decodeErrors.Add(1)
		br.rep.dropf(ErrMalformed, 1, func() error {
			where := "" // the topic's error names it, shortened; the channel may be long
			if m.entry != "" {
				where = m.where()
			}
			return chain(ErrMalformed, where, err)
		})
		return
	}
	if len(m.data) > br.cfg.MaxMessageBytes {
		c.decodeErrors.Add(1)
		r.c.decodeErrors.Add(1)
		br.rep.dropf(ErrTooLarge, 1, func() error {
			return fmt.Errorf("%w: %s %s", ErrTooLarge, plural.Of(uint64(len(m.data)), "byte"), m.where())
		})
		return
	}
	if isCloudEvent(r.Format, m.data) {
		in.acceptCloudEvent(m)
		return
	}
	if !r.Raw && wire.IsEnvelope(m.data) {
		var err error
		if m.entry != "" {
			// Durable routes never batch: an entry is one event.
			var env wire.Envelope
			if env, err = wire.DecodeEnvelope(m.channel, m.data, br.key, br.cfg.MaxMessageBytes); err == nil {
				if !m.own {
					env.Payload = in.slab.clone(env.Payload)
				}
				in.acceptEnvelope(m, &env)
			}
		} else {
			alias := m.own && !wire.IsBatch(m.data)
			_, err = wire.DecodeMessage(m.channel, m.data, br.key, br.cfg.MaxMessageBytes, func(i int, env wire.Envelope) {
				if i > 0 {
					c.received.Add(1)
				}
				if !alias {
					env.Payload = in.slab.clone(env.Payload)
				}
				in.acceptEnvelope(m, &env)
			})
		}
		if err != nil {
			in.rejected(m, err)
		}
		return
	}

	// No envelope: a raw route, or a foreign publisher on an enveloped
	// one. With a signing key, an enveloped route accepts signed
	// envelopes only, or anyone could bypass the signature.
	if !r.Raw && br.key != nil {
		c.signatureRejected.Add(1)
		r.c.signatureRejected.Add(1)
		br.rep.dropf(ErrSignature, 1, func() error {
			if m.entry != "" {
				return fmt.Errorf("%w: entry %s of %q has no envelope", ErrSignature, m.entry, m.key)
			}
			return fmt.Errorf("%w: unsigned message without envelope on %q", ErrSignature, m.channel)
		})
		return
	}
	// A raw message carries no source: a stream entry may say it in a
	// field, a pub/sub message may be one this bridge remembers sending.
	if m.entry != "" && m.source == br.id ||
		m.entry == "" && in.echoed(m) {
		c.echoes.Add(1)
		return
	}
	// The codec owns what it decodes, and m.data may be read-only.
	payload := m.data
	if !m.own || len(payload) == 0 { // "" may be nil: keep an empty payload non-nil
		payload = in.slab.clone(payload)
	}
	in.give(importItem{topic: m.topic, route: r, payload: payload, meta: rawMeta})
}

// echoed reports whether m, a raw pub/sub message, is the echo of one
// this bridge sent.
func (in *ingest) echoed(m *inbound) bool {
	echo := in.br.echo.Load()
	return echo != nil && echo.Consume(m.channel, m.data, time.Now())
}

// rejected counts and reports m, which wire could not decode: err.
func (in *ingest) rejected(m *inbound, err error) {
	br := in.br
	c := &br.c
	// The error starts with its sentinel's message; those of pub/sub
	// signatures name the channel already.
	switch {
	case errors.Is(err, ErrSignature) && m.entry == "":
		c.signatureRejected.Add(1)
		m.route.c.signatureRejected.Add(1)
		br.rep.dropf(ErrSignature, 1, func() error { return err })
	case errors.Is(err, ErrSignature):
		c.signatureRejected.Add(1)
		m.route.c.signatureRejected.Add(1)
		br.rep.dropf(ErrSignature, 1, func() error { return fmt.Errorf("%w, %s", err, m.where()) })
	default:
		c.decodeErrors.Add(1)
		m.route.c.decodeErrors.Add(1)
		br.rep.dropf(ErrMalformed, 1, func() error { return fmt.Errorf("%w, %s", err, m.where()) })
	}
}

// acceptEnvelope checks one event of an enveloped message m and emits it.
// env.Payload is the event's own memory, which the codec will own and may
// keep (accept copies it out of a batch, or out of a message it does not
// own: one kept payload must not keep a whole batch in memory, and m.data
// may be read-only).
func (in *ingest) acceptEnvelope(m *inbound, env *wire.Envelope) {
	br := in.br
	if !in.admit(m, env, true, true) {
		return
	}
	meta := in.slab.meta()
	*meta = bus.Meta{
		Source:      env.Source,
		Seq:         env.Seq,
		ContentType: env.ContentType,
		Headers:     env.Headers,
		ReplyTo:     br.replyTopic(env.Headers),
	}
	if env.Time != 0 {
		meta.Time = time.Unix(0, env.Time)
	}
	if meta.Source == "" {
		meta.Source = RawSource // keep it Remote whatever the sender did
	}
	in.give(importItem{topic: m.topic, route: m.route, payload: env.Payload, meta: meta})
}

// admit reports whether env, an event of m (an envelope's, or a
// CloudEvent's attributes), is to be delivered: not our echo, within the
// replay window if window is set (pub/sub readers only: see
// ingest.window), and, if sequenced is set, of the current epoch of its
// source and not a duplicate (see ingest.sequence; never on Group
// routes). What it drops is counted and reported.
func (in *ingest) admit(m *inbound, env *wire.Envelope, window, sequenced bool) bool {
	br := in.br
	c := &br.c
	if env.Source == br.id {
		c.echoes.Add(1)
		return false
	}
	if window && in.window > 0 && (m.now-env.Time > in.window || env.Time-m.now > in.window) {
		c.replayed.Add(1)
		br.rep.dropf(ErrReplay, 1, func() error {
			return fmt.Errorf("%w: event %d from %q %s sent at %s, outside the %v window (Options.ReplayWindow)",
				ErrReplay, env.Seq, env.Source, m.where(), time.Unix(0, env.Time).UTC().Format(time.RFC3339Nano), time.Duration(in.window))
		})
		return false
	}
	return !sequenced || in.noSeq || in.sequence(m, env)
}

// A slab hands out the memory of imported events, their payloads and
// their metadata, carved from chunks allocated a few kilobytes at a time
// rather than one allocation each: with one of each per event, they were
// most of what the ingest path allocated. Nothing handed out is ever
// handed out again or reused (handlers may keep payloads and metadata,
// see bus.Event): a chunk is garbage once the last event carved from it
// is. The price is that an event kept alone keeps its chunk alive, at
// most metaChunk metadata (and the headers they hold) or slabBytes of
// payloads. Each ingest owns one; it is not safe for concurrent use.
type slab struct {
	metas []bus.Meta // the metadata not handed out yet
	bytes []byte     // payloads are appended to it, and handed out
}

const (
	// metaChunk is how many bus.Meta a chunk holds (88 bytes each on
	// 64-bit platforms).
	metaChunk = 32
	// slabBytes is the size of a chunk of payloads; payloads longer than
	// slabMax get an allocation of their own, so that one chunk holds at
	// least slabBytes/slabMax payloads.
	slabBytes = 4 << 10
	slabMax   = 256
)

// meta returns a zero Meta of its own.
func (s *slab) meta() *bus.Meta {
	if len(s.metas) == 0 {
		s.metas = make([]bus.Meta, metaChunk)
	}
	m := &s.metas[0]
	s.metas = s.metas[1:]
	return m
}

// clone returns a copy of b in memory of its own, of capacity len(b) (so
// that appending to it cannot reach its neighbours), nil for nil.
func (s *slab) clone(b []byte) []byte {
	if len(b) == 0 || len(b) > slabMax {
		return bytes.Clone(b)
	}
	if len(b) > cap(s.bytes)-len(s.bytes) {
		s.bytes = make([]byte, 0, slabBytes)
	}
	n := len(s.bytes)
	s.bytes = append(s.bytes, b...)
	return s.bytes[n:len(s.bytes):len(s.bytes)]
}

// sequence checks the epoch and the sequence number of env, an event of m
// (see seq.Tracker.Check), and reports whether the event is new. A gap is
// counted and reported; a replay or a duplicate is counted, reported and
// not new.
func (in *ingest) sequence(m *inbound, env *wire.Envelope) bool {
	br := in.br
	verdict, missing := in.seqs.Check(env.Source, m.channel, env.Epoch, env.Seq, env.Time)
	switch verdict {
	case seq.OldEpoch:
		br.c.replayed.Add(1)
		br.rep.dropf(ErrReplay, 1, func() error {
			return fmt.Errorf("%w: event %d from %q %s is of an earlier run of its source (epoch %016x)",
				ErrReplay, env.Seq, env.Source, m.where(), env.Epoch)
		})
		return false
	case seq.Duplicate:
		br.c.dups.Add(1)
		m.route.c.duplicates.Add(1)
		br.rep.dropf(ErrDuplicate, 1, func() error {
			return fmt.Errorf("%w: event %d from %q %s seen already", ErrDuplicate, env.Seq, env.Source, m.where())
		})
		return false
	}
	if missing != 0 {
		n := env.Seq - missing
		br.c.gaps.Add(1)
		br.c.gapEvents.Add(n)
		m.route.c.gaps.Add(1)
		m.route.c.gapEvents.Add(n)
		br.rep.dropf(ErrGap, n, func() error {
			return &GapError{Source: env.Source, Channel: m.channel, Expected: missing, Got: env.Seq}
		})
	}
	return true
}

// publishLocal decodes it with its route's codec and publishes it on the
// local bus, and reports whether it did (counted as imported). A payload
// the codec rejects, or a topic the bus rejects (a foreign publisher's),
// is counted and reported, naming the stream entry if entry is not "" (of
// stream key). It returns the bus's error for anything else (the bus is
// closed or its queue full), which the caller accounts for.
func (br *Bridge) publishLocal(it *importItem, entry, key string) (bool, error) {
	ok, err := br.publishLocalCtx(br.deliver.ctx, it, entry, key)
	if ok {
		br.c.imported.Add(1)
		it.route.c.imported.Add(1)
	}
	return ok, err
}

// publishLocalCtx is publishLocal publishing with ctx, which derives from
// br.deliver.ctx, and not counting the event as imported: a stream reader
// that publishes an entry again after a failed handling counts it once.
func (br *Bridge) publishLocalCtx(ctx context.Context, it *importItem, entry, key string) (bool, error) {
	c := &br.c
	payload, err := it.route.codec.Decode(it.payload, it.meta.ContentType)
	if err != nil {
		c.decodeErrors.Add(1)
		it.route.c.decodeErrors.Add(1)
		br.rep.drop(ErrDecode, 1, chain(ErrDecode, fmt.Sprintf("topic %q from %q", it.topic, it.meta.Source), err))
		return false, nil
	}
	e := bus.Event{Topic: it.topic, Payload: payload, Meta: it.meta}
	var done func(error)
	if br.cfg.Hooks.Import != nil {
		ctx, done = br.hookImport(ctx, it, e, entry, key)
	}
	err = br.bus.PublishEvent(ctx, e)
	if done != nil {
		done(err)
	}
	if errors.Is(err, bus.ErrInvalidTopic) {
		// A foreign publisher used a channel whose topic the bus
		// rejects. (Checked here rather than on the read loop, since
		// PublishEvent checks anyway.)
		where := ""
		if entry != "" {
			where = fmt.Sprintf("entry %s of %q", entry, key)
		}
		c.decodeErrors.Add(1)
		it.route.c.decodeErrors.Add(1)
		br.rep.drop(ErrMalformed, 1, chain(ErrMalformed, where, err))
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}
