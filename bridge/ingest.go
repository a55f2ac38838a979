package bridge

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/plural"
	"github.com/busline/bus/bridge/internal/seq"
	"github.com/busline/bus/bridge/internal/wire"
)

// The ingest path. Every message a transport receives from Redis takes it:
// the transport finds the topic and the route (a subscriber's route, or
// the fields of a stream entry), then ingest.accept checks the size, the
// envelope and its signature, drops echoes, checks the sequence (gaps and
// duplicates) and builds the bus.Meta, and hands each event to emit; then
// Bridge.publishLocal decodes the payload with the route's codec and
// publishes it on the local bus, whose topic check rejects what a foreign
// publisher got wrong. Pub/sub transports emit into the import queue, so
// that publishLocal runs on the import workers; stream readers publish
// each entry themselves, before recording it as handled.

// inbound is one message from Redis on its way to the local bus.
type inbound struct {
	channel string // what its envelopes are numbered and signed for
	topic   string
	route   *route
	data    []byte
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

// ingest holds what the ingest path keeps per reader: the sequences it
// saw. Each read loop or stream reader owns one; it is not safe for
// concurrent use.
type ingest struct {
	br *Bridge
	// noSeq turns off the sequence checks: Group members see a share of
	// each source's events, out of order after a claim.
	noSeq bool
	seqs  seq.Tracker
	// emit takes each event accepted.
	emit func(importItem)
}

// accept checks m and emits each event it carries that is to be
// delivered: those of a valid envelope (or batch) that is not our echo
// nor a duplicate, or the raw message. Everything else is counted and
// reported. A batch counts as one message received until it is decoded,
// then as one per event.
func (in *ingest) accept(m *inbound) {
	br := in.br
	c := &br.c
	r := m.route
	if len(m.data) > br.cfg.MaxMessageBytes {
		c.decodeErrors.Add(1)
		br.rep.drop(ErrTooLarge, 1, fmt.Errorf("%w: %s %s", ErrTooLarge, plural.Of(uint64(len(m.data)), "byte"), m.where()))
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
				in.acceptEnvelope(m, &env, false)
			}
		} else {
			// The events of a batch get their own copies of their
			// payloads: the codec owns what it decodes and may keep
			// it, and one kept payload must not keep the whole batch
			// in memory.
			batch := wire.IsBatch(m.data)
			_, err = wire.DecodeMessage(m.channel, m.data, br.key, br.cfg.MaxMessageBytes, func(i int, env wire.Envelope) {
				if i > 0 {
					c.received.Add(1)
				}
				in.acceptEnvelope(m, &env, batch)
			})
		}
		if err != nil {
			// The error starts with its sentinel's message; those of
			// pub/sub signatures name the channel already.
			switch {
			case errors.Is(err, ErrSignature) && m.entry == "":
				c.signatureRejected.Add(1)
				br.rep.drop(ErrSignature, 1, err)
			case errors.Is(err, ErrSignature):
				c.signatureRejected.Add(1)
				br.rep.drop(ErrSignature, 1, fmt.Errorf("%w, %s", err, m.where()))
			default:
				c.decodeErrors.Add(1)
				br.rep.drop(ErrMalformed, 1, fmt.Errorf("%w, %s", err, m.where()))
			}
		}
		return
	}

	// No envelope: a raw route, or a foreign publisher on an enveloped
	// one. With a signing key, an enveloped route accepts signed
	// envelopes only, or anyone could bypass the signature.
	if !r.Raw && br.key != nil {
		c.signatureRejected.Add(1)
		if m.entry != "" {
			br.rep.drop(ErrSignature, 1, fmt.Errorf("%w: entry %s of %q has no envelope", ErrSignature, m.entry, m.key))
		} else {
			br.rep.drop(ErrSignature, 1, fmt.Errorf("%w: unsigned message without envelope on %q", ErrSignature, m.channel))
		}
		return
	}
	// A raw message carries no source: a stream entry may say it in a
	// field, a pub/sub message may be one this bridge remembers sending.
	if m.entry != "" && m.source == br.id ||
		m.entry == "" && br.echo != nil && br.echo.Consume(m.channel, m.data, time.Now()) {
		c.echoes.Add(1)
		return
	}
	in.emit(importItem{topic: m.topic, route: r, payload: m.data, meta: rawMeta})
}

// acceptEnvelope checks one event of an enveloped message m and emits it,
// with a copy of its payload if copyPayload is set.
func (in *ingest) acceptEnvelope(m *inbound, env *wire.Envelope, copyPayload bool) {
	br := in.br
	c := &br.c
	if env.Source == br.id {
		c.echoes.Add(1)
		return
	}
	if !in.noSeq && !in.sequence(env.Source, m.channel, env.Seq, env.Time) {
		c.dups.Add(1)
		return
	}
	meta := &bus.Meta{
		Source:      env.Source,
		Seq:         env.Seq,
		ContentType: env.ContentType,
		Headers:     env.Headers,
	}
	if env.Time != 0 {
		meta.Time = time.Unix(0, env.Time)
	}
	if meta.Source == "" {
		meta.Source = RawSource // keep it Remote whatever the sender did
	}
	payload := env.Payload
	if copyPayload {
		payload = bytes.Clone(payload)
	}
	in.emit(importItem{topic: m.topic, route: m.route, payload: payload, meta: meta})
}

// sequence checks seq, the sequence number of source's event on channel
// sent at time t, and reports whether the event is new (see
// seq.Tracker.Check). A gap is counted and reported.
func (in *ingest) sequence(source, channel string, seq uint64, t int64) bool {
	isNew, missing := in.seqs.Check(source, channel, seq, t)
	if missing != 0 {
		br := in.br
		gap := &GapError{Source: source, Channel: channel, Expected: missing, Got: seq}
		br.c.gaps.Add(1)
		br.c.gapEvents.Add(gap.Missing())
		br.rep.report(gap)
	}
	return isNew
}

// publishLocal decodes it with its route's codec and publishes it on the
// local bus, and reports whether it did (counted as imported). A payload
// the codec rejects, or a topic the bus rejects (a foreign publisher's),
// is counted and reported, naming the stream entry if entry is not "" (of
// stream key). It returns the bus's error for anything else (the bus is
// closed or its queue full), which the caller accounts for.
func (br *Bridge) publishLocal(it *importItem, entry, key string) (bool, error) {
	c := &br.c
	payload, err := it.route.codec.Decode(it.payload, it.meta.ContentType)
	if err != nil {
		c.decodeErrors.Add(1)
		br.rep.drop(ErrDecode, 1, chain(ErrDecode, fmt.Sprintf("topic %q from %q", it.topic, it.meta.Source), err))
		return false, nil
	}
	err = br.bus.PublishEvent(br.deliver.ctx, bus.Event{Topic: it.topic, Payload: payload, Meta: it.meta})
	if errors.Is(err, bus.ErrInvalidTopic) {
		// A foreign publisher used a channel whose topic the bus
		// rejects. (Checked here rather than on the read loop, since
		// PublishEvent checks anyway.)
		where := ""
		if entry != "" {
			where = fmt.Sprintf("entry %s of %q", entry, key)
		}
		c.decodeErrors.Add(1)
		br.rep.drop(ErrMalformed, 1, chain(ErrMalformed, where, err))
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c.imported.Add(1)
	return true, nil
}
