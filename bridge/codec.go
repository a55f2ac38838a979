package bridge

import (
	"encoding/json"
	"fmt"
	"strings"
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

// DefaultCodec is the codec of routes that set none. It sends a []byte
// payload as is (ContentTypeBytes), a string as its bytes
// (ContentTypeText), and any other payload as JSON (ContentTypeJSON). It
// decodes a message of ContentTypeText into a string and every other
// message, JSON included, into a []byte: imported payloads are []byte or
// string, and a route that wants its JSON as a Go value uses JSON[T].
var DefaultCodec Codec = defaultCodec{}

type defaultCodec struct{}

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
