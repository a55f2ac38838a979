package bridge

import (
	"errors"
	"fmt"
	"strings"
	"time"

	bus "github.com/busline/bus"
	"github.com/busline/bus/bridge/internal/cloudevent"
	"github.com/busline/bus/bridge/internal/queue"
	"github.com/busline/bus/bridge/internal/wire"
)

// Format says how an enveloped Route writes its events (Route.Format).
// The zero Format is Envelope.
//
// # CloudEvents
//
// The binary envelope keeps an event's source, sequence number, time,
// content type and headers, but only this package reads it. A route with
// Format CloudEvents writes each event as a CloudEvents 1.0 event in the
// structured-mode JSON format (application/cloudevents+json), which the
// CloudEvents SDKs of other languages parse; their producers' events are
// imported with their attributes in the bus.Meta.
//
//	{"specversion":"1.0","id":"app:orders.created:7","source":"inst-1",
//	 "type":"orders.created","time":"2025-03-04T05:06:07.123456789Z",
//	 "datacontenttype":"application/json","buslineseq":"7",
//	 "traceparent":"00-4bf9...-01","data":{"id":42}}
//
// On export: source is the InstanceID (which must then be a
// URI-reference: letters, digits and -._~:/?#[]@!$&'()*+,;=%), type is the
// topic, id is the channel, a colon and the sequence number (unique per
// source while the instance keeps its ID), time is the export time with
// nanoseconds, buslineseq is the sequence number as a decimal string (the
// specification's Integer is 32 bits). JSON payloads (application/json,
// */*+json: DefaultCodec's structs, JSON[T]) are written inline as data,
// text/* payloads as a JSON string, anything else as data_base64. Headers
// become attributes of the same name: subject, dataschema, or extensions
// such as traceparent and tracestate (the distributed tracing extension).
// A header name must be 1 to 20 lowercase ASCII letters and digits (the
// specification's rule and its recommended length): an event with another
// header is not exported, counted in Stats.EncodeErrors and reported
// wrapping ErrEncode; names are not mapped, since lowercasing or dropping
// characters makes distinct headers collide. Headers named after an
// attribute the bridge sets (specversion, id, source, type, time,
// datacontenttype, data, buslineseq, buslineepoch, buslinesig) are
// ignored, so that an imported
// event's Meta can be published again as it is.
//
// On import, from any producer: Meta.Source is source, Meta.Time is time,
// Meta.ContentType is datacontenttype ("" when absent, which the format
// says means JSON), Meta.Seq is buslineseq (0 when absent), Meta.Headers
// holds id, type, subject, dataschema and every extension, numbers and
// booleans as their JSON text. The payload the Codec decodes is the JSON
// text of data, the content of a string data of a non-JSON content type,
// or the bytes of data_base64. A message that is not a valid CloudEvent
// (required attributes, types, names, RFC 3339 time, JSON) is dropped,
// counted in Stats.DecodeErrors and reported wrapping ErrMalformed;
// envelopes are still accepted, so that routes can move from one format
// to the other instance by instance. Busline's own rules hold for events
// that carry buslineseq: the echo of an instance's own event is dropped
// (by source), duplicates are dropped and gaps reported per source and
// channel. Events without buslineseq are not sequence-checked.
//
// On pub/sub and sharded routes each message is one event: CloudEvents
// routes never coalesce (consumers expect one event per message, not the
// JSON batch format). On durable routes the entry's data field holds the
// event's JSON and its topic field the topic; a foreign writer may leave
// out the topic, which is then the event's type.
//
// # Signed CloudEvents
//
// With Options.SigningKey the exporter ends each event with two extension
// attributes, buslineepoch (the epoch of its run, 16 lowercase hex digits)
// and, last, buslinesig: the HMAC-SHA256 with the key of the event's bytes
// up to that member followed by '}', in base64url without padding.
//
//	{"specversion":"1.0",...,"data":{"id":42},"buslineepoch":"9f3c0a1b2c3d4e5f",
//	 "buslinesig":"<43 characters>"}
//
// A verifier in any language takes off the last 60 bytes
// (,"buslinesig":"<43 characters>"}), appends '}' and compares the HMAC of
// that with the 43 characters (in constant time): no canonical JSON, no
// parser needed. Other consumers see two string extensions (the
// CloudEvents SDKs parse and validate signed events as any other). An
// importer with a SigningKey accepts only the CloudEvents whose signature
// verifies (nothing may follow the closing brace) and whose id is the
// channel it arrives on (for a stream entry, the prefix and its topic), a
// colon and anything without a colon: as the MAC of an envelope covers its channel, a
// signed event copied to another channel is rejected. Unsigned, forged,
// altered and copied events are dropped, counted in
// Stats.SignatureRejected and reported wrapping ErrSignature, as
// envelopes are; then the replay rules of envelopes apply to buslineepoch
// and buslineseq, and on pub/sub routes ReplayWindow to time (a signed
// event without time is then a replay). Neither attribute appears in the
// imported Meta.Headers. An importer without a key takes signed events
// without checking them, as it takes signed envelopes. A foreign producer
// can sign too: its event needs an id of the channel, a colon and its
// own (without a colon), and buslineseq and buslineepoch only if it
// numbers its events. Without buslineseq nothing catches a replay but
// ReplayWindow, on pub/sub routes and outside the window only: a
// recording of a signed event added to a stream again is accepted again,
// and on Group routes, which check no sequence, even with buslineseq
// (SECURITY.md).
type Format uint8

const (
	// Envelope is the binary envelope of package wire: the fast path,
	// readable by this package only.
	Envelope Format = iota
	// CloudEvents is CloudEvents 1.0 in structured-mode JSON, one event
	// per message.
	CloudEvents
)

// String returns "envelope" or "cloudevents".
func (f Format) String() string {
	switch f {
	case Envelope:
		return "envelope"
	case CloudEvents:
		return "cloudevents"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// checkFormat reports, wrapping ErrInvalidOptions, a route format New
// cannot use: route i is r.
func (br *Bridge) checkFormat(what string, r *Route) error {
	switch {
	case r.Format > CloudEvents:
		return fmt.Errorf("%w: %s (%q): unknown format %d", ErrInvalidOptions, what, r.Pattern, r.Format)
	case r.Format != CloudEvents:
		return nil
	case r.Raw:
		return fmt.Errorf("%w: %s (%q): CloudEvents on a raw route", ErrInvalidOptions, what, r.Pattern)
	case !cloudevent.ValidSource(br.id):
		return fmt.Errorf("%w: %s (%q): InstanceID %q is not a URI-reference, which a CloudEvents source must be", ErrInvalidOptions, what, r.Pattern, br.id)
	}
	return nil
}

// checkCloudEvent reports, wrapping ErrEncode, headers of it, an export
// of a CloudEvents route on topic, that cannot be CloudEvents attributes.
func (br *Bridge) checkCloudEvent(topic string, it *queue.Export) error {
	ev := cloudevent.Event{ID: it.Channel, Source: br.id, Type: topic, DataContentType: it.ContentType, Extensions: it.Headers}
	if err := ev.Validate(); err != nil {
		return chain(ErrEncode, fmt.Sprintf("topic %q", topic), err)
	}
	return nil
}

// appendCloudEvent appends export it as a CloudEvent, signed with the
// bridge's epoch if it has a SigningKey.
func (br *Bridge) appendCloudEvent(dst []byte, it *queue.Export) []byte {
	ev := cloudevent.Event{
		ID:              it.Channel,
		IDSeq:           true,
		Source:          br.id,
		Type:            it.Topic,
		Time:            time.Unix(0, it.At),
		DataContentType: it.ContentType,
		Seq:             it.Seq,
		Extensions:      it.Headers,
		Data:            it.Payload,
	}
	if br.key == nil {
		return cloudevent.Append(dst, &ev)
	}
	ev.Epoch = br.epoch
	start := len(dst)
	return cloudevent.Sign(cloudevent.Append(dst, &ev), start, br.key)
}

// acceptCloudEvent is ingest.accept for a CloudEvents route's message that
// is not an envelope: it checks the signature (with a SigningKey), decodes
// m, drops our echo, replays and duplicates as ingest.admit does for
// envelopes, and emits the event.
func (in *ingest) acceptCloudEvent(m *inbound) {
	br := in.br
	c := &br.c
	if br.key != nil {
		if err := cloudevent.Verify(m.data, br.key); err != nil {
			in.badCloudEvent(m, err)
			return
		}
	}
	ev, err := cloudevent.Decode(m.data)
	if err != nil {
		c.decodeErrors.Add(1)
		m.route.c.decodeErrors.Add(1)
		br.rep.dropf(ErrMalformed, 1, func() error { return chain(ErrMalformed, m.where(), err) })
		return
	}
	// The signature covers the id, which names the channel (the topic of
	// a stream entry) the event was exported on, as an envelope's MAC
	// covers its channel: a signed event copied to another is rejected.
	if br.key != nil && !idOf(ev.ID, m.channel) {
		in.badCloudEvent(m, errOtherChannel)
		return
	}
	var t int64
	if !ev.Time.IsZero() {
		t = ev.Time.UnixNano()
	}
	env := wire.Envelope{Source: ev.Source, Epoch: ev.Epoch, Seq: ev.Seq, Time: t}
	// Events without buslineseq are not sequence-checked. The replay
	// window holds for signed events only: a foreign producer's time
	// may be absent, or from a clock nobody keeps in sync.
	if !in.admit(m, &env, br.key != nil, ev.Seq != 0) {
		return
	}
	h := ev.Extensions
	if h == nil {
		h = make(map[string]string, 2)
	}
	h["id"], h["type"] = ev.ID, ev.Type
	meta := &bus.Meta{Source: ev.Source, Seq: ev.Seq, Time: ev.Time, ContentType: ev.DataContentType, Headers: h,
		ReplyTo: br.replyTopic(h)}
	if !m.own {
		// Data aliases m.data, which the connection reuses.
		ev.Data = in.slab.clone(ev.Data)
	}
	in.give(importItem{topic: m.topic, route: m.route, payload: ev.Data, meta: meta})
}

// errOtherChannel is why a signed CloudEvent whose id names another
// channel is rejected.
var errOtherChannel = errors.New("signed for another channel (its id)")

// idOf reports whether id is that of an event exported on channel:
// channel, a colon and a sequence number (anything without a colon).
// Channels may hold colons: all before the id's last colon must be the
// channel, or an event of "app:a:b" would pass on "app:a".
func idOf(id, channel string) bool {
	i := strings.LastIndexByte(id, ':')
	return i == len(channel) && id[:i] == channel
}

// badCloudEvent counts and reports m, a CloudEvent whose signature is
// not valid: err says why.
func (in *ingest) badCloudEvent(m *inbound, err error) {
	in.br.c.signatureRejected.Add(1)
	m.route.c.signatureRejected.Add(1)
	in.br.rep.dropf(ErrSignature, 1, func() error { return fmt.Errorf("%w: CloudEvent %s: %w", ErrSignature, m.where(), err) })
}

// isCloudEvent reports whether m, received on a route of format f, is to
// be read as a CloudEvent: anything but an envelope.
func isCloudEvent(f Format, data []byte) bool {
	return f == CloudEvents && !wire.IsEnvelope(data)
}

// cloudEventType returns the type of data, a durable entry's CloudEvent,
// or "" if it is not one: the topic of an entry without a topic field.
func cloudEventType(data string) string {
	ev, err := cloudevent.Decode([]byte(data))
	if err != nil {
		return ""
	}
	return ev.Type
}
