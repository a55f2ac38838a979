package bridge

import (
	"encoding/json"
	"fmt"
	"strings"
	"unsafe"

	bus "github.com/busline/bus"
)

// Content types set by the codecs of this package.
const (
	ContentTypeBytes = "application/octet-stream"
	ContentTypeText  = "text/plain; charset=utf-8"
	ContentTypeJSON  = "application/json"
)

// Codec turns the payloads of exported events into bytes and the bytes of
// imported messages back into payloads. The bridge calls a route's Codec
// from publishers' goroutines (Encode) and from its import workers
// (Decode), concurrently: implementations must be safe for concurrent use.
// An error from either is counted, reported to Options.OnError wrapped in
// ErrEncode or ErrDecode, and the event skipped; a panic is not recovered.
type Codec interface {
	// Encode returns the bytes to send for payload and a content type
	// describing them, which travels in the envelope ("" for none). The
	// bridge keeps the returned slice until it is sent: Encode must
	// return memory it will not modify again, never the caller's slice.
	Encode(payload any) (data []byte, contentType string, err error)

	// Decode returns the payload to publish locally for data.
	// contentType is what the sender's Encode returned, or "" for a
	// message that came without an envelope. Decode owns data and may
	// retain it.
	Decode(data []byte, contentType string) (payload any, err error)
}

// DefaultCodec is the codec of enveloped routes that set none. It sends a
// []byte payload as is (ContentTypeBytes), a string as its bytes
// (ContentTypeText), and any other payload as JSON (ContentTypeJSON). It
// decodes a message of ContentTypeText into a string and every other
// message, JSON included, into a []byte: imported payloads are []byte or
// string, and a route that wants its JSON as a Go value uses JSON[T].
//
// DefaultCodec relies on the content type that travels in the envelope, so
// New refuses it on a Raw route (ErrInvalidOptions): raw messages carry no
// content type, and a string published locally would reach the other
// instances as a []byte. A Raw route without a Codec uses Bytes.
var DefaultCodec Codec = defaultCodec{}

type defaultCodec struct{}

// A lender is a codec of this package, whose encodeLent is its Encode
// except that it need not copy: it may return the publisher's own bytes,
// lent (valid only until Publish returns), which the outbox copies into
// memory it shares between exports (queue.Export.Lent), and the bytes of
// a string payload, which cannot change (the bridge never writes to a
// payload). A copy of its own per event was one of the two allocations of
// an export; users' codecs keep the Encode contract.
type lender interface {
	encodeLent(payload any) (data []byte, contentType string, lent bool, err error)
}

var (
	_ lender = defaultCodec{}
	_ lender = textCodec{}
	_ lender = bytesCodec{}
)

// stringBytes returns the bytes of s, without a copy: they must not be
// modified.
func stringBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

func (defaultCodec) Encode(payload any) ([]byte, string, error) {
	switch p := payload.(type) {
	case []byte:
		return append([]byte(nil), p...), ContentTypeBytes, nil
	case string:
		return []byte(p), ContentTypeText, nil
	}
	data, err := json.Marshal(payload)
	if err != nil {
		return nil, "", err
	}
	return data, ContentTypeJSON, nil
}

func (c defaultCodec) encodeLent(payload any) ([]byte, string, bool, error) {
	switch p := payload.(type) {
	case []byte:
		return p, ContentTypeBytes, true, nil
	case string:
		return stringBytes(p), ContentTypeText, false, nil
	}
	data, contentType, err := c.Encode(payload)
	return data, contentType, false, err
}

func (defaultCodec) Decode(data []byte, contentType string) (any, error) {
	if isText(contentType) {
		return string(data), nil
	}
	return data, nil
}

func isText(contentType string) bool {
	return strings.HasPrefix(contentType, "text/")
}

// JSON returns a codec that sends payloads as JSON and decodes every
// imported message into a T with encoding/json, so that subscribers
// receive the same Go type local publishers publish: use JSON[*Order] if
// publishers publish *Order, JSON[Order] if they publish Order values.
// A []byte or json.RawMessage payload is sent unchanged, taken to be JSON
// already. A message that is not valid JSON for T is a decode error.
func JSON[T any]() Codec { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Encode(payload any) ([]byte, string, error) {
	switch p := payload.(type) {
	case []byte:
		return append([]byte(nil), p...), ContentTypeJSON, nil
	case json.RawMessage:
		return append([]byte(nil), p...), ContentTypeJSON, nil
	}
	data, err := json.Marshal(payload)
	if err != nil {
		return nil, "", err
	}
	return data, ContentTypeJSON, nil
}

func (jsonCodec[T]) Decode(data []byte, _ string) (any, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("into %T: %w", v, err)
	}
	return v, nil
}

// Text returns a codec for string payloads, the one for raw routes that
// plain Redis clients such as redis-cli or redis-py write text on. It
// exports a string payload as its bytes (ContentTypeText) and decodes
// every imported message, whatever its content type, into a string of its
// bytes, so that local and remote subscribers get a string. The bytes are
// not checked to be UTF-8: a Go string holds any bytes.
//
// It exports nothing else: an event whose payload is not a string (a
// []byte or a named string type included) is not exported; the bridge
// counts it in Stats.EncodeErrors and reports it to Options.OnError with
// an error wrapping ErrEncode and bus.ErrPayloadType. The codec is safe for
// concurrent use; its Encode allocates one copy of the string (the bridge
// itself sends the string's bytes, which cannot change, without a copy).
func Text() Codec { return textCodec{} }

// Bytes returns a codec for []byte payloads, which Raw routes without a
// Codec use. It exports a []byte payload as a copy of its bytes
// (ContentTypeBytes, or the publisher's Meta.ContentType when it sets one)
// and decodes every imported message, whatever its content type, into a
// []byte, so that local and remote subscribers get a []byte.
//
// It exports nothing else: an event whose payload is not a []byte (a
// string or a json.RawMessage included) is not exported; the bridge counts
// it in Stats.EncodeErrors and reports it to Options.OnError with an error
// wrapping ErrEncode and bus.ErrPayloadType. The codec is safe for
// concurrent use; its Encode allocates one copy of the bytes (the bridge
// itself copies them into memory shared by the exports queued together).
func Bytes() Codec { return bytesCodec{} }

type textCodec struct{}

func (textCodec) Encode(payload any) ([]byte, string, error) {
	p, ok := payload.(string)
	if !ok {
		return nil, "", payloadTypeError{got: payload, want: "string"}
	}
	return []byte(p), ContentTypeText, nil
}

func (textCodec) encodeLent(payload any) ([]byte, string, bool, error) {
	p, ok := payload.(string)
	if !ok {
		return nil, "", false, payloadTypeError{got: payload, want: "string"}
	}
	return stringBytes(p), ContentTypeText, false, nil
}

func (textCodec) Decode(data []byte, _ string) (any, error) {
	return string(data), nil
}

type bytesCodec struct{}

func (bytesCodec) Encode(payload any) ([]byte, string, error) {
	p, ok := payload.([]byte)
	if !ok {
		return nil, "", payloadTypeError{got: payload, want: "[]byte"}
	}
	return append([]byte(nil), p...), ContentTypeBytes, nil
}

func (bytesCodec) encodeLent(payload any) ([]byte, string, bool, error) {
	p, ok := payload.([]byte)
	if !ok {
		return nil, "", false, payloadTypeError{got: payload, want: "[]byte"}
	}
	return p, ContentTypeBytes, true, nil
}

func (bytesCodec) Decode(data []byte, _ string) (any, error) {
	return data, nil
}

// payloadTypeError is the encode error of a payload of a type that a
// strict codec does not export. Its message has no package prefix of its
// own, since the bridge wraps it in ErrEncode's; it unwraps to
// bus.ErrPayloadType.
type payloadTypeError struct {
	got  any
	want string
}

func (e payloadTypeError) Error() string {
	var got, hint string
	switch e.got.(type) {
	case string:
		got, hint = "string", ": use Codec: bridge.Text() for strings"
	case []byte:
		got, hint = "[]byte", ": use Codec: bridge.Bytes() for bytes" // not %T's []uint8
	case nil:
		got = "nil"
	default:
		got, hint = fmt.Sprintf("%T", e.got), ": use Codec: bridge.JSON[T]() for Go values"
	}
	return "payload of type " + got + ", want " + e.want + hint
}

func (payloadTypeError) Unwrap() error { return bus.ErrPayloadType }
